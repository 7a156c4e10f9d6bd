"""ComfyUI's scaled-fp8 safetensors layouts, both of them, for the stand-ins and the tests.

Older layout (``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` has it): each quantized Linear weight in
e4m3fn with a float32 ``<layer>.scale_weight``, and an empty ``scaled_fp8`` marker tensor. Newer
layout: ``<layer>.weight_scale`` and a ``_quantization_metadata`` entry in the safetensors header
naming the quantized layers. ComfyUI 0.8.0 reads both in ``comfy.utils.convert_old_quants``.
"""

from __future__ import annotations

import json

import torch

FP8_MAX = 448.0  # largest finite float8_e4m3fn


def quantize(dense: dict[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor]:
    """``dense`` in the older layout: the ``keys`` (Linear weights) as e4m3fn scaled by absmax/448."""
    out = {}
    for key, value in dense.items():
        if key in keys:
            w = value.float()
            scale = (w.abs().max() / FP8_MAX).clamp(min=1e-12)
            out[key] = (w / scale).to(torch.float8_e4m3fn)
            out[key[: -len("weight")] + "scale_weight"] = scale.reshape(()).to(torch.float32)
        else:
            out[key] = value
    out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def dequantize(scaled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older-layout weights as fp16 (weight x scale), marker and scales dropped: the same model, dense."""
    out = {}
    for key, value in scaled.items():
        if key == "scaled_fp8" or key.endswith(".scale_weight"):
            continue
        if value.dtype == torch.float8_e4m3fn:
            value = (value.float() * scaled[key[: -len("weight")] + "scale_weight"]).to(torch.float16)
        out[key] = value
    return out


def new_layout(scaled: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Older layout -> newer: ``weight_scale`` tensors plus the header metadata (``save_file(..., metadata=)``)."""
    out, layers = {}, {}
    for key, value in scaled.items():
        if key == "scaled_fp8":
            continue
        if key.endswith(".scale_weight"):
            layer = key[: -len(".scale_weight")]
            out[f"{layer}.weight_scale"] = value
            layers[layer] = {"format": "float8_e4m3fn"}
        else:
            out[key] = value
    return out, {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})}
