"""WORKER_PRELOAD on tiny weights: the default workflow's files are read in graph order within the budget,
absent files are skipped, a job is never blocked or failed by the reads, the low-noise UNET is read while
the high-noise sampler runs, and the warm-up gives way to a job. The reads are checked through the
preloader's own records (order, bytes, trigger, times): page-cache state cannot be dropped here."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest

import model_fetch
from tests import tiny_weights
from tests.graphs import input_png
from worker import jobs
from worker.config import WorkerSettings
from worker.preload import Preloader, graph_order, memory_budget
from worker.runtime import Runtime
from worker.supervisor import free_port
from worker.workflows import load_workflow

IMAGE = base64.b64encode(input_png(64, 48)).decode()
TINY = {"image": IMAGE, "width": 32, "height": 32, "length": 1, "steps": 2, "fps": 8, "seed": 7}
ORDER = ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors", "wan2.2_i2v_high_noise_14B_Q5_0.gguf",
         "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors", "wan2.2_i2v_low_noise_14B_Q5_0.gguf"]


def volume(tiny_dir: Path, root: Path) -> model_fetch.Settings:
    """A populated models volume: each stand-in under its production name, in its folder."""
    entries = tiny_weights.stand_in_mirror(tiny_dir, root / "mirror")
    for e in entries:
        dest = root / "models" / e["directory"] / e["name"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.hardlink_to(root / "mirror" / e["name"])
    (root / "manifest.json").write_text(json.dumps({"models": entries}))
    return model_fetch.Settings(models_dirs=[root / "models"], manifests=[root / "manifest.json"],
                                include_default_manifest=False, min_free_bytes=0)


def default_files(fetch: model_fetch.Settings):
    graph = load_workflow("wan22_i2v_gguf").graph
    return graph, graph_order(graph, model_fetch.plan(graph, settings=fetch))


def sizes(files) -> dict[str, int]:
    return {f.name: f.size for f in files}


def test_files_are_read_in_graph_order_within_the_budget(tiny_dir, tmp_path):
    graph, files = default_files(volume(tiny_dir, tmp_path))
    assert [f.name for f in files] == ORDER
    assert [f.stage for f in files] == [0, 0, 0, 0, 1]
    size = sizes(files)
    budget = sum(size.values()) - 1  # everything but the last file (the low-noise UNET) fits
    pre = Preloader(reserve=0, budget=lambda reserve, cap: budget).read(files, graph)
    assert pre.wait(60)
    assert [r.path.name for r in pre.records] == ORDER[:4]
    assert all(r.bytes_read == size[r.path.name] and r.error is None and r.trigger == "start" for r in pre.records)
    pre.stop()


def test_absent_files_are_skipped(tiny_dir, tmp_path):
    fetch = volume(tiny_dir, tmp_path)
    (tmp_path / "models" / "vae" / ORDER[1]).unlink()
    graph = load_workflow("wan22_i2v_gguf").graph
    plan = model_fetch.plan(graph, settings=fetch)  # the VAE is missing: the plan knows its source
    assert [i.name for i in plan.missing()] == [ORDER[1]]
    files = graph_order(graph, plan)
    assert [f.name for f in files] == [n for n in ORDER if n != ORDER[1]]
    pre = Preloader(reserve=0, budget=lambda reserve, cap: 10**12).read(files, graph)
    assert pre.wait(60)
    assert [r.path.name for r in pre.records] == [n for n in ORDER if n != ORDER[1]]
    pre.stop()


def test_memory_budget_leaves_the_reserve():
    available = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemAvailable")).split()[1]) * 1024
    assert memory_budget(0) <= available * 1.1
    assert memory_budget(10**15) == 0  # a reserve larger than memory: nothing is read
    assert memory_budget(0, max_bytes=1000) == 1000


# -- with the worker and a real ComfyUI ------------------------------------------------------------

def make_runtime(comfyui_dir, fetch, base: Path, **settings) -> Runtime:
    return Runtime(WorkerSettings(comfyui_dir=comfyui_dir, base_dir=base, port=free_port(), cpu=True,
                                  start_timeout=240, **settings), fetch)


@pytest.mark.comfyui
def test_worker_start_preloads_in_order_and_the_low_unet_is_read_while_the_first_sampler_runs(
        comfyui_dir, tiny_dir, tmp_path):
    fetch = volume(tiny_dir, tmp_path)
    size = sizes(default_files(fetch)[1])
    stage0 = sum(size.values()) - size[ORDER[4]]
    # the start pass holds the first stage only; the low-noise UNET waits for the high-noise sampler
    rt = make_runtime(comfyui_dir, fetch, tmp_path / "comfy", preload="cache", preload_reserve=0,
                      preload_max=stage0 + size[ORDER[4]] - 1)
    try:
        rt.start()
        rt.start_preload()
        events: list[tuple[float, dict]] = []
        t_job = time.monotonic()
        answer = jobs.handle({"workflow": "wan22_i2v_gguf", "params": TINY}, rt,
                             lambda e: events.append((time.monotonic(), e)))
        assert answer.get("status") == "success", answer
        assert rt.preloader is not None and rt.preloader.wait(60)
        records = rt.preloader.records
        start = [r for r in records if r.trigger == "start"]
        assert [r.path.name for r in start] == ORDER[:4]
        assert all(r.bytes_read == size[r.path.name] for r in start)
        assert start[0].started < t_job + 5  # it began at worker start, beside ComfyUI's boot
        (low,) = [r for r in records if r.path.name == ORDER[4]]
        assert low.trigger == "sampler 13" and low.bytes_read == size[ORDER[4]]
        second_stage = min(t for t, e in events if e.get("stage") == "sampling" and e.get("node") == "14")
        first_stage = min(t for t, e in events if e.get("stage") == "queued")
        assert first_stage < low.started and low.ended <= second_stage  # during the high-noise stage
    finally:
        rt.stop()


@pytest.mark.comfyui
def test_a_job_is_never_blocked_or_failed_by_the_preload(comfyui_dir, tiny_dir, tmp_path):
    fetch = volume(tiny_dir, tmp_path)
    release = threading.Event()

    def stuck_budget(reserve: int, cap: int) -> int:  # the start pass hangs (a volume that does not answer)
        release.wait(600)
        raise OSError("volume gone")

    rt = make_runtime(comfyui_dir, fetch, tmp_path / "comfy", preload="cache")
    rt.start()
    rt.start_preload()
    assert rt.preloader is not None
    rt.preloader.budget = stuck_budget
    try:
        answer = jobs.handle({"workflow": "wan22_i2v_gguf", "params": TINY}, rt)
        assert answer.get("status") == "success", answer
        assert not rt.preloader.wait(0)  # still stuck while the job ran and finished
        release.set()
        assert rt.preloader.wait(60)  # the failed pass was logged and dropped
    finally:
        release.set()
        rt.stop()


@pytest.mark.comfyui
def test_warmup_runs_the_default_workflow_and_gives_way_to_a_job(comfyui_dir, tiny_dir, tmp_path):
    fetch = volume(tiny_dir, tmp_path)
    rt = make_runtime(comfyui_dir, fetch, tmp_path / "comfy", preload="warmup")
    try:
        rt.start()
        rt.start_preload()
        assert rt.warmup is not None
        rt.warmup.join(600)
        assert rt.warmup.state == "done", rt.warmup.state
        answer = jobs.handle({"workflow": "wan22_i2v_gguf", "params": TINY}, rt)
        assert answer.get("status") == "success", answer
    finally:
        rt.stop()
    # a job that arrives while the warm-up runs: the warm-up is interrupted, the job succeeds
    rt = make_runtime(comfyui_dir, fetch, tmp_path / "comfy2", preload="warmup")
    try:
        rt.start()
        rt.start_preload()
        assert rt.warmup is not None
        deadline = time.monotonic() + 300
        while rt.warmup.state == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = jobs.handle({"workflow": "wan22_i2v_gguf", "params": TINY}, rt)
        assert answer.get("status") == "success", answer
        rt.warmup.join(300)
        assert rt.warmup.state in ("yielded", "done"), rt.warmup.state
    finally:
        rt.stop()


def test_preload_setting_names_the_variable_when_wrong(monkeypatch):
    monkeypatch.setenv("WORKER_PRELOAD", "eager")
    with pytest.raises(ValueError, match="WORKER_PRELOAD='eager': expected one of off, cache, warmup"):
        WorkerSettings.from_env()
    monkeypatch.setenv("WORKER_PRELOAD", "Warmup")
    monkeypatch.setenv("WORKER_PRELOAD_RESERVE_MB", "1500")
    s = WorkerSettings.from_env()
    assert (s.preload, s.preload_reserve, s.preload_max) == ("warmup", 1500 * 10**6, 0)
