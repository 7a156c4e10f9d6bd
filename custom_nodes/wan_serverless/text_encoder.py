"""umt5 / T5 encoders of any size: the config is read off the weights, not a bundled JSON.

ComfyUI's stock ``CLIPLoader(type=wan)`` only recognises a 24-layer XXL encoder and builds it
from ``umt5_config_xxl.json``; this module derives ``d_model``, layers, heads, ``d_kv``, ``d_ff``
and the vocabulary from tensor shapes, so the same code loads the production encoder and the
tiny one our tests use. The sentencepiece model comes from the ``spiece_model`` tensor
(ComfyUI's repackaged files) or from GGUF tokenizer metadata (see ``loader.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch

import comfy.sd
import comfy.sd1_clip
import comfy.text_encoders.sd3_clip
import comfy.text_encoders.t5
import comfy.text_encoders.wan
import comfy.utils

from .errors import UnsupportedTextEncoder

log = logging.getLogger(__name__)

_Q_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"


class TextEncoderFormatError(UnsupportedTextEncoder):
    """The weights are not a T5/umt5 encoder this loader understands (``text_encoder_unsupported``)."""


def strip_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop any wrapper prefix (``text_encoders.umt5xxl.transformer.`` and the like)."""
    prefixes = {k[: -len(_Q_KEY)] for k in sd if k.endswith(_Q_KEY)}
    if not prefixes:
        raise TextEncoderFormatError(f"no '{_Q_KEY}' tensor: not a T5/umt5 encoder")
    prefix = min(prefixes, key=len)
    if not prefix:
        return dict(sd)
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    for k in ("spiece_model", "scaled_fp8"):
        if k in sd and k not in out:
            out[k] = sd[k]
    return out


def derive_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """A ComfyUI T5 config dict derived from a (prefix-free) encoder state dict."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise TextEncoderFormatError(f"missing tensor '{key}'")
        return tuple(sd[key].shape)

    embed = "shared.weight" if "shared.weight" in sd else "encoder.embed_tokens.weight"
    vocab, d_model = shape(embed)
    inner = shape(_Q_KEY)[0]
    num_heads = shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")[1]
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.block\.(\d+)\.", k))}
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sd
    d_ff = shape("encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight")[0]
    per_layer_bias = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in sd
    return {
        "d_ff": d_ff,
        "d_kv": inner // num_heads,
        "d_model": d_model,
        "dense_act_fn": "gelu_pytorch_tanh" if gated else "relu",
        "is_gated_act": gated,
        "model_type": "umt5" if per_layer_bias or len(layers) == 1 else "t5",
        "num_heads": num_heads,
        "num_layers": max(layers) + 1,
        "vocab_size": vocab,
    }


def _clip_target(config: dict, dtype_t5: torch.dtype | None, quant: dict | None):
    """ClipTarget-like object: WAN's tokenizer, and an encoder class built from ``config``."""

    class DerivedT5(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options=None):
            model_options = model_options or {}
            super().__init__(device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config=dict(config),
                             dtype=dtype, special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                             enable_attention_masks=True, zero_out_masked=True, model_options=model_options)

    class DerivedWanTE(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options=None):
            model_options = model_options or {}
            if quant is not None:
                model_options = {**model_options, "quantization_metadata": quant}
            super().__init__(device=device, dtype=dtype_t5 or dtype, model_options=model_options, name="umt5xxl",
                             clip_model=DerivedT5)

    class Target:
        params: dict = {}
        clip = DerivedWanTE
        tokenizer = comfy.text_encoders.wan.WanT5Tokenizer

    return Target


def load_umt5(sd: dict[str, torch.Tensor], tokenizer_proto: torch.Tensor | None = None,
              model_options: dict | None = None, metadata: Mapping[str, str] | None = None) -> comfy.sd.CLIP:
    """Build a ComfyUI CLIP object (tokenizer + encoder) for WAN from an encoder state dict.

    ``metadata`` is the file's header metadata (safetensors ``__metadata__``). As in ComfyUI's
    ``load_clip``, its ``_quantization_metadata`` (the newer scaled-fp8 layout: per-layer
    ``weight_scale``) or else a ``scaled_fp8`` marker tensor (the older layout: ``scale_weight``)
    turns into per-layer ``comfy_quant`` entries before the prefix is stripped; dropping the
    metadata would load fp8 weights unscaled."""
    model_options = dict(model_options or {})
    if model_options.get("custom_operations") is None:
        sd, _ = comfy.utils.convert_old_quants(dict(sd), model_prefix="", metadata=dict(metadata or {}))
    sd = strip_prefix(sd)
    spiece = sd.pop("spiece_model", None)
    if tokenizer_proto is not None:
        spiece = tokenizer_proto
    if spiece is None:
        raise TextEncoderFormatError("no tokenizer: neither a 'spiece_model' tensor nor GGUF tokenizer metadata")
    config = derive_config(sd)
    log.info("umt5 config from weights: %s", config)
    detected = comfy.text_encoders.sd3_clip.t5_xxl_detect(sd)
    target = _clip_target(config, detected.get("dtype_t5"), detected.get("t5_quantization_metadata"))
    parameters = comfy.utils.calculate_parameters(sd)
    return comfy.sd.CLIP(target, tokenizer_data={"spiece_model": spiece}, parameters=parameters, state_dict=[sd],
                         model_options=model_options)
