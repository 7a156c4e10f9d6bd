"""Tiny WAN 2.2 I2V weights, built with ComfyUI's own model classes, for real runs on CPU.

ComfyUI 0.8.0 derives every WAN dimension from tensor shapes, so a model with the
production layout and tiny sizes runs through the same code as the 14B one:

Every production file's layout (names, dtypes / GGML types, header metadata) comes from its fixture
in tests/data/layouts/ (tests/layouts.py); tests/test_layouts.py checks the files against them.

* UNETs (high- and low-noise): WAN 2.1 layout, dim 128 (one 128-wide head), in_dim 36
  (16 latent + 4 mask + 16 image channels, as in WAN 2.2 I2V A14B), 2 blocks, no img_emb.
  Written as fp16 ``.safetensors`` and as GGUF (F16, Q8_0, Q5_0) with the ``gguf`` writer and
  city96's conversion rules: embeddings, ``time_projection`` and ``head.head`` F16, 1-D tensors and
  modulation F32, the 5-D ``patch_embedding.weight`` F32; in the Q5_0 file ``ffn.2`` is Q5_1.
* VAE: Wan 2.1 layout with dim 8 (ComfyUI reads it from ``decoder.head.0.gamma``).
* umt5: 2 layers, d_model 4096 (the width WAN's ``text_embedding`` expects), a
  sentencepiece vocabulary of 512 trained here, stored in ``spiece_model`` as ComfyUI's
  repackaged encoders do. Scaled fp8 as the production file: e4m3fn Linear weights with a float32
  ``scale_weight`` each, the ``scaled_fp8`` marker, F16 embeddings, norms and relative biases
  (tests/scaled_fp8.py). The same weights dequantized are ``umt5_tiny_fp16.safetensors``, also
  written as GGUF (Q8_0) in llama.cpp's T5-encoder layout
  (arch ``t5encoder``, ``enc.blk.N.attn_q`` names) with the tokenizer as ``tokenizer.ggml.*``
  metadata and no ``spiece_model`` tensor, as llama.cpp converters produce it.
* LoRA: LightX2V I2V layout (no ``alpha``; ``lora_down``/``lora_up``/``diff_b`` per Linear, ``.diff``
  per norm, ``diff_m``; ``head.head``, text/time embeddings, ``time_projection``; and the families
  WAN 2.2 I2V has no target for: ``k_img``, ``v_img``, ``norm_k_img``, ``diff_m``, ``img_emb``).

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

SPEC_VERSION = 5
INDEX_NAME = "tiny_weights.json"

UNET = dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=36, out_dim=16, text_dim=4096, freq_dim=256)
VAE_DIM = 8
UMT5 = dict(d_model=4096, d_kv=32, num_heads=2, d_ff=128, num_layers=2, vocab_size=512)
LORA_RANK = 4
LORA_DIMS = dict(dim=UNET["dim"], ffn=UNET["ffn_dim"], blocks=UNET["num_layers"], rank=LORA_RANK, out_dim=UNET["out_dim"],
                 text_dim=UNET["text_dim"], freq_dim=UNET["freq_dim"], clip_dim=64)
UMT5_DIMS = dict(d_model=UMT5["d_model"], layers=UMT5["num_layers"], heads=UMT5["num_heads"], d_kv=UMT5["d_kv"],
                 d_ff=UMT5["d_ff"], vocab=UMT5["vocab_size"])
UNET_DIMS = dict(dim=UNET["dim"], ffn=UNET["ffn_dim"], blocks=UNET["num_layers"], in_dim=UNET["in_dim"],
                 out_dim=UNET["out_dim"], text_dim=UNET["text_dim"], freq_dim=UNET["freq_dim"])
GGUF_UNET_TYPES = ("F16", "Q8_0", "Q5_0")
UMT5_GGUF_TYPE = "Q8_0"

FILES = {
    "unet_high": "wan22_i2v_high_noise_tiny.safetensors",
    "unet_low": "wan22_i2v_low_noise_tiny.safetensors",
    "vae": "wan21_vae_tiny.safetensors",
    "umt5": "umt5_tiny.safetensors",
    "lora": "lightx2v_tiny_lora.safetensors",
    "umt5_gguf": f"umt5_tiny_{UMT5_GGUF_TYPE}.gguf",
    "umt5_dense": "umt5_tiny_fp16.safetensors",
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


def umt5_scaled_fp8(dense: dict) -> dict:
    """The encoder in the layout of ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` (its fixture)."""
    from tests import scaled_fp8

    types = _layout_types("umt5_xxl_fp8_e4m3fn_scaled.safetensors", UMT5_DIMS)
    return scaled_fp8.quantize(dense, {k for k, t in types.items() if t == "F8_E4M3" and k != "scaled_fp8"})


def _layout_types(file: str, dims: dict) -> dict[str, str]:
    from tests import layouts

    return {name: qtype for name, (qtype, _) in layouts.expand(file, dims).items()}


def build_lora(seed: int) -> dict:
    """The LightX2V I2V LoRA's layout (its fixture) at tiny size: bf16, no alpha, random values that
    change the output visibly (down fan-in scaled, up 0.5/sqrt(rank), diffs 0.05)."""
    import torch

    from tests import layouts

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, (dtype, shape) in layouts.expand(layouts.LORA, LORA_DIMS).items():
        if key.endswith(".lora_down.weight"):
            value = torch.randn(shape, generator=gen) / shape[1] ** 0.5
        elif key.endswith(".lora_up.weight"):
            value = 0.5 * torch.randn(shape, generator=gen) / LORA_RANK ** 0.5
        else:
            value = 0.05 * torch.randn(shape, generator=gen)
        out[key] = value.to(torch.bfloat16 if dtype == "BF16" else torch.float32)
    return out


#: GGML type of block matrices and of ``ffn.2`` per tiny GGUF variant (the Q5_0 mix from lcpp.patch).
GGUF_MIXES = {"Q5_0": ("Q5_0", "Q5_1"), "Q8_0": ("Q8_0", "Q8_0"), "F16": ("F16", "F16")}


def unet_gguf_types(qtype_name: str) -> dict[str, str]:
    """GGML type per tensor of a tiny WAN GGUF: the production Q5_0 fixture's types, with the quantized
    ones replaced by the variant's (``Q5_0`` → main, ``Q5_1`` → the ``ffn.2`` type)."""
    main, down = GGUF_MIXES[qtype_name]
    fixture = _layout_types("wan2.2_i2v_high_noise_14B_Q5_0.gguf", UNET_DIMS)
    return {k: {"Q5_0": main, "Q5_1": down}.get(t, t) for k, t in fixture.items()}


def write_unet_gguf(path: Path, sd: dict, qtype_name: str) -> None:
    """Write a WAN UNET as GGUF with the conversion rules of the production files (arch ``wan``; the
    fixture gives every tensor's type, ``general.file_type`` the variant)."""
    import gguf
    import numpy as np

    types = unet_gguf_types(qtype_name)
    missing = set(sd) ^ set(types)
    if missing:
        raise AssertionError(f"tiny UNET and its layout fixture differ: {sorted(missing)}")
    writer = gguf.GGUFWriter(path=None, arch="wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype_name}"))
    for key, tensor in sd.items():
        wanted = gguf.GGMLQuantizationType[types[key]]
        data = tensor.float().numpy()
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
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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

    from tests import scaled_fp8

    high, low = build_unet(comfy, 101), build_unet(comfy, 202)
    umt5 = umt5_scaled_fp8(build_umt5(comfy, 404))
    tensors = {
        FILES["unet_high"]: high,
        FILES["unet_low"]: low,
        FILES["vae"]: build_vae(comfy, 303),
        FILES["umt5"]: umt5,
        FILES["umt5_dense"]: scaled_fp8.dequantize(umt5),
        FILES["lora"]: build_lora(505),
    }
    written = []
    for name, sd in tensors.items():
        save_file(sd, str(out_dir / name))
        written.append(name)
    write_umt5_gguf(out_dir / FILES["umt5_gguf"], tensors[FILES["umt5_dense"]], UMT5_GGUF_TYPE)
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
