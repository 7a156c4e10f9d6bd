"""ComfyUI's model lookup, hooked once: every loader lists manifest models and fetches them on first resolve.

ComfyUI's loaders, stock and third-party, list their choices with ``folder_paths.get_filename_list``
and find their file with ``folder_paths.get_full_path`` (``get_full_path_or_raise`` calls it).
``install()`` wraps both, in place, so no node needs fetch code of its own:

* ``get_filename_list(folder)``: the files on disk as before, then the models a source knows (a
  manifest, or a workflow source accepted for a queued prompt) that are not on disk yet, with one
  of the folder's extensions. They are plain file names, so they pass ComfyUI's "value in list"
  validation and saved workflows keep plain names.
* ``get_full_path(folder, name)``: as before when the file is on disk. When it is not, and a node is
  executing (ComfyUI's executing context is set, in the prompt worker thread: validation at queue
  time never fetches) and a source knows the file, the file is fetched
  first, with a byte progress bar on that node; the call returns its path. Outside execution
  (HTTP routes, listings) nothing is ever fetched.

Folders other packs register under their own names map to the manifest folder they share paths
with (``unet_gguf`` of city96's ComfyUI-GGUF lists ``diffusion_models`` GGUF files).

This module imports nothing of the pack: ``install`` is handed the function that returns the
process's model source (``pack_fetch.context``), so the catalog may import ``original_full_path``
without an import cycle.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from model_fetch import FileProgress, ModelEntry, canonical_folder


log = logging.getLogger(__name__)


class ModelNames(Protocol):
    """What the hook needs of the pack's catalog (``catalog.Catalog``): names and entries."""

    def known_names(self, directory: str) -> list[str]: ...

    def entry(self, folder: str, name: str) -> ModelEntry | None: ...


class ModelDownloads(Protocol):
    """What the hook needs of the pack's downloads (``downloads.Downloads``): a blocking fetch."""

    def fetch(self, entry: ModelEntry, on_progress: Callable[[FileProgress], None] | None = None,
              on_poll: Callable[[], None] | None = None) -> Path: ...


class ModelSource(Protocol):
    """The pack's fetch (``pack_fetch.PackFetch``): its catalog and its downloads."""

    @property
    def catalog(self) -> ModelNames: ...

    @property
    def downloads(self) -> ModelDownloads: ...


#: Returns the process's model source, or None when fetching is off (``pack_fetch.context``).
SourceGetter = Callable[[], "ModelSource | None"]

#: Folder names third-party packs register for a manifest folder (city96's ComfyUI-GGUF).
FOLDER_ALIASES = {"unet_gguf": "diffusion_models", "clip_gguf": "text_encoders"}

_original: dict[str, Callable] = {}


def original_full_path(folder: str, name: str) -> str | None:
    """ComfyUI's own ``get_full_path``: on disk or None, never fetching."""
    import folder_paths

    return _original.get("get_full_path", folder_paths.get_full_path)(folder, name)


def directory_of(folder: str) -> str:
    """The manifest folder (``directory``) behind a ComfyUI folder name."""
    import folder_paths

    return canonical_folder(FOLDER_ALIASES.get(folder, folder_paths.map_legacy(folder)))


def _extensions(folder: str) -> set[str]:
    import folder_paths

    entry = folder_paths.folder_names_and_paths.get(folder_paths.map_legacy(folder))
    return {e.lower() for e in entry[1]} if entry else set()


def fetchable_names(folder: str, on_disk: list[str], names: ModelNames | None) -> list[str]:
    """Names of ``folder`` that a source knows but that are not on disk, sorted."""
    if names is None:
        return []
    wanted, have = _extensions(folder), set(on_disk)
    return sorted(name for name in names.known_names(directory_of(folder))
                  if name not in have and (not wanted or os.path.splitext(name)[1].lower() in wanted))


def _progress_bar(entry: ModelEntry) -> Callable[[FileProgress], None]:
    """A model_fetch progress callback driving the executing node's ComfyUI progress bar, in bytes."""
    import comfy.utils

    bar = comfy.utils.ProgressBar(entry.size or 1)

    def update(progress: FileProgress) -> None:
        total = progress.total or entry.size or max(progress.done, 1)
        bar.update_absolute(min(progress.done, total), total)

    return update


def fetch_on_resolve(folder: str, name: str, source: ModelSource | None) -> str | None:
    """The path of ``name`` after fetching it for the executing node, or None when no source knows it."""
    import comfy.model_management

    entry = source.catalog.entry(directory_of(folder), name) if source is not None else None
    if source is None or entry is None:
        return None
    log.info("'%s' is not on disk; fetching it into '%s' (fetch on first use)", name, entry.directory)
    fetched = source.downloads.fetch(entry, on_progress=_progress_bar(entry),
                                     on_poll=comfy.model_management.throw_exception_if_processing_interrupted)
    return original_full_path(folder, name) or str(fetched)


def _executing() -> bool:
    """True while a node runs in ComfyUI's prompt worker. ComfyUI also sets the executing context for
    ``VALIDATE_INPUTS`` at queue time, but that runs on the server's event loop in the main thread."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return False
    return get_executing_context() is not None and threading.current_thread() is not threading.main_thread()


def install(context: SourceGetter) -> None:
    """Wrap ``folder_paths.get_filename_list`` and ``get_full_path`` (once per process); ``context``
    returns the model source (``pack_fetch.context``), asked on every call."""
    import folder_paths

    if _original:
        return
    _original["get_filename_list"] = list_original = folder_paths.get_filename_list
    _original["get_full_path"] = full_original = folder_paths.get_full_path

    def get_filename_list(folder_name: str) -> list[str]:
        names = list_original(folder_name)
        try:
            source = context()
            return names + fetchable_names(folder_name, names, source.catalog if source is not None else None)
        except Exception:  # noqa: BLE001 - a broken manifest must not break ComfyUI's lists
            log.exception("model_fetch: listing fetchable models of '%s' failed", folder_name)
            return names

    def get_full_path(folder_name: str, filename: str) -> str | None:
        path = full_original(folder_name, filename)
        if path is not None or not _executing():
            return path
        return fetch_on_resolve(folder_name, filename, context())

    get_filename_list.__doc__ = list_original.__doc__
    get_full_path.__doc__ = full_original.__doc__
    folder_paths.get_filename_list = get_filename_list
    folder_paths.get_full_path = get_full_path
    log.info("model_fetch: ComfyUI's model lookup hooked: loaders list and fetch manifest models on first use")
