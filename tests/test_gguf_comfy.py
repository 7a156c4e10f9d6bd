"""GGUF loaders in real ComfyUI 0.8.0 (CPU): the two-stage WAN 2.2 I2V graph on tiny GGUF weights.

Graph tests run in the session's ComfyUI server and compare the sampled latents (``SaveLatent``
writes them as safetensors). In-process tests import the pack against ComfyUI's code to look at
what the loaders build: packed tensors, compute-time LoRA, metadata handling, node registration.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import torch
from safetensors.torch import load_file

from tests import graphs, tiny_weights
from worker.comfy_client import output_files
from worker.errors import ComfyExecutionError

pytestmark = pytest.mark.comfyui

F = tiny_weights.FILES
DENSE = dict(unet_high=F["unet_high"], unet_low=F["unet_low"])
Q8 = dict(unet_high=tiny_weights.gguf_name("high", "Q8_0"), unet_low=tiny_weights.gguf_name("low", "Q8_0"))
Q5 = dict(unet_high=tiny_weights.gguf_name("high", "Q5_0"), unet_low=tiny_weights.gguf_name("low", "Q5_0"))
F16 = dict(unet_high=tiny_weights.gguf_name("high", "F16"), unet_low=tiny_weights.gguf_name("low", "F16"))
MIXED = dict(unet_high=Q8["unet_high"], unet_low=Q5["unet_low"])  # Q8_0 high-noise, Q5_0 low-noise
SIZE = dict(width=64, height=48, length=9)


# --- helpers ------------------------------------------------------------------------------------------

def build(image: str, *, unets: dict, text_encoder: str = F["umt5"], unet_loader: str = "WanUnetLoaderGGUF",
          te_loader: str = "WanTextEncoderLoader", loras: tuple[float, ...] = (), video: bool = False,
          prefix: str = "gguf", te_type: str | None = None) -> dict:
    """The two-stage graph with our loaders, ``len(loras)`` chained LoRA loaders per stage, SaveLatent."""
    g = graphs.wan22_i2v(image=image, vae=F["vae"], text_encoder=text_encoder, unet_loader=unet_loader,
                         te_loader=te_loader, prefix=f"video/{prefix}", **unets, **SIZE)
    if te_type is not None:
        g["2"]["inputs"]["type"] = te_type
    for stage, sampling in (("6", "9"), ("7", "10")):
        source = [stage, 0]
        for i, strength in enumerate(loras):
            node = f"{stage}{i}L"
            g[node] = {"class_type": "LoraLoaderModelOnly",
                       "inputs": {"model": source, "lora_name": F["lora"], "strength_model": strength}}
            source = [node, 0]
        g[sampling]["inputs"]["model"] = source
    g["18"] = {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": f"latents/{prefix}"}}
    if not video:  # VAE decode and encoding add nothing to a latent comparison
        for node in ("13", "14", "15"):
            del g[node]
    return g


def latent(comfy, entry: dict) -> torch.Tensor:
    items = [item for out in entry["outputs"].values() for item in out.get("latents", [])]
    assert len(items) == 1, entry["outputs"]
    return load_file(str(comfy.output_path(items[0])))["latent_tensor"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def image(comfy) -> str:
    return comfy.upload_input("gguf_start.png", graphs.input_png(64, 48, seed=3))


@pytest.fixture(scope="module")
def dense(comfy, image) -> torch.Tensor:
    """Reference latent: the fp16 safetensors UNETs through ComfyUI's stock UNETLoader."""
    return latent(comfy, comfy.run(build(image, unets=DENSE, unet_loader="UNETLoader", prefix="dense")))


@pytest.fixture(scope="module")
def lora_runs(comfy, image) -> dict:
    """Mixed Q8_0/Q5_0 UNETs + GGUF umt5, one LoRA per stage at strengths 1.0 (with video) and 0.5, and none."""
    runs = {}
    for strengths, video in (((1.0,), True), ((0.5,), False), ((), False)):
        entry = comfy.run(build(image, unets=MIXED, text_encoder=F["umt5_gguf"], loras=strengths, video=video,
                                prefix="gguf-lora"))
        runs[strengths] = SimpleNamespace(entry=entry, latent=latent(comfy, entry))
    return runs


