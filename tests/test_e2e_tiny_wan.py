"""End to end in real ComfyUI 0.8.0: the two-stage WAN 2.2 I2V graph on tiny weights writes an MP4."""

from __future__ import annotations

import pytest

from tests import graphs, tiny_weights
from worker.comfy_client import output_files

pytestmark = pytest.mark.comfyui


def test_two_stage_wan22_i2v_writes_decodable_mp4(comfy):
    image = comfy.upload_input("start.png", graphs.input_png(64, 48))
    graph = graphs.wan22_i2v(image=image, unet_high=tiny_weights.FILES["unet_high"],
                             unet_low=tiny_weights.FILES["unet_low"], vae=tiny_weights.FILES["vae"],
                             text_encoder=tiny_weights.FILES["umt5"], width=64, height=48, length=9, prefix="video/e2e")
    entry = comfy.run(graph)
    files = output_files(entry)
    assert [f["kind"] for f in files] == ["images"]  # SaveVideo reports its file under "images" in 0.8.0
    video = comfy.output_path(files[0])
    assert video.suffix == ".mp4" and video.is_file()
    info = graphs.probe_video(video)
    assert (info["frames"], info["width"], info["height"]) == (9, 64, 48)
    assert info["codec"] == "h264"
    # Real pixels, not a blank frame: the decoder produced varied content.
    assert max(float(frame.std()) for frame in info["arrays"]) > 1.0
