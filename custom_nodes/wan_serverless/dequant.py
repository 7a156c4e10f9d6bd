"""GGML block formats turned back into float tensors, in plain torch, on the device of the packed bytes.

Every supported quantized type is a sequence of fixed-size blocks (``block_size`` values stored in
``type_size`` bytes). A kernel here takes a ``(n_blocks, type_size)`` uint8 view and writes
``(n_blocks, block_size)`` values into a preallocated output. Scales are decoded in float32 and the
final multiply (and offset) is done in float32 arithmetic before it is stored in the output dtype,
so a float32 result is bit-for-bit what the reference ``gguf.quants.dequantize`` (numpy) computes.

On CPU the blocks are processed in cache-sized chunks: the small integer intermediates of a chunk
stay in cache, and each kernel ends in one fused store into the caller's buffer. On CUDA one call
covers the whole tensor (kernel-launch count matters more there than cache reuse).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import gguf
import torch

from .errors import GGUFFormatError, QuantTypeUnsupported

QType = gguf.GGMLQuantizationType
QK_K = 256

#: Types stored as plain IEEE floats: no blocks, a reinterpretation of the bytes is enough.
FLOAT_TYPES: dict[QType, torch.dtype] = {
    QType.F32: torch.float32,
    QType.F16: torch.float16,
    QType.BF16: torch.bfloat16,
}

#: Values per chunk on CPU (4 MiB of float32 output): big enough that per-op overhead is small, small
#: enough that the integer intermediates of a chunk stay in cache.
CPU_CHUNK_VALUES = 1 << 20


class UnsupportedQuantType(QuantTypeUnsupported):
    """A GGUF tensor uses a GGML type this pack cannot dequantize (code ``quant_type_unsupported``)."""

    def __init__(self, qtype: object, tensor: str | None = None) -> None:
        name = getattr(qtype, "name", None) or repr(qtype)
        where = f"tensor '{tensor}' uses" if tensor else "got"
        supported = ", ".join(t.name for t in supported_types())
        super().__init__(f"{where} GGML type {name}, which this loader does not support (supported: {supported}). "
                         f"Use a GGUF file quantized to one of the supported types.")
        self.qtype = qtype
        self.tensor = tensor


@functools.lru_cache(maxsize=64)
def _u8(n: int, device: torch.device) -> torch.Tensor:
    """``0..n-1`` as uint8 on ``device`` (shift amounts); cached, never modified."""
    return torch.arange(n, dtype=torch.uint8, device=device)


def _f16_at(blocks: torch.Tensor, offset: int) -> torch.Tensor:
    """The float16 stored at byte ``offset`` of every block, as float32 ``(n, 1)``."""
    return blocks[:, offset:offset + 2].view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """``(..., k)`` bytes -> ``(..., 2, k)``: low nibbles first, then high nibbles (GGML order)."""
    return torch.stack((qs & 0x0F, qs >> 4), dim=-2)


# --- legacy formats: 32 values per block, one scale (and an offset for the *_1 types) ---------------

def _q8_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    torch.mul(blocks[:, 2:].view(torch.int8), _f16_at(blocks, 0), out=out)


def _q4_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    q = _nibbles(blocks[:, 2:]).view(blocks.shape[0], 32).view(torch.int8)
    torch.mul(q.sub_(8), _f16_at(blocks, 0), out=out)


def _q4_1(blocks: torch.Tensor, out: torch.Tensor) -> None:
    q = _nibbles(blocks[:, 4:]).view(blocks.shape[0], 32)
    torch.addcmul(_f16_at(blocks, 2), q, _f16_at(blocks, 0), out=out)


def _high_bits32(qh: torch.Tensor) -> torch.Tensor:
    """``(n, 4)`` bytes of a little-endian uint32 -> ``(n, 32)`` bit j moved to value 16 (0 or 16)."""
    shifts = _u8(8, qh.device)
    return ((qh.unsqueeze(-1) >> shifts) & 1).view(qh.shape[0], 32) << 4


def _q5_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    q = _nibbles(blocks[:, 6:]).view(n, 32) | _high_bits32(blocks[:, 2:6])
    torch.mul(q.view(torch.int8).sub_(16), _f16_at(blocks, 0), out=out)


def _q5_1(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    q = _nibbles(blocks[:, 8:]).view(n, 32) | _high_bits32(blocks[:, 4:8])
    torch.addcmul(_f16_at(blocks, 2), q, _f16_at(blocks, 0), out=out)


# --- K-quants: 256-value super-blocks split in sub-blocks with their own 4-8 bit scales ------------

def _k_scale_min(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K: 12 bytes -> eight 6-bit scales and eight 6-bit mins, as float32 ``(n, 8)``."""
    a, b, c = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = torch.cat((a & 0x3F, (c & 0x0F) | ((a >> 2) & 0x30)), dim=1)
    mn = torch.cat((b & 0x3F, (c >> 4) | ((b >> 2) & 0x30)), dim=1)
    return sc.float(), mn.float()