# --- graph tests ---------------------------------------------------------------------------------------

def test_gguf_unets_gguf_umt5_and_lora_write_decodable_mp4(comfy, lora_runs):
    entry = lora_runs[(1.0,)].entry
    videos = [f for f in output_files(entry) if f["filename"].endswith(".mp4")]
    assert len(videos) == 1
    info = graphs.probe_video(comfy.output_path(videos[0]))
    assert (info["frames"], info["width"], info["height"], info["codec"]) == (9, 64, 48, "h264")
    assert max(float(frame.std()) for frame in info["arrays"]) > 1.0
    assert lora_runs[(1.0,)].latent.shape == (1, 16, 3, 6, 8)  # 9 frames -> 3 latent frames, 48x64 / 8


def test_lora_strength_changes_the_output(comfy, image, lora_runs):
    full, half, none = (lora_runs[k].latent for k in ((1.0,), (0.5,), ()))
    assert torch.isfinite(full).all()
    # Each strength gives its own result, and half strength lies between none and full.
    assert rel_err(full, none) > 1e-3 and rel_err(half, none) > 1e-3 and rel_err(full, half) > 1e-3
    assert rel_err(half, none) < rel_err(full, none)
    # The LoRA acts on the quantized weights as on the dense ones: against the dense UNETs with the same
    # LoRA, the GGUF result is off by its quantization error (~4 % here, mostly Q5_0), not by the LoRA's
    # effect on the block weights (~15 %), which is what a LoRA reaching only the float tensors would leave.
    dense_lora = latent(comfy, comfy.run(build(image, unets=DENSE, unet_loader="UNETLoader", text_encoder=F["umt5_gguf"],
                                               loras=(1.0,), prefix="dense-lora")))
    assert rel_err(full, dense_lora) < 0.08


def test_two_chained_loras_add_up(comfy, image, lora_runs):
    """Two LoraLoaderModelOnly at 0.5 each patch the packed weights like one at 1.0.

    LoRA deltas add linearly (W + 0.5 dW + 0.5 dW = W + dW); only float32 rounding of the patch
    arithmetic differs, so the latents agree to ~1e-5 relative, far below the LoRA effect itself.
    """
    chained = latent(comfy, comfy.run(build(image, unets=MIXED, text_encoder=F["umt5_gguf"], loras=(0.5, 0.5),
                                            prefix="gguf-lora2")))
    single, none = lora_runs[(1.0,)].latent, lora_runs[()].latent
    assert rel_err(chained, single) < 1e-3
    assert rel_err(chained, none) > 100 * rel_err(chained, single)


def test_f16_gguf_matches_dense_fp16(comfy, image, dense):
    """F16 GGUF holds the very fp16 values of the safetensors file and both compute in float32 on CPU
    (the GGUF weights are cast per layer, the dense ones once at load), so the arithmetic is the same:
    the latents are equal up to float32 reduction-order noise (1e-5 absolute)."""
    f16 = latent(comfy, comfy.run(build(image, unets=F16, prefix="gguf-f16")))
    torch.testing.assert_close(f16, dense, rtol=0, atol=1e-5)


def test_quantized_gguf_close_to_dense(comfy, image, dense):
    """Q8_0 rounds each weight to a step of 1/127 of its 32-value block's largest magnitude, Q5_0 to
    1/16: for Gaussian weights about 0.5 % and 4 % RMS relative error. The sampled latent ends up off by
    the same order (measured here: 0.5 % and 4.3 %); the bounds give that a 3-4x margin, and Q8_0 must
    beat Q5_0."""
    q8 = latent(comfy, comfy.run(build(image, unets=Q8, prefix="gguf-q8")))
    q5 = latent(comfy, comfy.run(build(image, unets=Q5, prefix="gguf-q5")))
    e8, e5 = rel_err(q8, dense), rel_err(q5, dense)
    assert 0 < e8 < 0.02, e8  # non-zero: the quantized file really was used
    assert e8 < e5 < 0.15, (e8, e5)


