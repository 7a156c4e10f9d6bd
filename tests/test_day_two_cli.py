"""Day two with `model-fetch`, as docs/model-fetch.md and docs/configuration.md state it: every failure is
one line `error: …` with a code of docs/errors.md (exit 1; usage errors exit 2 with `usage`), or one JSON
document with --json, never a traceback; a host that is not there fails at once and says what to do; manifest
mistakes are caught and said plainly; and the CLI does what its docs promise (volume fallback, gc keeping
partials, --comfyui-dir, verb options before the verb)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_fetch import load_manifest
from tests.fileserver import Fault, FileServer
from worker.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("model-fetch"))
BUILTIN = next(iter(load_manifest([], include_default=True)))
UNSHARE = shutil.which("unshare")
CODES = set(re.findall(r"^\| `([a-z_]+)` \|", (ROOT / "docs" / "errors.md").read_text(), re.MULTILINE))


def run(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MODEL_FETCH_", "COMFYUI_DIR", "HF_", "BUCKET_", "AWS_"))}
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env={**clean, **(env or {})}, cwd=cwd)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([CLI, *args], env)


def failure(res: subprocess.CompletedProcess, code: str, exit_code: int = 1) -> str:
    """The one `error: …` line of a failed run, checked against the documented contract."""
    assert res.returncode == exit_code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    assert code in CODES
    if res.stdout.lstrip().startswith("{"):  # --json: one document, nothing else
        doc = json.loads(res.stdout)
        assert doc["code"] == code and doc["error"] == errors[0][len("error: "):], doc
    return errors[0]


def json_failure(res: subprocess.CompletedProcess, code: str, exit_code: int = 1) -> dict:
    failure(res, code, exit_code)
    return json.loads(res.stdout)


def manifest(tmp_path: Path, entries: list[dict], name: str = "mine.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"models": entries}))
    return path


@pytest.fixture
def lora(tmp_path) -> tuple[Path, str]:
    """A 300 kB LoRA on a file:// mirror and its sha256."""
    src = tmp_path / "mirror" / "my_lora.safetensors"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300_000))
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.fixture
def unshare():
    if UNSHARE is None or subprocess.run([UNSHARE, "--user", "--map-root-user", "--mount", "true"]).returncode != 0:
        pytest.skip("needs unshare with user and mount namespaces")


def in_mount_ns(mount: Path, opts: str, argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """``argv`` with a tmpfs (``ro``, ``size=1m``) mounted on ``mount``, as a volume is mounted on RunPod."""
    script = f'mount -t tmpfs -o {opts} none "{mount}" && exec "$@"'
    return run([UNSHARE, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *argv], env)


# -- 1. one line with a code, or one JSON document -----------------------------------------------------
@pytest.mark.parametrize("variable, value, expected", [
    ("MODEL_FETCH_CONNECTIONS", "abc", "MODEL_FETCH_CONNECTIONS='abc': expected a whole number"),
    ("MODEL_FETCH_CHUNK_MB", "0", "MODEL_FETCH_CHUNK_MB='0': expected a number above 0"),
    ("MODEL_FETCH_FIRST_BYTE_TIMEOUT", "soon", "MODEL_FETCH_FIRST_BYTE_TIMEOUT='soon': expected a number"),
])
def test_a_bad_setting_is_named_when_read(lora, tmp_path, variable, value, expected):
    src, sha = lora
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha}])
    res = cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "pull", env={variable: value})
    assert failure(res, "settings_invalid") == f"error: {expected}"
    assert not (tmp_path / "data").exists()  # refused before anything was written
    doc = json_failure(cli("--json", "status", env={variable: value}), "settings_invalid")
    assert variable in doc["error"]


def test_read_only_models_folder(unshare, lora, tmp_path):
    src, sha = lora
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha}])
    ro = tmp_path / "ro"
    ro.mkdir()
    res = in_mount_ns(ro, "ro", [CLI, "--manifest", str(mine), "--models-dir", str(ro), "--json", "pull"], {})
    doc = json_failure(res, "storage_unwritable")
    assert str(ro) in doc["error"] and "MODEL_FETCH_MODELS_DIR" in doc["error"]
    # doctor says so too, and exits 1 (its only fatal problem: no writable root), as documented
    doctor = in_mount_ns(ro, "ro", [CLI, "--manifest", str(mine), "--models-dir", str(ro), "--json", "doctor"], {})
    assert doctor.returncode == 1 and json.loads(doctor.stdout)["ok"] is False, doctor.stderr
    assert cli("--manifest", str(mine), "--models-dir", str(tmp_path / "rw"), "doctor").returncode == 0


