"""The pack's umt5 loader reads a scaled-fp8 file the way ComfyUI does, header metadata included.

The production encoder (``umt5_xxl_fp8_e4m3fn_scaled.safetensors``) is in ComfyUI's older scaled-fp8
layout (``scale_weight`` + the ``scaled_fp8`` marker); ComfyUI's newer layout keeps the scales as
``weight_scale`` and says which layers are quantized in the safetensors header
(``_quantization_metadata``). Both layouts of the same weights must give the same embeddings
through ``WanTextEncoderLoader``; without the header the newer one loads its fp8 values unscaled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests import scaled_fp8, tiny_weights

pytestmark = pytest.mark.comfyui

F = tiny_weights.FILES
PROMPTS = ("a cat walks slowly across the street at sunset", "blurry, static, worst quality")


@pytest.fixture(scope="module")
def nodes(comfyui_dir):
    if str(comfyui_dir) not in sys.path:
        sys.path.append(str(comfyui_dir))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    from custom_nodes.wan_serverless import nodes

    return nodes


def embed(clip) -> torch.Tensor:
    return torch.cat([clip.encode_from_tokens(clip.tokenize(p)) for p in PROMPTS], dim=1).float()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def new_layout(tiny_dir, tmp_path_factory) -> Path:
    sd, metadata = scaled_fp8.new_layout(load_file(str(tiny_dir / F["umt5"])))
    path = tmp_path_factory.mktemp("umt5-new") / "umt5_tiny_new_layout.safetensors"
    save_file(sd, str(path), metadata=metadata)
    return path


def test_tiny_umt5_is_scaled_fp8(tiny_dir):
    sd = load_file(str(tiny_dir / F["umt5"]))
    assert sd["scaled_fp8"].dtype == torch.float8_e4m3fn
    q = "encoder.block.0.layer.0.SelfAttention.q"
    assert sd[f"{q}.weight"].dtype == torch.float8_e4m3fn and sd[f"{q}.scale_weight"].dtype == torch.float32
    assert sd["shared.weight"].dtype == torch.float16 and sd["encoder.final_layer_norm.weight"].dtype == torch.float16
    assert sd["spiece_model"].dtype == torch.uint8


def test_old_and_new_scaled_fp8_layouts_give_the_same_embeddings(nodes, tiny_dir, new_layout):
    old = embed(nodes.load_wan_text_encoder(str(tiny_dir / F["umt5"])))
    new = embed(nodes.load_wan_text_encoder(str(new_layout)))
    assert rel(new, old) < 1e-3
    # The same weights dequantized to fp16 (what the GGUF stand-in is made from) agree to fp8 compute precision.
    dense = embed(nodes.load_wan_text_encoder(str(tiny_dir / F["umt5_dense"])))
    assert rel(old, dense) < 2e-2


def test_the_header_is_what_makes_the_new_layout_right(nodes, tiny_dir, new_layout):
    """Without ``_quantization_metadata`` (the loader before issue 19) the fp8 values load unscaled."""
    from custom_nodes.wan_serverless import text_encoder

    old = embed(nodes.load_wan_text_encoder(str(tiny_dir / F["umt5"])))
    no_header = embed(text_encoder.load_umt5(load_file(str(new_layout)), model_options={}))
    assert rel(no_header, old) > 0.1
