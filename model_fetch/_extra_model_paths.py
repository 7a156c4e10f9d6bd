"""``extra_model_paths.yaml`` for ComfyUI, mapping every models root and folder alias."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ._model_folders import FOLDERS
from ._store import Store

# ComfyUI config key -> directories under a root. The legacy keys come first: ComfyUI maps them to
# the canonical folder, and for an ``is_default`` root each path added later goes to the front.
YAML_KEYS: dict[str, tuple[str, ...]] = {
    "unet": FOLDERS["diffusion_models"],
    "clip": FOLDERS["text_encoders"],
    "diffusion_models": FOLDERS["diffusion_models"],
    "text_encoders": FOLDERS["text_encoders"],
    "vae": ("vae",),
    "loras": ("loras",),
    "clip_vision": ("clip_vision",),
    "checkpoints": ("checkpoints",),
    "upscale_models": ("upscale_models",),
}


def extra_model_paths(store: Store) -> dict[str, Any]:
    """The YAML document as a dict: one section per root, the write root marked ``is_default``."""
    write_root = store.write_root()
    doc = {}
    for i, root in enumerate(store.roots):
        section: dict[str, Any] = {"base_path": str(root)}
        if root == write_root:
            section["is_default"] = True
        for key, dirs in YAML_KEYS.items():
            ordered = reversed(dirs) if root == write_root else dirs  # is_default inserts at the front
            section[key] = "\n".join(ordered) + "\n"
        doc[f"model_fetch_{i}"] = section
    return doc


def write_extra_model_paths(store: Store, path: Path) -> Path:
    """Write the YAML atomically; create the folders so ComfyUI lists them."""
    for root in store.roots:
        for dirs in YAML_KEYS.values():
            for d in dirs:
                try:
                    (root / d).mkdir(parents=True, exist_ok=True)
                except OSError:
                    pass
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text("# written by `model-fetch paths`; ComfyUI: --extra-model-paths-config <this file>\n"
                   + yaml.safe_dump(extra_model_paths(store), sort_keys=False, default_style=None))
    os.replace(tmp, path)
    return path
