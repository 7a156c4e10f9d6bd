"""`python -m bench gpu`: WAN 2.2 I2V speed and VRAM on a GPU, ours against what users run instead.

The saved workflow at 832×480, 81 frames, 4 steps (2 high-noise + 2 low-noise), LightX2V LoRA on both
stages, on the full-size stand-ins (bench/realsize_weights.py), one fresh ComfyUI per variant:

* ``ours``: our GGUF loader, dequantizing (and applying the LoRA) on the fly;
* ``city96``: city96's ComfyUI-GGUF ``UnetLoaderGGUF`` on the same files. Its code is never committed:
  ``--city96-git DIR`` exports a local git copy into .cache/gpu/ComfyUI-GGUF (ignored); without it the
  variant is skipped and says so;
* ``fp8``: ComfyUI's stock ``UNETLoader`` on fp8 "scaled" stand-ins of the same dims;
* ``resident``: ours with ``WAN_GGUF_RESIDENT=auto`` (dequantize and patch once when VRAM allows);
* ``budget24``: ours (``auto``) with the process capped at 24 GiB (``set_per_process_memory_fraction``)
  and ComfyUI told to plan for it (``--reserve-vram``), as on RunPod's 24 GB cards.

Measured per variant: steady s/step (between step events, so model loading is not in it), first step,
peak VRAM (``torch.cuda.max_memory_allocated`` in ComfyUI), sampling and total time.

``--smoke`` runs the same script on CPU at reduced dims and size (the test suite does, so it does not
rot); ``--variants`` picks a subset (the device's time budget may not hold all five: generating the
full set takes ~5 minutes, each variant a few more).

For the borrowed GPU machine (bench/gpu_run.sh, docs/benchmarks.md "GPU run in one window"):
``--prepare-only`` generates the stand-ins and stops; ``--results FILE`` merges each variant's figures
into a JSON file as soon as it ends (and ``--out`` re-renders the table), so a run cut short still
reports; ``--deadline-s`` bounds one variant; ``--from-results FILE`` writes docs/benchmarks.md's GPU
section from such a file here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.realsize import install_timer, node_records
from bench.report import table, verdict, write_section

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("ours", "city96", "fp8", "resident", "budget24")
FULL = dict(width=832, height=480, length=81, steps=4)
SMOKE = dict(width=32, height=32, length=5, steps=4)
BUDGET_GB = 24
CITY96_DIR = ROOT / ".cache" / "gpu" / "ComfyUI-GGUF"  # never committed (.cache is ignored)


@dataclass
class Result:
    variant: str
    ok: bool = False
    note: str = ""
    steps: list[tuple[float, str, int]] = field(default_factory=list)  # (time, node, value)
    peak_vram: int = 0
    sampling_s: float = 0.0
    first_sampler_s: float = 0.0  # the high-noise sampler node: its 2 steps plus loading/patching
    total_s: float = 0.0
    start_s: float = 0.0  # ComfyUI process start until it answers
    loaders_s: float = 0.0  # the UNET loader nodes' own time

    def load_s(self) -> float | None:
        """Model loading and patching: the loader nodes, plus the high-noise sampler's time beyond its steps
        at the steady rate (ComfyUI moves weights to the GPU when sampling starts)."""
        step = self.steady_step()
        if step is None:
            return None
        first = [n for _, n, _ in self.steps if n == self.steps[0][1]] if self.steps else []
        return self.loaders_s + max(0.0, self.first_sampler_s - len(first) * step)

    def to_dict(self) -> dict:
        return {"variant": self.variant, "ok": self.ok, "note": self.note, "steady_step_s": self.steady_step(),
                "load_s": self.load_s(), "peak_vram_bytes": self.peak_vram, "sampling_s": self.sampling_s,
                "first_sampler_s": self.first_sampler_s, "total_s": self.total_s, "start_s": self.start_s,
                "loaders_s": self.loaders_s, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        return cls(d["variant"], d["ok"], d["note"], [tuple(s) for s in d["steps"]], d["peak_vram_bytes"],
                   d["sampling_s"], d["first_sampler_s"], d["total_s"], d.get("start_s", 0.0), d.get("loaders_s", 0.0))

    def steady_step(self) -> float | None:
        """Median time between consecutive step events of the same sampler (loading is not in it)."""
        by_node: dict[str, list[float]] = {}
        for t, node, _ in self.steps:
            by_node.setdefault(node, []).append(t)
        gaps = [b - a for times in by_node.values() for a, b in zip(times, times[1:])]
        return statistics.median(gaps) if gaps and self.ok else None


def prepare_city96(git_dir: Path | None) -> Path | None:
    """city96's pack in .cache/gpu/ComfyUI-GGUF (exported from a local git copy when given), or None."""
    if git_dir is not None and not (CITY96_DIR / "nodes.py").is_file():
        CITY96_DIR.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", "HEAD"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(CITY96_DIR)], input=archive.stdout, check=True)
    return CITY96_DIR if (CITY96_DIR / "nodes.py").is_file() else None


