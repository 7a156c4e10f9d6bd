"""The pack's UI surface: node classes as ComfyUI's graph editor shows them.

Every loader is a ``ModelLoader``: one model input (``FOLDER``, ``INPUT``, ``EXTENSIONS``) whose
choices, validation and file come from models.py, and a ``TITLE`` the display name derives from.
``DiffusionModelLoader``/``TextEncoderLoader`` fix the input's name, as ``VALIDATE_INPUTS`` must
spell it (ComfyUI skips its own list check only for the arguments it names).
Besides its own nodes the pack provides ``UnetLoaderGGUF`` and ``CLIPLoaderGGUF`` (the node names
and inputs of city96's ComfyUI-GGUF) so shared WAN 2.2 GGUF workflows run unchanged, but only when
that pack is not installed (gguf_compat.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import ClassVar

import folder_paths

import comfy.sd
import comfy.utils

from . import catalog, gguf_compat, lora_report, text_encoder
from .errors import ModelNotFound, UnsupportedTextEncoder  # noqa: F401  (raised by the loaders; tests name them here)
from .models import check_model, list_models, model_input, resolve_model  # noqa: F401  (list_models: the pack's API)

CATEGORY = "WAN serverless/loaders"
GGUF = ".gguf"
UNET_EXTENSIONS = {GGUF, *folder_paths.supported_pt_extensions}
TEXT_ENCODER_EXTENSIONS = {GGUF, *folder_paths.supported_pt_extensions}
FETCH_NOTE = f"Models marked {catalog.MARK} are not on disk yet: the run downloads them first."


def load_diffusion_model(path: str):
    """MODEL from a .gguf (kept quantized, see loader.py) or any file ComfyUI's own loader reads; the
    file's name is recorded on the model for the LoRA report (lora_report.py)."""
    if path.lower().endswith(GGUF):
        from . import loader

        model = loader.load_unet(path)
    else:
        model = comfy.sd.load_diffusion_model(path)
    setattr(model.model, lora_report.SOURCE_ATTR, os.path.basename(path))
    return model


def load_wan_text_encoder(path: str):
    """CLIP for WAN (umt5 of any size) from .gguf (llama.cpp T5 layout) or .safetensors."""
    if path.lower().endswith(GGUF):
        from . import loader

        return loader.load_t5_encoder(path)
    sd, metadata = comfy.utils.load_torch_file(path, safe_load=True, return_metadata=True)
    return text_encoder.load_umt5(sd, model_options={}, metadata=metadata)


class ModelLoader:
    """A loader node with one model input: ``INPUT`` (the input's name) picks a file with one of
    ``EXTENSIONS`` from ComfyUI folder ``FOLDER``; ``TITLE`` is the name the editor shows."""

    TITLE: ClassVar[str]
    FOLDER: ClassVar[str]
    INPUT: ClassVar[str]
    EXTENSIONS: ClassVar[set[str]]
    LOAD: ClassVar[staticmethod[[str], object]]
    CATEGORY = CATEGORY
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {cls.INPUT: model_input(cls.FOLDER, cls.EXTENSIONS), **cls.extra_inputs()}}

    @classmethod
    def extra_inputs(cls) -> dict:
        """Inputs besides the model (none by default)."""
        return {}

    @classmethod
    def path(cls, name: str) -> str:
        return resolve_model(cls.FOLDER, name)

    def load(self, **inputs):
        """The loaded model from the file the ``INPUT`` input names (``LOAD`` reads it)."""
        return (self.LOAD(self.path(inputs[self.INPUT])),)


class DiffusionModelLoader(ModelLoader):
    """A loader whose model input is ``unet_name`` (ComfyUI reads ``VALIDATE_INPUTS``' argument names)."""

    FOLDER, INPUT, LOAD = "diffusion_models", "unet_name", staticmethod(load_diffusion_model)
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def VALIDATE_INPUTS(cls, unet_name):
        return check_model(cls.FOLDER, unet_name, cls.EXTENSIONS)


