"""Our torch dequantization against the reference implementation, ``gguf.quants.dequantize`` (numpy).

Legacy types and floats are quantized with ``gguf.quants.quantize``; the gguf package cannot
quantize K-quants, so those get random blocks (every byte pattern is a valid block) whose float16
super-block scales are set to finite values. float32 results must be bit-identical: our kernels do
the same float32 operations in the same order as the reference. float16/bfloat16 results must equal
the float32 reference rounded once to that dtype (we compute in float32 and round on store).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from custom_nodes.wan_serverless import dequant  # noqa: E402  (pure torch: no ComfyUI needed)

T = gguf.GGMLQuantizationType
K_QUANT_SCALE_OFFSETS = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}
SUPPORTED = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def packed_sample(qtype: T, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """GGML bytes (or floats for float types) for ``shape`` values of ``qtype``."""
    rng = np.random.default_rng(seed)
    if qtype not in K_QUANT_SCALE_OFFSETS:
        values = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0, size=shape[:-1] + (1,))).astype(np.float32)
        return np.ascontiguousarray(gguf.quants.quantize(values, qtype))
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape)) // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in K_QUANT_SCALE_OFFSETS[qtype]:
        scales = (rng.standard_normal(n_blocks) * 0.05).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(shape[:-1] + (shape[-1] // block_size * type_size,))


def reference(packed: np.ndarray, qtype: T) -> np.ndarray:
    return gguf.quants.dequantize(packed, qtype).astype(np.float32)


def test_supported_types_are_the_documented_set():
    assert set(dequant.supported_types()) == set(SUPPORTED)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_float32_bit_identical_to_gguf_reference(qtype, device):
    shape = (3, 16, 512)
    packed = packed_sample(qtype, shape)
    expected = torch.from_numpy(reference(packed, qtype)).reshape(shape)
    got = dequant.dequantize(torch.from_numpy(packed).to(device), qtype, shape, torch.float32)
    assert got.shape == shape and got.dtype == torch.float32 and got.device.type == device
    assert torch.isfinite(expected).all()
    if device == "cpu":
        assert torch.equal(got, expected)
    else:  # CUDA compilers fuse multiply-add (FMA): one rounding fewer, up to 1 ulp of the product apart
        torch.testing.assert_close(got.cpu(), expected, rtol=2e-7, atol=2e-7 * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_half_outputs_are_the_reference_rounded_once(qtype, dtype):
    shape = (8, 256)
    packed = packed_sample(qtype, shape, seed=1)
    expected = torch.from_numpy(reference(packed, qtype)).reshape(shape).to(dtype)
    got = dequant.dequantize(torch.from_numpy(packed), qtype, shape, dtype)
    assert got.dtype == dtype
    assert torch.equal(got, expected)


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q5_1, T.Q4_K, T.Q6_K], ids=lambda t: t.name)
def test_cpu_chunking_with_remainder_and_out_buffer(qtype, monkeypatch):
    block_size = gguf.GGML_QUANT_SIZES[qtype][0]
    monkeypatch.setattr(dequant, "CPU_CHUNK_VALUES", 3 * block_size)  # 3 blocks per chunk
    shape = (7, 2 * 256)  # 14 or 56 blocks: several chunks and a partial last one
    packed = packed_sample(qtype, shape, seed=2)
    out = torch.full(shape, float("nan"))
    result = dequant.dequantize(torch.from_numpy(packed), qtype, shape, out=out)
    assert result is out
    assert torch.equal(out, torch.from_numpy(reference(packed, qtype)).reshape(shape))


def test_unsupported_type_is_a_named_error():
    packed = torch.zeros(4, 18, dtype=torch.uint8)
    with pytest.raises(dequant.UnsupportedQuantType, match="IQ4_NL") as info:
        dequant.dequantize(packed, T.IQ4_NL, (4, 32))
    assert info.value.qtype == T.IQ4_NL
    assert "Q4_K" in str(info.value)  # the message lists what is supported
    named = dequant.UnsupportedQuantType(T.IQ2_XXS, "blocks.0.ffn.0.weight")
    assert "tensor 'blocks.0.ffn.0.weight'" in str(named) and "IQ2_XXS" in str(named)
    with pytest.raises(dequant.UnsupportedQuantType):
        dequant.as_qtype(12345)
    assert not dequant.is_supported(T.IQ4_XS) and dequant.is_supported(T.Q6_K)


def test_wrong_shape_is_rejected():
    packed = torch.from_numpy(packed_sample(T.Q8_0, (2, 64)))
    with pytest.raises(ValueError, match="needs"):
        dequant.dequantize(packed, T.Q8_0, (2, 96))


def test_row_bytes_and_block_layout():
    assert dequant.block_layout(T.Q4_K) == (256, 144)
    assert dequant.packed_row_bytes(5120, T.Q8_0) == 5120 // 32 * 34
    with pytest.raises(ValueError, match="block size"):
        dequant.packed_row_bytes(100, T.Q4_0)
