"""Full-size stand-ins for the five production files, written in minutes, random weights, no downloads.

Names, dtypes and GGML types come from the layout fixtures (tests/data/layouts, tests/layouts.py).

* UNETs (high and low noise): WAN 2.2 I2V A14B layout (dim 5120, ffn 13824, 40 heads, 40 blocks,
  in_dim 36) as GGUF in the community Q5_0 mix: block ``*.weight`` Q5_0, ``ffn.2`` Q5_1, embeddings
  and head F16, norms/biases/modulation F32, the 5-D ``patch_embedding`` F32 with five dimensions as
  city96's ``fix_5d_tensors.py`` re-inserts it. Quant blocks are random bytes with finite fp16 scales
  chosen so values have a fan-in scaled spread; tensors are streamed to disk one at a time.
* umt5-xxl ``fp8_e4m3fn`` "scaled" safetensors with ComfyUI's key names: fp8 Linear weights, a
  per-weight ``scale_weight``, the ``scaled_fp8`` marker, fp16 ``shared``/norms/relative biases,
  ``spiece_model``.
* Wan 2.1 VAE at its real dims (dim 96), built with ComfyUI's own class.
* LightX2V I2V rank-64 LoRA (bf16) with the published file's key families (``diffusion_model.blocks.N.``
  ``<linear>.lora_down/lora_up.weight`` and ``.diff_b``, ``<norm>.diff``, ``blocks.N.diff_m``; ``head.head``,
  text/time embeddings, ``time_projection.1``; ``cross_attn.k_img/v_img``, ``norm_k_img`` and ``img_emb``
  that WAN 2.2 lacks: ComfyUI logs them as not loaded). 740,043,320 B, 0.28% over the published size
  (the fixture says why that is open).

``python -m bench.realsize_weights OUT_DIR [--blocks N] [--dim D --ffn F --heads H] [--only NAME...]``;
reduced dims serve the CPU smoke runs. An index ``realsize_weights.json`` (sizes, sha256) is written.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import gguf
import numpy as np

from tests import layouts  # before ComfyUI's own ``tests`` package shadows ours
from tests.tiny_weights import STAND_INS, _fill, _sha256, build_tokenizer

QT = gguf.GGMLQuantizationType
INDEX_NAME = "realsize_weights.json"
SPEC_VERSION = 2

#: Production file names (model_fetch's default manifest, as tests/tiny_weights.py lists them) -> folder.
FILES = dict(zip(("unet_high", "unet_low", "umt5", "vae", "lora"),
                 ((folder, name) for name, (folder, _) in STAND_INS.items())))
#: fp8 stand-ins of the same UNETs (Comfy-Org's "fp8_scaled" naming), for the GPU benchmark's baseline.
FP8_FILES = {
    "unet_high_fp8": ("diffusion_models", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"),
    "unet_low_fp8": ("diffusion_models", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"),
}
#: Quant mixes: type of block ``*.weight`` matrices, and of ``ffn.2`` (down projection).
MIXES = {"Q5_0": (QT.Q5_0, QT.Q5_1), "Q4_K": (QT.Q4_K, QT.Q6_K)}


@dataclass(frozen=True)
class Dims:
    dim: int = 5120
    ffn: int = 13824
    heads: int = 40
    blocks: int = 40
    in_dim: int = 36
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    lora_rank: int = 64
    t5_layers: int = 24
    t5_ff: int = 10240
    t5_heads: int = 64
    t5_vocab: int = 256384
    vae_dim: int = 96


# --- quant blocks ---------------------------------------------------------------------------------

#: qtype -> (byte offsets of fp16 fields, value std per unit of ``d`` for random quants, dmin/m factor)
_SCALES = {
    QT.Q5_0: ((0,), 9.2),
    QT.Q5_1: ((0, 2), 9.2),
    QT.Q8_0: ((0,), 74.0),
    QT.Q4_K: ((0, 2), 150.0),
    QT.Q6_K: ((208,), 1370.0),
}


def random_blocks(qtype: QT, rows: int, cols: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """Random GGML blocks for a ``rows x cols`` matrix whose values have roughly ``std`` spread.

    Quant bytes are random; the fp16 ``d`` (and ``m``/``dmin``, set to centre the values) are finite."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if cols % block:
        raise ValueError(f"{qtype.name} needs rows of whole {block}-value blocks, got {cols}")
    offsets, spread = _SCALES[qtype]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    d = np.float16(std / spread)
    data[..., offsets[0]:offsets[0] + 2] = np.frombuffer(d.tobytes(), np.uint8)
    if qtype == QT.Q5_1:  # value = d*q + m, q in 0..31
        data[..., 2:4] = np.frombuffer(np.float16(-15.5 * float(d)).tobytes(), np.uint8)
    elif qtype == QT.Q4_K:  # value = d*sc*q - dmin*m
        data[..., 2:4] = np.frombuffer(np.float16(7.5 * float(d)).tobytes(), np.uint8)
    return data.reshape(rows, -1)


