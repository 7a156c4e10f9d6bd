"""Resident mode (WAN_GGUF_RESIDENT): dequantize and patch once at load, same results as on the fly."""

from __future__ import annotations

import pytest
import torch

from tests import tiny_weights
from tests.test_gguf_comfy import _forward, pack  # noqa: F401  (pack is a fixture)

pytestmark = pytest.mark.comfyui

Q5_HIGH = tiny_weights.gguf_name("high", "Q5_0")


@pytest.fixture
def lora_model(pack, tiny_dir):  # noqa: F811
    def make(strength: float = 1.0):
        base = pack.loader.load_unet(str(tiny_dir / Q5_HIGH))
        lora = pack.utils.load_torch_file(str(tiny_dir / tiny_weights.FILES["lora"]))
        patched, _ = pack.sd.load_lora_for_models(base, None, lora, strength, 0)
        return patched
    return make


def _unload(pack, patcher) -> None:  # noqa: F811
    pack.mm.unload_all_models()
    pack.mm.soft_empty_cache()


def test_resident_load_dequantizes_and_patches_once_with_equal_results(pack, lora_model, monkeypatch):  # noqa: F811
    monkeypatch.delenv("WAN_GGUF_RESIDENT", raising=False)
    on_the_fly = lora_model()
    expected = _forward(pack, on_the_fly)
    ffn = on_the_fly.model.diffusion_model.blocks[0].ffn[0]
    assert isinstance(ffn.weight, pack.ops.PackedTensor) and ffn.weight.patches is not None
    _unload(pack, on_the_fly)

    monkeypatch.setenv("WAN_GGUF_RESIDENT", "on")
    resident = lora_model()
    got = _forward(pack, resident)
    ffn = resident.model.diffusion_model.blocks[0].ffn[0]
    compute = resident.model.manual_cast_dtype or resident.model.get_dtype()
    assert type(ffn.weight.data) is torch.Tensor and ffn.weight.dtype == compute  # plain values, patched once
    assert not any(isinstance(p, pack.ops.PackedTensor) for p in resident.model.diffusion_model.parameters())
    assert torch.equal(got, expected)
    assert torch.equal(_forward(pack, resident), expected)  # running again re-patches nothing

    _unload(pack, resident)  # unloading restores the packed, memory-mapped originals
    ffn = resident.model.diffusion_model.blocks[0].ffn[0]
    assert isinstance(ffn.weight, pack.ops.PackedTensor) and ffn.weight.packed.dtype == torch.uint8
    assert not resident.backup


def test_auto_falls_back_to_on_the_fly_when_memory_is_short(pack, lora_model, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WAN_GGUF_RESIDENT", "auto")
    monkeypatch.setenv("WAN_GGUF_RESIDENT_RESERVE_MB", str(10**9))  # never enough free memory
    model = lora_model()
    out = _forward(pack, model)
    ffn = model.model.diffusion_model.blocks[0].ffn[0]
    assert isinstance(ffn.weight, pack.ops.PackedTensor) and ffn.weight.patches is not None
    _unload(pack, model)
    monkeypatch.setenv("WAN_GGUF_RESIDENT_RESERVE_MB", "0")  # this machine's RAM holds the tiny model
    model = lora_model()
    assert torch.equal(_forward(pack, model), out)
    assert not isinstance(model.model.diffusion_model.blocks[0].ffn[0].weight, pack.ops.PackedTensor)
    _unload(pack, model)


def test_bad_setting_names_the_variable(pack, lora_model, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WAN_GGUF_RESIDENT", "sometimes")
    with pytest.raises(ValueError, match="WAN_GGUF_RESIDENT='sometimes'"):
        _forward(pack, lora_model())
