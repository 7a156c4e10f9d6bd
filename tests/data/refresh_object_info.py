"""Refresh ``tests/data/object_info.json``: a trimmed ``/object_info`` snapshot of the real ComfyUI.

Run from the project root: ``.venv/bin/python -m tests.data.refresh_object_info [--from FILE]``.
Starts ComfyUI on CPU (or reads a saved full ``/object_info`` with ``--from``), keeps the node types the
tests use, and adds stand-ins for our pack's nodes the running ComfyUI does not register yet.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

log = logging.getLogger("refresh_object_info")
HERE = Path(__file__).resolve().parent
KEEP = [
    # the product workflow
    "LoadImage", "WanTextEncoderLoader", "WanUnetLoaderGGUF", "CLIPTextEncode", "VAELoader", "LoraLoaderModelOnly",
    "ModelSamplingSD3", "WanImageToVideo", "KSamplerAdvanced", "VAEDecode", "CreateVideo", "SaveVideo",
    # hand-made graphs and ComfyUI's own WAN 2.2 templates
    "KSampler", "EmptyLatentImage", "CheckpointLoaderSimple", "SaveImage", "PreviewImage", "ImageScale",
    "UNETLoader", "CLIPLoader", "LoadImageOutput", "PrimitiveInt", "StringConcatenate",
]
PACK_STANDINS = {
    "WanUnetLoaderGGUF": {
        "input": {"required": {"unet_name": [["wan2.2_i2v_high_noise_14B_Q5_0.gguf",
                                              "wan2.2_i2v_low_noise_14B_Q5_0.gguf"]]}},
        "input_order": {"required": ["unet_name"]},
        "output": ["MODEL"], "output_is_list": [False], "output_name": ["MODEL"], "name": "WanUnetLoaderGGUF",
        "display_name": "Load WAN 2.2 UNet (GGUF)", "description": "", "python_module": "custom_nodes.wan_serverless",
        "category": "WAN serverless/loaders", "output_node": False,
    },
    "WanTextEncoderLoader": {
        "input": {"required": {"clip_name": [["umt5_xxl_fp8_e4m3fn_scaled.safetensors"]]}},
        "input_order": {"required": ["clip_name"]},
        "output": ["CLIP"], "output_is_list": [False], "output_name": ["CLIP"], "name": "WanTextEncoderLoader",
        "display_name": "Load WAN Text Encoder (umt5, any size)", "description": "",
        "python_module": "custom_nodes.wan_serverless", "category": "WAN serverless/loaders", "output_node": False,
    },
}


def live_object_info() -> dict:
    from tests.conftest import start_comfy
    from worker import comfyui_home

    with tempfile.TemporaryDirectory() as base:
        comfy = start_comfy(comfyui_home.find(), Path(base))
        try:
            return comfy.client.object_info()
        finally:
            comfy.process.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source", type=Path, help="a saved full /object_info JSON")
    args = parser.parse_args()
    full = json.loads(args.source.read_text()) if args.source else live_object_info()
    trimmed = {name: full[name] for name in KEEP if name in full}
    for name, entry in PACK_STANDINS.items():
        if name not in trimmed:
            log.warning("ComfyUI has no %s yet: adding a stand-in entry", name)
            trimmed[name] = entry
    (HERE / "object_info.json").write_text(json.dumps(trimmed, indent=1) + "\n")
    log.info("wrote %d node types to %s", len(trimmed), HERE / "object_info.json")


if __name__ == "__main__":
    main()