def _affine_out(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, out: torch.Tensor) -> None:
    """``out = scale * q - offset`` with ``q (n, g, k)`` integers and per-group ``(n, g, 1)`` floats.

    One fused pass, evaluated in float32 and rounded once into ``out``'s dtype.
    """
    torch.addcmul(offset.neg(), q, scale, out=out.view(q.shape))


def _q4_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    sc, mn = _k_scale_min(blocks[:, 4:16])
    d = (_f16_at(blocks, 0) * sc).unsqueeze(-1)
    dm = (_f16_at(blocks, 2) * mn).unsqueeze(-1)
    q = _nibbles(blocks[:, 16:].reshape(n, 4, 32)).view(n, 8, 32)
    _affine_out(q, d, dm, out)


def _q5_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    sc, mn = _k_scale_min(blocks[:, 4:16])
    d = (_f16_at(blocks, 0) * sc).unsqueeze(-1)
    dm = (_f16_at(blocks, 2) * mn).unsqueeze(-1)
    qh = blocks[:, 16:48]
    high = ((qh.unsqueeze(1) >> _u8(8, blocks.device).view(1, 8, 1)) & 1) << 4
    q = _nibbles(blocks[:, 48:].reshape(n, 4, 32)).view(n, 8, 32) | high
    _affine_out(q, d, dm, out)


def _q6_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    ql = blocks[:, 0:128].reshape(n, 2, 2, 32)        # half, lo/hi 32-byte run, l
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)      # half, -, l
    scales = blocks[:, 192:208].view(torch.int8).float()
    d = (_f16_at(blocks, 208) * scales).view(n, 16, 1)
    low = torch.cat((ql & 0x0F, ql >> 4), dim=2)      # (n, 2, 4, 32): quarters 0..3 of each half
    high = ((qh >> (_u8(4, blocks.device) * 2).view(1, 1, 4, 1)) & 3) << 4
    q = (low | high).view(torch.int8).sub_(32).view(n, 16, 16)
    torch.mul(q, d, out=out.view(n, 16, 16))


def _q3_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    dev = blocks.device
    hmask, qs, packed = blocks[:, 0:32], blocks[:, 32:96], blocks[:, 96:108]
    low = torch.cat((packed[:, 0:8] & 0x0F, packed[:, 0:8] >> 4), dim=1)                  # (n, 16)
    high = ((packed[:, 8:12].unsqueeze(1) >> (_u8(4, dev) * 2).view(1, 4, 1)) & 3).view(n, 16)
    scales = (low | (high << 4)).view(torch.int8).sub(32).float()
    d = (_f16_at(blocks, 108) * scales).view(n, 16, 1)
    ql = (qs.reshape(n, 2, 1, 32) >> (_u8(4, dev) * 2).view(1, 1, 4, 1)) & 3              # (n, 2, 4, 32)
    missing = ((hmask.unsqueeze(1) >> _u8(8, dev).view(1, 8, 1)) & 1) ^ 1                  # (n, 8, 32)
    q = ql.view(n, 8, 32).view(torch.int8) - (missing << 2).view(torch.int8)
    torch.mul(q.view(n, 16, 16), d, out=out.view(n, 16, 16))


