"""The pack's UI surface: node classes as ComfyUI's graph editor shows them.

Every loader finds its file through ``resolve_model(folder, name)`` and lists choices through
``list_models(folder, extensions)``. The list holds the files on disk, then the manifest models not
downloaded yet under their plain file names (so saved workflows and API graphs keep plain names);
the input's tooltip and ``model_fetch`` metadata mark them, and web/model_fetch.js shows them with
a ⤓ label in the dropdown. ``resolve_model`` goes through ComfyUI's hooked ``folder_paths``
(lookup.py), which fetches such a model when the graph runs, as it does for every other loader. ``check_model`` (the loaders'
``VALIDATE_INPUTS``) accepts a name that is on disk or in a manifest, so a graph can be queued
before its models exist, and rejects any other name with a message naming file and folder.

Besides its own nodes the pack provides ``UnetLoaderGGUF`` and ``CLIPLoaderGGUF`` (the node
names and inputs of city96's ComfyUI-GGUF) so shared WAN 2.2 GGUF workflows run unchanged, but
only when that pack is not installed: see ``community_pack_reason``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable

import folder_paths

import comfy.sd
import comfy.utils

from . import fetch, text_encoder

log = logging.getLogger(__name__)

CATEGORY = "WAN serverless/loaders"
GGUF = ".gguf"
COMPAT_NODE_NAMES = ("UnetLoaderGGUF", "CLIPLoaderGGUF")
#: Folder names city96's ComfyUI-GGUF is installed under (git clone, registry id, zip download).
COMMUNITY_PACK_DIR = re.compile(r"comfyui[-_]?gguf([-_.][\w.-]*)?", re.IGNORECASE)


class ModelNotFound(FileNotFoundError):
    """A model name given to a loader is in none of the folders ComfyUI searches and no manifest lists it."""


class UnsupportedTextEncoder(ValueError):
    """A text encoder file/type combination this pack cannot load."""


def _not_found(folder: str, name: str) -> ModelNotFound:
    searched = ", ".join(folder_paths.get_folder_paths(folder)) or "none"
    ctx = fetch.context()
    if ctx is None:
        hint = f"fetch on first use is off ({fetch.disabled_reason()})"
    else:
        hint = (f"no model_fetch manifest lists it (manifests: {ctx.sources_text()}); add an entry with "
                f"name '{name}', directory '{folder}' and a url to a manifest named by MODEL_FETCH_MANIFEST")
    return ModelNotFound(f"model '{name}' is not in any '{folder}' folder ({searched}) and {hint}, "
                         f"or put the file in one of those folders")


def resolve_model(folder: str, name: str) -> str:
    """The full path of model ``name`` in ComfyUI folder ``folder``; ModelNotFound naming both when none.

    ``folder_paths.get_full_path`` is hooked (lookup.py): while a node runs, a file that is not on
    disk but known to a source is fetched first, with a byte progress bar on that node, exactly as
    for ComfyUI's stock loaders. No fetch code here.
    """
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise _not_found(folder, name)
    return path


def _on_disk(folder: str, extensions: set[str]) -> list[str]:
    names: set[str] = set()
    for base in folder_paths.get_folder_paths(folder):
        files, _ = folder_paths.recursive_search(base, excluded_dir_names=[".git", ".model-fetch"])
        names.update(folder_paths.filter_files_extensions(files, extensions))
    return sorted(names)


def _fetchable(folder: str, extensions: set[str], on_disk: list[str]) -> dict[str, dict]:
    ctx = fetch.context()
    return ctx.fetchable(folder, extensions, set(on_disk)) if ctx is not None else {}


def list_models(folder: str, extensions: Iterable[str]) -> list[str]:
    """Names (relative paths) of the files with one of ``extensions`` in every path of ``folder``, then
    the manifest models of that folder not on disk yet (fetched when a graph uses them)."""
    return model_input(folder, extensions)[0]


def model_input(folder: str, extensions: Iterable[str]) -> tuple[list[str], dict]:
    """A loader's combo input: ``list_models`` plus a tooltip and ``model_fetch`` metadata marking the
    names that are not on disk yet. The values stay plain file names."""
    wanted = {e.lower() for e in extensions}
    on_disk = _on_disk(folder, wanted)
    missing = _fetchable(folder, wanted, on_disk)
    tooltip = f"Files in ComfyUI's '{folder}' folders."
    if missing:
        shown = ", ".join(f"{n} ({fetch.human_bytes(m['size'])})" for n, m in sorted(missing.items())[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        tooltip += (f" Listed after them, marked {fetch.MARK}: {len(missing)} model(s) from the model_fetch "
                    f"manifest that are not downloaded yet and are fetched when the graph runs: {shown}{more}.")
    options = {"tooltip": tooltip, "model_fetch": {"folder": folder, "missing": missing}}
    return on_disk + sorted(missing), options


def check_model(folder: str, name: str, extensions: Iterable[str]) -> bool | str:
    """``VALIDATE_INPUTS`` for a model input: True when ``name`` is on disk or fetchable, else why not.

    ComfyUI 0.8.0 skips its own "value not in list" check for an input that ``VALIDATE_INPUTS``
    takes, so this check stands in for it: it admits what the list holds (files on disk, manifest
    models not downloaded yet) and names file and folder for anything else.
    """
    wanted = {e.lower() for e in extensions}
    if name is None:  # fed by a link: known only when the graph runs, where resolve_model checks it
        return True
    if not isinstance(name, str) or not name:
        return f"a model file name is required for '{folder}'"
    if os.path.splitext(name)[1].lower() not in wanted:
        return f"'{name}' is not a {'/'.join(sorted(wanted))} file"
    if folder_paths.get_full_path(folder, name) is not None:
        return True
    ctx = fetch.context()
    try:
        if ctx is not None and ctx.entry(folder, name) is not None:
            return True
    except Exception as exc:  # noqa: BLE001 - a broken manifest is reported, not raised, at validation
        return f"model '{name}' is not on disk and the model_fetch manifest cannot be read: {exc}"
    return str(_not_found(folder, name))


UNET_EXTENSIONS = {GGUF, *folder_paths.supported_pt_extensions}
TEXT_ENCODER_EXTENSIONS = {GGUF, *folder_paths.supported_pt_extensions}


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
        return {"required": {"unet_name": model_input("diffusion_models", UNET_EXTENSIONS)}}

    @classmethod
    def VALIDATE_INPUTS(cls, unet_name):
        return check_model("diffusion_models", unet_name, UNET_EXTENSIONS)

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a WAN diffusion model. GGUF weights stay quantized in memory and are dequantized "
                   "layer by layer when the model runs; LoRAs apply on top at that point. Models marked "
                   f"{fetch.MARK} are not on disk yet: the run downloads them first.")

    def load(self, unet_name: str):
        return (load_diffusion_model(resolve_model("diffusion_models", unet_name)),)


class WanTextEncoderLoader:
    """umt5 text encoder for WAN from .safetensors or .gguf, any size (config read off the weights)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": model_input("text_encoders", TEXT_ENCODER_EXTENSIONS)}}

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name):
        return check_model("text_encoders", clip_name, TEXT_ENCODER_EXTENSIONS)

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a umt5 text encoder of any size for WAN (.safetensors, or .gguf in llama.cpp's T5 "
                   f"layout); the config comes from the weights. Models marked {fetch.MARK} are not on disk yet: "
                   "the run downloads them first.")

    def load(self, clip_name: str):
        return (load_wan_text_encoder(resolve_model("text_encoders", clip_name)),)


# --- community-compatible names ---------------------------------------------------------------------

class UnetLoaderGGUF:
    """Same node name and input as ComfyUI-GGUF's UNET loader, backed by this pack."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": model_input("diffusion_models", {GGUF})}}

    @classmethod
    def VALIDATE_INPUTS(cls, unet_name):
        return check_model("diffusion_models", unet_name, {GGUF})

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

        return {"required": {"clip_name": model_input("text_encoders", TEXT_ENCODER_EXTENSIONS),
                             "type": nodes.CLIPLoader.INPUT_TYPES()["required"]["type"]}}

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name):
        return check_model("text_encoders", clip_name, TEXT_ENCODER_EXTENSIONS)

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
