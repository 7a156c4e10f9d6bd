"""`make demo`: the two-stage WAN 2.2 I2V graph on tiny weights through a real ComfyUI on CPU.

Prints the path of the MP4 it wrote.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import graphs, tiny_weights  # noqa: E402
from tests.conftest import link_models  # noqa: E402
from worker import comfyui_home  # noqa: E402
from worker.comfy_client import ComfyClient, output_files  # noqa: E402
from worker.supervisor import ComfyProcess, ComfySettings  # noqa: E402

DEMO = ROOT / ".demo"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        comfyui = comfyui_home.ensure()
    except comfyui_home.ComfyUINotFound as exc:
        print(f"!!! {exc}", file=sys.stderr)
        return 1
    tiny = DEMO / "tiny-weights"
    tiny_weights.generate(tiny, comfyui)
    base = DEMO / "comfy"
    link_models(tiny, base / "models")
    process = ComfyProcess(ComfySettings(comfyui_dir=comfyui, base_dir=base, cpu=True))
    t0 = time.monotonic()
    process.start()
    try:
        process.wait_ready()
        print(f"ComfyUI ready in {time.monotonic() - t0:.1f}s at {process.url}")
        client = ComfyClient(process.url)
        image = client.upload_image("demo_start.png", graphs.input_png(64, 48))
        graph = graphs.wan22_i2v(image=image, unet_high=tiny_weights.FILES["unet_high"],
                                 unet_low=tiny_weights.FILES["unet_low"], vae=tiny_weights.FILES["vae"],
                                 text_encoder=tiny_weights.FILES["umt5"], width=64, height=48, length=9,
                                 prefix="video/demo")
        t1 = time.monotonic()
        entry = client.follow(client.queue_prompt(graph), deadline=time.monotonic() + 300, is_alive=process.alive)
        files = output_files(entry)
        video = base / "output" / files[0]["subfolder"] / files[0]["filename"]
        print(f"graph ran in {time.monotonic() - t1:.1f}s")
        print(video)
        return 0
    finally:
        process.stop()


if __name__ == "__main__":
    sys.exit(main())
