"""The input files a graph loads (``LoadImage``-style inputs) must exist before it is queued: a job that
forgot ``images`` answers ``invalid_input`` naming the node and input, not ComfyUI's "Invalid image file"
(which would also echo whatever the input held, base64 included, into ComfyUI's log)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .object_info import spec_options
from .redact import clip

# Image-upload inputs of ComfyUI's own loaders, used when /object_info is not at hand.
KNOWN_LOADERS = {"LoadImage": ("image", "input"), "LoadImageMask": ("image", "input"),
                 "LoadImageOutput": ("image", "output")}
_ANNOTATION = re.compile(r"^(.*) \[(input|output|temp)\]$")


def image_inputs(graph: dict[str, Any], object_info: dict[str, Any] | None) -> Iterator[tuple[str, str, str, str]]:
    """``(node id, class type, input name, folder)`` of every image-upload input set to a file name."""
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            continue
        class_type, inputs = node.get("class_type"), node.get("inputs") or {}
        info = object_info.get(class_type) if object_info and isinstance(class_type, str) else None
        if info is not None:
            specs = {**(info.get("input") or {}).get("required", {}), **(info.get("input") or {}).get("optional", {})}
            for name, spec in specs.items():
                opts = spec_options(spec)
                if opts.get("image_upload") and isinstance(inputs.get(name), str):
                    yield str(node_id), str(class_type), name, opts.get("image_folder", "input")
        elif class_type in KNOWN_LOADERS:
            name, folder = KNOWN_LOADERS[class_type]
            if isinstance(inputs.get(name), str):
                yield str(node_id), str(class_type), name, folder


def check_input_files(graph: dict[str, Any], object_info: dict[str, Any] | None, folders: dict[str, Path],
                      coming: Collection[str] = ()) -> None:
    """Raise InvalidInput for the first image input whose file is neither in its ComfyUI folder
    (``folders``: ``input``/``output``/``temp`` -> path) nor among the job's files still to upload (``coming``)."""
    for node_id, class_type, name, folder in image_inputs(graph, object_info):
        value = graph[node_id]["inputs"][name]
        match = _ANNOTATION.match(value)
        file, where = (match.group(1), match.group(2)) if match else (value, folder)
        base = folders.get(where)
        if file in coming and where == "input":
            continue
        if base is not None and "\x00" not in file:
            try:
                path = (base / file).resolve()
                if path.is_relative_to(base.resolve()) and path.is_file():
                    continue
            except OSError:
                pass  # a name no filesystem holds (too long): missing
        field = f"workflow.{node_id}.inputs.{name}"
        raise InvalidInput(field, f"{class_type} node {node_id} loads {clip(value)!r}, which is not in ComfyUI's "
                                  f"{where} folder: send the file in 'images' ([{{\"name\": ..., \"image\": <base64, "
                                  f"data URI or https URL>}}]) under that name")