def _q2_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    scales, qs = blocks[:, 0:16], blocks[:, 16:80]
    d = (_f16_at(blocks, 80) * (scales & 0x0F).float()).view(n, 16, 1)
    dm = (_f16_at(blocks, 82) * (scales >> 4).float()).view(n, 16, 1)
    q = (qs.reshape(n, 2, 1, 32) >> (_u8(4, blocks.device) * 2).view(1, 1, 4, 1)) & 3
    _affine_out(q.view(n, 16, 16), d, dm, out)


Kernel = Callable[[torch.Tensor, torch.Tensor], None]

KERNELS: dict[QType, Kernel] = {
    QType.Q4_0: _q4_0, QType.Q4_1: _q4_1, QType.Q5_0: _q5_0, QType.Q5_1: _q5_1, QType.Q8_0: _q8_0,
    QType.Q2_K: _q2_k, QType.Q3_K: _q3_k, QType.Q4_K: _q4_k, QType.Q5_K: _q5_k, QType.Q6_K: _q6_k,
}


def supported_types() -> list[QType]:
    """Every GGML type ``dequantize`` accepts, floats first."""
    return [*FLOAT_TYPES, *KERNELS]


def as_qtype(qtype: QType | int | str) -> QType:
    """Normalise an enum member, its integer id or its name; raise UnsupportedQuantType if unknown."""
    try:
        if isinstance(qtype, str):
            return QType.__members__[qtype]
        return QType(int(qtype))
    except (KeyError, ValueError):
        raise UnsupportedQuantType(qtype) from None


def is_supported(qtype: QType | int) -> bool:
    try:
        qtype = as_qtype(qtype)
    except UnsupportedQuantType:
        return False
    return qtype in FLOAT_TYPES or qtype in KERNELS


def block_layout(qtype: QType | int) -> tuple[int, int]:
    """``(values per block, bytes per block)`` of a GGML type."""
    return gguf.GGML_QUANT_SIZES[as_qtype(qtype)]


def packed_row_bytes(row_length: int, qtype: QType | int) -> int:
    """Bytes one row of ``row_length`` values takes in ``qtype``."""
    block_size, type_size = block_layout(qtype)
    if row_length % block_size:
        raise GGUFFormatError(f"row length {row_length} is not a multiple of the {as_qtype(qtype).name} block size {block_size}")
    return row_length // block_size * type_size


def dequantize(packed: torch.Tensor, qtype: QType | int, shape: Sequence[int],
               dtype: torch.dtype = torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """Decode GGML-packed bytes (any shape, uint8, contiguous) into a ``shape`` tensor of ``dtype``.

    Float types are reinterpreted and cast; block types go through their kernel. The result lives
    on ``packed.device``. ``out``, when given, must be a contiguous tensor of ``shape`` and is filled.
    """
    qtype = as_qtype(qtype)
    shape = tuple(int(s) for s in shape)
    if qtype in FLOAT_TYPES:
        values = packed.contiguous().view(torch.uint8).view(FLOAT_TYPES[qtype]).reshape(shape)
        if out is None:
            return values.to(dtype)
        return out.copy_(values)
    kernel = KERNELS.get(qtype)
    if kernel is None:
        raise UnsupportedQuantType(qtype)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = packed.contiguous().view(torch.uint8).view(-1, type_size)
    n_blocks = blocks.shape[0]
    if n_blocks * block_size != _numel(shape):
        raise GGUFFormatError(f"{qtype.name} data holds {n_blocks * block_size} values, shape {shape} needs {_numel(shape)}")
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=packed.device)
    flat = out.view(n_blocks, block_size)
    step = n_blocks if packed.device.type != "cpu" else max(1, CPU_CHUNK_VALUES // block_size)
    for start in range(0, n_blocks, step):
        kernel(blocks[start:start + step], flat[start:start + step])
    return out


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
