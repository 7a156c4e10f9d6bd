"""The pack's UI surface: node classes as ComfyUI's graph editor shows them."""

from __future__ import annotations

import folder_paths

import comfy.utils

from . import text_encoder

CATEGORY = "WAN serverless/loaders"


def _full_path(folder: str, name: str) -> str:
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError(f"model '{name}' not found in any '{folder}' folder: {folder_paths.get_folder_paths(folder)}")
    return path


class WanTextEncoderLoader:
    """umt5 text encoder for WAN from .safetensors, any size (config read off the weights)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folder_paths.get_filename_list("text_encoders"),)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads a umt5 text encoder of any size for WAN; the config comes from the weights."

    def load(self, clip_name: str):
        path = _full_path("text_encoders", clip_name)
        sd = comfy.utils.load_torch_file(path, safe_load=True)
        return (text_encoder.load_umt5(sd, model_options={}),)


NODE_CLASS_MAPPINGS = {"WanTextEncoderLoader": WanTextEncoderLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"WanTextEncoderLoader": "Load WAN Text Encoder (umt5, any size)"}
