"""Worker benchmarks on tiny weights (CPU): per-job overhead beyond ComfyUI's own execution and model
fetching, RSS over 50 sequential jobs, and the cold start of worker + ComfyUI."""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.report import table, verdict, write_section

ROOT = Path(__file__).resolve().parent.parent
JOBS = int(os.environ.get("BENCH_WORKER_JOBS", "50"))


def run() -> None:
    import model_fetch
    from tests import tiny_weights
    from tests.graphs import input_png
    from worker import comfyui_home, jobs
    from worker.config import WorkerSettings
    from worker.runtime import Runtime
    from worker.supervisor import free_port

    comfyui = comfyui_home.ensure(clone=False)
    tiny = ROOT / ".cache" / "tiny-weights"
    tiny_weights.generate(tiny, comfyui)
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as d:
        tmp = Path(d)
        manifest = tmp / "manifest.json"
        manifest.write_text(json.dumps({"models": tiny_weights.stand_in_mirror(tiny, tmp / "mirror")}))
        fetch = model_fetch.Settings(models_dirs=[tmp / "models"], manifests=[manifest],
                                     include_default_manifest=False, min_free_bytes=0)
        model_fetch.ensure(model_fetch.load_manifest([manifest], include_default=False), settings=fetch)
        rt = Runtime(WorkerSettings(comfyui_dir=comfyui, base_dir=tmp / "comfy", port=free_port(), cpu=True), fetch)

        t0 = time.monotonic()
        rt.ready()
        cold = time.monotonic() - t0
        params = {"image": base64.b64encode(input_png(64, 48)).decode(), "width": 64, "height": 48, "length": 5,
                  "steps": 2, "fps": 8}
        me = psutil.Process()
        comfy = psutil.Process(rt.process.proc.pid)
        overheads, rss, comfy_rss = [], [], []
        for i in range(JOBS):
            params["seed"] = i  # a new seed: ComfyUI cannot answer from its cache
            start = time.monotonic()
            answer = jobs.handle({"workflow": "wan22_i2v_gguf", "params": params}, rt)
            wall = time.monotonic() - start
            if answer.get("status") != "success":
                raise RuntimeError(f"job {i} failed: {answer}")
            t = answer["timings"]
            overheads.append(wall - t["comfy_execution_s"] - t.get("models_s", 0.0))
            rss.append(me.memory_info().rss)
            comfy_rss.append(comfy.memory_info().rss)
        rt.stop()

    # Cold start of the real entry point: `python -m worker` until it logs "worker ready".
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as d:
        env = {**os.environ, "COMFYUI_DIR": str(comfyui), "WORKER_COMFY_CPU": "1", "WORKER_COMFY_BASE_DIR": d,
               "WORKER_COMFY_PORT": str(free_port()), "MODEL_FETCH_MODELS_DIR": str(Path(d) / "models")}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "worker", "--serve", "--port", str(free_port())], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        entry_cold = None
        for line in proc.stderr:
            if "worker ready" in line:
                entry_cold = time.monotonic() - t0
                break
        proc.terminate()
        proc.wait(30)

    median = statistics.median(overheads) * 1000
    warm = rss[min(4, len(rss) - 1)]
    growth = (rss[-1] - warm) / warm
    c_warm = comfy_rss[min(4, len(rss) - 1)]
    c_growth = (comfy_rss[-1] - c_warm) / c_warm
    rows = [["overhead per job (median)", f"{median:.0f} ms"], ["overhead p90", f"{sorted(overheads)[int(0.9 * len(overheads))] * 1000:.0f} ms"],
            [f"worker RSS after job 5 → job {JOBS}", f"{warm / 2**20:.0f} → {rss[-1] / 2**20:.0f} MiB ({growth:+.1%})"],
            [f"ComfyUI RSS after job 5 → job {JOBS}", f"{c_warm / 2**20:.0f} → {comfy_rss[-1] / 2**20:.0f} MiB ({c_growth:+.1%})"],
            ["cold start: ComfyUI answering (supervisor)", f"{cold:.1f} s"],
            ["cold start: `python -m worker` to 'worker ready'", f"{entry_cold:.1f} s" if entry_cold else "n/a"]]
    body = (f"{JOBS} sequential jobs of the saved workflow (`wan22_i2v_gguf`, Q5_0 GGUF UNETs, LoRA, umt5) on tiny weights, "
            "64×48, 5 frames, 2 steps, base64 output, models already present. Overhead = job wall time − ComfyUI's "
            "own execution (history `execution_start` → `execution_success`) − model fetching: validation, param "
            "map, input upload, queueing, websocket, output collection, base64, clean-up.\n\n"
            + table(["measure", "value"], rows)
            + f"\n\nGoals: median overhead ≤ 100 ms: {verdict(median <= 100)}; worker RSS growth over {JOBS} jobs < 10%: "
            f"{verdict(growth < 0.10)} (ComfyUI's: {verdict(c_growth < 0.10)}). Cold start on this 2-core CPU machine; on a GPU host ComfyUI's start is "
            "dominated by the same imports (torch, nodes) plus CUDA initialisation.")
    write_section("worker", "Worker: overhead per job, memory, cold start", body, "make bench (python -m bench worker)")