def test_safetensors_through_gguf_node_equals_stock_loader(comfy, image, dense):
    same = latent(comfy, comfy.run(build(image, unets=DENSE, prefix="gguf-node-dense")))
    assert torch.equal(same, dense)


def test_compat_node_names_run_shared_workflows(comfy, image, lora_runs):
    info = requests.get(f"{comfy.url}/object_info", timeout=30).json()
    assert set(info["UnetLoaderGGUF"]["input"]["required"]) == {"unet_name"}
    assert set(info["CLIPLoaderGGUF"]["input"]["required"]) == {"clip_name", "type"}
    assert Q8["unet_high"] in info["UnetLoaderGGUF"]["input"]["required"]["unet_name"][0]
    assert F["umt5_gguf"] in info["WanTextEncoderLoader"]["input"]["required"]["clip_name"][0]
    assert F["umt5_gguf"] in info["CLIPLoaderGGUF"]["input"]["required"]["clip_name"][0]
    assert info["WanUnetLoaderGGUF"]["category"] == "WAN serverless/loaders"
    compat = latent(comfy, comfy.run(build(image, unets=MIXED, text_encoder=F["umt5_gguf"], unet_loader="UnetLoaderGGUF",
                                           te_loader="CLIPLoaderGGUF", te_type="wan", prefix="gguf-compat")))
    assert torch.equal(compat, lora_runs[()].latent)


def test_clip_loader_gguf_names_what_it_cannot_load(comfy, image):
    graph = build(image, unets=MIXED, text_encoder=F["umt5_gguf"], te_loader="CLIPLoaderGGUF", te_type="sd3",
                  prefix="gguf-bad")
    with pytest.raises(ComfyExecutionError, match=r"type 'wan'.*not 'sd3'"):
        comfy.run(graph)


# --- in-process: what the loaders build -----------------------------------------------------------------

@pytest.fixture(scope="module")
def pack(comfyui_dir):
    """The pack's modules imported in this process against ComfyUI's code, on CPU."""
    if str(comfyui_dir) not in sys.path:
        sys.path.append(str(comfyui_dir))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management
    import comfy.sd
    import comfy.utils

    from custom_nodes.wan_serverless import loader, nodes, ops

    return SimpleNamespace(loader=loader, ops=ops, nodes=nodes, sd=comfy.sd, utils=comfy.utils,
                           mm=comfy.model_management)


def _forward(pack, patcher, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 36, 2, 8, 8, generator=gen)
    ctx = torch.randn(1, 12, 4096, generator=gen)
    pack.mm.load_models_gpu([patcher])
    with torch.no_grad():
        return patcher.model.diffusion_model(x, torch.tensor([700.0]), ctx)


