"""ComfyUI's model-folder conventions: canonical names, legacy aliases, and which loader input reads which folder."""

from __future__ import annotations

from pathlib import Path

# canonical folder -> every directory ComfyUI 0.8.0 searches for it (first is where we write)
FOLDERS: dict[str, tuple[str, ...]] = {
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
    "loras": ("loras",),
    "clip_vision": ("clip_vision",),
    "checkpoints": ("checkpoints",),
    "upscale_models": ("upscale_models",),
    "embeddings": ("embeddings",),
    "controlnet": ("controlnet",),
}
ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
# every model folder ComfyUI 0.8.0 searches (folder_paths.folder_names_and_paths, less custom_nodes), and aliases
COMFYUI_FOLDERS: tuple[str, ...] = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
    "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models", "latent_upscale_models",
    "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders", *ALIASES)

# API-format loader nodes: class_type -> {input name: folder}
LOADER_INPUTS: dict[str, dict[str, str]] = {
    "UNETLoader": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "TripleCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders", "clip_name3": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "UpscaleModelLoader": {"model_name": "upscale_models"},
    # city96/ComfyUI-GGUF names (our pack registers them too when that pack is absent)
    "UnetLoaderGGUF": {"unet_name": "diffusion_models"},
    "UnetLoaderGGUFAdvanced": {"unet_name": "diffusion_models"},
    "CLIPLoaderGGUF": {"clip_name": "text_encoders"},
    "DualCLIPLoaderGGUF": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    # our pack
    "WanUnetLoaderGGUF": {"unet_name": "diffusion_models"},
    "WanTextEncoderLoader": {"clip_name": "text_encoders"},
}
# values of loader inputs that are not files
NOT_FILES = {"pixel_space", "None", ""}


def canonical(folder: str) -> str:
    """``unet`` -> ``diffusion_models``, ``clip`` -> ``text_encoders``; others unchanged."""
    folder = folder.strip().strip("/")
    return ALIASES.get(folder, folder)


def search_dirs(folder: str) -> tuple[str, ...]:
    """Directories (relative to a models root) searched for ``folder``."""
    c = canonical(folder)
    return FOLDERS.get(c, (c,))


def unknown_folder_hint(folder: str) -> str | None:
    """None if ComfyUI searches ``folder``; else why not, suggesting the folder meant (``LoRAs`` -> ``loras``)."""
    name = folder.strip().strip("/")
    if name in COMFYUI_FOLDERS:
        return None
    import difflib  # only for a folder ComfyUI does not search

    same_case = [f for f in COMFYUI_FOLDERS if f.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name.lower(), COMFYUI_FOLDERS, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (f"{folder!r} is not a folder ComfyUI searches (names are case-sensitive): {hint}"
            f"use one of {', '.join(COMFYUI_FOLDERS)}")


def is_file(path: Path) -> bool:
    """``path.is_file()``, False also for a name the filesystem cannot hold (too long: a name from a job)."""
    try:
        return path.is_file()
    except OSError:
        return False
