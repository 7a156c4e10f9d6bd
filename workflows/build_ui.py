"""Build the graph-editor (UI-format) workflow from its API-format file and ComfyUI's ``/object_info``.

    .venv/bin/python workflows/build_ui.py [NAME] [--object-info FILE] [--check]

Writes ``workflows/NAME.json`` (default NAME ``wan22_i2v_gguf``) from ``workflows/NAME.api.json``: same
node ids and titles, nodes laid out in columns, widget values in the frontend's order, loaders carrying
``properties.models`` (from ``model_fetch/default_manifest.json``) so the editor's missing-models dialog
offers downloads. ``--check`` exits 1 when the file on disk differs from what would be written.
The UI file must convert back to the API file exactly (``worker.ui_to_api``; tested).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.object_info import is_widget_input, ordered_specs, widget_slots  # noqa: E402

log = logging.getLogger("build_ui")
HERE = Path(__file__).resolve().parent
DEFAULT_OBJECT_INFO = ROOT / "tests" / "data" / "object_info.json"
FRONTEND_VERSION = "1.35.9"
PACK_NODES = {"WanUnetLoaderGGUF", "WanTextEncoderLoader"}
COLORS = {"Positive Prompt": ("#232", "#353"), "Negative Prompt": ("#322", "#533")}
NOTE = ("## WAN 2.2 image to video (GGUF, two stages)\n\n"
        "High-noise model for the first half of the steps, low-noise model for the rest; the lightx2v "
        "distill LoRA makes 4 steps at CFG 1 enough.\n\n"
        "The serverless worker sets these inputs from job parameters (see `wan22_i2v_gguf.params.json`): "
        "image, prompt, negative_prompt, seed, width, height, length, fps, steps, cfg, shift, lora_strength.\n\n"
        "Renaming or re-numbering nodes? Update the parameter map too: the worker checks node ids and titles.")
# Per workflow: columns of node ids (left to right) and titled groups around some of them.
LAYOUTS: dict[str, dict[str, Any]] = {
    "wan22_i2v_gguf": {
        "columns": [["6", "7", "2", "5", "1"], ["8", "9", "3", "4"], ["10", "11", "12"], ["13", "14"],
                    ["15", "16"], ["17"]],
        "groups": {"Models (GGUF, text encoder, VAE)": ["6", "7", "2", "5"], "Start image": ["1"],
                   "LightX2V LoRA + shift": ["8", "9", "10", "11"], "Prompts": ["3", "4"],
                   "Size & length": ["12"], "Two-stage sampling": ["13", "14"], "Video": ["15", "16", "17"]},
        "note": NOTE,
    },
}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _depth_columns(api: dict) -> list[list[str]]:
    depth: dict[str, int] = {}

    def of(node_id: str, trail: tuple = ()) -> int:
        if node_id not in depth:
            ups = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v) and v[0] not in trail]
            depth[node_id] = 1 + max((of(u, trail + (node_id,)) for u in ups), default=-1)
        return depth[node_id]

    columns: dict[int, list[str]] = {}
    for node_id in sorted(api, key=int):
        columns.setdefault(of(node_id), []).append(node_id)
    return [columns[d] for d in sorted(columns)]


def _manifest() -> dict[str, dict]:
    from model_fetch import load_manifest

    return {e.name: {"name": e.name, "url": e.url, "directory": e.directory} for e in load_manifest()}


def _size(cls: str, n_sockets: int, n_outputs: int, n_widgets: int, multiline: bool) -> list[float]:
    width = 420 if multiline or cls in ("SaveVideo", "LoadImage") else 340
    height = 30 + 22 * max(n_sockets, n_outputs) + 24 * n_widgets
    height += 120 if multiline else 0
    height += 260 if cls in ("LoadImage", "SaveVideo") else 0
    return [width, height]


def build(api: dict, object_info: dict, layout: dict[str, Any] | None = None) -> dict:
    """The UI-format workflow for ``api`` (node ids, titles and values kept)."""
    layout = layout or {"columns": _depth_columns(api), "groups": {}}
    models = _manifest()
    links: list[list] = []
    out_links: dict[tuple[str, int], list[int]] = {}
    nodes: dict[str, dict] = {}
    order = [n for column in _depth_columns(api) for n in column]
    for node_id in sorted(api, key=int):
        entry, cls = api[node_id], api[node_id]["class_type"]
        info = object_info[cls]
        specs = ordered_specs(info)
        inputs, linked_widgets = [], []
        for name, spec, optional in specs:
            value = entry["inputs"].get(name)
            if is_widget_input(spec):
                if _is_link(value):
                    linked_widgets.append({"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                                           "widget": {"name": name}, "link": value})
                continue
            slot = {"name": name, "type": spec[0], "link": value if _is_link(value) else None}
            inputs.append({**slot, "shape": 7} if optional else slot)
        inputs += linked_widgets
        values: list[Any] = []
        for slot in widget_slots(info):
            value = entry["inputs"].get(slot.name, slot.default)
            if slot.extra:
                value = "fixed" if slot.name == "control_after_generate" else ""
            elif not slot.serialize:
                value = "image"
            values.append(slot.default if _is_link(value) else value)
        multiline = any(_opt(spec, "multiline") for name, spec, _ in specs if name in entry["inputs"])
        node: dict[str, Any] = {
            "id": int(node_id), "type": cls, "pos": [0, 0],
            "size": _size(cls, len(inputs), len(info["output"]), len(values), multiline),
            "flags": {}, "order": order.index(node_id), "mode": 0, "inputs": inputs,
            "outputs": [{"name": name, "type": kind, "links": None, "slot_index": i}
                        for i, (kind, name) in enumerate(zip(info["output"], info["output_name"]))],
            "title": entry.get("_meta", {}).get("title") or info.get("display_name") or cls,
            "properties": {"Node name for S&R": cls, **({} if cls in PACK_NODES else {"cnr_id": "comfy-core",
                                                                                       "ver": "0.8.0"})},
            "widgets_values": values,
        }
        used = [models[v] for v in entry["inputs"].values() if isinstance(v, str) and v in models]
        if used:
            node["properties"]["models"] = used
        if node["title"] in COLORS:
            node["color"], node["bgcolor"] = COLORS[node["title"]]
        nodes[node_id] = node
    for node_id in sorted(api, key=int):  # links in target order, slots as the editor numbers them
        for index, slot in enumerate(nodes[node_id]["inputs"]):
            if slot["link"] is None:
                continue
            origin, origin_slot = slot["link"]
            link_id = len(links) + 1
            links.append([link_id, int(origin), origin_slot, int(node_id), index, slot["type"]])
            slot["link"] = link_id
            out_links.setdefault((origin, origin_slot), []).append(link_id)
    for (origin, origin_slot), ids in out_links.items():
        nodes[origin]["outputs"][origin_slot]["links"] = ids
    group_of = {m: title for title, members in layout["groups"].items() for m in members}
    x = 60.0
    for column in layout["columns"]:
        y, previous = 80.0, None
        for node_id in column:
            if previous is not None:  # more room where a group ends, for its border and the next title
                y += 60 if group_of.get(node_id) == group_of.get(previous) else 140
            nodes[node_id]["pos"] = [x, y]
            y, previous = y + nodes[node_id]["size"][1], node_id
        x += max(nodes[n]["size"][0] for n in column) + 80
    groups = []
    for gid, (title, members) in enumerate(layout["groups"].items(), start=1):
        left = min(nodes[m]["pos"][0] for m in members) - 20
        top = min(nodes[m]["pos"][1] for m in members) - 50
        right = max(nodes[m]["pos"][0] + nodes[m]["size"][0] for m in members) + 20
        bottom = max(nodes[m]["pos"][1] + nodes[m]["size"][1] for m in members) + 20
        groups.append({"id": gid, "title": title, "bounding": [left, top, right - left, bottom - top],
                       "color": "#3f789e", "font_size": 24, "flags": {}})
    node_list = [nodes[n] for n in sorted(nodes, key=int)]
    if layout.get("note"):
        node_list.append({"id": len(nodes) + 1, "type": "MarkdownNote", "pos": [60, -300], "size": [560, 260],
                          "flags": {}, "order": len(nodes), "mode": 0, "inputs": [], "outputs": [],
                          "title": "About this workflow", "properties": {}, "widgets_values": [layout["note"]],
                          "color": "#432", "bgcolor": "#000"})
    all_models = {m["name"]: m for n in node_list for m in n["properties"].get("models", [])}
    return {"id": "5d0c1f7e-2a52-4c1b-9f0e-3b8a6c7d2e11", "revision": 0,
            "last_node_id": max(n["id"] for n in node_list), "last_link_id": len(links),
            "nodes": node_list, "links": links, "groups": groups, "config": {},
            "extra": {"ds": {"scale": 0.7, "offset": [0, 380]}, "frontendVersion": FRONTEND_VERSION},
            "models": list(all_models.values()), "version": 0.4}


def _opt(spec: Any, key: str) -> Any:
    return spec[1].get(key) if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) else None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="wan22_i2v_gguf")
    parser.add_argument("--object-info", type=Path, default=DEFAULT_OBJECT_INFO)
    parser.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = parser.parse_args(argv)
    api = json.loads((HERE / f"{args.name}.api.json").read_text())
    ui = build(api, json.loads(args.object_info.read_text()), LAYOUTS.get(args.name))
    text = json.dumps(ui, indent=2, ensure_ascii=False) + "\n"
    target = HERE / f"{args.name}.json"
    if args.check:
        same = target.is_file() and target.read_text() == text
        log.info("%s is %s", target, "up to date" if same else "OUT OF DATE: run workflows/build_ui.py")
        return 0 if same else 1
    target.write_text(text)
    log.info("wrote %s (%d nodes, %d links)", target, len(ui["nodes"]), len(ui["links"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
