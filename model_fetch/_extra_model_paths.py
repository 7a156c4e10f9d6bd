"""ComfyUI's ``extra_model_paths.yaml``: the one place that builds and writes one.

``write_model_paths_yaml`` writes any sections (the worker's, for a ComfyUI install's own ``models/``);
``write_extra_model_paths`` writes one section per models root, every folder alias mapped
(``model-fetch paths``, for a ComfyUI without the pack).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ModelPathsSection:
    """One section of an ``extra_model_paths.yaml``: ComfyUI searches ``base_path/<dir>`` for each
    folder key's directories, in order; an ``is_default`` section's paths go first (and are written to)."""

    name: str
    base_path: Path
    folders: Mapping[str, Sequence[str]]
    is_default: bool = False

    def as_yaml(self) -> dict[str, Any]:
        section: dict[str, Any] = {"base_path": str(self.base_path)}
        if self.is_default:
            section["is_default"] = True
        section.update({key: "".join(f"{d}\n" for d in dirs) for key, dirs in self.folders.items()})
        return section


def write_model_paths_yaml(path: Path, sections: Iterable[ModelPathsSection], comment: str) -> Path:
    """Write the sections as one YAML file, atomically, under a ``# comment`` line; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {s.name: s.as_yaml() for s in sections}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(f"# {comment}\n" + yaml.safe_dump(doc, sort_keys=False, default_style=None), encoding="utf-8")
    os.replace(tmp, path)
    return path


def store_sections(store: Store) -> list[ModelPathsSection]:
    """One section per root, every folder key mapped; the write root is ``is_default``."""
    write_root = store.write_root()
    return [ModelPathsSection(f"model_fetch_{i}", root,
                              # is_default inserts each path at the front: reversed, the first comes out first
                              {key: tuple(reversed(dirs)) if root == write_root else dirs for key, dirs in YAML_KEYS.items()},
                              is_default=root == write_root)
            for i, root in enumerate(store.roots)]


def write_extra_model_paths(store: Store, path: Path) -> Path:
    """Write the store's YAML; create the folders so ComfyUI lists them."""
    for root in store.roots:
        for dirs in YAML_KEYS.values():
            for d in dirs:
                try:
                    (root / d).mkdir(parents=True, exist_ok=True)
                except OSError:
                    pass
    return write_model_paths_yaml(path, store_sections(store),
                                  "written by `model-fetch paths`; ComfyUI: --extra-model-paths-config <this file>")