# --- UNET ------------------------------------------------------------------------------------------

def _import_comfy(comfyui: Path):
    sys.path.insert(0, str(comfyui)) if str(comfyui) not in sys.path else None
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops
    import comfy.text_encoders.t5
    return comfy


def unet_layout(comfy, dims: Dims) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every WAN 2.2 I2V UNET tensor, from ComfyUI's class on the meta device."""
    import torch

    model = comfy.ldm.wan.model.WanModel(
        model_type="t2v", dim=dims.dim, ffn_dim=dims.ffn, num_heads=dims.heads, num_layers=dims.blocks,
        in_dim=dims.in_dim, out_dim=dims.out_dim, text_dim=dims.text_dim, freq_dim=dims.freq_dim,
        operations=comfy.ops.disable_weight_init, device="meta", dtype=torch.float16)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def unet_qtype(name: str, shape: tuple[int, ...], mix: str) -> QT:
    """The production file's type for this tensor (its fixture), the quantized ones per ``mix``:
    block matrices ``main``, ``ffn.2`` one notch up, the rest unquantized as the fixture says."""
    main, down = MIXES[mix]
    qtype = _unet_types()[re.sub(r"^blocks\.\d+\.", "blocks.0.", name)]
    return {"Q5_0": main, "Q5_1": down}.get(qtype, QT[qtype])


@cache
def _unet_types() -> dict[str, str]:
    """Type per tensor name of the UNET fixture, block 0 standing for every block."""
    return {name: qtype for name, (qtype, _) in layouts.expand(layouts.UNET_HIGH, {"blocks": 1}).items()}


def _plain(shape: tuple[int, ...], dtype, std: float, rng: np.random.Generator, mean: float = 0.0) -> np.ndarray:
    return (mean + std * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)