def test_quantized_weights_stay_packed_in_memory(pack, tiny_dir):
    path = tiny_dir / Q5["unet_high"]
    contents = pack.loader.read_gguf(str(path))
    mapping = contents.reader.data  # the file's read-only memory map
    start, size = mapping.ctypes.data, mapping.nbytes
    patcher = pack.loader.unet_from_contents(contents)
    assert type(patcher).__name__ == "PackedPatcher"
    dm = patcher.model.diffusion_model
    weight = dm.blocks[0].ffn[0].weight
    assert isinstance(weight, pack.ops.PackedTensor) and weight.qtype.name == "Q5_0"
    assert weight.shape == (256, 128) and weight.packed.dtype == torch.uint8
    assert weight.packed.nbytes == 256 * 128 // 32 * 22  # Q5_0: 22 bytes per 32 values
    kinds = pack.ops.packed_summary(patcher.model)
    # The production layout (tests/data/layouts): per block 8 attention Linear + ffn.0 Q5_0, ffn.2 Q5_1;
    # embeddings, time_projection and head.head F16.
    assert kinds["Q5_0"] == 18 and kinds["Q5_1"] == 2, kinds
    assert set(kinds) <= {"Q5_0", "Q5_1", "F16", "float16", "float32"}, kinds
    # ComfyUI sizes the model by what is held: the packed bytes plus the small float32 tensors.
    assert patcher.model_size() < path.stat().st_size
    # Mapped, not copied: every packed weight of the model still points into the file's memory map.
    packed = [p for p in patcher.model.parameters() if isinstance(p, pack.ops.PackedTensor)]
    assert packed and all(start <= p.data_ptr() < start + size for p in packed)
    out = _forward(pack, patcher)
    assert torch.isfinite(out).all()
    assert isinstance(dm.blocks[0].ffn[0].weight, pack.ops.PackedTensor)  # running did not unpack anything


def test_lora_is_applied_after_dequantization_at_compute_time(pack, tiny_dir):
    """LoRA on packed weights equals the stock LoRA path on a dense copy of the dequantized weights.

    Only the block keys here: the unquantized (F16) embeddings and head of the production layout are
    plain fp16 tensors that ComfyUI patches its own way (rounded back to fp16), checked at fp16 precision
    below."""
    full_lora = pack.utils.load_torch_file(str(tiny_dir / F["lora"]))
    lora = {k: v for k, v in full_lora.items() if ".blocks." in k}
    base = pack.loader.load_unet(str(tiny_dir / Q8["unet_high"]))
    plain = _forward(pack, base)
    patched, _ = pack.sd.load_lora_for_models(base, None, lora, 0.8, 0)
    with_lora = _forward(pack, patched)
    key = "diffusion_model.blocks.0.ffn.0.weight"
    live = pack.utils.get_attr(patched.model, key)
    assert isinstance(live, pack.ops.PackedTensor) and live.patches is not None and live.patches[0] == key
    assert isinstance(patched.backup[key].weight, pack.ops.PackedTensor)  # backup = the packed original

    reference = pack.sd.load_diffusion_model(str(tiny_dir / DENSE["unet_high"]))
    contents = pack.loader.read_gguf(str(tiny_dir / Q8["unet_high"]))
    dequantized = {k: v.dequantize(torch.float32) if pack.ops.is_packed(v) else v.float()
                   for k, v in contents.tensors.items()}
    reference.model.diffusion_model.load_state_dict(dequantized)
    ref_lora, _ = pack.sd.load_lora_for_models(reference, None, lora, 0.8, 0)
    torch.testing.assert_close(with_lora, _forward(pack, ref_lora), rtol=1e-5, atol=1e-5)
    assert rel_err(with_lora, plain) > 1e-2
    full = _forward(pack, pack.sd.load_lora_for_models(base, None, full_lora, 0.8, 0)[0])
    assert rel_err(full, _forward(pack, pack.sd.load_lora_for_models(reference, None, full_lora, 0.8, 0)[0])) < 2e-3
    # Back to the base model: the patched weights are swapped back, nothing was baked in.
    assert torch.equal(_forward(pack, base), plain)
    assert pack.utils.get_attr(base.model, key).patches is None


