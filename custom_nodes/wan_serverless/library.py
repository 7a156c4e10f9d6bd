"""The Model Library sidebar lists the ``.gguf`` files the pack's loaders read.

The editor's Model Library reads ``GET /experiment/models/{folder}`` (ComfyUI's app/model_manager.py),
which keeps only ``folder_paths.supported_pt_extensions``: a folder holding only GGUF models shows
"0". The pack cannot widen that set (it is shared by every stock loader's list), so this middleware
adds, for the folders whose pack loaders take ``.gguf`` (``GGUF_FOLDERS``), every ``.gguf`` under
each of the folder's search paths (the pack's store roots included) in the same row shape:
``{name, pathIndex, modified, created, size}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
GGUF_FOLDERS = ("diffusion_models", "text_encoders")
PREFIXES = ("/experiment/models/", "/api/experiment/models/")


def gguf_rows(folder: str) -> list[dict]:
    """The ``.gguf`` files under ``folder``'s search paths, as ComfyUI's model manager lists files."""
    import folder_paths

    rows = []
    for index, directory in enumerate(folder_paths.get_folder_paths(folder)):
        for dirpath, subdirs, filenames in os.walk(directory, followlinks=True):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for file_name in filenames:
                if file_name.startswith(".") or not file_name.lower().endswith(".gguf"):
                    continue
                path = os.path.join(dirpath, file_name)
                try:
                    st = os.stat(path)
                except OSError as exc:
                    log.warning("model library: cannot read %s: %s", path, exc)
                    continue
                rows.append({"name": os.path.relpath(path, directory), "pathIndex": index,
                             "modified": st.st_mtime, "created": st.st_ctime, "size": st.st_size})
    return rows


def _folder(request: web.Request) -> str | None:
    """The model folder a Model Library listing asks for, when it is one of GGUF_FOLDERS."""
    if request.method != "GET":
        return None
    for prefix in PREFIXES:
        if request.path.startswith(prefix):
            import folder_paths

            folder = folder_paths.map_legacy(request.path[len(prefix):])
            return folder if folder in GGUF_FOLDERS else None
    return None


@web.middleware
async def list_gguf_files(request: web.Request, handler: Any) -> web.StreamResponse:
    """Add the folder's ``.gguf`` files to ComfyUI's answer (those it already lists are kept once)."""
    folder = _folder(request)
    response = await handler(request)
    if folder is None or response.status != 200 or not isinstance(response, web.Response) or response.body is None:
        return response
    try:
        rows = json.loads(response.text or "")
    except (TypeError, ValueError):
        return response
    if not isinstance(rows, list):
        return response
    listed = {(r.get("pathIndex"), r.get("name")) for r in rows if isinstance(r, dict)}
    extra = [r for r in await asyncio.to_thread(gguf_rows, folder) if (r["pathIndex"], r["name"]) not in listed]
    return web.json_response(rows + extra) if extra else response