def test_push_to_a_missing_bucket(lora, tmp_path):
    from tests.s3server import s3_server

    src, sha = lora
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha}])
    data = str(tmp_path / "data")
    assert cli("--manifest", str(mine), "--models-dir", data, "pull").returncode == 0
    with s3_server(auth=False) as s3:
        res = cli("--manifest", str(mine), "--models-dir", data, "--json", "push", "--to", "s3://no-such-bucket/models",
                  env=s3.env())
    doc = json_failure(res, "upload_failed")
    assert "no-such-bucket" in doc["error"] and "NoSuchBucket" in doc["error"], doc


def test_yaml_error_is_one_line(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("models:\n  - name: a.safetensors\n    directory: \"loras\n    url: file:///x\n")
    line = failure(cli("--manifest", str(bad), "status"), "manifest_invalid")
    assert str(bad) in line and "not valid YAML at line" in line, line


def test_verify_mismatch_answers_one_json_document(lora, tmp_path):
    src, sha = lora
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha}])
    data = tmp_path / "data"
    assert cli("--manifest", str(mine), "--models-dir", str(data), "pull").returncode == 0
    placed = data / "loras" / src.name
    damaged = bytearray(placed.read_bytes())
    damaged[-1] ^= 0xFF  # one byte of tensor data changed, whatever it held (same size)
    placed.write_bytes(bytes(damaged))
    doc = json_failure(cli("--manifest", str(mine), "--models-dir", str(data), "--json", "verify"), "integrity_error")
    assert [f["state"] for f in doc["files"]] == ["mismatch"] and doc["files"][0]["expected"] == sha
    human = cli("--manifest", str(mine), "--models-dir", str(data), "verify")
    assert failure(human, "integrity_error").startswith(f"error: sha256 mismatch: {src.name}")


@pytest.mark.parametrize("argv, says", [
    (["stat"], "invalid choice: 'stat'"),
    (["status", "--bogus"], "unrecognized arguments: --bogus"),
    (["plan"], "--workflow"),
    (["push"], "push needs --to"),
    (["--connections", "many", "status"], "invalid int value"),
])
def test_usage_errors_exit_2_with_code_usage(tmp_path, argv, says):
    argv = [*argv, "--models-dir", str(tmp_path / "data")] if argv[0] != "stat" else argv
    assert says in failure(cli(*argv), "usage", exit_code=2)
    assert says in json_failure(cli("--json", *argv), "usage", exit_code=2)["error"]


def test_unknown_name_is_model_unknown(tmp_path):
    res = cli("--models-dir", str(tmp_path / "data"), "--json", "pull", "nobody_has.gguf")
    doc = json_failure(res, "model_unknown")
    assert "not in any manifest: nobody_has.gguf" in doc["error"]


# -- 2. offline and unreachable fail fast ------------------------------------------------------------------
def _closed_port() -> int:
    return free_port()  # free: nothing listens there, so a connection is refused


@pytest.mark.parametrize("endpoint, says", [
    ("http://model-fetch-test.invalid", "model-fetch-test.invalid does not resolve"),
    (f"http://127.0.0.1:{_closed_port()}", "127.0.0.1 refused the connection"),
])
def test_hub_not_there_fails_at_once_and_says_what_to_do(tmp_path, endpoint, says):
    """The built-in manifest with no route to the Hub (HF_ENDPOINT points where nothing answers)."""
    res = cli("--models-dir", str(tmp_path / "data"), "-v", "--json", "pull", BUILTIN.name,
              env={"HF_ENDPOINT": endpoint})
    doc = json_failure(res, "host_unreachable")
    assert says in doc["error"], doc
    assert all(hint in doc["error"] for hint in ("HF_ENDPOINT", "--offline", "--manifest", "mirrors")), doc
    assert "retrying" not in res.stderr  # one attempt, no backoff loop


def test_refused_mirror_falls_back_to_the_next_tier(lora, tmp_path):
    src, sha = lora
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha,
                                "mirrors": [f"http://127.0.0.1:{_closed_port()}/{src.name}"]}])
    res = cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "--json", "pull")
    assert res.returncode == 0, res.stderr
    assert "refused the connection" in res.stderr and json.loads(res.stdout)["files"][0]["action"] == "downloaded"


def test_silent_server_fails_after_the_first_byte_timeout(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "silent.safetensors").write_bytes(os.urandom(100_000))
    with FileServer(served) as server:
        server.faults.add("/silent.safetensors", Fault.SLOW_FIRST_BYTE, delay=120)
        mine = manifest(tmp_path, [{"name": "silent.safetensors", "directory": "loras",
                                    "url": f"{server.url}/silent.safetensors"}])
        res = cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "--json", "pull",
                  env={"MODEL_FETCH_FIRST_BYTE_TIMEOUT": "5"})
        requests = sum(n for (_, path), n in server.counters.requests.items() if path == "/silent.safetensors")
    doc = json_failure(res, "host_unreachable")
    assert "127.0.0.1 did not answer within 5s (MODEL_FETCH_FIRST_BYTE_TIMEOUT)" in doc["error"], doc
    assert "waiting for" in res.stderr and "to answer (gives up after 5s" in res.stderr, res.stderr
    assert requests == 1  # not retried


