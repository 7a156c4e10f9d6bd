"""Model resolution for the pack's loaders: list a folder's choices, check a name, find its file.

``list_models(folder, extensions)`` / ``model_input`` hold the files on disk, then the manifest models
not downloaded yet under their plain file names (so saved workflows and API graphs keep plain names);
the input's tooltip and ``model_fetch`` metadata mark them, and web/model_fetch.js shows them with a ⤓
label in the dropdown. ``resolve_model`` goes through ComfyUI's hooked ``folder_paths`` (lookup.py),
which fetches such a model when the graph runs, as it does for every other loader. ``check_model`` (the
loaders' ``VALIDATE_INPUTS``) accepts a name that is on disk or in a manifest, so a graph can be queued
before its models exist, and rejects any other name with a message naming file and folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import folder_paths
from model_fetch import human_bytes

from . import catalog, pack_fetch
from .errors import ModelNotFound


def _not_found(folder: str, name: str) -> ModelNotFound:
    searched = ", ".join(folder_paths.get_folder_paths(folder)) or "none"
    fetcher = pack_fetch.context()
    if fetcher is None:
        hint = f"fetch on first use is off ({pack_fetch.disabled_reason()})"
    else:
        hint = (f"no model_fetch manifest lists it (manifests: {fetcher.catalog.sources_text()}); add an entry with "
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
    fetcher = pack_fetch.context()
    return fetcher.catalog.fetchable(folder, extensions, set(on_disk)) if fetcher is not None else {}


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
    if missing:  # listed by model_fetch, so it imports
        shown = ", ".join(f"{n} ({human_bytes(m['size'])})" for n, m in sorted(missing.items())[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        tooltip += (f" Listed after them, marked {catalog.MARK}: {len(missing)} model(s) from the model_fetch "
                    f"manifest that are not downloaded yet and are fetched when the graph runs: {shown}{more}.")
    options = {"tooltip": tooltip, "model_fetch": {"folder": folder, "missing": missing}}
    return on_disk + sorted(missing), options


def check_model(folder: str, name: str | None, extensions: Iterable[str]) -> bool | str:
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
    fetcher = pack_fetch.context()
    try:
        if fetcher is not None and fetcher.catalog.entry(folder, name) is not None:
            return True
    except Exception as exc:  # noqa: BLE001 - a broken manifest is reported, not raised, at validation
        return f"model '{name}' is not on disk and the model_fetch manifest cannot be read: {exc}"
    return str(_not_found(folder, name))