def unet_tensor(name: str, shape: tuple[int, ...], qtype: QT, rng: np.random.Generator) -> np.ndarray:
    """Random data for one tensor (uint8 blocks for quantized types)."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if qtype in (QT.F32, QT.F16):
        dtype = np.float32 if qtype == QT.F32 else np.float16
        if len(shape) == 1:
            return _plain(shape, dtype, 0.05, rng, 1.0 if "norm" in name else 0.0)
        if "modulation" in name:
            return _plain(shape, dtype, 0.1, rng)
        return _plain(shape, dtype, fan_in ** -0.5, rng)
    return random_blocks(qtype, int(np.prod(shape[:-1])), shape[-1], fan_in ** -0.5, rng)


def write_unet_gguf(path: Path, layout: list[tuple[str, tuple[int, ...]]], mix: str, seed: int) -> None:
    """Stream a WAN UNET GGUF to ``path`` (arch ``wan``), one tensor in memory at a time."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path=None, arch="wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{mix}" if mix != "Q4_K" else "MOSTLY_Q4_K_M"])
    plan = []
    for name, shape in layout:
        qtype = unet_qtype(name, shape, mix)
        if qtype in (QT.F32, QT.F16):
            nbytes = int(np.prod(shape)) * (4 if qtype == QT.F32 else 2)
            writer.add_tensor_info(name, shape, np.float32 if qtype == QT.F32 else np.float16, nbytes)
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            byte_shape = (*shape[:-1], shape[-1] // block * size)
            writer.add_tensor_info(name, byte_shape, np.uint8, int(np.prod(byte_shape)), raw_dtype=qtype)
        plan.append((name, shape, qtype))
    _stream_gguf(writer, path, (unet_tensor(n, s, q, rng) for n, s, q in plan))


def _stream_gguf(writer: gguf.GGUFWriter, path: Path, arrays: Iterable[np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".part")
    writer.write_header_to_file(path=str(tmp))
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for array in arrays:
        writer.write_tensor_data(np.ascontiguousarray(array))
    writer.close()
    tmp.replace(path)


def fp8_unet_items(layout: list[tuple[str, tuple[int, ...]]], seed: int) -> list:
    """The same UNET as ComfyUI's "fp8_scaled" files: block matrices e4m3fn with a per-weight
    ``scale_weight``, the ``scaled_fp8`` marker, everything else fp16 (norms, modulation: float32)."""
    rng = np.random.default_rng(seed)
    items = []
    for name, shape in layout:
        qtype = unet_qtype(name, shape, "Q5_0")
        if qtype not in (QT.F32, QT.F16):
            items += fp8_scaled(name, shape, rng)
        else:
            items.append((name, qtype.name, shape, lambda n=name, s=shape, q=qtype: unet_tensor(n, s, q, rng).tobytes()))
    items.append(("scaled_fp8", "F8_E4M3", (0,), lambda: b""))
    return items


# --- safetensors, streamed -------------------------------------------------------------------------

_ST_DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "U8": 1}


def write_safetensors(path: Path, items: list[tuple[str, str, tuple[int, ...], Callable[[], bytes]]],
                      metadata: dict[str, str] | None = None) -> None:
    """Write ``(name, dtype, shape, make_bytes)`` items as safetensors without holding them all."""
    header, offset = {}, 0
    for name, dtype, shape, _ in items:
        n = int(np.prod(shape)) * _ST_DTYPES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, _dtype, _shape, make in items:
            data = make()
            if len(data) != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                raise AssertionError(f"{name}: wrong byte count")
            f.write(data)
    tmp.replace(path)


def _bf16(a: np.ndarray) -> bytes:
    """float32 -> bfloat16 bytes (truncation)."""
    return (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def _fp8(shape: tuple[int, ...], rng: np.random.Generator) -> bytes:
    """Random e4m3fn bytes with |v| < 2 (exponent's top bit clear: never NaN)."""
    return (rng.integers(0, 256, size=shape, dtype=np.uint8) & np.uint8(0b1011_1111)).tobytes()


def fp8_scaled(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> list:
    """A "scaled fp8" matrix as ComfyUI's files hold it: e4m3fn values plus a float32 ``scale_weight``."""
    scale = np.float32(shape[1] ** -0.5)
    return [(name, "F8_E4M3", shape, lambda: _fp8(shape, rng)),
            (name[: -len("weight")] + "scale_weight", "F32", (), lambda: scale.tobytes())]


# --- umt5 / VAE / LoRA -----------------------------------------------------------------------------

def umt5_items(comfy, dims: Dims, seed: int) -> list:
    """umt5-xxl in the layout of its fixture: fp8 Linear weights with a float32 ``scale_weight`` each,
    F16 embeddings/norms/relative biases, the ``spiece_model`` tokenizer, the ``scaled_fp8`` marker."""
    rng = np.random.default_rng(seed)
    proto = build_tokenizer(512)
    layout = layouts.expand(layouts.UMT5, dict(d_model=dims.text_dim, layers=dims.t5_layers, heads=dims.t5_heads, d_kv=64,
                                               d_ff=dims.t5_ff, vocab=dims.t5_vocab, spiece_bytes=len(proto)))
    items = []
    for name, (dtype, shape) in layout.items():
        if dtype == "F8_E4M3" and name != "scaled_fp8":
            items += fp8_scaled(name, shape, rng)
        elif name == "shared.weight":
            items.append((name, "F16", shape, lambda s=shape: _plain(s, np.float16, 1.0, rng).tobytes()))
        elif name.endswith(".scale_weight"):
            continue  # written with its weight by fp8_scaled
        elif name == "spiece_model":
            items.append((name, "U8", shape, lambda: proto))
        elif name == "scaled_fp8":
            items.append((name, "F8_E4M3", shape, lambda: b""))
        else:  # norms, relative attention biases
            mean = 1.0 if "layer_norm" in name else 0.0
            items.append((name, dtype, shape, lambda s=shape, m=mean: _plain(s, np.float16, 0.05, rng, m).tobytes()))
    return items


def vae_items(comfy, dims: Dims, seed: int) -> list:
    import torch

    vae = comfy.ldm.wan.vae.WanVAE(dim=dims.vae_dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], image_channels=3)
    _fill(vae, seed)
    sd = {k: v.detach().to(torch.float16).contiguous().numpy() for k, v in vae.state_dict().items()}
    return [(k, "F16", v.shape, lambda v=v: v.tobytes()) for k, v in sd.items()]


def lora_items(dims: Dims, seed: int) -> list:
    """The LightX2V I2V rank-64 LoRA in the layout of its fixture (bf16, no alpha; families WAN 2.2 has
    no target for included)."""
    rng = np.random.default_rng(seed)
    layout = layouts.expand(layouts.LORA, dict(dim=dims.dim, ffn=dims.ffn, blocks=dims.blocks, rank=dims.lora_rank,
                                               out_dim=dims.out_dim, text_dim=dims.text_dim, freq_dim=dims.freq_dim))
    items = []
    for name, (_, shape) in layout.items():
        if name.endswith(".lora_down.weight"):
            std = shape[1] ** -0.5
        elif name.endswith(".lora_up.weight"):
            std = 0.2 * dims.lora_rank ** -0.5
        else:
            std = 0.01
        items.append((name, "BF16", shape, lambda s=shape, d=std: _bf16(d * rng.standard_normal(s, dtype=np.float32))))
    return items


# --- driver ----------------------------------------------------------------------------------------

def generate(out_dir: Path, comfyui: Path, dims: Dims = Dims(), only: Iterable[str] | None = None,
             mix: str = "Q5_0", log: Callable[[str], None] = print) -> dict:
    """Write the files (all, or the keys in ``only``) into ``out_dir``; return the index."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    if index.get("dims") != asdict(dims) or index.get("spec_version") != SPEC_VERSION or index.get("mix") != mix:
        index = {"spec_version": SPEC_VERSION, "dims": asdict(dims), "mix": mix, "files": {}}
    comfy = _import_comfy(Path(comfyui))
    makers = {
        "unet_high": lambda p: write_unet_gguf(p, unet_layout(comfy, dims), mix, 101),
        "unet_low": lambda p: write_unet_gguf(p, unet_layout(comfy, dims), mix, 202),
        "umt5": lambda p: write_safetensors(p, umt5_items(comfy, dims, 404)),
        "vae": lambda p: write_safetensors(p, vae_items(comfy, dims, 303)),
        "lora": lambda p: write_safetensors(p, lora_items(dims, 505)),
        "unet_high_fp8": lambda p: write_safetensors(p, fp8_unet_items(unet_layout(comfy, dims), 101)),
        "unet_low_fp8": lambda p: write_safetensors(p, fp8_unet_items(unet_layout(comfy, dims), 202)),
    }
    for key in only or FILES:
        folder, name = {**FILES, **FP8_FILES}[key]
        path = out_dir / name
        if name in index["files"] and path.is_file() and path.stat().st_size == index["files"][name]["size"]:
            continue
        t0 = time.monotonic()
        makers[key](path)
        index["files"][name] = {"folder": folder, "size": path.stat().st_size, "sha256": _sha256(path),
                                "seconds": round(time.monotonic() - t0, 1)}
        index_path.write_text(json.dumps(index, indent=2))
        log(f"{name}: {path.stat().st_size / 2**30:.2f} GiB in {index['files'][name]['seconds']} s")
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--comfyui", type=Path, default=None)
    p.add_argument("--only", nargs="*", choices=[*FILES, *FP8_FILES])
    p.add_argument("--mix", choices=list(MIXES), default="Q5_0")
    for field in ("dim", "ffn", "heads", "blocks", "t5_layers", "t5_ff", "t5_heads", "t5_vocab", "vae_dim", "lora_rank"):
        p.add_argument("--" + field.replace("_", "-"), type=int, default=getattr(Dims(), field))
    args = p.parse_args(argv)
    if args.comfyui is None:
        from worker import comfyui_home

        args.comfyui = comfyui_home.ensure(clone=False)
    dims = Dims(**{f: getattr(args, f) for f in ("dim", "ffn", "heads", "blocks", "t5_layers", "t5_ff", "t5_heads",
                                                  "t5_vocab", "vae_dim", "lora_rank")})
    index = generate(args.out_dir, args.comfyui, dims, args.only, args.mix)
    print(json.dumps({"dir": str(args.out_dir), "files": sorted(index["files"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