class TextEncoderLoader(ModelLoader):
    """A loader whose model input is ``clip_name``."""

    FOLDER, INPUT, LOAD = "text_encoders", "clip_name", staticmethod(load_wan_text_encoder)
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name):
        return check_model(cls.FOLDER, clip_name, cls.EXTENSIONS)


class WanUnetLoaderGGUF(DiffusionModelLoader):
    """WAN 2.1/2.2 diffusion model from .gguf (kept quantized) or .safetensors."""

    TITLE = "Load WAN Diffusion Model (GGUF)"
    EXTENSIONS = UNET_EXTENSIONS
    DESCRIPTION = ("Loads a WAN diffusion model. GGUF weights stay quantized in memory and are dequantized "
                   "layer by layer when the model runs; LoRAs apply on top at that point. " + FETCH_NOTE)


class WanTextEncoderLoader(TextEncoderLoader):
    """umt5 text encoder for WAN from .safetensors or .gguf, any size (config read off the weights)."""

    TITLE = "Load WAN Text Encoder (umt5, any size)"
    EXTENSIONS = TEXT_ENCODER_EXTENSIONS
    DESCRIPTION = ("Loads a umt5 text encoder of any size for WAN (.safetensors, or .gguf in llama.cpp's T5 "
                   "layout); the config comes from the weights. " + FETCH_NOTE)


# --- community-compatible names ---------------------------------------------------------------------

class UnetLoaderGGUF(DiffusionModelLoader):
    """Same node name and input as ComfyUI-GGUF's UNET loader, backed by this pack."""

    TITLE = "Unet Loader (GGUF, WAN serverless)"
    EXTENSIONS = {GGUF}


class CLIPLoaderGGUF(TextEncoderLoader):
    """Same node name and inputs as ComfyUI-GGUF's CLIP loader: ``type`` wan is umt5 (GGUF or not),
    other types load .safetensors through ComfyUI's stock loader."""

    TITLE = "CLIPLoader (GGUF, WAN serverless)"
    EXTENSIONS = TEXT_ENCODER_EXTENSIONS
    FUNCTION = "load_clip"

    @classmethod
    def extra_inputs(cls) -> dict:
        import nodes

        return {"type": nodes.CLIPLoader.INPUT_TYPES()["required"]["type"]}

    def load_clip(self, clip_name: str, type: str = "stable_diffusion"):
        path = self.path(clip_name)
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


OWN_NODES: dict[str, type[ModelLoader]] = {"WanUnetLoaderGGUF": WanUnetLoaderGGUF,
                                           "WanTextEncoderLoader": WanTextEncoderLoader}
COMPAT_NODES: dict[str, type[ModelLoader]] = {"UnetLoaderGGUF": UnetLoaderGGUF, "CLIPLoaderGGUF": CLIPLoaderGGUF}


def compat_mappings(registered: Iterable[str], custom_node_dirs: Iterable[str],
                    own_dir: str | None = None) -> tuple[dict, dict]:
    """``(class mappings, display names)`` of the compatibility nodes to register (empty when
    ComfyUI-GGUF is installed: gguf_compat.py)."""
    return gguf_compat.compat_mappings(COMPAT_NODES, registered, custom_node_dirs, own_dir)


def _registered_node_names() -> set[str]:
    """Names registered so far; ComfyUI's ``nodes`` module is the one importing us, so it is loaded."""
    comfy_nodes = sys.modules.get("nodes")  # absent when imported outside a ComfyUI server (tools, tests)
    return set(getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", None) or {})


NODE_CLASS_MAPPINGS = dict(OWN_NODES)
NODE_DISPLAY_NAME_MAPPINGS = {name: cls.TITLE for name, cls in OWN_NODES.items()}

_compat, _compat_names = compat_mappings(_registered_node_names(), folder_paths.get_folder_paths("custom_nodes"),
                                         own_dir=os.path.dirname(os.path.abspath(__file__)))
NODE_CLASS_MAPPINGS.update(_compat)
NODE_DISPLAY_NAME_MAPPINGS.update(_compat_names)
