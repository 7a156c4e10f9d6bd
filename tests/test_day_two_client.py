"""Day two for clients, through the entry points they use: `scripts/start.sh` with worker-comfyui's
`SERVE_API_LOCALLY=true` (RunPod's local HTTP API), and `python -m worker --test-input`.

S3 output configured by the environment alone (BUCKET_ENDPOINT_URL + BUCKET_ACCESS_KEY_ID/SECRET, no
bucket setting) against the loopback S3 server, path-style and virtual-hosted; one copy of each output;
structured errors over HTTP; a missing input image named; no echo of a planted marker in any answer,
the worker's log or ComfyUI's; no graph or prompt in the output MP4 unless asked for."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests import runpod_api
from tests.graphs import input_png, probe_video
from tests.s3server import s3_server
from tests.test_day_one_worker import PNG, baked_install, inline_graph, worker_env
from worker.supervisor import free_port

pytestmark = pytest.mark.comfyui
ROOT = Path(__file__).resolve().parent.parent
MARKER = "QkVBQ09OTUFSS0VSMjAyNg"  # base64 text, planted in the middle of long values
LONG = "iVBORw0KGgo" + "A" * 3000 + MARKER + "B" * 3000
API_KEY = "comfyorg-ApiKey-7f3e9a1c5b"


def video_metadata(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        return dict(container.metadata)


def loader_id(graph: dict, class_type: str) -> str:
    return next(k for k, v in graph.items() if v["class_type"] == class_type)


@pytest.fixture(scope="module")
def s3():
    with s3_server(auth=False, buckets=["videos"]) as server:
        yield server


@pytest.fixture(scope="module")
def install(comfyui_dir, tiny_dir, tmp_path_factory):
    return baked_install(comfyui_dir, tiny_dir, tmp_path_factory.mktemp("install") / "ComfyUI")


@pytest.fixture(scope="module")
def api(install, s3, tmp_path_factory):
    """`SERVE_API_LOCALLY=true scripts/start.sh`, S3 output by the environment alone (path-style endpoint
    naming the bucket in its path); yields (url, worker log path, ComfyUI log path)."""
    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    env = worker_env(tmp, install, MODEL_FETCH_OFFLINE="1", SERVE_API_LOCALLY="true",
                     BUCKET_ENDPOINT_URL=f"{s3.endpoint}/videos", BUCKET_ACCESS_KEY_ID=s3.access_key,
                     BUCKET_SECRET_ACCESS_KEY=s3.secret_key, AWS_REGION="us-east-1")
    env.pop("WORKER_OUTPUT_BUCKET", None)
    env.pop("BUCKET_NAME", None)
    log_path = tmp / "worker.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(ROOT / "scripts/start.sh"), "--port", str(port)], cwd=tmp, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        runpod_api.wait_until_up(url, lambda: proc.poll() is None, log_path.read_text)
        yield url, log_path, tmp / "base" / "comfyui.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def runsync(url: str, job_input) -> dict:
    return requests.post(f"{url}/runsync", json={"input": job_input}, timeout=600).json()


def failure(answer: dict) -> dict:
    """The structured error of a FAILED job over RunPod's API: ``error`` holds it as a JSON string."""
    assert answer["status"] == "FAILED", answer
    return json.loads(answer["error"])


def job(**extra) -> dict:
    return {"workflow": inline_graph("my start.png"), "images": [{"name": "my start.png", "image": PNG}], **extra}


def test_s3_output_by_environment_alone_keys_are_prefix_job_file(api, s3, tmp_path):
    url, _, _ = api
    answer = runsync(url, job(comfy_org_api_key=API_KEY))
    assert answer["status"] == "COMPLETED", answer
    (image,) = answer["output"]["images"]
    assert image["type"] == "s3_url" and image["bucket"] == "videos"
    assert image["key"] == f"outputs/{answer['id']}/{image['filename']}"
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="videos")["Contents"]]
    assert image["key"] in keys and not any(k.startswith("videos/") for k in keys)
    (described,) = answer["output"]["outputs"]
    assert "data" not in described and described["image"] == 0 and described["key"] == image["key"]
    video = tmp_path / "v.mp4"
    video.write_bytes(requests.get(image["data"], timeout=30).content)
    assert probe_video(video)["frames"] == 5
    meta = video_metadata(video)  # default: no graph or prompt travels inside the client's file
    assert "prompt" not in meta and "workflow" not in meta, meta


