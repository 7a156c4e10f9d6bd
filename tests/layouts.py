"""Layout fixtures of the five production files (tests/data/layouts/*.json), expanded at any size.

A fixture names one published file and cites its evidence (``_evidence``) and what is still open
(``open``). Its tensors are ``[name, type, shape]`` rows; ``block_tensors`` repeat for every block
(``{i}`` in the name, over ``dims[block_dim]``, default ``blocks``). A shape entry is an int or an
arithmetic expression over ``dims`` (``"6*dim"``). Types are safetensors dtypes (``F8_E4M3``, ``BF16``)
or GGML type names (``Q5_0``, ``F32``). The generators (tests/tiny_weights.py,
bench/realsize_weights.py) write these layouts; tests/test_layouts.py checks that they do.
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path

LAYOUT_DIR = Path(__file__).parent / "data" / "layouts"

UNET_HIGH = "wan2.2_i2v_high_noise_14B_Q5_0.gguf"
UNET_LOW = "wan2.2_i2v_low_noise_14B_Q5_0.gguf"
UMT5 = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE = "wan_2.1_vae.safetensors"
LORA = "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"
ALL = (UNET_HIGH, UNET_LOW, UMT5, VAE, LORA)


@cache
def load(file: str) -> dict:
    """The fixture of a production file, by its file name."""
    return json.loads((LAYOUT_DIR / f"{file}.json").read_text())


def _eval(expr: int | str, dims: dict[str, int]) -> int:
    if isinstance(expr, int):
        return expr
    tree = ast.parse(expr, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Name, ast.Constant, ast.Mult, ast.Add, ast.Sub, ast.FloorDiv, ast.Load)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        raise ValueError(f"shape expression {expr!r}: only + - * // over dims")
    return int(eval(compile(tree, "<shape>", "eval"), {"__builtins__": {}}, dims))  # noqa: S307 - checked above


def expand(file: str, dims: dict[str, int] | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (type, shape)}`` of a fixture at ``dims`` (the published dims where not given)."""
    fx = load(file)
    d = {**fx["dims"], **(dims or {})}
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, qtype, shape in fx.get("tensors", []):
        out[name] = (qtype, tuple(_eval(s, d) for s in shape))
    for i in range(d.get(fx.get("block_dim", "blocks"), 0)):
        for name, qtype, shape in fx.get("block_tensors", []):
            out[name.format(i=i)] = (qtype, tuple(_eval(s, d) for s in shape))
    return out

