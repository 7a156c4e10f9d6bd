"""The store of fetch on first use inside ComfyUI: its settings, its models roots, and their folders
registered with ComfyUI.

Store (the models roots model_fetch reads and writes):

* ``MODEL_FETCH_MODELS_DIR`` set: exactly those roots, as for the CLI and the worker.
* unset: the network volume (``MODEL_FETCH_VOLUME_DIR``, default ``/runpod-volume/models``) when it
  exists, then ComfyUI's own models directory (``folder_paths.models_dir``), then model_fetch's
  local root (``MODEL_FETCH_LOCAL_DIR``). Downloads go to the first writable one: the shared
  volume when there is one, otherwise ComfyUI's ``models/``, where a ComfyUI user expects them.

Every root's folders (legacy aliases included) are appended to ComfyUI's search paths unless
already there, so a file model_fetch places is found by the very loader that asked, with or
without an ``extra_model_paths.yaml``. Paths ComfyUI already searches keep their precedence.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import folder_paths
from model_fetch import MODEL_FOLDERS, Settings, Store

log = logging.getLogger(__name__)


def store_roots(settings: Settings, comfy_models_dir: Path) -> list[Path]:
    """The models roots of the pack's store, in search order (the first writable one is written to)."""
    if settings.models_dirs:
        return list(settings.models_dirs)
    roots = [settings.volume_dir] if settings.volume_dir.is_dir() else []
    roots += [comfy_models_dir, settings.local_dir]
    unique: dict[str, Path] = {}
    for root in roots:
        unique.setdefault(os.path.realpath(root), Path(root))
    return list(unique.values())


def register_roots(roots: list[Path], folders: dict[str, tuple[str, ...]]) -> list[str]:
    """Append each root's model folders to ComfyUI's search paths; return the paths added."""
    added = []
    for folder, subdirs in folders.items():
        if folder not in folder_paths.folder_names_and_paths:
            continue
        known = {os.path.realpath(p) for p in folder_paths.get_folder_paths(folder)}
        for root in roots:
            for sub in subdirs:
                path = os.path.join(os.path.abspath(root), sub)
                if os.path.realpath(path) not in known:
                    folder_paths.add_model_folder_path(folder, path, is_default=False)
                    known.add(os.path.realpath(path))
                    added.append(path)
    return added


def make_store() -> tuple[Settings, Store]:
    """``(settings, store)`` for this ComfyUI process, its roots registered with ComfyUI; ``SettingError``
    when the environment holds a value a setting cannot take."""
    settings = Settings.from_env()
    store = Store(store_roots(settings, Path(folder_paths.models_dir)))
    added = register_roots(store.roots, MODEL_FOLDERS)
    log.info("model_fetch store: %s%s", ", ".join(map(str, store.roots)),
             f" ({len(added)} folder path(s) added to ComfyUI's search paths)" if added else "")
    return settings, store