def graph_for(variant: str, params: dict, image_name: str) -> dict:
    """The saved workflow with ``params`` applied and the variant's UNET loader."""
    from bench.realsize_weights import FP8_FILES, FILES
    from worker.workflows import apply_params, load_workflow

    loaded = load_workflow("wan22_i2v_gguf")
    graph = apply_params(loaded.graph, loaded.param_map, {**params, "image": image_name})
    for node, key in (("6", "unet_high"), ("7", "unet_low")):
        if variant == "city96":
            graph[node] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": FILES[key][1]}}
        elif variant == "fp8":
            graph[node] = {"class_type": "UNETLoader",
                           "inputs": {"unet_name": FP8_FILES[key + "_fp8"][1], "weight_dtype": "default"}}
    return graph


UNET_LOADERS = ("WanUnetLoaderGGUF", "UnetLoaderGGUF", "UNETLoader")


def run_variant(variant: str, weights: Path, index: dict, params: dict, work: Path, cpu: bool,
                city96: Path | None, comfy_args: list[str] | None = None, deadline_s: float = 3 * 3600) -> Result:
    import torch

    from tests.graphs import input_png
    from worker.supervisor import ComfyProcess, ComfySettings, free_port

    res = Result(variant)
    base = work / variant
    shutil.rmtree(base, ignore_errors=True)
    for name, info in index["files"].items():  # every stand-in visible under its production name
        dest = base / "models" / info["folder"] / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to((weights / name).resolve())
    install_timer(base)
    env = {"WAN_GGUF_RESIDENT": "off" if variant == "ours" else "auto"}
    args: list[str] = list(comfy_args or [])
    t_start = time.monotonic()
    if variant == "city96":
        if city96 is None:
            res.note = "skipped: city96's ComfyUI-GGUF not present (pass --city96-git or --city96-dir)"
            return res
        (base / "custom_nodes" / "ComfyUI-GGUF").symlink_to(city96, target_is_directory=True)
    if variant == "budget24" and not cpu:
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        env["BENCH_VRAM_BUDGET_GB"] = str(BUDGET_GB)
        args += ["--reserve-vram", f"{max(0.0, total - BUDGET_GB):.1f}"]
    proc = ComfyProcess(ComfySettings(comfyui_dir=comfyui(), base_dir=base, port=free_port(), cpu=cpu, env=env,
                                      extra_args=args))
    try:
        proc.start()
        proc.wait_ready(min(600.0, deadline_s))
        res.start_s = time.monotonic() - t_start
        from worker.comfy_client import ComfyClient

        client = ComfyClient(proc.url)
        image = client.upload_image("bench_start.png", input_png(64, 48))
        t0 = time.monotonic()
        prompt_id = client.queue_prompt(graph_for(variant, params, image))

        def on_progress(p) -> None:
            res.steps.append((time.monotonic(), str(p.node), p.value))

        client.follow(prompt_id, deadline=t_start + deadline_s, on_progress=on_progress, is_alive=proc.alive)
        res.total_s = time.monotonic() - t0
        records = node_records(proc.log_path)
        samplers = [float(r["seconds"]) for r in records if r["class"] == "KSamplerAdvanced"]
        res.sampling_s = sum(samplers)
        res.first_sampler_s = samplers[0] if samplers else 0.0
        res.loaders_s = sum(float(r["seconds"]) for r in records if r["class"] in UNET_LOADERS)
        res.peak_vram = max((int(r.get("peak_vram", 0)) for r in records), default=0)
        res.ok = True
    except Exception as exc:  # one variant failing (out of memory, say) must not hide the others
        res.note = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
    finally:
        proc.stop()
    return res


