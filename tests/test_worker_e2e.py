"""The worker end to end in real ComfyUI on tiny weights: the first job fetches its models from a
loopback HTTP mirror, jobs by workflow name and by the repo's UI-format file, structured errors,
a deadline, ComfyUI killed mid-job, S3 output and `python -m worker --test-input`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import model_fetch
from tests import tiny_weights
from tests.fileserver import FileServer
from tests.graphs import input_png, probe_video
from worker import jobs
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.supervisor import free_port

pytestmark = pytest.mark.comfyui
ROOT = Path(__file__).resolve().parent.parent
IMAGE = base64.b64encode(input_png(64, 48)).decode()
TINY = {"image": IMAGE, "width": 64, "height": 48, "length": 9, "steps": 4, "fps": 8, "seed": 7,
        "prompt": "a cat walks slowly across the street"}


@pytest.fixture(scope="module")
def mirror(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    with FileServer(root) as srv:
        entries = tiny_weights.stand_in_mirror(tiny_dir, root, srv.url)
        manifest = root.parent / f"{root.name}-manifest.json"
        manifest.write_text(json.dumps({"models": entries}))
        yield srv, manifest


@pytest.fixture(scope="module")
def runtime(comfyui_dir, mirror, tmp_path_factory):
    srv, manifest = mirror
    tmp = tmp_path_factory.mktemp("worker")
    fetch = model_fetch.Settings(models_dirs=[tmp / "models"], manifests=[manifest], include_default_manifest=False,
                                 min_free_bytes=0, chunk_size=1024 * 1024)
    rt = Runtime(WorkerSettings(comfyui_dir=comfyui_dir, base_dir=tmp / "comfy", port=free_port(), cpu=True,
                                start_timeout=240), fetch)
    yield rt
    rt.stop()


def run(rt, raw, events=None):
    return jobs.handle(raw, rt, (events.append if events is not None else None), job_id=f"t{time.monotonic_ns()}")


def decode_video(tmp_path, answer) -> dict:
    (out,) = answer["images"]
    assert out["content_type"] == "video/mp4" and out["type"] == "base64"
    path = tmp_path / out["filename"]
    path.write_bytes(base64.b64decode(out["data"]))
    return probe_video(path)


def test_first_job_fetches_models_from_the_mirror_then_runs(runtime, mirror, tmp_path):
    srv, _ = mirror
    assert not (runtime.fetch_settings.models_dirs[0] / "diffusion_models").exists()  # empty volume
    srv.reset_counters()
    events = []
    answer = run(runtime, {"workflow": "wan22_i2v_gguf", "params": TINY}, events)
    assert answer.get("status") == "success", answer
    assert len(answer["models"]["fetched"]) == 5
    total = sum(e["size"] for e in json.loads(mirror[1].read_text())["models"])
    assert srv.counters.bytes_sent == total + 5  # each model once, plus its 1-byte range probe
    assert any(e.get("stage") == "models" and e.get("phase") == "download" for e in events)
    assert any(e.get("stage") == "sampling" for e in events)
    info = decode_video(tmp_path, answer)
    assert (info["frames"], info["width"], info["height"]) == (9, 64, 48)
    # The LightX2V stand-in on both stages: each LoRA's report, and a warning naming what had no target.
    lora = "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"
    assert [r["lora"] for r in answer["loras"]] == [lora, lora] and all(r["applied"] > 0 for r in answer["loras"])
    assert {r["model"].split(" ")[0] for r in answer["loras"]} == {"wan2.2_i2v_high_noise_14B_Q5_0.gguf",
                                                                   "wan2.2_i2v_low_noise_14B_Q5_0.gguf"}
    assert len(answer["warnings"]) == 2 and all("no target for" in w and "cross_attn.k_img" in w
                                                for w in answer["warnings"])
    # inputs and outputs of the job are cleaned up
    assert not any((runtime.settings.base_dir / "input").glob("job-*"))
    assert not any((runtime.settings.base_dir / "output").rglob("*.mp4"))


def test_second_job_from_the_ui_format_file_uses_present_models(runtime, mirror, tmp_path):
    srv, _ = mirror
    srv.reset_counters()
    ui = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.json").read_text())
    answer = run(runtime, {"workflow": ui, "params": {**TINY, "length": 5}})
    assert answer.get("status") == "success", answer
    assert answer["models"]["fetched"] == [] and srv.counters.bytes_sent == 0
    assert decode_video(tmp_path, answer)["frames"] == 5


def test_lora_for_another_model_fails_the_job_naming_file_and_model(runtime, tmp_path):
    """A LoRA of which no key applies: the job fails with ``lora_not_applied`` (in the editor a warning)."""
    import torch
    from safetensors.torch import save_file

    loras = runtime.fetch_settings.models_dirs[0] / "loras"
    foreign = {f"diffusion_model.double_blocks.0.img_attn.qkv.{p}": torch.zeros(s, dtype=torch.bfloat16)
               for p, s in (("lora_down.weight", (4, 64)), ("lora_up.weight", (192, 4)))}
    save_file(foreign, str(loras / "flux_style_lora.safetensors"))
    api = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.api.json").read_text())
    small = {"LoraLoaderModelOnly": {"lora_name": "flux_style_lora.safetensors"},
             "WanImageToVideo": {"width": 32, "height": 32, "length": 1}}
    for node in api.values():
        node["inputs"].update(small.get(node["class_type"], {}))
    answer = run(runtime, {"workflow": api, "images": [{"name": "start_image.png", "image": IMAGE}]})
    assert answer.get("code") == "lora_not_applied", answer
    assert answer["lora"] == "flux_style_lora.safetensors" and "flux_style_lora.safetensors" in answer["error"]
    assert answer["model"].startswith("wan2.2_i2v_") and answer["model"] in answer["error"]


def test_invalid_graph_is_a_structured_error(runtime):
    api = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.api.json").read_text())
    sampler = next(k for k, v in api.items() if v["class_type"] == "KSamplerAdvanced")
    api[sampler]["inputs"]["sampler_name"] = "no_such_sampler"
    answer = run(runtime, {"workflow": api, "params": TINY})  # an inline copy of our graph still takes params
    assert answer["code"] == "workflow_invalid" and answer["node_id"] == sampler
    assert answer["node_type"] == "KSamplerAdvanced" and "no_such_sampler" in json.dumps(answer)


def test_bad_input_names_the_field(runtime):
    answer = run(runtime, {"workflow": "wan22_i2v_gguf", "params": {**TINY, "width": 65}})
    assert answer["code"] == "invalid_input" and answer["field"] == "params.width"
    answer = run(runtime, {"workflow": "../etc/passwd"})
    assert answer["code"] == "invalid_input" and answer["field"] == "workflow"


def test_base64_over_the_payload_limit_suggests_s3(runtime):
    small = Runtime(runtime.settings.with_(output=replace(runtime.settings.output, max_base64_bytes=1000)), runtime.fetch_settings, runtime.process)
    answer = run(small, {"workflow": "wan22_i2v_gguf", "params": TINY})
    assert answer["code"] == "output_too_large" and '"mode": "s3"' in answer["error"]


def test_worker_max_base64_mb_limits_the_whole_answer(runtime, monkeypatch):
    answer = run(runtime, {"workflow": "wan22_i2v_gguf", "params": TINY})
    assert "data" not in answer["outputs"][0]  # one copy of the video: in images
    video = len(answer["images"][0]["data"])
    monkeypatch.setenv("WORKER_MAX_BASE64_MB", str((video + 16) / 1e6))  # the video alone fits, the answer not
    limit = WorkerSettings.from_env().output.max_base64_bytes
    assert video < limit < len(json.dumps(answer))
    small = Runtime(runtime.settings.with_(output=replace(runtime.settings.output, max_base64_bytes=limit)),
                    runtime.fetch_settings, runtime.process)
    failed = run(small, {"workflow": "wan22_i2v_gguf", "params": TINY})
    assert failed["code"] == "output_too_large" and failed["limit"] == limit and failed["size"] > limit, failed
    monkeypatch.delenv("WORKER_MAX_BASE64_MB")
    assert WorkerSettings.from_env().output.max_base64_bytes < 20_000_000  # under RunPod's 20 MB by default


def test_deadline_interrupts_and_the_next_job_runs(runtime):
    t0 = time.monotonic()
    answer = run(runtime, {"workflow": "wan22_i2v_gguf", "timeout": 1,
                           "params": {**TINY, "width": 256, "height": 256, "length": 33, "steps": 40}})
    assert answer["code"] == "deadline_exceeded", answer
    assert time.monotonic() - t0 < 60
    assert run(runtime, {"workflow": "wan22_i2v_gguf", "params": TINY}).get("status") == "success"


def test_comfyui_killed_mid_job_fails_it_and_the_next_job_succeeds(runtime):
    killed = []

    def report(event):
        if event.get("stage") == "sampling" and not killed:
            killed.append(time.monotonic())
            runtime.process.kill()

    t0 = time.monotonic()
    answer = jobs.handle({"workflow": "wan22_i2v_gguf", "params": {**TINY, "steps": 40, "width": 128, "height": 128}},
                         runtime, report)
    assert killed and answer["code"] == "comfyui_unavailable", answer
    assert time.monotonic() - killed[0] < 15  # noticed promptly, not at the deadline
    assert time.monotonic() - t0 < 120
    after = run(runtime, {"workflow": "wan22_i2v_gguf", "params": TINY})
    assert after.get("status") == "success", after
    assert runtime.process.starts >= 2


def test_s3_output_returns_presigned_urls(runtime, tmp_path):
    import requests

    from tests.s3server import start_s3_server

    s3 = start_s3_server(auth=False)
    try:
        s3.client().create_bucket(Bucket="videos")
        fetch = runtime.fetch_settings.with_(s3_endpoint_url=s3.endpoint, s3_access_key_id=s3.access_key,
                                             s3_secret_access_key=s3.secret_key)
        rt = Runtime(runtime.settings, fetch, runtime.process)
        answer = run(rt, {"workflow": "wan22_i2v_gguf", "params": TINY,
                          "output": {"mode": "s3", "bucket": "videos", "expires_in": 120}})
        assert answer.get("status") == "success", answer
        (out,) = answer["images"]
        assert out["type"] == "s3_url" and out["key"].startswith("outputs/")
        video = tmp_path / "v.mp4"
        video.write_bytes(requests.get(out["data"], timeout=30).content)
        assert probe_video(video)["frames"] == 9
    finally:
        s3.stop()


@pytest.mark.slow
def test_python_m_worker_test_input(comfyui_dir, mirror, tmp_path):
    srv, manifest = mirror
    job = tmp_path / "test_input.json"
    job.write_text(json.dumps({"input": {"workflow": "wan22_i2v_gguf", "params": TINY}}))
    env = {**os.environ, "COMFYUI_DIR": str(comfyui_dir), "WORKER_COMFY_CPU": "1",
           "WORKER_COMFY_BASE_DIR": str(tmp_path / "comfy"), "WORKER_COMFY_PORT": str(free_port()),
           "MODEL_FETCH_MODELS_DIR": str(tmp_path / "models"), "MODEL_FETCH_MANIFEST": str(manifest),
           "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1"}
    res = subprocess.run([sys.executable, "-m", "worker", "--test-input", str(job)], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    answer = json.loads(res.stdout)
    assert answer["status"] == "success" and len(answer["models"]["fetched"]) == 5
    assert decode_video(tmp_path, answer)["frames"] == 9
