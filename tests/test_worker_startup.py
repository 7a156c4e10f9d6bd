"""What the worker does at start, beyond jobs: the RunPod SDK's log level, ComfyUI's output forwarded
to stdout (prefixed, rate-limited, all of it in the file) and the GPU stack check, which makes every
job answer ``gpu_unavailable`` when a GPU is expected and CUDA is unusable (as on this CPU machine)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.comfy_log import PREFIX, LogPump
from worker.config import WorkerSettings
from worker.gpu import GpuCheck, GpuInfo
from worker.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
LEVEL = ("from worker.__main__ import quiet_runpod_sdk; quiet_runpod_sdk(); "
         "from runpod.serverless.modules.rp_logger import RunPodLogger; print(RunPodLogger().level)")


@pytest.mark.parametrize("env, level", [({}, "INFO"), ({"RUNPOD_LOG_LEVEL": "DEBUG"}, "DEBUG"),
                                        ({"RUNPOD_DEBUG_LEVEL": "WARN"}, "WARN")])
def test_runpod_sdk_logs_at_info_unless_the_user_sets_a_level(env, level):
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    res = subprocess.run([sys.executable, "-c", LEVEL], env={**base, **env}, cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert res.stdout.split()[-1] == level


def test_comfyui_output_is_forwarded_prefixed_rate_limited_and_kept_in_the_file(tmp_path):
    script = "import sys\nfor i in range(500): print(f'line {i}')\nsys.stdout.write('progress 1\\rprogress 2\\r')\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    out = io.StringIO()
    LogPump(child.stdout, open(tmp_path / "comfyui.log", "ab"), rate=5, out=out).start().join(30)
    child.wait(10)
    lines = out.getvalue().splitlines()
    assert lines[0] == PREFIX + "line 0" and all(line.startswith(PREFIX) for line in lines)
    assert 50 <= len(lines) < 120  # a burst of 10 s worth, then ~5 lines/s, plus the "not shown" counts
    assert any("line(s) not shown (rate limit)" in line for line in lines)
    logged = (tmp_path / "comfyui.log").read_bytes()  # byte for byte, \r included
    assert logged.count(b"\n") == 500 and logged.endswith(b"line 499\nprogress 1\rprogress 2\r")


def test_log_rate_zero_keeps_comfyui_output_in_the_file_only(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "print('hello')"], stdout=subprocess.PIPE)
    out = io.StringIO()
    LogPump(child.stdout, open(tmp_path / "c.log", "ab"), rate=0, out=out).start().join(30)
    assert "hello" not in out.getvalue() and (tmp_path / "c.log").read_text() == "hello\n"


def test_gpu_check_gates_jobs_only_when_a_gpu_is_expected():
    check = GpuCheck(expect_gpu=True)
    check.info = GpuInfo(torch="2.9.1+cu128", cuda_build="12.8", reason="no NVIDIA driver")
    check._done.set()
    with pytest.raises(Exception) as err:
        check.require()
    answer = err.value.to_answer()
    assert answer["code"] == "gpu_unavailable" and "driver >= 570" in answer["error"]
    assert answer["cuda_build"] == "12.8"
    GpuCheck(expect_gpu=False).require()  # never waits, never raises
    assert WorkerSettings.from_env().expect_gpu is False


@pytest.mark.comfyui
@pytest.mark.slow
def test_expected_gpu_without_cuda_answers_gpu_unavailable(comfyui_dir, tmp_path):
    """`python -m worker --test-input` on this CPU machine with WORKER_EXPECT_GPU=1 and no --cpu."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"input": {"workflow": "wan22_i2v_gguf", "params": {"prompt": "x"}}}))
    env = {**os.environ, "COMFYUI_DIR": str(comfyui_dir), "WORKER_EXPECT_GPU": "1",
           "WORKER_COMFY_BASE_DIR": str(tmp_path / "comfy"), "WORKER_COMFY_PORT": str(free_port()),
           "MODEL_FETCH_MODELS_DIR": str(tmp_path / "models")}
    env.pop("WORKER_COMFY_CPU", None)
    res = subprocess.run([sys.executable, "-m", "worker", "--test-input", str(job)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    answer = json.loads(res.stdout)
    assert res.returncode == 1 and answer["code"] == "gpu_unavailable", res.stdout + res.stderr[-2000:]
    assert "CUDA 12.8 build" in answer["error"] and "driver >= 570" in answer["error"]
    assert "GPU stack: torch 2.9.1" in res.stderr and "every job answers gpu_unavailable" in res.stderr
    fetched = [f for f in (tmp_path / "models").rglob("*") if f.suffix in (".gguf", ".safetensors", ".part")]
    assert fetched == []  # nothing fetched for a job that cannot run


def test_a_closed_stdout_stops_forwarding_but_not_the_file(tmp_path):
    """ComfyUI must never block on a full pipe: when stdout goes away the pump keeps draining to the file."""
    child = subprocess.Popen([sys.executable, "-c", "for i in range(20000): print('x' * 100)"], stdout=subprocess.PIPE)
    out = io.StringIO()
    out.close()
    LogPump(child.stdout, open(tmp_path / "c.log", "ab"), rate=1000, out=out).start().join(60)
    assert child.wait(30) == 0
    assert (tmp_path / "c.log").read_bytes().count(b"\n") == 20000


def test_status_job_reports_the_gpu_stack(tmp_path):
    import model_fetch
    from worker import jobs
    from worker.runtime import Runtime

    check = GpuCheck(expect_gpu=False)
    check.info = GpuInfo(torch="2.9.1+cu128", cuda_build="12.8", cuda_available=True, driver="570.86",
                         gpu="NVIDIA H100", vram_gb=79.1, gpus=1)
    rt = Runtime(WorkerSettings(base_dir=tmp_path / "comfy"),
                 model_fetch.Settings(models_dirs=[tmp_path / "models"], include_default_manifest=False), gpu=check)
    answer = jobs.handle({"action": "status"}, rt)
    assert answer["status"] == "success" and answer["gpu"]["driver"] == "570.86" and answer["gpu"]["vram_gb"] == 79.1
    assert "1 × NVIDIA H100 (79.1 GiB VRAM)" in check.info.summary()
