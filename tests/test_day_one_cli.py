"""Day one with `model-fetch`, as docs/model-fetch.md shows it: options before or after the verb, your
manifest defines what a pull covers, a fresh network volume (a real mount point) is used, and models
in a ComfyUI install's own folders count as present."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_fetch import load_manifest

CLI = str(Path(sys.executable).with_name("model-fetch"))
BUILTIN = next(iter(load_manifest([], include_default=True)))


def run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_FETCH_", "COMFYUI_DIR"))}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([CLI, *args], env)


@pytest.fixture
def mine(tmp_path) -> Path:
    """A user's manifest: one small LoRA served from a file:// mirror."""
    src = tmp_path / "mirror" / "my_lora.safetensors"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300_000))
    manifest = tmp_path / "mine.json"
    manifest.write_text(json.dumps({"models": [{"name": src.name, "directory": "loras", "url": src.as_uri(),
                                                "hash": hashlib.sha256(src.read_bytes()).hexdigest()}]}))
    return manifest


@pytest.mark.parametrize("order", ["before", "after", "mixed"])
def test_options_are_honoured_before_or_after_the_verb(mine, tmp_path, order):
    root = tmp_path / "data"
    opts = ["--manifest", str(mine), "--models-dir", str(root), "--json"]
    argv = {"before": [*opts, "status"], "after": ["status", *opts], "mixed": [*opts[:2], "status", *opts[2:]]}[order]
    res = cli(*argv)
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)["files"]
    assert [f["name"] for f in files] == ["my_lora.safetensors"]  # only my manifest, not the built-in set
    assert files[0]["state"] == "missing"
    assert cli("--models-dir", str(root), "--json", "doctor", "--manifest", str(mine)).returncode == 0
    doctor = json.loads(cli("--models-dir", str(root), "--json", "doctor", "--manifest", str(mine)).stdout)
    assert doctor["write_root"] == str(root) and doctor["manifest"]["files"] == 1


def test_pull_with_my_manifest_downloads_only_mine(mine, tmp_path):
    root = tmp_path / "data"
    res = cli("--manifest", str(mine), "--models-dir", str(root), "pull", "--json")
    assert res.returncode == 0, res.stderr
    assert [f["name"] for f in json.loads(res.stdout)["files"]] == ["my_lora.safetensors"]
    assert sorted(p.name for p in root.rglob("*") if p.is_file() and ".model-fetch" not in p.parts) == \
        ["my_lora.safetensors"]
    # a built-in name still resolves (it is not "unknown"); offline it is refused for being remote
    named = cli("--manifest", str(mine), "--models-dir", str(root), "--offline", "pull", BUILTIN.name)
    assert named.returncode == 1 and "not in any manifest" not in named.stderr, named.stderr
    # without --manifest the built-in set is the default
    status = json.loads(cli("--models-dir", str(root), "--json", "status").stdout)["files"]
    assert BUILTIN.name in [f["name"] for f in status] and "my_lora.safetensors" not in [f["name"] for f in status]


def test_help_states_the_rule():
    out = cli("--help").stdout
    assert "before or after VERB" in out and "only when you name none, the built-in" in out


def test_comfyui_dir_models_count_as_present(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "unet").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "models" / "unet" / "baked.safetensors").write_bytes(b"x")
    extra = tmp_path / "elsewhere" / "my_vae"
    extra.mkdir(parents=True)
    (extra / "v.safetensors").write_bytes(b"x")
    (comfy / "extra_model_paths.yaml").write_text(f"other:\n  base_path: {tmp_path / 'elsewhere'}\n  vae: my_vae\n")
    workflow = tmp_path / "api.json"
    workflow.write_text(json.dumps({"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "baked.safetensors"}},
                                    "2": {"class_type": "VAELoader", "inputs": {"vae_name": "v.safetensors"}}}))
    root = str(tmp_path / "data")
    unknown = cli("--models-dir", root, "plan", "--workflow", str(workflow))
    assert unknown.returncode == 1 and "baked.safetensors" in unknown.stderr
    res = cli("--models-dir", root, "--json", "plan", "--workflow", str(workflow), "--comfyui-dir", str(comfy))
    assert res.returncode == 0, res.stderr
    files = {f["name"]: f for f in json.loads(res.stdout)["files"]}
    assert files["baked.safetensors"]["present"] and files["baked.safetensors"]["comfyui"]
    assert files["v.safetensors"]["path"] == str(extra / "v.safetensors")
    pulled = cli("--models-dir", root, "--offline", "--json", "pull", "--workflow", str(workflow), "--comfyui-dir",
                 str(comfy))
    assert pulled.returncode == 0 and json.loads(pulled.stdout)["files"] == [], pulled.stderr


# -- network volume: a real mount point in a private mount namespace -------------------------------------
UNSHARE = shutil.which("unshare")


def _in_mount_ns(vol: Path, mount_opts: str, argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run ``argv`` with a tmpfs mounted on ``vol`` (``ro``, ``size=1m``, ...), as a volume is mounted on RunPod."""
    script = f'mount -t tmpfs -o {mount_opts} none "{vol}" && exec "$@"'
    return run([UNSHARE, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *argv], env)


@pytest.fixture
def volume(tmp_path):
    if UNSHARE is None or subprocess.run([UNSHARE, "--user", "--map-root-user", "--mount", "true"]).returncode != 0:
        pytest.skip("needs unshare with user and mount namespaces")
    vol = tmp_path / "runpod-volume"
    vol.mkdir()
    env = {"MODEL_FETCH_VOLUME_DIR": str(vol / "models"), "MODEL_FETCH_LOCAL_DIR": str(tmp_path / "local")}
    return vol, env


def test_fresh_volume_without_models_folder_is_used(volume, mine):
    vol, env = volume
    res = _in_mount_ns(vol, "size=1g", [CLI, "--manifest", str(mine), "--json", "doctor"], env)
    report = json.loads(res.stdout)
    assert report["network_volume"]["detected"] and report["write_root"] == str(vol / "models"), report
    assert not any("network volume" in p for p in report["problems"]), report["problems"]
    pulled = _in_mount_ns(vol, "size=1g", ["sh", "-c", f'"{CLI}" --manifest "{mine}" pull && ls "{vol}/models/loras"'],
                          env)
    assert pulled.returncode == 0 and "my_lora.safetensors" in pulled.stdout, pulled.stderr


def test_doctor_says_a_volume_is_read_only_or_full(volume, mine, tmp_path):
    vol, env = volume
    ro = json.loads(_in_mount_ns(vol, "ro", [CLI, "--manifest", str(mine), "--json", "doctor"], env).stdout)
    assert any(f"network volume at {vol} is attached but not writable" in p for p in ro["problems"]), ro["problems"]
    assert ro["write_root"] == str(tmp_path / "local")
    big = tmp_path / "big.json"
    big.write_text(json.dumps([{"name": "huge.gguf", "directory": "unet", "url": "https://example.invalid/huge.gguf",
                                "size": 5 * 1024**3}]))
    full = json.loads(_in_mount_ns(vol, "size=1m", [CLI, "--manifest", str(big), "--json", "doctor"], env).stdout)
    assert any(f"network volume at {vol} is full" in p for p in full["problems"]), full["problems"]
