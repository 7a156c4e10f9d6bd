"""The environment the image installs, and nothing else: a venv from requirements/runtime.lock.txt plus
the project ``--no-deps`` (as the Dockerfile does). Every module imports and every third-party import
is declared; the start script brings the worker up in it and a client drives it over runpod's local
API: a ``status`` job, then the tiny WAN job (the first fills an empty models folder from a loopback
mirror). ComfyUI's output reaches the worker's stdout, prefixed; no job payload reaches the logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import runpod_api, tiny_weights
from tests.fileserver import FileServer
from tests.graphs import probe_video
from worker.supervisor import free_port

pytestmark = pytest.mark.comfyui
ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / ".cache" / "runtime-env"


def build_runtime_env() -> Path:
    """``uv venv`` + the runtime lock + the project --no-deps (reused while the lock and pyproject match)."""
    want = hashlib.sha256((ROOT / "requirements/runtime.lock.txt").read_bytes()
                          + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = ENV_DIR / ".built-from"
    python = ENV_DIR / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == want and python.exists():
        return python
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    shutil.rmtree(ENV_DIR, ignore_errors=True)
    run = lambda *args: subprocess.run([uv, *args], cwd=ROOT, check=True, capture_output=True)  # noqa: E731
    run("venv", "--quiet", "--python", sys.executable, str(ENV_DIR))
    run("pip", "install", "--quiet", "--python", str(python), "-r", "requirements/runtime.lock.txt")
    run("pip", "install", "--quiet", "--python", str(python), "--no-deps",
        "--config-settings", "editable_mode=compat", "-e", ".")
    stamp.write_text(want)
    return python


@pytest.fixture(scope="module")
def runtime_python() -> Path:
    return build_runtime_env()


def test_every_module_imports_and_every_import_is_declared(runtime_python, comfyui_dir):
    res = subprocess.run([str(runtime_python), "tests/runtime_imports.py", str(comfyui_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.stdout.strip(), res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["problems"] == [] and res.returncode == 0, report["problems"]
    assert {"worker.jobs", "worker.handler", "model_fetch.cli", "wan_serverless.nodes"} <= set(report["imported"])
    assert "WanUnetLoaderGGUF" in report["nodes"]
    pip = subprocess.run([str(runtime_python), "-c", "import pytest"], capture_output=True)
    assert pip.returncode != 0, "the runtime environment must not hold test tools"


def test_worker_serves_jobs_from_the_runtime_environment(runtime_python, comfyui_dir, tiny_dir, tmp_path):
    with FileServer(tmp_path / "mirror") as mirror:
        entries = tiny_weights.stand_in_mirror(tiny_dir, tmp_path / "mirror", mirror.url)
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps({"models": entries}))
        port = free_port()
        bin_dir = runtime_python.parent
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "MODEL_FETCH_", "WORKER_"))}
        env.update({"VIRTUAL_ENV": str(bin_dir.parent), "PATH": f"{bin_dir}:{os.environ['PATH']}",
                    "COMFYUI_DIR": str(comfyui_dir), "WORKER_COMFY_CPU": "1", "WORKER_SERVE_HOST": "0.0.0.0",
                    "WORKER_COMFY_BASE_DIR": str(tmp_path / "comfy"), "WORKER_COMFY_PORT": str(free_port()),
                    "MODEL_FETCH_VOLUME_DIR": str(tmp_path / "volume" / "models"),
                    "MODEL_FETCH_LOCAL_DIR": str(tmp_path / "local"), "MODEL_FETCH_MANIFEST": str(manifest),
                    "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1"})
        (tmp_path / "volume" / "models").mkdir(parents=True)
        log_path = tmp_path / "worker.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([str(ROOT / "scripts/start.sh"), "--serve", "--port", str(port)], cwd=tmp_path,
                                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            runpod_api.wait_until_up(url, lambda: proc.poll() is None, log_path.read_text)
            session = runpod_api.exercise(url)
            runpod_api.check(session, tmp_path, probe_video)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    text = log_path.read_text()
    assert f"Uvicorn running on http://0.0.0.0:{port}" in text  # WORKER_SERVE_HOST
    assert "GPU stack: torch 2.9.1" in text
    assert runpod_api.payload_leaks(session, text) == []
    forwarded = [line for line in text.splitlines() if line.startswith("[comfyui] ")]
    assert any("To see the GUI go to" in line for line in forwarded), text[-3000:]
    assert "To see the GUI go to" in (tmp_path / "comfy" / "comfyui.log").read_text()  # still in the file
    assert len(list((tmp_path / "volume" / "models").rglob("*.gguf"))) >= 2  # the models landed on the volume
