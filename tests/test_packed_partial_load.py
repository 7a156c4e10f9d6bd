"""Partial loads under inference mode (how ComfyUI's sampler loads a model that does not fit) keep GGUF
weights packed in their memory map: found by `make realsize`, where the 14B UNET was dequantized there."""

from __future__ import annotations

import pytest
import torch

from tests import tiny_weights
from tests.test_gguf_comfy import _forward, pack  # noqa: F401  (pack is a fixture)

pytestmark = pytest.mark.comfyui


def test_partial_load_in_inference_mode_keeps_weights_packed_and_mapped(pack, tiny_dir, monkeypatch):  # noqa: F811
    contents = pack.loader.read_gguf(str(tiny_dir / tiny_weights.gguf_name("high", "Q5_0")))
    start, size = contents.reader.data.ctypes.data, contents.reader.data.nbytes
    base = pack.loader.unet_from_contents(contents)
    expected = _forward(pack, base)
    pack.mm.unload_all_models()
    lora = pack.utils.load_torch_file(str(tiny_dir / tiny_weights.FILES["lora"]))
    patched, _ = pack.sd.load_lora_for_models(base, None, lora, 1.0, 0)
    fallbacks = []
    monkeypatch.setattr(pack.ops, "_plain", lambda obj: fallbacks.append(obj) or obj)
    with torch.inference_mode():
        patched.partially_load(torch.device("cpu"), extra_memory=2**40)
    assert not fallbacks  # nothing was dequantized to answer a move or a type question
    packed = [p for p in patched.model.parameters() if isinstance(p, pack.ops.PackedTensor)]
    assert packed and all(start <= p.data_ptr() < start + size for p in packed)
    monkeypatch.undo()
    patched.unpatch_model(torch.device("cpu"))
    assert torch.equal(_forward(pack, base), expected)
