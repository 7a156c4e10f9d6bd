"""Tiny WAN 2.2 I2V weights, built with ComfyUI's own model classes, for real runs on CPU.

ComfyUI 0.8.0 derives every WAN dimension from tensor shapes, so a model with the
production layout and tiny sizes runs through the same code as the 14B one:

* UNETs (high- and low-noise): WAN 2.1 layout, dim 128 (one 128-wide head), in_dim 36
  (16 latent + 4 mask + 16 image channels, as in WAN 2.2 I2V A14B), 2 blocks, no img_emb.
  Written as fp16 ``.safetensors`` and as GGUF (F16, Q8_0, Q5_0) with the ``gguf`` writer,
  the 5-D ``patch_embedding.weight`` kept F32 as the usual converters store it.
* VAE: Wan 2.1 layout with dim 8 (ComfyUI reads it from ``decoder.head.0.gamma``).
* umt5: 2 layers, d_model 4096 (the width WAN's ``text_embedding`` expects), a
  sentencepiece vocabulary of 512 trained here, stored in ``spiece_model`` as ComfyUI's
  repackaged encoders do. Also written as GGUF (Q8_0) in llama.cpp's T5-encoder layout
  (arch ``t5encoder``, ``enc.blk.N.attn_q`` names) with the tokenizer as ``tokenizer.ggml.*``
  metadata and no ``spiece_model`` tensor, as llama.cpp converters produce it.
* LoRA: LightX2V layout (``diffusion_model.<module>.lora_down/lora_up/alpha`` plus ``diff_b``).

Run ``python -m tests.tiny_weights OUT_DIR`` (ComfyUI found as ``worker.comfyui_home`` does);
an index ``tiny_weights.json`` with sizes and sha256 is written beside the files. Output is
deterministic and cached: a second call with the same SPEC_VERSION does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

SPEC_VERSION = 4
INDEX_NAME = "tiny_weights.json"

UNET = dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=36, out_dim=16, text_dim=4096, freq_dim=256)
VAE_DIM = 8
UMT5 = dict(d_model=4096, d_kv=32, num_heads=2, d_ff=128, num_layers=2, vocab_size=512)
LORA_RANK = 4
GGUF_UNET_TYPES = ("F16", "Q8_0", "Q5_0")
UMT5_GGUF_TYPE = "Q8_0"

FILES = {
    "unet_high": "wan22_i2v_high_noise_tiny.safetensors",
    "unet_low": "wan22_i2v_low_noise_tiny.safetensors",
    "vae": "wan21_vae_tiny.safetensors",
    "umt5": "umt5_tiny.safetensors",
    "lora": "lightx2v_tiny_lora.safetensors",
    "umt5_gguf": f"umt5_tiny_{UMT5_GGUF_TYPE}.gguf",
}


def gguf_name(stage: str, qtype: str) -> str:
    """File name of a tiny GGUF UNET, e.g. ``wan22_i2v_high_noise_tiny_Q5_0.gguf``."""
    return f"wan22_i2v_{stage}_noise_tiny_{qtype}.gguf"


# The production WAN 2.2 set (model_fetch's default manifest) and the tiny file standing in for each,
# so the real workflow runs unchanged on tiny weights.
STAND_INS = {
    "wan2.2_i2v_high_noise_14B_Q5_0.gguf": ("diffusion_models", "wan22_i2v_high_noise_tiny_Q5_0.gguf"),
    "wan2.2_i2v_low_noise_14B_Q5_0.gguf": ("diffusion_models", "wan22_i2v_low_noise_tiny_Q5_0.gguf"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("text_encoders", "umt5_tiny.safetensors"),
    "wan_2.1_vae.safetensors": ("vae", "wan21_vae_tiny.safetensors"),
    "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors": ("loras", "lightx2v_tiny_lora.safetensors"),
}


def stand_in_mirror(tiny_dir: Path, mirror_dir: Path, base_url: str | None = None) -> list[dict]:
    """Put each tiny stand-in under its production name in ``mirror_dir`` (hard link, else copy) and
    return manifest entries for it, served from ``base_url`` (or ``file://`` when None), with sha256."""
    import os
    import shutil

    index = read_index(tiny_dir)
    if index is None:
        raise FileNotFoundError(f"no tiny weights in {tiny_dir}: run python -m tests.tiny_weights {tiny_dir}")
    mirror_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for prod, (folder, tiny) in STAND_INS.items():
        dest = mirror_dir / prod
        if not dest.exists():
            try:
                os.link(tiny_dir / tiny, dest)
            except OSError:
                shutil.copyfile(tiny_dir / tiny, dest)
        url = f"{base_url.rstrip('/')}/{prod}" if base_url else dest.resolve().as_uri()
        entries.append({"name": prod, "directory": folder, "url": url, "hash": index["files"][tiny]["sha256"],
                        "size": index["files"][tiny]["size"]})
    return entries


def _import_comfy(comfyui_dir: Path):
    if str(comfyui_dir) not in sys.path:
        sys.path.insert(0, str(comfyui_dir))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # weights are built on CPU whatever the machine has
    import comfy.ops
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.text_encoders.t5
    return comfy


def _fill(module, seed: int, gain: float = 1.0) -> None:
    """Deterministic init: fan-in scaled normals for weights, ones/zeros for norms, small biases."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("gamma",) or (p.ndim == 1 and "norm" in name and leaf == "weight"):
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=gen))
            elif p.ndim <= 1 or leaf == "bias":
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            elif "modulation" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(gain * torch.randn(p.shape, generator=gen) / fan_in**0.5)


def build_unet(comfy, seed: int):
    import torch

    model = comfy.ldm.wan.model.WanModel(model_type="t2v", operations=comfy.ops.disable_weight_init, dtype=torch.float32, **UNET)
    _fill(model, seed)
    return {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}


def build_vae(comfy, seed: int):
    import torch

    vae = comfy.ldm.wan.vae.WanVAE(dim=VAE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], image_channels=3)
    _fill(vae, seed)
    return {k: v.detach().to(torch.float16).contiguous() for k, v in vae.state_dict().items()}


CORPUS_WORDS = (
    "a cat walks slowly across the street at sunset while the camera pans left and right "
    "the woman smiles and turns her head wind moves the trees a car drives through rain "
    "cinematic lighting close up shot of a dog running on the beach waves crash soft focus "
    "blurry low quality static frame overexposed worst quality jpeg artifacts ugly deformed "
    "un gato camina lentamente una mujer sonríe le chat marche lentement 猫が歩く 一只猫在走路"
).split()


def build_tokenizer(vocab_size: int) -> bytes:
    """A sentencepiece unigram model with umt5's special ids (pad 0, eos 1, unk 2) and byte fallback."""
    import random

    import sentencepiece as spm

    rng = random.Random(1234)
    sentences = [" ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(4, 16))) for _ in range(3000)]
    sentences.append("".join(chr(c) for c in range(33, 127)))
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=out, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False,
        num_threads=1, minloglevel=2, character_coverage=1.0,
    )
    return out.getvalue()


def build_umt5(comfy, seed: int):
    import numpy as np
    import torch

    cfg = {"d_ff": UMT5["d_ff"], "d_kv": UMT5["d_kv"], "d_model": UMT5["d_model"], "dense_act_fn": "gelu_pytorch_tanh",
           "is_gated_act": True, "model_type": "umt5", "num_heads": UMT5["num_heads"], "num_layers": UMT5["num_layers"],
           "vocab_size": UMT5["vocab_size"]}
    model = comfy.text_encoders.t5.T5(cfg, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    _fill(model, seed)
    with torch.no_grad():  # embeddings of unit scale, like a trained T5's
        model.shared.weight.copy_(torch.randn(model.shared.weight.shape, generator=torch.Generator().manual_seed(seed + 1)))
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    proto = build_tokenizer(UMT5["vocab_size"])
    sd["spiece_model"] = torch.from_numpy(np.frombuffer(proto, dtype=np.uint8).copy())
    return sd


def build_lora(unet_sd: dict, seed: int):
    """LightX2V-style LoRA over every Linear of the blocks, plus a few bias diffs."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, w in sorted(unet_sd.items()):
        if not key.startswith("blocks.") or not key.endswith(".weight") or w.ndim != 2:
            continue
        base = "diffusion_model." + key[: -len(".weight")]
        out_f, in_f = w.shape
        out[f"{base}.lora_down.weight"] = (torch.randn(LORA_RANK, in_f, generator=gen) / in_f**0.5).to(torch.bfloat16)
        out[f"{base}.lora_up.weight"] = (0.5 * torch.randn(out_f, LORA_RANK, generator=gen) / LORA_RANK**0.5).to(torch.bfloat16)
        out[f"{base}.alpha"] = torch.tensor(float(LORA_RANK))
        bias = key[: -len(".weight")] + ".bias"
        if bias in unet_sd and ".ffn." in key:
            out[f"{base}.diff_b"] = (0.05 * torch.randn(unet_sd[bias].shape, generator=gen)).to(torch.bfloat16)
    return out


def write_unet_gguf(path: Path, sd: dict, qtype_name: str) -> None:
    """Write a WAN UNET as GGUF the way community converters do (arch ``wan``, small and 1-D tensors F32)."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[qtype_name]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    writer = gguf.GGUFWriter(path=None, arch="wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype_name}", gguf.LlamaFileType.MOSTLY_F16))
    for key, tensor in sd.items():
        data = tensor.float().numpy()
        wanted = qtype
        if data.ndim == 1 or data.size <= 1024 or ".modulation" in key or data.ndim > 4:
            wanted = gguf.GGMLQuantizationType.F32
        elif data.shape[-1] % block:
            wanted = gguf.GGMLQuantizationType.F16
        writer.add_tensor(key, np.ascontiguousarray(gguf.quants.quantize(data, wanted)), raw_dtype=wanted)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


#: ComfyUI T5 key patterns -> llama.cpp T5-encoder tensor names (``{i}`` is the block index).
T5_GGUF_NAMES = {
    "shared.weight": "token_embd.weight",
    "encoder.final_layer_norm.weight": "enc.output_norm.weight",
    "encoder.block.{i}.layer.0.layer_norm.weight": "enc.blk.{i}.attn_norm.weight",
    "encoder.block.{i}.layer.0.SelfAttention.q.weight": "enc.blk.{i}.attn_q.weight",
    "encoder.block.{i}.layer.0.SelfAttention.k.weight": "enc.blk.{i}.attn_k.weight",
    "encoder.block.{i}.layer.0.SelfAttention.v.weight": "enc.blk.{i}.attn_v.weight",
    "encoder.block.{i}.layer.0.SelfAttention.o.weight": "enc.blk.{i}.attn_o.weight",
    "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight": "enc.blk.{i}.attn_rel_b.weight",
    "encoder.block.{i}.layer.1.layer_norm.weight": "enc.blk.{i}.ffn_norm.weight",
    "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight": "enc.blk.{i}.ffn_gate.weight",
    "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight": "enc.blk.{i}.ffn_up.weight",
    "encoder.block.{i}.layer.1.DenseReluDense.wo.weight": "enc.blk.{i}.ffn_down.weight",
}


def t5_gguf_name(key: str) -> str:
    """llama.cpp name of a ComfyUI T5 encoder key."""
    import re

    for src, dst in T5_GGUF_NAMES.items():
        m = re.fullmatch(re.escape(src).replace(r"\{i\}", r"(\d+)"), key)
        if m:
            return dst.format(i=m.group(1)) if m.groups() else dst
    raise KeyError(f"no llama.cpp name for T5 key {key!r}")


def write_umt5_gguf(path: Path, sd: dict, qtype_name: str) -> None:
    """Write the umt5 encoder as llama.cpp does: arch ``t5encoder``, ``enc.*`` names, tokenizer as metadata."""
    import gguf
    import numpy as np
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    proto = spm_pb2.ModelProto()
    proto.ParseFromString(sd["spiece_model"].numpy().tobytes())
    qtype = gguf.GGMLQuantizationType[qtype_name]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    writer = gguf.GGUFWriter(path=None, arch="t5encoder")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype_name}"))
    writer.add_context_length(512)
    writer.add_embedding_length(UMT5["d_model"])
    writer.add_feed_forward_length(UMT5["d_ff"])
    writer.add_block_count(UMT5["num_layers"])
    writer.add_head_count(UMT5["num_heads"])
    writer.add_key_length(UMT5["d_kv"])
    writer.add_value_length(UMT5["d_kv"])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_relative_attn_buckets_count(32)
    writer.add_tokenizer_model("t5")
    writer.add_token_list([p.piece.encode("utf-8") for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([int(p.type) for p in proto.pieces])
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    writer.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    writer.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)
    writer.add_unk_token_id(proto.trainer_spec.unk_id)
    writer.add_eos_token_id(proto.trainer_spec.eos_id)
    writer.add_pad_token_id(proto.trainer_spec.pad_id)
    writer.add_add_eos_token(True)
    for key, tensor in sd.items():
        if key == "spiece_model":
            continue
        data = tensor.float().numpy()
        wanted = qtype
        if data.ndim == 1:
            wanted = gguf.GGMLQuantizationType.F32
        elif data.shape[-1] % block or data.size <= 1024:
            wanted = gguf.GGMLQuantizationType.F16
        writer.add_tensor(t5_gguf_name(key), np.ascontiguousarray(gguf.quants.quantize(data, wanted)), raw_dtype=wanted)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_index(out_dir: Path) -> dict | None:
    index = Path(out_dir) / INDEX_NAME
    if not index.is_file():
        return None
    data = json.loads(index.read_text())
    if data.get("spec_version") != SPEC_VERSION or not all((Path(out_dir) / f).is_file() for f in data["files"]):
        return None
    return data


def generate(out_dir: Path, comfyui_dir: Path) -> dict:
    """Write every tiny file into ``out_dir`` (skipped when an up-to-date index exists); return the index."""
    out_dir = Path(out_dir)
    existing = read_index(out_dir)
    if existing:
        return existing
    out_dir.mkdir(parents=True, exist_ok=True)
    comfy = _import_comfy(Path(comfyui_dir))
    from safetensors.torch import save_file

    high, low = build_unet(comfy, 101), build_unet(comfy, 202)
    tensors = {
        FILES["unet_high"]: high,
        FILES["unet_low"]: low,
        FILES["vae"]: build_vae(comfy, 303),
        FILES["umt5"]: build_umt5(comfy, 404),
        FILES["lora"]: build_lora(high, 505),
    }
    written = []
    for name, sd in tensors.items():
        save_file(sd, str(out_dir / name))
        written.append(name)
    write_umt5_gguf(out_dir / FILES["umt5_gguf"], tensors[FILES["umt5"]], UMT5_GGUF_TYPE)
    written.append(FILES["umt5_gguf"])
    for stage, sd in (("high", high), ("low", low)):
        for qtype in GGUF_UNET_TYPES:
            write_unet_gguf(out_dir / gguf_name(stage, qtype), sd, qtype)
            written.append(gguf_name(stage, qtype))
    index = {
        "spec_version": SPEC_VERSION,
        "files": {name: {"size": (out_dir / name).stat().st_size, "sha256": _sha256(out_dir / name)} for name in written},
    }
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2))
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--comfyui", type=Path, default=None, help="ComfyUI checkout (default: as worker.comfyui_home finds it)")
    args = parser.parse_args(argv)
    if args.comfyui is None:
        from worker import comfyui_home

        args.comfyui = comfyui_home.ensure(clone=False)
    index = generate(args.out_dir, args.comfyui)
    print(json.dumps({"dir": str(args.out_dir), "files": sorted(index["files"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