# -- 3. manifests checked against what ComfyUI searches ---------------------------------------------------
@pytest.mark.parametrize("folder, hint", [("LoRAs", "did you mean 'loras'?"), ("lora", "did you mean 'loras'?"),
                                          ("Diffusion_Models", "did you mean 'diffusion_models'?"),
                                          ("my_stuff", "use one of checkpoints")])
def test_unknown_or_miscased_folder_is_refused(lora, tmp_path, folder, hint):
    src, sha = lora
    mine = manifest(tmp_path, [{"name": src.name, "directory": folder, "url": src.as_uri(), "hash": sha}])
    line = failure(cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "pull"), "manifest_invalid")
    assert f"entry #1 ({src.name})" in line and f"'{folder}' is not a folder ComfyUI searches" in line and hint in line
    assert not (tmp_path / "data").exists()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 123)
    (root / "w.safetensors").write_bytes(data)
    with FileServer(root) as server:
        yield server, len(data), hashlib.sha256(data).hexdigest()


def test_wrong_sha256_fails_after_one_download(served, tmp_path):
    server, size, sha = served
    wrong = "0" * 64
    mine = manifest(tmp_path, [{"name": "w.safetensors", "directory": "loras", "url": f"{server.url}/w.safetensors",
                                "hash": wrong}])
    line = failure(cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "pull"), "integrity_error")
    assert f"expected sha256 {wrong}, got {sha}" in line, line
    assert size <= server.counters.bytes_by_path["/w.safetensors"] <= size + 1  # one download (+ the probe's byte)
    assert not list((tmp_path / "data" / "loras").glob("w.safetensors*"))  # nothing placed, nothing left


def test_wrong_size_is_said_plainly(served, tmp_path):
    server, size, sha = served
    mine = manifest(tmp_path, [{"name": "w.safetensors", "directory": "loras", "url": f"{server.url}/w.safetensors",
                                "size": 1000}])
    line = failure(cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "pull"), "integrity_error")
    assert f"expected size 1000 bytes, got {size} bytes" in line, line


def test_entry_without_a_source_is_no_source(tmp_path):
    mine = manifest(tmp_path, [{"name": "handmade.safetensors", "directory": "loras"}])
    line = failure(cli("--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "pull"), "no_source")
    assert "loras/handmade.safetensors" in line and "no 'url' and no 'mirrors'" in line and "offline" not in line


# -- 4. what the docs promise ---------------------------------------------------------------------------
def test_too_full_volume_falls_back_to_the_local_root(unshare, lora, tmp_path):
    """docs/model-fetch.md: a volume too full for a file goes to the local root; disk_full shows the headroom."""
    src, sha = lora
    vol = tmp_path / "runpod-volume"
    vol.mkdir()
    env = {"MODEL_FETCH_VOLUME_DIR": str(vol / "models"), "MODEL_FETCH_LOCAL_DIR": str(tmp_path / "local")}
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha,
                                "size": src.stat().st_size}])
    res = in_mount_ns(vol, "size=2m", [CLI, "--manifest", str(mine), "--json", "pull"], env)  # 2 MiB < 256 MiB headroom
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["files"][0]["path"] == str(tmp_path / "local" / "loras" / src.name)
    assert "256 MiB headroom" in res.stderr and str(tmp_path / "local") in res.stderr
    # nowhere has room: disk_full names the headroom
    big = manifest(tmp_path, [{"name": "huge.safetensors", "directory": "loras", "url": src.as_uri(),
                               "size": 1 << 50}], "big.json")
    line = failure(in_mount_ns(vol, "size=2m", [CLI, "--manifest", str(big), "pull"], env), "disk_full")
    assert "plus 256 MiB headroom (MODEL_FETCH_MIN_FREE_MB)" in line, line