def test_low_vram_loading_patches_packed_weights_at_compute_time(pack, tiny_dir):
    """Partially loaded models get ComfyUI's own low-VRAM patch functions: same result as a full load,
    and running twice does not patch the stored tensors twice. Block keys only: a full load rounds
    patched plain fp16 tensors (embeddings, head) back to fp16, a low-VRAM run does not."""
    lora = {k: v for k, v in pack.utils.load_torch_file(str(tiny_dir / F["lora"])).items() if ".blocks." in k}
    base = pack.loader.load_unet(str(tiny_dir / Q8["unet_high"]))
    patched, _ = pack.sd.load_lora_for_models(base, None, lora, 1.0, 0)
    cpu = torch.device("cpu")

    def run() -> torch.Tensor:
        gen = torch.Generator().manual_seed(1)
        x, ctx = torch.randn(1, 36, 2, 8, 8, generator=gen), torch.randn(1, 12, 4096, generator=gen)
        with torch.no_grad():
            return patched.model.diffusion_model(x, torch.tensor([700.0]), ctx)

    patched.patch_model(device_to=cpu, lowvram_model_memory=1)  # nothing fits: every layer is low-VRAM
    ffn = patched.model.diffusion_model.blocks[0].ffn[0]
    assert patched.model.model_lowvram and ffn.weight_function and ffn.bias_function
    assert isinstance(ffn.weight, pack.ops.PackedTensor) and ffn.weight.patches is None
    low_1, low_2 = run(), run()
    patched.unpatch_model(cpu)
    patched.patch_model(device_to=cpu, lowvram_model_memory=0)
    full = run()
    patched.unpatch_model(cpu)
    assert torch.equal(low_1, low_2)
    torch.testing.assert_close(low_1, full, rtol=1e-5, atol=1e-5)


def _rewrite_gguf(src: Path, dst: Path, *, reshape: dict[str, tuple[int, ...]] = (), raw: dict | None = None,
                  arch: str = "wan") -> None:
    """Copy a GGUF's tensors (not its other metadata), optionally some reshaped (with orig_shape metadata),
    plus ``raw`` extra tensors ``{name: (array, GGML type)}``."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(path=None, arch=arch)
    for t in reader.tensors:
        data = np.asarray(t.data)
        if t.name in reshape:
            writer.add_array(f"comfy.gguf.orig_shape.{t.name}", list(data.shape))
            data = data.reshape(reshape[t.name])
        writer.add_tensor(t.name, np.ascontiguousarray(data), raw_dtype=t.tensor_type)
    for name, (data, qtype) in (raw or {}).items():
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file(path=str(dst))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_reshaped_tensors_use_orig_shape_metadata(pack, tiny_dir, tmp_path):
    """Converters store WAN's 5-D patch_embedding reshaped (GGML has 4 dims) with its real shape in metadata."""
    src = tiny_dir / F16["unet_high"]
    dst = tmp_path / "reshaped.gguf"
    _rewrite_gguf(src, dst, reshape={"patch_embedding.weight": (128, 36 * 1 * 2 * 2)})
    import gguf

    stored = {t.name: t for t in gguf.GGUFReader(str(dst)).tensors}["patch_embedding.weight"]
    assert len(stored.shape) == 2
    reshaped = pack.loader.load_unet(str(dst))
    assert reshaped.model.diffusion_model.patch_embedding.weight.shape == (128, 36, 1, 2, 2)
    assert torch.equal(_forward(pack, reshaped), _forward(pack, pack.loader.load_unet(str(src))))


def test_unsupported_tensor_type_names_tensor_and_type(pack, tiny_dir, tmp_path):
    import gguf

    from custom_nodes.wan_serverless import dequant

    dst = tmp_path / "iq4.gguf"
    iq4 = gguf.GGMLQuantizationType.IQ4_NL
    _rewrite_gguf(tiny_dir / Q8["unet_high"], dst, raw={"extra.proj.weight": (np.zeros((16, 2 * 18), np.uint8), iq4)})
    with pytest.raises(dequant.UnsupportedQuantType, match=r"tensor 'extra\.proj\.weight' uses GGML type IQ4_NL"):
        pack.loader.read_gguf(str(dst))


@pytest.fixture(scope="module")
def umt5_gguf(pack, tiny_dir):
    """``read_t5_encoder`` of the tiny GGUF umt5 (parsing 240 kB of tokenizer metadata takes a while)."""
    return pack.loader.read_t5_encoder(str(tiny_dir / F["umt5_gguf"]))