def test_base64_answer_carries_each_output_once(api, tmp_path):
    url, _, _ = api
    resp = requests.post(f"{url}/runsync", json={"input": job(output={"mode": "base64"})}, timeout=600)
    answer = resp.json()
    assert answer["status"] == "COMPLETED", answer
    (image,) = answer["output"]["images"]
    assert image["type"] == "base64" and resp.text.count(image["data"][:200]) == 1
    assert answer["output"]["outputs"] == [{k: v for k, v in image.items() if k != "data"} | {"image": 0}]
    assert len(resp.content) < 19_000_000
    (tmp_path / "v.mp4").write_bytes(base64.b64decode(image["data"]))
    assert probe_video(tmp_path / "v.mp4")["frames"] == 5


def test_errors_over_http_keep_code_field_and_details(api):
    url, _, _ = api
    error = failure(runsync(url, {"params": {"image": PNG, "width": 65}}))
    assert error["code"] == "invalid_input" and error["field"] == "params.width"
    assert error["details"] == [error["error"]]
    run = requests.post(f"{url}/run", json={"input": {"action": "explode"}}, timeout=60).json()
    polled = requests.post(f"{url}/status/{run['id']}", timeout=600).json()
    assert failure(polled)["field"] == "action"


def test_a_missing_input_image_names_node_and_input(api):
    url, _, _ = api
    graph = inline_graph("input_image_1.png")
    error = failure(runsync(url, {"workflow": graph}))
    node = loader_id(graph, "LoadImage")
    assert error["code"] == "invalid_input" and error["field"] == f"workflow.{node}.inputs.image", error
    assert "input_image_1.png" in error["error"] and "'images'" in error["error"]


