"""The pack's UI surface: node classes as ComfyUI's graph editor shows them.

Every loader finds its file through ``resolve_model(folder, name)`` and lists choices through
``list_models(folder, extensions)``; hooks such as fetch-on-first-use belong in those two.

Besides its own nodes the pack provides ``UnetLoaderGGUF`` and ``CLIPLoaderGGUF`` (the node
names and inputs of city96's ComfyUI-GGUF) so shared WAN 2.2 GGUF workflows run unchanged, but
only when that pack is not installed: see ``community_pack_reason``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable

import folder_paths

import comfy.sd
import comfy.utils

from . import text_encoder

log = logging.getLogger(__name__)

CATEGORY = "WAN serverless/loaders"
GGUF = ".gguf"
COMPAT_NODE_NAMES = ("UnetLoaderGGUF", "CLIPLoaderGGUF")
#: Folder names city96's ComfyUI-GGUF is installed under (git clone, registry id, zip download).
COMMUNITY_PACK_DIR = re.compile(r"comfyui[-_]?gguf([-_.][\w.-]*)?", re.IGNORECASE)


class ModelNotFound(FileNotFoundError):
    """A model name given to a loader is in none of the folders ComfyUI searches."""


class UnsupportedTextEncoder(ValueError):
    """A text encoder file/type combination this pack cannot load."""


def resolve_model(folder: str, name: str) -> str:
    """The full path of model ``name`` in ComfyUI folder ``folder``: the one place loaders resolve files."""
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise ModelNotFound(f"model '{name}' not found in any '{folder}' folder: {folder_paths.get_folder_paths(folder)}")
    return path


def list_models(folder: str, extensions: Iterable[str]) -> list[str]:
    """Names (relative paths) of the files with one of ``extensions`` in every path of ``folder``."""
    wanted = {e.lower() for e in extensions}
    names: set[str] = set()
    for base in folder_paths.get_folder_paths(folder):
        files, _ = folder_paths.recursive_search(base, excluded_dir_names=[".git"])
        names.update(folder_paths.filter_files_extensions(files, wanted))
    return sorted(names)


def _unet_choices() -> list[str]:
    return list_models("diffusion_models", {GGUF, *folder_paths.supported_pt_extensions})


def _text_encoder_choices() -> list[str]:
    return list_models("text_encoders", {GGUF, *folder_paths.supported_pt_extensions})


def load_diffusion_model(path: str):
    """MODEL from a .gguf (kept quantized, see loader.py) or any file ComfyUI's own loader reads."""
    if path.lower().endswith(GGUF):
        from . import loader

        return loader.load_unet(path)
    return comfy.sd.load_diffusion_model(path)


def load_wan_text_encoder(path: str):
    """CLIP for WAN (umt5 of any size) from .gguf (llama.cpp T5 layout) or .safetensors."""
    if path.lower().endswith(GGUF):
        from . import loader

        return loader.load_t5_encoder(path)
    sd = comfy.utils.load_torch_file(path, safe_load=True)
    return text_encoder.load_umt5(sd, model_options={})


class WanUnetLoaderGGUF:
    """WAN 2.1/2.2 diffusion model from .gguf (kept quantized) or .safetensors."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (_unet_choices(),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a WAN diffusion model. GGUF weights stay quantized in memory and are dequantized "
                   "layer by layer when the model runs; LoRAs apply on top at that point.")

    def load(self, unet_name: str):
        return (load_diffusion_model(resolve_model("diffusion_models", unet_name)),)


class WanTextEncoderLoader:
    """umt5 text encoder for WAN from .safetensors or .gguf, any size (config read off the weights)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (_text_encoder_choices(),)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a umt5 text encoder of any size for WAN (.safetensors, or .gguf in llama.cpp's T5 "
                   "layout); the config comes from the weights.")

    def load(self, clip_name: str):
        return (load_wan_text_encoder(resolve_model("text_encoders", clip_name)),)


# --- community-compatible names ---------------------------------------------------------------------

