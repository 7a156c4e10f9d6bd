"""`make realsize`: the worker runs the saved workflow on the full-size stand-ins, on this CPU.

The five files (bench/realsize_weights.py) are served from a local mirror (``file://``) and fetched
into empty model folders; the job runs at the smallest legal size (16×16, 1 frame) and 2 steps.
Recorded: fetch time, load time per model (per node, from a bench-only timing hook in ComfyUI's
executor), peak RSS of ComfyUI and of the worker (with ComfyUI's anonymous part: what the UNETs would
add if copied out of their memory maps), seconds per step, total.

When the disk cannot hold the mirror and the fetched copy at once, each file is fetched with
``model_fetch.ensure`` and its mirror copy deleted before the job runs (the job then finds the models
present). The big files are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

from bench.report import table, write_section

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "realsize"
PARAMS = {"width": 16, "height": 16, "length": 1, "steps": 2, "fps": 8, "seed": 7}

#: A ComfyUI custom node, installed in the run's own base directory only: logs each node's time.
TIMER_NODE = '''
import logging, os, time
import execution
import torch

_orig = execution.get_output_data
if torch.cuda.is_available() and os.environ.get("BENCH_VRAM_BUDGET_GB"):  # emulate a smaller card
    _total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, float(os.environ["BENCH_VRAM_BUDGET_GB"]) * 2**30 / _total))


async def _timed(prompt_id, unique_id, obj, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        return await _orig(prompt_id, unique_id, obj, *args, **kwargs)
    finally:
        vram = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
        anon = [line for line in open("/proc/self/status") if line.startswith("RssAnon")]
        logging.info("bench-timer node=%s class=%s seconds=%.3f peak_vram=%d anon_mb=%d", unique_id,
                     type(obj).__name__, time.perf_counter() - t0, vram, int(anon[0].split()[1]) // 1024 if anon else 0)


execution.get_output_data = _timed
NODE_CLASS_MAPPINGS = {}
'''


class PeakMemory(threading.Thread):
    """Samples RSS (and anonymous RSS) of a process tree every ``interval`` seconds; keeps the peaks."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.children: dict[str, bool] = {}
        self.peak: dict[str, dict[str, int]] = {}
        self._halt = threading.Event()

    def watch(self, label: str, pid: int, children: bool = True) -> None:
        self.pids[label] = pid
        self.children[label] = children
        self.peak.setdefault(label, {"rss": 0, "anon": 0})

    @staticmethod
    def _sample(pid: int, children: bool) -> tuple[int, int]:
        rss = anon = 0
        proc = psutil.Process(pid)
        for p in [proc, *(proc.children(recursive=True) if children else [])]:
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
            anon += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
        return rss, anon

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            for label, pid in list(self.pids.items()):
                try:
                    rss, anon = self._sample(pid, self.children[label])
                except psutil.Error:
                    continue
                peak = self.peak[label]
                peak["rss"], peak["anon"] = max(peak["rss"], rss), max(peak["anon"], anon)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def _entries(mirror: Path, index: dict) -> list[dict]:
    return [{"name": name, "directory": info["folder"], "url": (mirror / name).resolve().as_uri(),
             "hash": info["sha256"], "size": info["size"]} for name, info in index["files"].items()]


def node_records(log_path: Path) -> list[dict[str, str]]:
    """The timing hook's records (node, class, seconds, peak_vram), in execution order."""
    return [dict(p.split("=", 1) for p in line.split("bench-timer ", 1)[1].split())
            for line in log_path.read_text(errors="replace").splitlines() if "bench-timer node=" in line]


def install_timer(base_dir: Path) -> None:
    """Put the timing hook into a ComfyUI base directory's custom_nodes (bench runs only)."""
    (base_dir / "custom_nodes" / "bench_node_timer").mkdir(parents=True, exist_ok=True)
    (base_dir / "custom_nodes" / "bench_node_timer" / "__init__.py").write_text(TIMER_NODE)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


#: Reduced dims for ``--smoke`` (checks the harness in seconds; writes no figures).
SMOKE_DIMS = dict(dim=256, ffn=512, heads=2, blocks=2, t5_layers=2, t5_ff=256, t5_heads=4, t5_vocab=1024, vae_dim=8,
                  lora_rank=4)


