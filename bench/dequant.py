"""Dequantization throughput: our torch kernels against ComfyUI-GGUF's, same bytes, same run.

For every GGML type both implementations decode the same packed tensor (a 5120x5120 WAN 14B
attention weight's worth of blocks) to float32, the dtype CPU inference computes in, and to
float16. Throughput is output elements per second, best of several interleaved repetitions.
ComfyUI-GGUF's ``dequant.py`` is imported by path from ``$COMFYUI_GGUF_DIR`` (a checkout outside this
repository); without it only our column is reported. On a machine with CUDA the same table is
produced for the GPU as well.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench import report

GOAL_TYPES = ("Q4_0", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "BF16")
SHAPE = (5120, 5120)
REPEATS = int(os.environ.get("BENCH_DEQUANT_REPEATS", "7"))
K_SCALE_OFFSETS = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def _ours():
    from custom_nodes.wan_serverless import dequant

    return dequant


def _community():
    """ComfyUI-GGUF's dequant module loaded by path, or (None, reason)."""
    root = os.environ.get("COMFYUI_GGUF_DIR")
    if not root:
        return None, "COMFYUI_GGUF_DIR not set"
    path = Path(root) / "dequant.py"
    if not path.is_file():
        return None, f"{path} not found"
    spec = importlib.util.spec_from_file_location("comfyui_gguf_dequant_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, str(path)


def packed_tensor(name: str, seed: int = 0) -> torch.Tensor:
    """Valid GGML bytes for SHAPE values: quantized by gguf where it can, random blocks for K-quants."""
    import gguf

    qtype = gguf.GGMLQuantizationType[name]
    rng = np.random.default_rng(seed)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if name not in K_SCALE_OFFSETS:
        rows = rng.standard_normal((256, SHAPE[1]), dtype=np.float32)
        one = np.ascontiguousarray(gguf.quants.quantize(rows, qtype)).view(np.uint8)
        data = np.tile(one, (SHAPE[0] // 256, 1))
    else:
        n_blocks = SHAPE[0] * SHAPE[1] // block_size
        data = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for offset in K_SCALE_OFFSETS[name]:
            data[:, offset:offset + 2] = (rng.standard_normal(n_blocks) * 0.01).astype(np.float16).view(np.uint8).reshape(-1, 2)
        data = data.reshape(SHAPE[0], -1)
    return torch.from_numpy(np.ascontiguousarray(data))


def _timed(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(device: torch.device, dtype: torch.dtype, ours, theirs) -> list[dict]:
    import gguf

    rows = []
    n = SHAPE[0] * SHAPE[1]
    for name in TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        packed = packed_tensor(name).to(device)
        run_ours = lambda packed=packed, qtype=qtype: ours.dequantize(packed, qtype, SHAPE, dtype)  # noqa: E731
        run_theirs = None
        if theirs is not None and qtype in getattr(theirs, "dequantize_functions", {}):
            run_theirs = lambda packed=packed, qtype=qtype: theirs.dequantize(  # noqa: E731
                packed, qtype, SHAPE, dtype=dtype).to(dtype)
        mismatch = None
        if run_theirs is not None:
            a, b = run_ours().float(), run_theirs().float()
            mismatch = float((a - b).abs().max())
            del a, b
        t_ours, t_theirs = [], []
        for _ in range(REPEATS):  # interleaved, so background load hits both alike
            t_ours.append(_timed(run_ours, device))
            if run_theirs is not None:
                t_theirs.append(_timed(run_theirs, device))
        best_ours = min(t_ours)
        best_theirs = min(t_theirs) if t_theirs else None
        rows.append({"type": name, "ours": n / best_ours, "theirs": n / best_theirs if best_theirs else None,
                     "ratio": best_theirs / best_ours if best_theirs else None, "mismatch": mismatch,
                     "ours_median": n / statistics.median(t_ours)})
        print(f"   {device.type} {str(dtype)[6:]:8s} {name:5s} ours {n / best_ours / 1e6:8.0f} Melem/s"
              + (f"  ComfyUI-GGUF {n / best_theirs / 1e6:8.0f} Melem/s  x{best_theirs / best_ours:.2f}"
                 if best_theirs else ""), flush=True)
    return rows


def _fmt(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate / 1e6:,.0f}"


def _section(device: torch.device, dtype: torch.dtype, rows: list[dict], theirs_available: bool) -> tuple[str, bool]:
    headers = ["type", "ours (Melem/s)", "ComfyUI-GGUF (Melem/s)", "ours / theirs", "max abs diff"]
    table_rows = []
    ok = True
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        if r["type"] in GOAL_TYPES and r["ratio"] is not None:
            ok &= r["ratio"] >= 1.0
            ratio = f"**{ratio}**"
        diff = "n/a" if r["mismatch"] is None else f"{r['mismatch']:.1e}"
        table_rows.append([r["type"], _fmt(r["ours"]), _fmt(r["theirs"]), ratio, diff])
    title = f"{device.type.upper()}, output {str(dtype).replace('torch.', '')}"
    return f"### {title}\n\n{report.table(headers, table_rows)}\n", ok and theirs_available


def run() -> None:
    ours = _ours()
    theirs, where = _community()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    parts = []
    verdicts = []
    for device in devices:
        for dtype in (torch.float32, torch.float16):
            rows = measure(device, dtype, ours, theirs)
            text, ok = _section(device, dtype, rows, theirs is not None)
            parts.append(text)
            verdicts.append((f"{device.type}, output {str(dtype)[6:]}", ok))
    source = (f"ComfyUI-GGUF's torch functions from `{where}`" if theirs is not None
              else f"ComfyUI-GGUF column skipped: {where} (export a checkout outside the repo and point "
                   f"`COMFYUI_GGUF_DIR` at it)")
    goal = ", ".join(GOAL_TYPES)
    verdict_lines = "\n".join(f"- {name}: {report.verdict(ok)}" for name, ok in verdicts)
    body = f"""Decoding one {SHAPE[0]}x{SHAPE[1]} tensor per GGML type (same packed bytes for both
implementations), best of {REPEATS} interleaved runs, torch {torch.__version__}, {torch.get_num_threads()} CPU threads.
{source}. "max abs diff" compares the two outputs (0 means identical). Both implementations
allocate their output on every call, so the figures include first-touch page faults of a fresh
100 MB buffer; that is the main source of run-to-run variance on this machine.

Goal: ours at least 1.0x ComfyUI-GGUF for {goal} (bold ratios).

{verdict_lines}

{chr(10).join(parts)}"""
    report.write_section("dequant", "GGUF dequantization throughput", body)
