"""Reading GGUF files: diffusion models for ComfyUI's own detection, and llama.cpp-style T5 encoders.

``read_gguf`` memory-maps the file (copy-on-write) with ``gguf.GGUFReader`` and returns a state dict
that does not copy tensor data: float tensors are torch views of the mapping, block-quantized ones are
``ops.PackedTensor`` wrappers over the mapped bytes with their logical shape. Logical shapes come
from the GGUF dimensions, or from ``comfy.gguf.orig_shape.<name>`` metadata, which converters write
for tensors they had to reshape (GGML allows four dimensions; WAN's ``patch_embedding`` has five).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import gguf
import numpy as np
import torch

from . import dequant, ops
from .errors import GGUFFormatError, UnsupportedModel

log = logging.getLogger(__name__)

QType = gguf.GGMLQuantizationType
ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."
#: Logical dtype of block-quantized tensors (WAN's native dtype; ComfyUI picks the compute dtype from it).
NOMINAL_DTYPE = torch.bfloat16
#: Non-float element types GGUF can hold (the reader returns them typed); kept as plain tensors.
PLAIN_TYPES = {QType.I8: torch.int8, QType.I16: torch.int16, QType.I32: torch.int32, QType.I64: torch.int64,
               QType.F64: torch.float64}
TEXT_ARCHS = {"t5", "t5encoder"}
OTHER_TEXT_ARCHS = {"llama", "qwen2", "qwen2vl", "qwen3", "qwen3vl", "gemma", "gemma2", "gemma3", "bert", "clip"}


@dataclass
class GGUFContents:
    """What ``read_gguf`` found: tensors by name, the architecture, and the metadata reader."""

    path: str
    arch: str | None
    tensors: dict[str, torch.Tensor]
    qtypes: Counter = field(default_factory=Counter)
    reader: gguf.GGUFReader | None = None

    def meta(self, name: str):
        """A metadata value (see ``field_value``)."""
        return field_value(self.reader, name)


def field_value(reader: gguf.GGUFReader | None, name: str):
    """A metadata value as a Python object (str, int, float, bool, bytes-like list), or None (also
    without a reader)."""
    f = reader.get_field(name) if reader is not None else None
    if f is None:
        return None
    try:
        return f.contents()
    except Exception as exc:  # a malformed field: report which one
        raise GGUFFormatError(f"GGUF metadata field '{name}' cannot be decoded: {exc}") from exc


def _orig_shape(reader: gguf.GGUFReader, name: str) -> tuple[int, ...] | None:
    f = reader.get_field(ORIG_SHAPE_KEY + name)
    if f is None:
        return None
    if not f.types or f.types[0] != gguf.GGUFValueType.ARRAY or f.types[-1] not in (
            gguf.GGUFValueType.INT32, gguf.GGUFValueType.INT64, gguf.GGUFValueType.UINT32, gguf.GGUFValueType.UINT64):
        raise GGUFFormatError(f"metadata '{ORIG_SHAPE_KEY}{name}' must be an integer array, got {f.types}")
    return tuple(int(v) for v in f.contents())


def _from_mmap(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # only a read-only mapping warns; ours is copy-on-write
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def read_gguf(path: str, *, nominal_dtype: torch.dtype = NOMINAL_DTYPE) -> GGUFContents:
    """Map ``path`` and build a copy-free state dict; raise UnsupportedQuantType naming a bad tensor."""
    try:
        # Copy-on-write mapping: tensors are views of the file's pages, and an in-place write anywhere
        # in ComfyUI lands in private memory instead of faulting on a read-only mapping.
        reader = gguf.GGUFReader(path, mode="c")
    except (ValueError, OSError) as exc:
        raise GGUFFormatError(f"{path}: not a readable GGUF file ({exc})") from exc
    arch = field_value(reader, "general.architecture")
    tensors: dict[str, torch.Tensor] = {}
    qtypes: Counter = Counter()
    for t in reader.tensors:
        qtype = t.tensor_type
        if qtype not in PLAIN_TYPES and not dequant.is_supported(qtype):
            raise dequant.UnsupportedQuantType(qtype, t.name)
        qtypes[qtype.name] += 1
        stored = tuple(int(d) for d in reversed(t.shape.tolist()))
        shape = _orig_shape(reader, t.name) or stored
        if _numel(shape) != _numel(stored):
            raise GGUFFormatError(f"tensor '{t.name}': original shape {shape} does not match stored shape {stored}")
        data = _from_mmap(t.data)
        if qtype in PLAIN_TYPES:
            value = data.reshape(shape)
        elif qtype in dequant.FLOAT_TYPES:
            value = data.view(torch.uint8).view(dequant.FLOAT_TYPES[qtype]).reshape(shape)
        else:
            value = ops.PackedTensor(data, qtype, shape, dtype=nominal_dtype)
            if len(shape) <= 1:  # 1-D (biases, norms): tiny, and norm layers expect plain tensors
                value = value.dequantize(torch.float32)
        tensors[t.name] = value
    log.info("GGUF %s: arch %s, tensor types %s", path, arch, dict(qtypes))
    return GGUFContents(path=path, arch=arch, tensors=tensors, qtypes=qtypes, reader=reader)


# --- diffusion models ------------------------------------------------------------------------------

def load_unet(path: str):
    """A ComfyUI MODEL (PackedPatcher) from a GGUF diffusion model, detected by ComfyUI itself."""
    return unet_from_contents(read_gguf(path))


def unet_from_contents(contents: GGUFContents):
    """Build the MODEL from ``read_gguf`` output; the tensors are used as they are, not copied."""
    import comfy.sd

    path = contents.path
    if contents.arch in TEXT_ARCHS or contents.arch in OTHER_TEXT_ARCHS:
        raise UnsupportedModel(f"{path} is a text model (GGUF architecture '{contents.arch}'), not a diffusion "
                               f"model: load it with a text encoder loader")
    model = comfy.sd.load_diffusion_model_state_dict(contents.tensors, model_options={"custom_operations": ops.PackedOps})
    if model is None:
        raise UnsupportedModel(f"ComfyUI could not detect the model type of {path} (GGUF architecture "
                               f"'{contents.arch}'); check that it is a diffusion model ComfyUI supports")
    patcher = ops.adopt_patcher(model)
    log.info("loaded %s: %s", path, ops.packed_summary(patcher.model))
    return patcher


# --- T5 / umt5 text encoders -----------------------------------------------------------------------

#: llama.cpp T5 encoder tensor names -> ComfyUI/HF T5 names (``{i}`` is the block index).
T5_NAMES = {
    "token_embd.weight": "shared.weight",
    "enc.output_norm.weight": "encoder.final_layer_norm.weight",
    "enc.blk.{i}.attn_norm.weight": "encoder.block.{i}.layer.0.layer_norm.weight",
    "enc.blk.{i}.attn_q.weight": "encoder.block.{i}.layer.0.SelfAttention.q.weight",
    "enc.blk.{i}.attn_k.weight": "encoder.block.{i}.layer.0.SelfAttention.k.weight",
    "enc.blk.{i}.attn_v.weight": "encoder.block.{i}.layer.0.SelfAttention.v.weight",
    "enc.blk.{i}.attn_o.weight": "encoder.block.{i}.layer.0.SelfAttention.o.weight",
    "enc.blk.{i}.attn_rel_b.weight": "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight",
    "enc.blk.{i}.ffn_norm.weight": "encoder.block.{i}.layer.1.layer_norm.weight",
    "enc.blk.{i}.ffn_gate.weight": "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight",
    "enc.blk.{i}.ffn_up.weight": "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight",
    "enc.blk.{i}.ffn_down.weight": "encoder.block.{i}.layer.1.DenseReluDense.wo.weight",
}
_T5_PATTERNS = [(re.compile("^" + re.escape(src).replace(r"\{i\}", r"(\d+)") + "$"), dst) for src, dst in T5_NAMES.items()]


def t5_to_comfy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename llama.cpp T5-encoder tensors to ComfyUI's T5 keys (non-gated FFNs get ``wi``)."""
    gated = any(".ffn_gate." in k for k in tensors)
    out: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        for pattern, dst in _T5_PATTERNS:
            m = pattern.match(name)
            if m:
                new = dst.format(i=m.group(1)) if m.groups() else dst
                if not gated:
                    new = new.replace(".wi_1.", ".wi.")
                out[new] = value
                break
        else:
            if name in ("spiece_model",) or name.startswith(("encoder.", "shared.")):
                out[name] = value  # already in ComfyUI naming
            elif name.startswith(("dec.", "output.")):
                continue  # decoder / LM head of a full T5: the encoder does not use them
            else:
                raise GGUFFormatError(f"unexpected tensor '{name}' in a T5 encoder GGUF")
    return out