def test_umt5_gguf_maps_names_and_rebuilds_the_tokenizer(pack, tiny_dir, umt5_gguf):
    import sentencepiece as spm

    sd, spiece = umt5_gguf
    dense = load_file(str(tiny_dir / F["umt5_dense"]))
    assert set(sd) == set(dense) - {"spiece_model"}
    assert all(tuple(sd[k].shape) == tuple(dense[k].shape) for k in sd)
    assert isinstance(sd["encoder.block.1.layer.1.DenseReluDense.wi_0.weight"], pack.ops.PackedTensor)
    original = spm.SentencePieceProcessor(model_proto=dense["spiece_model"].numpy().tobytes())
    rebuilt = spm.SentencePieceProcessor(model_proto=spiece.numpy().tobytes())
    for text in ("a cat walks across the street", "  Un gato   camina, 猫が歩く! ＡＢＣ ① x²", "blurry, static"):
        assert rebuilt.encode(text) == original.encode(text)


def _write_t5_gguf(dst: Path, sd: dict[str, torch.Tensor], with_spiece: bool) -> None:
    """The dense umt5 as an F16 llama.cpp-named GGUF without tokenizer metadata (optionally a spiece_model I8 tensor)."""
    import gguf

    writer = gguf.GGUFWriter(path=None, arch="t5encoder")
    for key, value in sd.items():
        if key == "spiece_model":
            if with_spiece:  # GGUF has no U8 type: the proto bytes go in as I8
                writer.add_tensor(key, value.numpy().view(np.int8), raw_dtype=gguf.GGMLQuantizationType.I8)
            continue
        writer.add_tensor(tiny_weights.t5_gguf_name(key), value.numpy().astype(np.float16))
    writer.write_header_to_file(path=str(dst))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_umt5_gguf_tokenizer_from_spiece_model_tensor(pack, tiny_dir, tmp_path):
    """Without tokenizer metadata, a 'spiece_model' tensor is the tokenizer; with neither, a clear error."""
    dense = load_file(str(tiny_dir / F["umt5_dense"]))
    _write_t5_gguf(tmp_path / "with_spiece.gguf", dense, with_spiece=True)
    sd, spiece = pack.loader.read_t5_encoder(str(tmp_path / "with_spiece.gguf"))
    assert "spiece_model" not in sd and "encoder.block.1.layer.0.SelfAttention.q.weight" in sd
    assert torch.equal(spiece, dense["spiece_model"])
    _write_t5_gguf(tmp_path / "no_tokenizer.gguf", dense, with_spiece=False)
    with pytest.raises(pack.loader.GGUFFormatError, match="no tokenizer"):
        pack.loader.read_t5_encoder(str(tmp_path / "no_tokenizer.gguf"))


def test_umt5_gguf_encoder_matches_its_dequantized_weights(pack, tiny_dir, umt5_gguf):
    from custom_nodes.wan_serverless import text_encoder

    clip = pack.loader.load_t5_encoder(str(tiny_dir / F["umt5_gguf"]))
    assert type(clip.patcher).__name__ == "PackedPatcher"
    assert pack.ops.packed_summary(clip.cond_stage_model)["Q8_0"] == 15  # 7 Linear per layer x 2 + embedding
    sd, spiece = umt5_gguf
    dense = {k: v.dequantize(torch.float32) if pack.ops.is_packed(v) else v.float() for k, v in sd.items()}
    reference = text_encoder.load_umt5(dense, tokenizer_proto=spiece)
    prompt = "a cat walks across the street"
    got = clip.encode_from_tokens(clip.tokenize(prompt))
    torch.testing.assert_close(got, reference.encode_from_tokens(reference.tokenize(prompt)), rtol=1e-5, atol=1e-6)


