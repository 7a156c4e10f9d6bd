"""Day one with the worker, through its real entry points: a job exactly as worker-comfyui's README
shows it over the local RunPod API (models baked only into ComfyUI's own models/ folder, S3 output
switched on by BUCKET_ENDPOINT_URL), and `python -m worker --test-input` for what must fail before
anything is downloaded or uploaded."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import tiny_weights
from tests.fileserver import FileServer
from tests.graphs import input_png, probe_video
from tests.s3server import start_s3_server
from worker.supervisor import free_port
from worker.workflows import apply_params

pytestmark = pytest.mark.comfyui
ROOT = Path(__file__).resolve().parent.parent
PNG = "data:image/png;base64," + base64.b64encode(input_png(64, 48)).decode()
TINY = {"width": 64, "height": 48, "length": 5, "steps": 4, "fps": 8, "seed": 7, "prompt": "a cat walks slowly"}


def baked_install(comfyui_dir: Path, tiny_dir: Path, dest: Path) -> Path:
    """A ComfyUI install as a worker-comfyui image has it: the models baked into its own models/ folder."""
    dest.mkdir()
    for entry in comfyui_dir.iterdir():
        if entry.name == "models":
            continue
        if entry.name == "main.py":
            shutil.copy(entry, dest / entry.name)  # imports resolve beside the script, i.e. here
        else:
            (dest / entry.name).symlink_to(entry)
    for prod, (folder, tiny) in tiny_weights.STAND_INS.items():
        (dest / "models" / folder).mkdir(parents=True, exist_ok=True)
        (dest / "models" / folder / prod).symlink_to(tiny_dir / tiny)
    return dest


def inline_graph(image_name: str) -> dict:
    """The default workflow exported as an API graph, as a client sends it (values set in the graph)."""
    api = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.api.json").read_text())
    param_map = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.params.json").read_text())
    return apply_params(api, param_map, {**TINY, "image": image_name})


def worker_env(tmp_path: Path, comfyui: Path, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_FETCH_", "WORKER_", "BUCKET_"))}
    return {**clean, "COMFYUI_DIR": str(comfyui), "WORKER_COMFY_CPU": "1", "WORKER_COMFY_BASE_DIR": str(tmp_path / "base"),
            "WORKER_COMFY_PORT": str(free_port()), "MODEL_FETCH_MODELS_DIR": str(tmp_path / "volume"), **extra}


def test_worker_comfyui_readme_job_over_the_local_api(comfyui_dir, tiny_dir, tmp_path):
    install = baked_install(comfyui_dir, tiny_dir, tmp_path / "ComfyUI")
    s3 = start_s3_server(auth=False)
    port = free_port()
    try:
        s3.client().create_bucket(Bucket="videos")
        env = worker_env(tmp_path, install, MODEL_FETCH_OFFLINE="1", WORKER_OUTPUT_BUCKET="videos", **s3.env())
        log = open(tmp_path / "worker.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "worker", "--serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/runsync"
            job = {"input": {"workflow": inline_graph("my start.png"), "images": [{"name": "my start.png", "image": PNG}]}}
            answer = _post(url, job, proc)
            assert answer["status"] == "COMPLETED", (answer, (tmp_path / "worker.log").read_text()[-3000:])
            out = answer["output"]
            assert out["models"]["fetched"] == [] and not any((tmp_path / "volume").rglob("*.gguf"))
            (image,) = out["images"]
            assert image["type"] == "s3_url" and image["key"].startswith("outputs/")
            video = tmp_path / "v.mp4"
            video.write_bytes(requests.get(image["data"], timeout=30).content)
            assert probe_video(video)["frames"] == 5
            # a model no one has (not ours, not in ComfyUI's folders or its /models listing) fails at planning,
            # before any upload
            graph = inline_graph("my start.png")
            next(n for n in graph.values() if n["class_type"] == "VAELoader")["inputs"]["vae_name"] = "nobody_has.safetensors"
            failed = _post(url, {"input": {"workflow": graph, "images": [{"name": "my start.png", "image": PNG}]}}, proc)
            assert failed["status"] == "FAILED" and "'nobody_has.safetensors' in 'vae'" in failed["error"], failed
            assert not any((tmp_path / "base" / "input").glob("job-*"))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        s3.stop()


def _post(url: str, job: dict, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 120
    while True:
        try:
            return requests.post(url, json=job, timeout=600).json()
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _test_input(tmp_path: Path, job: dict, env: dict) -> dict:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    res = subprocess.run([sys.executable, "-m", "worker", "--test-input", str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    return json.loads(res.stdout)


def test_invalid_params_fail_before_any_download_or_upload(comfyui_dir, tiny_dir, tmp_path):
    mirror = tmp_path / "mirror"
    with FileServer(mirror) as srv:
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps({"models": tiny_weights.stand_in_mirror(tiny_dir, mirror, srv.url)}))
        env = worker_env(tmp_path, comfyui_dir, MODEL_FETCH_MANIFEST=str(manifest), REFRESH_WORKER="true")
        # the input as a JSON string, as some worker-comfyui clients send it (RunPod passes it through)
        answer = _test_input(tmp_path, {"input": json.dumps({"params": {"image": PNG, **TINY, "length": 80}})}, env)
        assert answer["code"] == "invalid_input" and answer["field"] == "params.length", answer
        assert answer["details"][0] == answer["error"]
        assert answer["refresh_worker"] is True
        assert srv.counters.bytes_sent == 0 and not any((tmp_path / "volume").rglob("*.gguf"))
        assert not any((tmp_path / "base" / "input").glob("job-*"))


def test_missing_comfyui_has_its_own_code(tmp_path):
    env = worker_env(tmp_path, tmp_path / "no-comfyui", MODEL_FETCH_OFFLINE="1")
    answer = _test_input(tmp_path, {"input": {"params": {"image": PNG, **TINY}}}, env)
    assert answer["code"] == "comfyui_unavailable" and answer["reason"] == "comfyui_not_found", answer
    assert "no-comfyui" in answer["error"] and answer["details"] == [answer["error"]]


def test_a_file_only_the_running_comfyui_lists_counts_as_present(comfy, tmp_path):
    """The worker's last look before `model_unknown`: ComfyUI's own GET /models/{folder}."""
    import model_fetch
    from model_fetch._manifest import Manifest
    from worker.comfy_client import ComfyClient

    name = tiny_weights.FILES["unet_high"]
    graph = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}}
    store, manifest = model_fetch.Store([tmp_path / "empty"]), Manifest()
    with pytest.raises(model_fetch.UnknownModelError):
        model_fetch.plan(graph, manifest=manifest, store=store, comfy=model_fetch.ComfyFolders())
    listed = model_fetch.ComfyFolders()
    listed.add_listing("unet", ComfyClient(comfy.url).list_models("diffusion_models"))
    (item,) = model_fetch.plan(graph, manifest=manifest, store=store, comfy=listed).items
    assert item.present and item.outside_store and item.path is None
    assert ComfyClient(comfy.url).list_models("no_such_folder") == []
