"""A job inside the built image (``make image-test``; skipped unless WAN_IMAGE names the image).

The image's own CMD (``/app/scripts/start.sh``, plus ``--serve``) and ENV run in a buildah container
(chroot isolation, host network) with an empty tmpfs as ``/runpod-volume``, ComfyUI on CPU and the
tiny weights served from a loopback mirror. A client drives it over runpod's local API: ``status``,
the tiny job over ``/run`` → ``/stream`` → ``/status``, again over ``/runsync``, ``status`` again:
a video comes back and the models are on the volume. Figures go to .cache/image-test.json.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests import runpod_api, tiny_weights
from tests.fileserver import FileServer
from tests.graphs import probe_video
from worker.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("WAN_IMAGE")
pytestmark = [pytest.mark.image, pytest.mark.comfyui,
              pytest.mark.skipif(not IMAGE, reason="set WAN_IMAGE (make image-test builds and sets it)")]


def buildah() -> list[str]:
    store = subprocess.run([str(ROOT / "scripts/image.sh"), "store"], capture_output=True, text=True, check=True)
    return ["buildah", *shlex.split(store.stdout)]


def test_job_inside_the_image_over_runpods_local_api(tiny_dir, tmp_path):
    bah = buildah()
    mirror_dir, job_dir = tmp_path / "mirror", tmp_path / "job"
    job_dir.mkdir()
    with FileServer(mirror_dir) as mirror:
        entries = tiny_weights.stand_in_mirror(tiny_dir, mirror_dir, mirror.url)
        (job_dir / "manifest.json").write_text(json.dumps({"models": entries}))
        ctr = subprocess.run([*bah, "from", "--pull-never", IMAGE], capture_output=True, text=True,
                             check=True).stdout.strip()
        port = free_port()
        env = {"WORKER_COMFY_CPU": "1", "WORKER_COMFY_PORT": str(free_port()),
               "MODEL_FETCH_MANIFEST": "/job/manifest.json", "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1"}
        cmd = [*bah, "run", "--isolation", "chroot", "--network", "host",
               "--mount", "type=tmpfs,destination=/runpod-volume", "--volume", f"{job_dir}:/job:ro",
               *[f"--env={k}={v}" for k, v in env.items()], ctr, "--", "/app/scripts/start.sh", "--serve",
               "--port", str(port)]
        log_path = tmp_path / "worker.log"
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            runpod_api.wait_until_up(url, lambda: proc.poll() is None, log_path.read_text)
            ready_s = time.monotonic() - t0
            assert all(f["state"] == "missing" for f in requests.post(
                f"{url}/runsync", json={"input": {"action": "status"}}, timeout=120).json()["output"]["files"])
            session = runpod_api.exercise(url)
            after = requests.post(f"{url}/runsync", json={"input": {"action": "status"}}, timeout=120).json()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            subprocess.run([*bah, "rm", ctr], capture_output=True)
    text = log_path.read_text()
    runpod_api.check(session, tmp_path, probe_video)
    files = after["output"]["files"]
    assert files and all(f["state"] == "present" and f["path"].startswith("/runpod-volume/models/") for f in files)
    assert f"Uvicorn running on http://0.0.0.0:{port}" in text  # the image's WORKER_SERVE_HOST
    assert "GPU stack: torch 2.9.1+cu128 (CUDA 12.8 build)" in text
    assert any(line.startswith("[comfyui] ") for line in text.splitlines())
    assert runpod_api.payload_leaks(session, text) == []
    figures = {"image": IMAGE, "start_to_ready_s": round(ready_s, 1),
               **{f"{k}_s": round(v, 1) for k, v in session.seconds.items()},
               "first_job_timings": session.polled["output"]["timings"]}
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "image-test.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
