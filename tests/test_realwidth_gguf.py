"""Exactness at real width: a 1-block WAN 2.2 I2V UNET at dim 5120 (ffn 13824, 40 heads), written in the
community Q5_0/Q5_1 mix and in a Q4_K/Q6_K mix, runs through our GGUF loader in real ComfyUI, and its
sampled latent and decoded frames equal those of the same file dequantized to float32 by ``gguf``
(``gguf.quants.dequantize``, an independent implementation) and loaded by ComfyUI's stock UNETLoader.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from bench import realsize_weights as rw
from tests import graphs, tiny_weights
from tests.test_gguf_comfy import build, latent, rel_err
from worker.comfy_client import output_files

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

ONE_BLOCK = rw.Dims(blocks=1)  # real width and heads, one block
DENSE_LOW = tiny_weights.FILES["unet_low"]


def dequantized_copy(src: Path, dest: Path) -> None:
    """``src`` (GGUF) as float32 safetensors, every tensor dequantized by gguf's own numpy code."""
    reader = gguf.GGUFReader(str(src))

    def values(t) -> bytes:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        return np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape).tobytes()

    items = [(t.name, "F32", tuple(int(d) for d in reversed(t.shape.tolist())), lambda t=t: values(t))
             for t in reader.tensors]
    rw.write_safetensors(dest, items)


@pytest.fixture(scope="module")
def realwidth(comfy, comfyui_dir, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """``{mix: (gguf name, float32 safetensors name)}``, linked into the session ComfyUI's models."""
    out = tmp_path_factory.mktemp("realwidth")
    comfy_mod = rw._import_comfy(comfyui_dir)
    layout = rw.unet_layout(comfy_mod, ONE_BLOCK)
    models = comfy.base_dir / "models" / "diffusion_models"
    models.mkdir(parents=True, exist_ok=True)
    names = {}
    for seed, mix in enumerate(rw.MIXES):
        gguf_name, dense_name = f"wan22_realwidth_1block_{mix}.gguf", f"wan22_realwidth_1block_{mix}_f32.safetensors"
        rw.write_unet_gguf(out / gguf_name, layout, mix, seed=11 + seed)
        dequantized_copy(out / gguf_name, out / dense_name)
        for name in (gguf_name, dense_name):
            (models / name).symlink_to(out / name)
        names[mix] = (gguf_name, dense_name)
    return names


@pytest.fixture(scope="module")
def start_image(comfy) -> str:
    return comfy.upload_input("realwidth_start.png", graphs.input_png(64, 48, seed=5))


def two_steps(graph: dict, prefix: str) -> dict:
    """One step per stage (2 in all) keeps the run short; the arithmetic compared is the same. The decoded
    frames are also saved losslessly (PNG): the mp4's H.264 encoder turns sub-1e-4 latent differences into
    different coding decisions, so its frames are no measure of the decode itself."""
    graph["19"] = {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": f"frames/{prefix}"}}
    for node in graph.values():
        if node["class_type"] == "KSamplerAdvanced":
            node["inputs"]["steps"] = 2
            node["inputs"]["start_at_step" if node["inputs"]["add_noise"] == "disable" else "end_at_step"] = 1
    return graph


@pytest.mark.parametrize("mix", list(rw.MIXES))
def test_real_width_gguf_equals_gguf_dequantized_float32(comfy, realwidth, start_image, mix):
    """Both paths compute in float32 on CPU from the same values (ours dequantizes per layer, the
    reference was dequantized once by ``gguf``): equal up to float32 reduction-order noise."""
    gguf_name, dense_name = realwidth[mix]
    # The high-noise stage runs the real-width model; the low-noise stage the same tiny dense UNET in both
    # runs (one real-width model per run keeps the test short; its output feeds the second stage).
    ours = comfy.run(two_steps(build(start_image, unets=dict(unet_high=gguf_name, unet_low=DENSE_LOW), video=True,
                                     prefix=f"rw-{mix}-ours"), f"rw-{mix}-ours"))
    ref = comfy.run(two_steps(build(start_image, unets=dict(unet_high=dense_name, unet_low=DENSE_LOW),
                                    unet_loader="UNETLoader", video=True, prefix=f"rw-{mix}-ref"), f"rw-{mix}-ref"))
    a, b = latent(comfy, ours), latent(comfy, ref)
    assert a.abs().max() > 0 and torch.isfinite(a).all()
    assert rel_err(a, b) < 1e-5, rel_err(a, b)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    fa, fb = frames(comfy, ours), frames(comfy, ref)
    assert len(fa) == len(fb) == 9
    for x, y in zip(fa, fb):  # 8-bit frames from (nearly) equal latents: at most one level apart
        assert np.abs(x.astype(np.int16) - y.astype(np.int16)).max() <= 1
    videos = [graphs.probe_video(comfy.output_path(f))["arrays"] for e in (ours, ref)
              for f in output_files(e) if f["filename"].endswith(".mp4")]
    assert [len(v) for v in videos] == [9, 9] and videos[0][0].shape == videos[1][0].shape == (48, 64, 3)


def frames(comfy, entry: dict) -> list[np.ndarray]:
    """The decoded frames of the run, as saved losslessly (PNG), in order."""
    from PIL import Image

    pngs = sorted((f for f in output_files(entry) if f["filename"].endswith(".png")), key=lambda f: f["filename"])
    return [np.asarray(Image.open(comfy.output_path(f)).convert("RGB")) for f in pngs]