def sentencepiece_from_metadata(contents: GGUFContents) -> bytes:
    """Rebuild a sentencepiece model proto from ``tokenizer.ggml.*`` metadata (llama.cpp's T5 layout)."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as spm_pb2
    except ImportError as exc:
        raise GGUFFormatError("rebuilding the tokenizer needs the 'sentencepiece' and 'protobuf' packages") from exc
    tokens = contents.meta("tokenizer.ggml.tokens")
    if not tokens:
        raise GGUFFormatError(f"{contents.path}: no tokenizer: neither a 'spiece_model' tensor nor "
                              f"'tokenizer.ggml.tokens' metadata; use a GGUF converted with its tokenizer")
    model = contents.meta("tokenizer.ggml.model")
    if model not in ("t5", "llama"):
        raise GGUFFormatError(f"{contents.path}: tokenizer model '{model}' is not a sentencepiece tokenizer")
    scores = contents.meta("tokenizer.ggml.scores")
    types = contents.meta("tokenizer.ggml.token_type")
    scores = scores or [0.0] * len(tokens)
    types = types or [1] * len(tokens)
    proto = spm_pb2.ModelProto()
    for token, score, kind in zip(tokens, scores, types):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = token, float(score), int(kind)
    spec = proto.trainer_spec
    spec.model_type = spm_pb2.TrainerSpec.UNIGRAM if model == "t5" else spm_pb2.TrainerSpec.BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = any(int(k) == spm_pb2.ModelProto.SentencePiece.BYTE for k in types)
    # sentencepiece insists that unk_id names the UNKNOWN piece and that special ids differ.
    unknown = [i for i, k in enumerate(types) if int(k) == spm_pb2.ModelProto.SentencePiece.UNKNOWN]
    ids = {}
    for attr, key, default in (("unk_id", "unk_token_id", unknown[0] if unknown else 2),
                               ("eos_id", "eos_token_id", 1), ("pad_id", "padding_token_id", 0)):
        value = contents.meta(f"tokenizer.ggml.{key}")
        ids[attr] = int(default if value is None else value)
    if unknown:
        ids["unk_id"] = unknown[0]
    bos = contents.meta("tokenizer.ggml.bos_token_id")  # T5 has no BOS; some converters copy EOS here
    ids["bos_id"] = int(bos) if bos is not None and int(bos) not in ids.values() else -1
    for attr, value in ids.items():
        setattr(spec, attr, value)
    norm = proto.normalizer_spec
    norm.name = "identity"
    charsmap = contents.meta("tokenizer.ggml.precompiled_charsmap")
    if charsmap:
        norm.name = "nmt_nfkc"
        norm.precompiled_charsmap = bytes(np.asarray(charsmap, dtype=np.uint8).tobytes())
    add_prefix = contents.meta("tokenizer.ggml.add_space_prefix")
    remove_ws = contents.meta("tokenizer.ggml.remove_extra_whitespaces")
    norm.add_dummy_prefix = True if add_prefix is None else bool(add_prefix)
    norm.remove_extra_whitespaces = True if remove_ws is None else bool(remove_ws)
    norm.escape_whitespaces = True
    return proto.SerializeToString()


def read_t5_encoder(path: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A T5/umt5 encoder GGUF as (ComfyUI-named state dict, sentencepiece proto as a uint8 tensor)."""
    contents = read_gguf(path)
    if contents.arch not in TEXT_ARCHS:
        raise UnsupportedModel(f"{path}: GGUF architecture '{contents.arch}' is not a T5/umt5 encoder "
                               f"(expected one of {sorted(TEXT_ARCHS)})")
    sd = t5_to_comfy(contents.tensors)
    spiece = sd.pop("spiece_model", None)
    if spiece is not None:  # stored as I8 (GGUF has no U8 type) or as small floats
        spiece = spiece.contiguous().view(torch.uint8) if spiece.dtype == torch.int8 else spiece.to(torch.uint8)
        log.info("%s: tokenizer from the 'spiece_model' tensor", path)
    else:
        spiece = torch.frombuffer(bytearray(sentencepiece_from_metadata(contents)), dtype=torch.uint8)
    return sd, spiece


def load_t5_encoder(path: str):
    """A ComfyUI CLIP for WAN from a T5/umt5 encoder GGUF; quantized weights stay packed."""
    from . import text_encoder

    sd, spiece = read_t5_encoder(path)
    clip = text_encoder.load_umt5(sd, tokenizer_proto=spiece, model_options={"custom_operations": ops.PackedOps})
    clip.patcher = ops.adopt_patcher(clip.patcher)
    return clip