def comfyui() -> Path:
    from worker import comfyui_home

    return Path(comfyui_home.ensure(clone=False))


def gpu_line() -> str:
    import torch

    name = torch.cuda.get_device_name(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "?"
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    return f"{name}, {total:.0f} GiB, driver {driver}, CUDA {torch.version.cuda}, torch {torch.__version__}"


def report(results: list[Result], params: dict, device: str, smoke: bool = False) -> str:
    by = {r.variant: r for r in results}

    def steady(v: str) -> float | None:
        return by[v].steady_step() if v in by else None

    def secs(x: float | None) -> str:
        return f"{x:.1f} s" if x is not None else "—"

    rows = []
    for r in results:
        step = r.steady_step()
        ratio = f"{step / steady('ours'):.2f}×" if step and steady("ours") else "—"
        rows.append([r.variant, "yes" if r.ok else "no", f"{step:.2f} s" if step else "—", ratio,
                     f"{r.peak_vram / 2**30:.1f} GiB" if r.peak_vram else "—", secs(r.load_s()),
                     secs(r.first_sampler_s if r.ok else None), secs(r.sampling_s if r.ok else None),
                     secs(r.total_s if r.ok else None), secs(r.start_s if r.start_s else None), r.note])
    goals = []

    if steady("ours") and steady("city96"):
        goals.append(f"ours ≥ 1.0× ComfyUI-GGUF (s/step ratio city96/ours {steady('city96') / steady('ours'):.2f}): "
                     f"{verdict(steady('city96') >= steady('ours'))}")
    if steady("resident") and steady("fp8"):
        goals.append(f"resident within 10% of fp8 ({steady('resident') / steady('fp8'):.2f}×): "
                     f"{verdict(steady('resident') <= 1.10 * steady('fp8'))}")
    if "budget24" in by:
        goals.append(f"{BUDGET_GB} GiB budget run completes: {verdict(by['budget24'].ok)}")
    return (f"Device: {device}. Saved workflow at {params['width']}×{params['height']}, {params['length']} frames, "
            f"{params['steps']} steps (2+2), LightX2V LoRA on both stages, {'reduced-dim' if smoke else 'full-size'} "
            "stand-ins; one fresh ComfyUI "
            "per variant. s/step is the median time between step events (model loading excluded); ratio is "
            "against ours (lower is faster). Load (est.) is the UNET loader nodes plus the high-noise sampler's "
            "time beyond its steps at the steady rate; end-to-end is the job from queueing to the saved video "
            "(text encoding, loading, 4 steps, VAE decode), ComfyUI's own start not included.\n\n"
            + table(["variant", "completed", "s/step", "vs ours", "peak VRAM", "load (est.)",
                     "high-noise sampler (2 steps + load)", "sampling", "end-to-end job", "ComfyUI start", "note"],
                    rows)
            + ("\n\nGoals: " + "; ".join(goals) if goals else ""))


def save_results(path: Path, results: list[Result], params: dict, device: str, smoke: bool) -> list[Result]:
    """Merge ``results`` into the JSON file at ``path`` (a variant run again replaces its entry); return all."""
    from bench.report import machine

    old = json.loads(path.read_text()) if path.is_file() else {}
    merged = [Result.from_dict(d) for d in old.get("results", []) if old.get("smoke") == smoke]
    for r in results:
        merged = [m for m in merged if m.variant != r.variant] + [r]
    data = {"device": device, "host": machine(), "smoke": smoke, "params": params,
            "results": [r.to_dict() for r in merged]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return merged


def write_docs_from(path: Path) -> str:
    """docs/benchmarks.md's GPU section from a results file brought back from the GPU machine."""
    data = json.loads(path.read_text())
    if data.get("smoke"):
        raise ValueError(f"{path}: a smoke run's results; the GPU section takes a full-size run's")
    body = report([Result.from_dict(d) for d in data["results"]], data["params"], data["device"])
    body += f"\n\nRun on: {data['host']} (bench/gpu_run.sh, one call; docs/benchmarks.md, \"GPU run in one window\")."
    write_section("gpu", "GPU: s/step and peak VRAM, ours against ComfyUI-GGUF and fp8", body,
                  f"bash bench/gpu_run.sh, then python -m bench.gpu --from-results {path.name}")
    return body


def run(smoke: bool = False, variants: list[str] | None = None, city96_git: Path | None = None,
        out: Path | None = None, city96_dir: Path | None = None, comfy_args: list[str] | None = None,
        results_path: Path | None = None, prepare_only: bool = False, deadline_s: float = 3 * 3600,
        skip: str | None = None) -> list[Result]:
    """Generate (or reuse) the stand-ins, run the variants, write the section (smoke, or with ``out`` or
    ``results_path``: there only, after each variant)."""
    import torch

    from bench import realsize, realsize_weights as rw

    cpu = smoke or not torch.cuda.is_available()
    if cpu and not smoke:
        raise RuntimeError("no CUDA device; `python -m bench.gpu --smoke` runs the CPU check")
    device = "CPU smoke run (reduced dims)" if cpu else gpu_line()
    params = SMOKE if smoke else FULL
    variants = variants or list(VARIANTS)
    results: list[Result] = []

    def publish() -> None:
        shown = save_results(results_path, results, params, device, smoke) if results_path else results
        if out is not None:
            out.write_text(report(shown, params, device, smoke) + "\n")

    if skip is not None:  # record variants the caller could not run (time, disk), so the report says so
        results = [Result(v, note=skip) for v in variants]
        publish()
        return results
    if city96_git is None and os.environ.get("CITY96_GGUF_GIT"):
        city96_git = Path(os.environ["CITY96_GGUF_GIT"])
    cache = ROOT / ".cache" / ("gpu-smoke" if smoke else "gpu")
    weights = cache / "weights"
    dims = rw.Dims(**realsize.SMOKE_DIMS) if smoke else rw.Dims()
    need = list(rw.FILES) + (list(rw.FP8_FILES) if "fp8" in variants else [])
    index = rw.generate(weights, comfyui(), dims, only=need)
    if prepare_only:
        return results
    city96 = city96_dir if city96_dir is not None else prepare_city96(city96_git) if "city96" in variants else None
    for variant in variants:
        print(f"== gpu bench: {variant}", flush=True)
        results.append(run_variant(variant, weights, index, params, cache / "run", cpu, city96, comfy_args,
                                   deadline_s))
        print(f"   {results[-1].to_dict() | {'steps': len(results[-1].steps)}}", flush=True)
        publish()
    body = report(results, params, device, smoke)
    if out is None and results_path is None and not smoke:
        write_section("gpu", "GPU: s/step and peak VRAM, ours against ComfyUI-GGUF and fp8", body,
                      "python -m bench gpu")
    print(body)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, reduced dims and size; nothing written to the docs")
    p.add_argument("--variants", nargs="*", choices=VARIANTS)
    p.add_argument("--city96-git", type=Path, default=None,
                   help="a local git copy of city96/ComfyUI-GGUF, exported into .cache/gpu/ComfyUI-GGUF "
                        "(default: $CITY96_GGUF_GIT)")
    p.add_argument("--city96-dir", type=Path, default=None, help="city96's pack, already unpacked (the GPU kit's)")
    p.add_argument("--comfy-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for each ComfyUI (repeat; e.g. --comfy-arg=--front-end-root=DIR)")
    p.add_argument("--out", type=Path, help="write the report here instead of docs/benchmarks.md")
    p.add_argument("--results", type=Path, help="merge each variant's figures into this JSON file as it ends")
    p.add_argument("--prepare-only", action="store_true", help="generate the stand-ins, run nothing")
    p.add_argument("--deadline-s", type=float, default=3 * 3600, help="give up on a variant after this long")
    p.add_argument("--skip", metavar="REASON", help="record the variants as not run, with this note")
    p.add_argument("--from-results", type=Path, metavar="FILE",
                   help="write docs/benchmarks.md's GPU section from a results file of a GPU run; run nothing")
    args = p.parse_args(argv)
    if args.from_results is not None:
        try:
            print(write_docs_from(args.from_results))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            print(f"--from-results {args.from_results}: not a GPU run's results file ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
            return 2
        return 0
    results = run(args.smoke, args.variants, args.city96_git, args.out, args.city96_dir, args.comfy_arg,
                  args.results, args.prepare_only, args.deadline_s, args.skip)
    failed = [r.variant for r in results if not r.ok and not r.note.startswith("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
