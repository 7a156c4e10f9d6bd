"""Day two with the worker, through `python -m worker --test-input`: bad settings are named at start, the S3
output target is checked before anything runs (credentials, bucket reachable and writable: loopback
moto_server), a read-only models folder is `storage_unwritable`, and output keys have no empty segments."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.graphs import input_png
from tests.s3server import s3_server
from worker.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
PNG = "data:image/png;base64," + base64.b64encode(input_png(64, 48)).decode()
TINY = {"image": PNG, "width": 64, "height": 48, "length": 5, "steps": 4, "fps": 8, "seed": 7, "prompt": "a cat"}
UNSHARE = shutil.which("unshare")


def worker_env(tmp_path: Path, comfyui: Path, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_FETCH_", "WORKER_", "BUCKET_", "AWS_"))}
    return {**clean, "COMFYUI_DIR": str(comfyui), "WORKER_COMFY_CPU": "1",
            "WORKER_COMFY_BASE_DIR": str(tmp_path / "base"), "WORKER_COMFY_PORT": str(free_port()), "MODEL_FETCH_MODELS_DIR": str(tmp_path / "volume"),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"), **extra}


def test_input(tmp_path: Path, job: dict, env: dict, wrap: list[str] = ()) -> tuple[dict, subprocess.CompletedProcess]:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    res = subprocess.run([*wrap, sys.executable, "-m", "worker", "--test-input", str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return json.loads(res.stdout), res


test_input.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("variable, value, says", [
    ("WORKER_COMFY_PORT", "abc", "WORKER_COMFY_PORT='abc': expected a whole number"),
    ("WORKER_OUTPUT_MODE", "gcs", "WORKER_OUTPUT_MODE='gcs': expected one of base64, s3"),
    ("MODEL_FETCH_CHUNK_MB", "0", "MODEL_FETCH_CHUNK_MB='0': expected a number above 0"),
])
def test_bad_settings_are_named_at_start(tmp_path, variable, value, says):
    env = worker_env(tmp_path, tmp_path / "no-comfyui", **{variable: value})
    answer, res = test_input(tmp_path, {"input": {"params": TINY}}, env)
    assert res.returncode == 1 and answer["code"] == "settings_invalid" and answer["error"] == says, answer
    assert f"error: {says}" in res.stderr


# -- the output target, checked before the run --------------------------------------------------------------
@pytest.fixture(scope="module")
def s3():
    with s3_server(auth=True, buckets=["outputs"]) as server:
        yield server


def s3_job(**output) -> dict:
    return {"input": {"params": TINY, "output": {"mode": "s3", **output}}}


@pytest.mark.parametrize("case", ["no_credentials", "wrong_secret", "missing_bucket", "endpoint_down"])
def test_s3_output_target_is_checked_before_the_run(s3, tmp_path, case):
    """No ComfyUI here on purpose: the job must fail on its output target before it needs one."""
    env = worker_env(tmp_path, tmp_path / "no-comfyui", **s3.env(), WORKER_OUTPUT_BUCKET="outputs")
    if case == "no_credentials":
        del env["BUCKET_ACCESS_KEY_ID"], env["BUCKET_SECRET_ACCESS_KEY"]
    elif case == "wrong_secret":
        env["BUCKET_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif case == "endpoint_down":
        env["BUCKET_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    job = s3_job(bucket="no-such-bucket") if case == "missing_bucket" else s3_job()
    answer, _ = test_input(tmp_path, job, env)
    reason = {"no_credentials": "credentials", "wrong_secret": "credentials", "missing_bucket": "bucket",
              "endpoint_down": "unreachable"}[case]
    assert answer["code"] == "output_unavailable" and answer["reason"] == reason, answer
    assert answer["details"] == [answer["error"]]
    if case == "missing_bucket":
        assert "'no-such-bucket'" in answer["error"] and "NoSuchBucket" in answer["error"]
    if case == "no_credentials":
        assert "BUCKET_ACCESS_KEY_ID" in answer["error"]
    assert not (tmp_path / "volume").exists()  # nothing fetched
    assert [o["Key"] for o in s3.client().list_objects_v2(Bucket="outputs").get("Contents", [])] == []


@pytest.mark.comfyui
def test_output_keys_have_no_empty_segments_and_the_probe_is_gone(comfyui_dir, tmp_path):
    """A job with a prefix ending in '/' (as docs/job-input.md's example): keys PREFIX/JOB/file, nothing else."""
    with s3_server(auth=False, buckets=["videos"]) as s3:
        graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "day2"}}}
        job = {"input": {"workflow": graph, "images": [{"name": "in.png", "image": PNG}],
                         "output": {"mode": "s3", "bucket": "videos", "prefix": "wan/2025-01/"}}}
        answer, res = test_input(tmp_path, job, worker_env(tmp_path, comfyui_dir, **s3.env()))
        assert res.returncode == 0 and answer["status"] == "success", (answer, res.stderr[-3000:])
        (output,) = answer["outputs"]
        assert output["key"] == f"wan/2025-01/local-test/{output['filename']}", output
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="videos")["Contents"]]
        assert keys == [output["key"]]  # the pre-run test object was deleted


# -- a read-only models folder --------------------------------------------------------------------------------
@pytest.mark.comfyui
def test_read_only_models_folder_is_storage_unwritable(comfyui_dir, tmp_path):
    if UNSHARE is None or subprocess.run([UNSHARE, "--user", "--map-root-user", "--mount", "true"]).returncode != 0:
        pytest.skip("needs unshare with user and mount namespaces")
    ro = tmp_path / "volume"
    ro.mkdir()
    env = worker_env(tmp_path, comfyui_dir, MODEL_FETCH_OFFLINE="0")
    script = f'mount -t tmpfs -o ro none "{ro}" && exec "$@"'
    wrap = [UNSHARE, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
    answer, _ = test_input(tmp_path, {"input": {"action": "prefetch"}}, env, wrap)
    assert answer["code"] == "models_unavailable" and answer["fetch_code"] == "storage_unwritable", answer
    assert str(ro) in answer["error"]