@pytest.mark.parametrize("case", ["surrogate name", "truncated png", "corrupt png", "deep object", "surrogate key"])
def test_bad_input_over_http_answers_a_field(api, case):
    url, _, _ = api
    png = input_png(64, 48)
    corrupt = png[:200] + bytes(100) + png[300:]
    inputs = {
        "surrogate name": ({**job(), "images": [{"name": "a\ud800.png", "image": PNG}]}, "images.0.name"),
        "truncated png": ({**job(), "images": [{"name": "my start.png",
                                                "image": base64.b64encode(png[: len(png) // 2]).decode()}]},
                          "images.0.image"),
        "corrupt png": ({**job(), "images": [{"name": "my start.png", "image": base64.b64encode(corrupt).decode()}]},
                        "images.0.image"),
        "deep object": ({"params": {"image": PNG}, "workflow": nest(500)}, "workflow"),
        "surrogate key": ({"params": {"image": PNG, "x\udc00": 1}}, "params.?"),
    }
    raw, field = inputs[case]
    body = json.dumps({"input": raw})  # lone surrogates travel as \\ud800 escapes, as JSON allows
    answer = requests.post(f"{url}/runsync", data=body, headers={"Content-Type": "application/json"}, timeout=600).json()
    error = failure(answer)
    assert error["code"] == "invalid_input" and error["field"].startswith(field), error


def test_bodies_runpods_server_cannot_parse_get_its_own_json_answer(api):
    """A 5,000-level or non-UTF-8 body never reaches a handler: RunPod's local server answers HTTP 400 with
    its own JSON (docs/errors.md); the same file through --test-input gets our answer (below)."""
    url, _, _ = api
    for body in (b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"input": {"workflow": "\xff\xfe"}}'):
        resp = requests.post(f"{url}/runsync", data=body, headers={"Content-Type": "application/json"}, timeout=60)
        assert resp.status_code == 400 and "detail" in resp.json(), resp.text[:300]


def nest(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_no_echo_of_a_planted_marker_in_answers_or_any_log(api):
    url, worker_log, comfy_log = api
    answers = []
    graph = inline_graph("my start.png")
    graph[loader_id(graph, "LoadImage")]["inputs"]["image"] = LONG  # base64 where a file name belongs
    answers.append(runsync(url, {"workflow": graph}))
    graph = inline_graph("my start.png")
    graph[loader_id(graph, "KSamplerAdvanced")]["inputs"]["sampler_name"] = LONG  # reaches ComfyUI's validation
    answers.append(runsync(url, {"workflow": graph, "images": [{"name": "my start.png", "image": PNG}]}))
    graph = inline_graph("my start.png")
    graph[loader_id(graph, "VAELoader")]["inputs"]["vae_name"] = LONG + ".safetensors"
    answers.append(runsync(url, {"workflow": graph, "images": [{"name": "my start.png", "image": PNG}]}))
    answers.append(runsync(url, {**job(), "images": [{"name": "my start.png", "image": "data:image/png;base64," + LONG}]}))
    answers.append(runsync(url, {"params": {"image": PNG, "prompt": 7, "negative_prompt": LONG}, "bogus": LONG}))
    for answer in answers:
        assert answer["status"] == "FAILED", answer
        assert json.loads(answer["error"])["code"] != "internal_error", answer
    texts = {"answers": json.dumps(answers), "worker log": worker_log.read_text(errors="replace"),
             "ComfyUI log": comfy_log.read_text(errors="replace")}
    assert "sampler_name" in texts["ComfyUI log"]  # ComfyUI did see and report the bad value
    assert {where for where, text in texts.items() if MARKER in text or API_KEY in text} == set()


def test_virtual_hosted_endpoint_and_metadata_switch_with_test_input(install, s3, tmp_path):
    """`https://BUCKET.s3.REGION.amazonaws.com`-style endpoint (the host reaches the loopback S3 server
    through HTTP_PROXY): the bucket comes from the host, the key is exactly PREFIX/JOB/file."""
    endpoint = "http://videos.s3.us-east-1.amazonaws.com"
    env = worker_env(tmp_path, install, MODEL_FETCH_OFFLINE="1", BUCKET_ENDPOINT_URL=endpoint,
                     BUCKET_ACCESS_KEY_ID=s3.access_key, BUCKET_SECRET_ACCESS_KEY=s3.secret_key,
                     HTTP_PROXY=s3.endpoint, http_proxy=s3.endpoint, NO_PROXY="127.0.0.1,localhost",
                     no_proxy="127.0.0.1,localhost", WORKER_OUTPUT_PREFIX="wan", WORKER_OUTPUT_METADATA="1")
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"id": "job-vh-1", "input": job()}))
    res = subprocess.run([sys.executable, "-m", "worker", "--test-input", str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (image,) = json.loads(res.stdout)["images"]
    assert image["bucket"] == "videos" and image["key"] == f"wan/job-vh-1/{image['filename']}"
    assert image["data"].startswith(f"{endpoint}/wan/job-vh-1/")
    body = s3.client().get_object(Bucket="videos", Key=image["key"])["Body"].read()
    video = tmp_path / "v.mp4"
    video.write_bytes(body)
    assert probe_video(video)["frames"] == 5
    assert "prompt" in video_metadata(video)  # WORKER_OUTPUT_METADATA=1: the graph travels again


@pytest.mark.parametrize("content, words", [(b'{"input": {"workflow": "\xff\xfe"}}', "not UTF-8"),
                                            (("[" * 5000 + "]" * 5000).encode(), "nested too deeply"),
                                            (b'{"input": {"params": {"image": "x"}', "not JSON")])
def test_bad_test_input_files_answer_json_naming_the_option(tmp_path, content, words):
    path = tmp_path / "job.json"
    path.write_bytes(content)
    env = worker_env(tmp_path, tmp_path / "no-comfyui", MODEL_FETCH_OFFLINE="1")
    res = subprocess.run([sys.executable, "-m", "worker", "--test-input", str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    answer = json.loads(res.stdout)
    assert answer["code"] == "invalid_input" and answer["field"] == "--test-input" and words in answer["error"]