def run(keep: bool = False, drop_mirror: str = "auto", smoke: bool = False) -> None:
    """Run the job (see module doc); if it cannot complete, record why, with the figures, and raise."""
    facts: dict[str, str] = {}
    try:
        _run(keep, drop_mirror, smoke, facts)
    except Exception as exc:
        if not smoke:
            body = (f"**Did not complete**: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}\n\n"
                    + table(["fact", "value"], [[k, v] for k, v in facts.items()]))
            write_section("realsize", "Full-size stand-ins on CPU (`make realsize`)", body, "make realsize")
        raise


def _run(keep: bool, drop_mirror: str, smoke: bool, facts: dict[str, str]) -> None:
    import model_fetch
    from bench import realsize_weights
    from tests.graphs import input_png
    from worker import comfyui_home, jobs
    from worker.config import WorkerSettings
    from worker.runtime import Runtime
    from worker.supervisor import free_port

    comfyui = comfyui_home.ensure(clone=False)
    cache = CACHE.with_name("realsize-smoke") if smoke else CACHE
    mirror, work = cache / "mirror", cache / "run"
    dims = realsize_weights.Dims(**SMOKE_DIMS) if smoke else realsize_weights.Dims()
    t0 = time.monotonic()
    index = realsize_weights.generate(mirror, comfyui, dims)
    gen_s = time.monotonic() - t0
    entries = _entries(mirror, index)
    total_bytes = sum(e["size"] for e in entries)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = work / "manifest.json"
    manifest.write_text(json.dumps({"models": entries}))
    fetch = model_fetch.Settings(models_dirs=[work / "models"], manifests=[manifest], include_default_manifest=False,
                                 min_free_bytes=0)
    free = shutil.disk_usage(work).free
    facts.update({"stand-ins": gib(total_bytes), "largest file": gib(max(e["size"] for e in entries)),
                  "disk free before fetching": gib(free),
                  "memory available at start": gib(psutil.virtual_memory().available)})
    drop = drop_mirror == "yes" or (drop_mirror == "auto" and free < total_bytes + 8 * 2**30)
    print(f"realsize: {gib(total_bytes)} of stand-ins, {gib(free)} free; "
          f"{'fetch then drop each mirror file' if drop else 'the job fetches'}", flush=True)

    mem = PeakMemory()
    mem.watch("worker", psutil.Process().pid, children=False)  # ComfyUI, its child, is counted on its own
    mem.start()
    prefetch_s = None
    if drop:
        t = time.monotonic()
        for entry in entries:
            model_fetch.ensure(_one(model_fetch, manifest, entry["name"]), settings=fetch)
            (mirror / entry["name"]).unlink()
        (mirror / realsize_weights.INDEX_NAME).unlink(missing_ok=True)
        prefetch_s = time.monotonic() - t
        facts["fetch (per file, mirror dropped)"] = f"{prefetch_s:.1f} s"

    base = work / "comfy"
    install_timer(base)
    rt = Runtime(WorkerSettings(comfyui_dir=comfyui, base_dir=base, port=free_port(), cpu=True,
                                timeout_max=6 * 3600.0, timeout_base=6 * 3600.0), fetch)
    steps: list[tuple[float, dict]] = []
    try:
        t = time.monotonic()
        rt.ready()
        start_s = time.monotonic() - t
        mem.watch("comfyui", rt.process.proc.pid)
        facts["ComfyUI start"] = f"{start_s:.1f} s"
        job = {"workflow": "wan22_i2v_gguf",
               "params": {**PARAMS, "image": base64.b64encode(input_png(64, 48)).decode()}}
        t = time.monotonic()
        answer = jobs.handle(job, rt, report=lambda event: steps.append((time.monotonic(), event)))
        job_s = time.monotonic() - t
        nodes = node_records(rt.process.log_path)
        log_tail = rt.process.log_tail(40)
    finally:
        fetch_events = [t for t, event in steps if event.get("stage") == "models"]
        if len(fetch_events) > 1:
            facts["fetch by the job (first to last model event)"] = f"{fetch_events[-1] - fetch_events[0]:.1f} s"
        if rt.process is not None:
            facts.update({f"node {r['node']} ({r['class']})": f"{float(r['seconds']):.1f} s, ComfyUI anonymous RSS "
                          f"after: {int(r.get('anon_mb', 0)) / 1024:.1f} GiB" for r in node_records(rt.process.log_path)})
        rt.stop()
        mem.stop()
        facts.update({f"peak RSS {k} (anonymous)": f"{gib(v['rss'])} ({gib(v['anon'])})" for k, v in mem.peak.items()})
    if answer.get("status") != "success":
        raise RuntimeError(f"job failed: {json.dumps(answer)[:2000]}\n{log_tail}")
    timings = answer["timings"]
    fetch_s = prefetch_s if drop else timings.get("models_s")
    names = {"2": "umt5 (WanTextEncoderLoader)", "5": "VAE (VAELoader)", "6": "UNET high (WanUnetLoaderGGUF)",
             "7": "UNET low (WanUnetLoaderGGUF)", "8": "LoRA high (LoraLoaderModelOnly)",
             "9": "LoRA low (LoraLoaderModelOnly)", "13": "high-noise sampler (1 step)",
             "14": "low-noise sampler (1 step)", "3": "text encode (+)", "4": "text encode (−)",
             "12": "WanImageToVideo (VAE encode)", "15": "VAE decode"}
    rows = [[names.get(r["node"], f"node {r['node']}"), r["class"], f"{float(r['seconds']):.1f} s",
             f"{int(r.get('anon_mb', 0)) / 1024:.1f} GiB"] for r in nodes]
    sampler_s = [float(r["seconds"]) for r in nodes if r["node"] in ("13", "14")]
    mib = {k: {m: v / 2**20 for m, v in p.items()} for k, p in mem.peak.items()}
    unet_bytes = sum(e["size"] for e in entries if e["name"].endswith(".gguf"))
    summary = [
        ["stand-ins generated", f"{gib(total_bytes)} in {gen_s:.0f} s" + (" (cached)" if gen_s < 5 else "")],
        ["fetch (file:// mirror → empty folders)", f"{fetch_s:.1f} s ({gib(total_bytes)}, "
         f"{total_bytes / 2**20 / max(fetch_s, 1e-9):.0f} MiB/s)" + (", before the job, mirror dropped per file" if drop else ", by the job")],
        ["ComfyUI start", f"{start_s:.1f} s"],
        ["seconds per step (high, low)", ", ".join(f"{s:.1f} s" for s in sampler_s)],
        ["ComfyUI execution", f"{timings.get('comfy_execution_s', float('nan')):.1f} s"],
        ["job total (worker)", f"{job_s:.1f} s"],
        ["peak RSS ComfyUI (anonymous part)", f"{mib['comfyui']['rss']:.0f} MiB ({mib['comfyui']['anon']:.0f} MiB)"],
        ["peak RSS worker (anonymous part)", f"{mib['worker']['rss']:.0f} MiB ({mib['worker']['anon']:.0f} MiB)"],
    ]
    mapped = mib["comfyui"]["anon"] * 2**20 < unet_bytes / 2
    body = (f"The saved workflow (`wan22_i2v_gguf`) run by the worker on full-size random stand-ins "
            f"(bench/realsize_weights.py: two {gib(unet_bytes / 2)} Q5_0/Q5_1 GGUF UNETs, scaled-fp8 umt5-xxl, "
            f"Wan 2.1 VAE, LightX2V rank-64 LoRA on both stages) at {PARAMS['width']}×{PARAMS['height']}, "
            f"{PARAMS['length']} frame, {PARAMS['steps']} steps (1 per stage), CPU.\n\n"
            + table(["measure", "value"], summary) + "\n\nPer node (ComfyUI executor time, bench-only hook):\n\n"
            + table(["node", "class", "time", "ComfyUI anonymous RSS after"], rows)
            + f"\n\nGoal: completes on this machine: met. UNETs stay in their memory maps (ComfyUI's anonymous RSS "
            f"{mib['comfyui']['anon'] / 1024:.1f} GiB against {gib(unet_bytes)} of GGUF): "
            f"{'met' if mapped else '**not met**'}. Peak RSS counts the mapped file pages the kernel keeps "
            f"resident; they are page cache, dropped under pressure.")
    if not smoke:
        write_section("realsize", "Full-size stand-ins on CPU (`make realsize`)", body, "make realsize")
    print(body)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(mirror, ignore_errors=True)


def _one(model_fetch, manifest: Path, name: str) -> list:
    return [e for e in model_fetch.load_manifest([manifest], include_default=False) if e.name == name]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep the stand-ins and the fetched copies")
    p.add_argument("--drop-mirror", choices=["auto", "yes", "no"], default="auto",
                   help="fetch each file before the job and delete its mirror copy (auto: when disk is short)")
    p.add_argument("--smoke", action="store_true", help="reduced dims, nothing recorded (checks the harness)")
    args = p.parse_args(argv)
    run(keep=args.keep, drop_mirror=args.drop_mirror, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