class UnetLoaderGGUF:
    """Same node name and input as ComfyUI-GGUF's UNET loader, backed by this pack."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (list_models("diffusion_models", {GGUF}),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"
    CATEGORY = CATEGORY

    def load_unet(self, unet_name: str):
        return (load_diffusion_model(resolve_model("diffusion_models", unet_name)),)


class CLIPLoaderGGUF:
    """Same node name and inputs as ComfyUI-GGUF's CLIP loader: ``type`` wan is umt5 (GGUF or not),
    other types load .safetensors through ComfyUI's stock loader."""

    @classmethod
    def INPUT_TYPES(cls):
        import nodes

        return {"required": {"clip_name": (_text_encoder_choices(),),
                             "type": nodes.CLIPLoader.INPUT_TYPES()["required"]["type"]}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = CATEGORY

    def load_clip(self, clip_name: str, type: str = "stable_diffusion"):
        path = resolve_model("text_encoders", clip_name)
        if type == "wan":
            return (load_wan_text_encoder(path),)
        if path.lower().endswith(GGUF):
            raise UnsupportedTextEncoder(
                f"'{clip_name}': this pack loads GGUF text encoders for type 'wan' (umt5) only, not '{type}'. "
                f"Use a .safetensors text encoder for '{type}', or install city96's ComfyUI-GGUF.")
        clip_type = getattr(comfy.sd.CLIPType, type.upper(), comfy.sd.CLIPType.STABLE_DIFFUSION)
        clip = comfy.sd.load_clip(ckpt_paths=[path], embedding_directory=folder_paths.get_folder_paths("embeddings"),
                                  clip_type=clip_type)
        return (clip,)


COMPAT_NODES = {"UnetLoaderGGUF": UnetLoaderGGUF, "CLIPLoaderGGUF": CLIPLoaderGGUF}
COMPAT_DISPLAY_NAMES = {"UnetLoaderGGUF": "Unet Loader (GGUF, WAN serverless)",
                        "CLIPLoaderGGUF": "CLIPLoader (GGUF, WAN serverless)"}


def community_pack_reason(registered: Iterable[str], custom_node_dirs: Iterable[str],
                          own_dir: str | None = None) -> str | None:
    """Why city96's ComfyUI-GGUF counts as installed (so its node names are left to it), or None.

    ComfyUI imports packs in directory-listing order and a later pack overwrites an earlier one's
    names. If that pack came first its names are already registered; if it comes later its folder is
    already there. Folders ending in ``.disabled`` are not loaded by ComfyUI and do not count.
    """
    taken = sorted(set(COMPAT_NODE_NAMES) & set(registered))
    if taken:
        return f"node(s) {', '.join(taken)} already registered"
    own = os.path.realpath(own_dir) if own_dir else None
    for base in custom_node_dirs:
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(base, entry)
            if (COMMUNITY_PACK_DIR.fullmatch(entry) and not entry.endswith(".disabled") and os.path.isdir(path)
                    and os.path.realpath(path) != own):
                return f"custom node folder {path} present"
    return None


def compat_mappings(registered: Iterable[str], custom_node_dirs: Iterable[str],
                    own_dir: str | None = None) -> tuple[dict, dict]:
    """``(class mappings, display names)`` of the compatibility nodes to register (empty when not needed)."""
    reason = community_pack_reason(registered, custom_node_dirs, own_dir)
    if reason:
        log.info("ComfyUI-GGUF detected (%s): leaving %s to it", reason, ", ".join(COMPAT_NODE_NAMES))
        return {}, {}
    return dict(COMPAT_NODES), dict(COMPAT_DISPLAY_NAMES)


def _registered_node_names() -> set[str]:
    """Names registered so far; ComfyUI's ``nodes`` module is the one importing us, so it is loaded."""
    comfy_nodes = sys.modules.get("nodes")  # absent when imported outside a ComfyUI server (tools, tests)
    return set(getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", None) or {})


NODE_CLASS_MAPPINGS = {"WanUnetLoaderGGUF": WanUnetLoaderGGUF, "WanTextEncoderLoader": WanTextEncoderLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"WanUnetLoaderGGUF": "Load WAN Diffusion Model (GGUF)",
                              "WanTextEncoderLoader": "Load WAN Text Encoder (umt5, any size)"}

_compat, _compat_names = compat_mappings(_registered_node_names(), folder_paths.get_folder_paths("custom_nodes"),
                                         own_dir=os.path.dirname(os.path.abspath(__file__)))
NODE_CLASS_MAPPINGS.update(_compat)
NODE_DISPLAY_NAME_MAPPINGS.update(_compat_names)