def test_gc_keeps_resumable_partials_unless_asked(served, tmp_path):
    server, size, sha = served
    mine = manifest(tmp_path, [{"name": "w.safetensors", "directory": "loras", "url": f"{server.url}/w.safetensors",
                                "hash": sha}])
    data = tmp_path / "data"
    base = ["--manifest", str(mine), "--models-dir", str(data)]
    server.faults.add("/w.safetensors", Fault.STALL, offset=2 * 1024 * 1024, duration=None)
    stall = {"MODEL_FETCH_STALL_TIMEOUT": "1", "MODEL_FETCH_MAX_ATTEMPTS": "1", "MODEL_FETCH_CHUNK_MB": "1"}
    stalled = cli(*base, "--connections", "1", "pull", env=stall)
    failure(stalled, "download_failed")
    part = data / "loras" / "w.safetensors.part"
    assert part.exists() and part.with_name("w.safetensors.part.journal").exists()
    kept = json.loads(cli(*base, "--json", "gc").stdout)
    assert kept["kept_partial"] == [str(part)] and str(part) not in kept["removed"] and part.exists()
    server.faults.clear()
    server.reset_counters()
    resumed = cli(*base, "--json", "pull", env={"MODEL_FETCH_CHUNK_MB": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert 0 < json.loads(resumed.stdout)["files"][0]["fetched_bytes"] < size  # progress was kept
    # --partials (before the verb, too) removes them
    server.faults.add("/w.safetensors", Fault.STALL, offset=2 * 1024 * 1024, duration=None)
    (data / "loras" / "w.safetensors").unlink()
    cli(*base, "--connections", "1", "pull", env=stall)
    assert part.exists()
    removed = json.loads(cli(*base, "--partials", "--json", "gc").stdout)
    assert str(part) in removed["removed"] and not part.exists()


def test_comfyui_dir_is_honoured_by_status_and_pull(lora, tmp_path):
    src, sha = lora
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    shutil.copy(src, comfy / "models" / "loras" / src.name)
    mine = manifest(tmp_path, [{"name": src.name, "directory": "loras", "url": src.as_uri(), "hash": sha}])
    base = ["--manifest", str(mine), "--models-dir", str(tmp_path / "data"), "--comfyui-dir", str(comfy), "--json"]
    status = json.loads(cli(*base, "status").stdout)["files"][0]
    assert status["state"] == "present" and status["comfyui"] is True
    assert status["path"] == str(comfy / "models" / "loras" / src.name)
    pulled = cli(*base, "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["files"][0]["source"] == "comfyui" and not (tmp_path / "data").exists()
    # COMFYUI_DIR does the same, as docs/configuration.md says
    env_status = json.loads(cli(*base[:4], "--json", "status", env={"COMFYUI_DIR": str(comfy)}).stdout)["files"][0]
    assert env_status["comfyui"] is True


def test_verb_options_before_the_verb(tmp_path):
    workflow = ROOT / "workflows" / "wan22_i2v_gguf.api.json"
    before = cli("--models-dir", str(tmp_path / "data"), "--workflow", str(workflow), "--json", "plan")
    after = cli("--models-dir", str(tmp_path / "data"), "--json", "plan", "--workflow", str(workflow))
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout) and json.loads(before.stdout)["files"]
    # an option of another verb is still refused
    assert "--workflow" in failure(cli("--workflow", str(workflow), "status"), "usage", exit_code=2)


def test_readme_commands_work_as_typed():
    """README.md's CLI command, run from the repository root exactly as written."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"`(\S*model-fetch --help)`", readme).group(1)
    assert command == ".venv/bin/model-fetch --help"
    venv = ROOT / ".venv" / "bin" / "model-fetch"
    if not venv.exists():
        pytest.skip("no .venv in this checkout (make setup creates it)")
    res = run(command.split(), cwd=ROOT)
    assert res.returncode == 0 and "before or after VERB" in res.stdout, res.stderr


def test_resumed_bytes_that_fail_the_sha256_earn_one_fresh_download(served, tmp_path):
    """docs/model-fetch.md: a chunk an earlier run marked done whose bytes are wrong (a power loss) costs a
    download, never a wrong file; a fresh download that fails stops at once (above)."""
    server, size, sha = served
    mine = manifest(tmp_path, [{"name": "w.safetensors", "directory": "loras", "url": f"{server.url}/w.safetensors",
                                "hash": sha}])
    data = tmp_path / "data"
    base = ["--manifest", str(mine), "--models-dir", str(data)]
    env = {"MODEL_FETCH_STALL_TIMEOUT": "1", "MODEL_FETCH_MAX_ATTEMPTS": "1", "MODEL_FETCH_CHUNK_MB": "1"}
    server.faults.add("/w.safetensors", Fault.STALL, offset=2 * 1024 * 1024, duration=None)
    failure(cli(*base, "--connections", "1", "pull", env=env), "download_failed")
    part = data / "loras" / "w.safetensors.part"
    with open(part, "r+b") as f:  # the first chunk, journaled as done, lost its bytes
        f.write(b"\0" * 4096)
    server.faults.clear()
    res = cli(*base, "--json", "pull", env={"MODEL_FETCH_CHUNK_MB": "1"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["files"][0]["sha256"] == sha and "expected sha256" in res.stderr