def test_compat_registration_in_both_load_orders(pack, tmp_path):
    nodes = pack.nodes
    ours = tmp_path / "custom_nodes" / "wan_serverless"
    ours.mkdir(parents=True)
    plain = [str(tmp_path / "custom_nodes")]
    # Not installed: we provide both names.
    mappings, names = nodes.compat_mappings({"KSampler"}, plain, own_dir=str(ours))
    assert set(mappings) == {"UnetLoaderGGUF", "CLIPLoaderGGUF"} and set(names) == set(mappings)
    # Loaded before us: its names are registered already.
    assert nodes.compat_mappings({"KSampler", "UnetLoaderGGUF", "CLIPLoaderGGUF"}, plain, own_dir=str(ours)) == ({}, {})
    # Loaded after us: its folder is there.
    for folder in ("ComfyUI-GGUF", "comfyui-gguf", "ComfyUI_GGUF-main"):
        other = tmp_path / folder / "custom_nodes"
        (other / folder).mkdir(parents=True)
        assert nodes.compat_mappings({"KSampler"}, [str(other)], own_dir=str(ours)) == ({}, {})
    # A disabled copy, or an unrelated pack, does not count.
    extra = tmp_path / "other" / "custom_nodes"
    (extra / "ComfyUI-GGUF.disabled").mkdir(parents=True)
    (extra / "ComfyUI-WanVideoWrapper").mkdir()
    (extra / "comfyui-gguf-loader-something.txt").write_text("")
    assert set(nodes.compat_mappings(set(), [str(extra)], own_dir=str(ours))[0]) == {"UnetLoaderGGUF", "CLIPLoaderGGUF"}


def test_clip_loader_gguf_delegates_other_types_to_stock_loader(pack, monkeypatch):
    calls = []
    monkeypatch.setattr(pack.nodes, "resolve_model", lambda folder, name: f"/models/{folder}/{name}")
    monkeypatch.setattr(pack.nodes.comfy.sd, "load_clip", lambda **kw: calls.append(kw) or "stock-clip")
    loader = pack.nodes.CLIPLoaderGGUF()
    assert loader.load_clip("t5xxl_fp16.safetensors", "sd3") == ("stock-clip",)
    assert calls[0]["ckpt_paths"] == ["/models/text_encoders/t5xxl_fp16.safetensors"]
    assert calls[0]["clip_type"] == pack.sd.CLIPType.SD3
    with pytest.raises(pack.nodes.UnsupportedTextEncoder, match="type 'wan'"):
        loader.load_clip("t5xxl_Q8_0.gguf", "flux2")
    assert len(calls) == 1


def test_packed_tensor_behaves_like_its_values(pack):
    """Moves keep the blocks packed; conversions and foreign ops see the values; in-place writes are refused."""
    import gguf

    ops = pack.ops
    values = torch.randn(64, 96)
    blocks = torch.from_numpy(gguf.quants.quantize(values.numpy(), gguf.GGMLQuantizationType.Q8_0))
    w = ops.PackedTensor(blocks, gguf.GGMLQuantizationType.Q8_0, (64, 96), dtype=torch.float32)
    exact = w.dequantize(torch.float32)
    assert w.shape == (64, 96) and w.numel() == 64 * 96 and w.nbytes == blocks.nbytes == 64 * 3 * 34
    torch.testing.assert_close(exact, values, atol=float(values.abs().max()) / 100, rtol=0)
    moved = w.to("cpu", copy=True)
    assert isinstance(moved, ops.PackedTensor) and moved.packed.data_ptr() != w.packed.data_ptr()
    converted = w.to(torch.float16)
    assert type(converted) is torch.Tensor and torch.equal(converted, exact.half())
    x = torch.randn(3, 96)
    torch.testing.assert_close(torch.nn.functional.linear(x, w), x @ exact.T)
    layer = torch.nn.Linear(96, 64, bias=False)
    layer.weight.data.copy_(w)
    assert torch.equal(layer.weight.data, exact)
    with pytest.raises(ops.PackedWriteError):
        w.add_(1.0)
    param = torch.nn.Parameter(w, requires_grad=False)
    assert isinstance(param, ops.PackedTensor) and isinstance(param, torch.nn.Parameter)
