"""`model-fetch plan` never needs DNS: ComfyUI's official WAN 2.2 14B I2V template (from the
comfyui-workflow-templates package ComfyUI's requirements name) is planned by the CLI, as a subprocess,
on a machine where no name resolves; a fetch then fails with `host_unreachable`, naming the host."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every name lookup fails, as with no network or no DNS (a sitecustomize runs before the CLI).
NO_DNS = (
    "import socket\n"
    "def _no_dns(*args, **kwargs):\n"
    "    raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')\n"
    "socket.getaddrinfo = _no_dns\n"
)
TEMPLATE_FILES = {
    ("diffusion_models", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"),
    ("diffusion_models", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"),
    ("loras", "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors"),
    ("loras", "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors"),
    ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    ("vae", "wan_2.1_vae.safetensors"),
}


def template() -> Path:
    spec = importlib.util.find_spec("comfyui_workflow_templates_media_video")
    path = Path(spec.origin).parent / "templates" / "video_wan2_2_14B_i2v.json" if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip("comfyui-workflow-templates (video templates) is not installed: run make setup")
    return path


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "no-dns"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_DNS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_FETCH_", "HF_", "COMFYUI_DIR"))}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), MODEL_FETCH_MODELS_DIR=str(tmp_path / "models"),
               MODEL_FETCH_NO_DEFAULT_MANIFEST="1")
    return subprocess.run([sys.executable, "-m", "model_fetch.cli", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_plan_of_the_official_template_lists_its_six_files_without_dns(tmp_path):
    res = run_cli(tmp_path, "plan", "--workflow", str(template()), "--json")
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)["files"]
    assert {(f["directory"], f["name"]) for f in files} == TEMPLATE_FILES
    for f in files:
        assert not f["present"] and f["url"].startswith("https://huggingface.co/Comfy-Org/"), f
        assert f["url"].endswith("/" + f["name"]), f
    offline = run_cli(tmp_path, "plan", "--workflow", str(template()), "--offline")
    assert offline.returncode == 0, offline.stderr
    assert "MODEL_FETCH_ALLOWED_HOSTS" not in offline.stderr
    assert sum("huggingface.co" in line for line in offline.stdout.splitlines()) == 6


def test_fetch_without_dns_fails_with_a_network_code_naming_the_host(tmp_path):
    res = run_cli(tmp_path, "pull", "--workflow", str(template()), "--json")
    assert res.returncode == 1, res.stderr
    answer = json.loads(res.stdout)
    assert answer["code"] == "host_unreachable", answer
    assert "huggingface.co does not resolve" in answer["error"]
    assert "MODEL_FETCH_ALLOWED_HOSTS" not in answer["error"] and "Traceback" not in res.stderr
    assert not any((tmp_path / "models").rglob("*.safetensors"))


def test_a_rule_broken_is_still_a_refusal(tmp_path):
    """Refusal codes stay for rules: a non-public literal address is refused without any lookup."""
    ui = json.loads(template().read_text())
    for node in ui["nodes"]:
        for m in (node.get("properties") or {}).get("models") or []:
            m["url"] = m["url"].replace("https://huggingface.co/", "https://10.0.0.1/")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(ui))
    res = run_cli(tmp_path, "plan", "--workflow", str(path), "--json")
    assert res.returncode == 1
    answer = json.loads(res.stdout)
    assert answer["code"] == "source_refused" and "10.0.0.1" in answer["error"], answer
