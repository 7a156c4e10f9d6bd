"""UI-format workflow (what the graph editor saves) → API-format prompt, as the frontend's ``graphToPrompt`` does.

Mirrors ComfyUI frontend 1.35.9: widget values map to input names in the node definition's order
(``input_order`` required, then optional, then inputs the frontend adds itself, such as ``upload``);
seed-like INT/FLOAT inputs carry one extra ``control_after_generate`` value, controlled COMBOs two;
links win over widget values; muted nodes (mode 2) are dropped and inputs fed by them removed;
bypassed nodes (mode 4) pass an input of the wanted type through; ``Reroute`` and ``PrimitiveNode``
are resolved; notes are dropped; subgraphs (``definitions.subgraphs``) are expanded with ``outer:inner``
ids; ``dynamicPrompts`` strings get the frontend's comment stripping and ``{a|b}`` choice; save nodes'
``filename_prefix`` gets ``%date:…%`` and ``%Node.widget%`` replacements. Legacy group nodes are refused.
"""

from __future__ import annotations

import datetime as _dt
import random
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput
from .object_info import migrate_values, widget_slots

MUTED, BYPASS = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20
FRONTEND_ONLY = {"Note", "MarkdownNote", "Label (rgthree)", "Bookmark (rgthree)", "Fast Groups Bypasser (rgthree)",
                 "Fast Groups Muter (rgthree)", "Fast Bypasser (rgthree)", "Fast Muter (rgthree)"}
REROUTES = {"Reroute", "Reroute (rgthree)"}
SAVE_NODES = {"SaveImage", "SaveVideo", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB", "SaveAnimatedPNG",
              "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent"}


def process_dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """The frontend's dynamic prompts: strip ``/* */`` and ``//`` comments, pick one of ``{a|b|c}``."""
    rng, text, pos = rng or random.Random(), re.sub(r"/\*[\s\S]*?\*/|//.*", "", text), 0

    def block(top: bool) -> str:  # top: the whole text; else one {a|b} block, up to its '}'
        nonlocal pos
        options: list[str] = []
        current, depth = "", 0
        while pos < len(text):
            ch, pos = text[pos], pos + 1
            if ch == "\\":
                current, pos = current + "\\" + text[pos:pos + 1], pos + 1
            elif top:
                current += block(False) if ch == "{" else ch
            elif ch == "|" and not depth:
                options, current = options + [current], ""
            else:
                if ch == "}" and not depth:
                    break
                depth += (ch == "{") - (ch == "}")
                current += ch
        return current if top else process_dynamic_prompt(rng.choice(options + [current]), rng)

    return re.sub(r"\\([{}|])", r"\1", block(True))


def _format_date(fmt: str, now: _dt.datetime) -> str:
    """The frontend's ``%date:yyyy-MM-dd hh:mm:ss%`` formatting."""
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}
    return re.sub(r"dd?|MM?|hh?|mm?|ss?|yyy?y?", lambda m: str(now.year)[2:] if m[0] == "yy" else str(now.year)
                  if m[0] == "yyyy" else m[0] if m[0][0] == "y" else str(parts[m[0][0]]).zfill(len(m[0])), fmt)


@dataclass(frozen=True)
class _Value:
    """A value an input resolves to instead of a link (a subgraph node's promoted widget)."""

    value: Any


@dataclass
class _Graph:
    """One graph level: the root or a subgraph instance's definition, with its id path."""

    nodes: dict[str, dict[str, Any]]
    links: dict[str, dict[str, Any]]
    path: tuple[str, ...] = ()
    instance: dict[str, Any] | None = None  # the subgraph node this level lives in
    parent: _Graph | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)  # subgraph definition inputs


def _links(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, list):
        raise InvalidInput("workflow", f"{where}: 'links' must be a list")
    out = {}
    for link in raw:
        if isinstance(link, list) and len(link) >= 5:
            link = dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), link))
        if isinstance(link, dict) and link.get("id") is not None:
            out[str(link["id"])] = link
        elif link is not None:
            raise InvalidInput("workflow", f"{where}: malformed link {str(link)[:80]}")
    return out


def _nodes(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, list):
        raise InvalidInput("workflow", f"{where}: 'nodes' must be a list")
    out = {}
    for i, node in enumerate(raw):
        if not isinstance(node, dict) or node.get("id") is None or not isinstance(node.get("type"), str):
            raise InvalidInput("workflow", f"{where}: node at index {i} needs an 'id' and a string 'type'")
        if not isinstance(node.get("inputs") or [], list) or not isinstance(node.get("outputs") or [], list):
            raise InvalidInput("workflow", f"{where}: node {node['id']} has malformed inputs/outputs")
        out[str(node["id"])] = node
    return out


def _js_str(value: Any) -> str:
    """``String(value ?? "")`` as JavaScript writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _valid(a: Any, b: Any) -> bool:
    """LiteGraph's ``isValidConnection`` for two slot types."""
    a, b = (0 if t in ("", "*", None, 0) else str(t).lower() for t in (a, b))
    if not a or not b or a == b:
        return True
    return any(x == y for x in a.split(",") for y in b.split(",")) if "," in a + b else False


class _Converter:
    def __init__(self, ui: dict[str, Any], object_info: dict[str, Any], rng: random.Random | None) -> None:
        self.info, self.rng = object_info, rng or random.Random()
        self.subgraphs: dict[str, dict[str, Any]] = {}
        defs = ui.get("definitions")
        for sub in (defs.get("subgraphs") or [] if isinstance(defs, dict) else []):
            if isinstance(sub, dict) and sub.get("id"):
                self.subgraphs[str(sub["id"])] = sub
        groups = (ui.get("extra") or {}).get("groupNodes") if isinstance(ui.get("extra"), dict) else None
        self.group_nodes = set(groups) if isinstance(groups, dict) else set()
        self.root = _Graph(_nodes(ui.get("nodes"), "workflow"), _links(ui.get("links"), "workflow"))
        self.overrides: dict[str, dict[str, Any]] = {}  # exec id -> widget -> value (primitives, proxies)
        self.all_nodes: list[tuple[_Graph, dict[str, Any]]] = []

    def exec_id(self, g: _Graph, node: dict[str, Any]) -> str:
        return ":".join((*g.path, str(node["id"])))

    def visit(self, seen: set[Any], g: _Graph, node: dict[str, Any], slot: tuple[Any, ...]) -> None:
        key = (g.path, str(node["id"]), *slot)
        if key in seen:
            raise InvalidInput("workflow", f"circular link through node {self.exec_id(g, node)}")
        seen.add(key)

    def walk(self, g: _Graph, depth: int = 0) -> None:
        if depth > 32:
            raise InvalidInput("workflow", "subgraphs nest deeper than 32 levels (a subgraph containing itself?)")
        for node in g.nodes.values():
            kind = node["type"]
            if kind in self.group_nodes or kind.startswith(("workflow>", "workflow/")):
                raise InvalidInput("workflow", f"node {self.exec_id(g, node)} is a legacy group node ('{kind}'), "
                                               "which is not supported; convert it to a subgraph or ungroup it")
            self.all_nodes.append((g, node))
            if kind in self.subgraphs and node.get("mode") not in (MUTED, BYPASS):
                inner = self.inner(g, node)
                self.promote(inner, node)
                self.walk(inner, depth + 1)

    def inner(self, g: _Graph, node: dict[str, Any]) -> _Graph:
        """The graph level inside subgraph node ``node``."""
        sub = self.subgraphs[node["type"]]
        where = f"subgraph '{sub.get('name') or node['type']}'"
        return _Graph(_nodes(sub.get("nodes"), where), _links(sub.get("links"), where), (*g.path, str(node["id"])),
                      node, g, list(sub.get("inputs") or []))

    def promote(self, inner: _Graph, node: dict[str, Any]) -> None:
        """Proxy widgets of a subgraph node whose values live on inner nodes."""
        proxies = (node.get("properties") or {}).get("proxyWidgets")
        values = node.get("widgets_values")
        if not isinstance(proxies, list) or not isinstance(values, list):
            return
        for entry, value in zip(proxies, values):
            if isinstance(entry, list) and len(entry) == 2 and str(entry[0]) != "-1":
                self.overrides.setdefault(":".join((*inner.path, str(entry[0]))), {})[str(entry[1])] = value

    def apply_primitives(self) -> None:
        for g, node in self.all_nodes:
            if node["type"] != "PrimitiveNode":
                continue
            values = node.get("widgets_values")
            if not isinstance(values, list) or not values:
                continue
            stack = [lid for out in node.get("outputs") or [] if isinstance(out, dict)
                     for lid in out.get("links") or []]
            seen: set[str] = set()
            while stack:
                link = g.links.get(str(stack.pop()))
                target = g.nodes.get(str(link.get("target_id"))) if link else None
                if link is None or target is None or str(link["id"]) in seen:
                    continue
                seen.add(str(link["id"]))
                if target["type"] in REROUTES:
                    stack += [lid for out in target.get("outputs") or [] for lid in out.get("links") or []]
                    continue
                slot = next((i for i in target.get("inputs") or [] if i.get("link") == link["id"]), None)
                widget = (slot or {}).get("widget")
                if isinstance(widget, dict) and widget.get("name"):
                    self.overrides.setdefault(self.exec_id(g, target), {})[widget["name"]] = values[0]

    def resolve_input(self, g: _Graph, node: dict[str, Any], index: int, want: Any, seen: set[Any]) -> Any:
        """``(origin exec id, slot)``, ``("widget", value)`` or None, like ``ExecutableNodeDTO.resolveInput``."""
        self.visit(seen, g, node, ("I", index))
        inputs = node.get("inputs") or []
        if index >= len(inputs) or inputs[index].get("link") is None:
            return None
        link = g.links.get(str(inputs[index]["link"]))
        if link is None:
            raise InvalidInput("workflow", f"node {self.exec_id(g, node)} input '{inputs[index].get('name')}' "
                                           f"refers to missing link {inputs[index]['link']}")
        want = inputs[index].get("type") if want is None else want
        if link.get("origin_id") == SUBGRAPH_INPUT and g.instance is not None:
            return self.from_subgraph_input(g, int(link.get("origin_slot") or 0), seen)
        origin = g.nodes.get(str(link.get("origin_id")))
        if origin is None:
            raise InvalidInput("workflow", f"link {link['id']} starts at missing node {link.get('origin_id')}")
        return self.resolve_output(g, origin, int(link.get("origin_slot") or 0), want, seen)

    def from_subgraph_input(self, g: _Graph, slot: int, seen: set[Any]) -> Any:
        instance, parent = g.instance, g.parent
        if instance is None or parent is None:  # the root graph has no subgraph inputs
            return None
        name = g.inputs[slot].get("name") if slot < len(g.inputs) else None
        outer_inputs = instance.get("inputs") or []
        index = next((i for i, inp in enumerate(outer_inputs) if inp.get("name") == name), None)
        if index is not None and outer_inputs[index].get("link") is not None:
            return self.resolve_input(parent, instance, index, None, seen)
        values, proxies = instance.get("widgets_values"), (instance.get("properties") or {}).get("proxyWidgets")
        if isinstance(proxies, list):
            pos = next((i for i, p in enumerate(proxies) if p == ["-1", name]), None)
        else:
            promoted = [inp.get("name") for inp in g.inputs if self.feeds_widget(g, inp)]
            pos = promoted.index(name) if name in promoted else None
        if isinstance(values, list) and pos is not None and pos < len(values):
            return _Value(values[pos])
        return None

    def feeds_widget(self, g: _Graph, sub_input: dict[str, Any]) -> bool:
        for lid in sub_input.get("linkIds") or []:
            link = g.links.get(str(lid)) or {}
            target = g.nodes.get(str(link.get("target_id"))) or {}
            if any(i.get("link") == link.get("id") and i.get("widget") for i in target.get("inputs") or []):
                return True
        return False

    def resolve_output(self, g: _Graph, node: dict[str, Any], slot: int, want: Any, seen: set[Any]) -> Any:
        self.visit(seen, g, node, ("O", slot))
        if node.get("mode") == BYPASS:
            index = self.bypass_input(node, slot, want)
            return None if index < 0 else self.resolve_input(g, node, index, None, seen)
        if node["type"] in self.subgraphs:
            inner = self.inner(g, node)
            link = next((ln for ln in inner.links.values()
                         if ln.get("target_id") == SUBGRAPH_OUTPUT and ln.get("target_slot") == slot), None)
            origin = inner.nodes.get(str((link or {}).get("origin_id")))
            if link is None or origin is None:
                return None
            return self.resolve_output(inner, origin, int(link.get("origin_slot") or 0), want, seen)
        if node["type"] in REROUTES:
            return self.resolve_input(g, node, slot, want, seen)
        if node["type"] == "PrimitiveNode" or node["type"] in FRONTEND_ONLY:
            return None
        return (self.exec_id(g, node), slot)

    @staticmethod
    def bypass_input(node: dict[str, Any], slot: int, want: Any) -> int:
        """Which input a bypassed node passes to output ``slot`` (the frontend's type matching)."""
        inputs, outputs = node.get("inputs") or [], node.get("outputs") or []
        if want in ("*", "", None):
            return slot if len(inputs) > slot else 0
        out_type = outputs[slot].get("type") if slot < len(outputs) else None
        fits = [_valid(i.get("type"), out_type) and _valid(i.get("type"), want) for i in inputs]
        if slot < len(inputs) and fits[slot]:
            return slot
        same = [i for i, inp in enumerate(inputs) if inp.get("type") == want]
        return same[0] if same else fits.index(True) if True in fits else -1

    def widget_values(self, g: _Graph, node: dict[str, Any], info: dict[str, Any], serialize: bool = True) -> dict[str, Any]:
        """Widget name -> value as the API gets it (``serialize``) or as the widget holds it."""
        slots = widget_slots({**info, "name": info.get("name") or node["type"]})
        raw = node.get("widgets_values")
        overrides = self.overrides.get(self.exec_id(g, node), {})
        values = migrate_values(info, slots, raw) if isinstance(raw, list) else []
        out: dict[str, Any] = {}
        for i, slot in enumerate(slots):
            if not slot.serialize:
                continue
            value = raw.get(slot.name, slot.default) if isinstance(raw, dict) else (
                values[i] if i < len(values) else slot.default)
            value = overrides.get(slot.name, value)
            if not serialize:
                out[slot.name] = value
                continue
            if slot.dynamic_prompts and isinstance(value, str):
                value = process_dynamic_prompt(value, self.rng)
            if slot.folder != "input" and isinstance(value, str) and value and \
                    not re.search(r"\[(input|output|temp)\]", value, re.I):
                value = f"{value} [{slot.folder}]"
            if slot.name == "filename_prefix" and node["type"] in SAVE_NODES and isinstance(value, str):
                value = self.replace_text(value)
            out[slot.name] = {"__value__": value} if isinstance(value, list) else value
        return out

    def replace_text(self, text: str) -> str:
        """The frontend's ``%date:fmt%`` and ``%Node.widget%`` (S&R name first, then title) replacements."""
        def one(m: re.Match[str]) -> str:
            parts = m.group(1).split(".")
            if len(parts) != 2:
                return _format_date(parts[0][5:], _dt.datetime.now()) if parts[0].startswith("date:") else m.group(0)
            found = [(g, n) for g, n in self.all_nodes if (n.get("properties") or {}).get("Node name for S&R")
                     == parts[0]] or [(g, n) for g, n in self.all_nodes if n.get("title") == parts[0]]
            info = self.info.get(found[0][1]["type"]) if found else None
            values = self.widget_values(*found[0], info, serialize=False) if isinstance(info, dict) else {}
            if parts[1] not in values:
                return m.group(0)
            return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", _js_str(values[parts[1]]))
        return re.sub(r"%([^%]+)%", one, text)

    def convert(self) -> dict[str, dict[str, Any]]:
        self.walk(self.root)
        self.apply_primitives()
        prompt: dict[str, dict[str, Any]] = {}
        for g, node in self.all_nodes:
            kind = node["type"]
            if node.get("mode") in (MUTED, BYPASS) or kind in FRONTEND_ONLY or kind in REROUTES \
                    or kind == "PrimitiveNode" or kind in self.subgraphs:
                continue
            info = self.info.get(kind)
            if not isinstance(info, dict):
                raise InvalidInput("workflow", f"node {self.exec_id(g, node)} has unknown type '{kind}' (not in "
                                               "ComfyUI's /object_info: is its custom node pack installed?)")
            inputs = self.widget_values(g, node, info)
            for index, slot in enumerate(node.get("inputs") or []):
                if not isinstance(slot, dict) or not isinstance(slot.get("name"), str):
                    raise InvalidInput("workflow", f"node {self.exec_id(g, node)} has a malformed input {index}")
                found = self.resolve_input(g, node, index, None, set())
                if isinstance(found, _Value):
                    inputs[slot["name"]] = {"__value__": found.value} if isinstance(found.value, list) else found.value
                elif found is not None:
                    inputs[slot["name"]] = [found[0], found[1]]
            title = node.get("title") if isinstance(node.get("title"), str) else info.get("display_name") or kind
            prompt[self.exec_id(g, node)] = {"inputs": inputs, "class_type": kind, "_meta": {"title": title}}
        for entry in prompt.values():
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and str(value[0]) not in prompt:
                    del entry["inputs"][name]
        return prompt


def is_ui_workflow(graph: Any) -> bool:
    """True for a graph-editor workflow (``nodes`` and ``links`` lists), False for an API prompt."""
    return isinstance(graph, dict) and isinstance(graph.get("nodes"), list) and isinstance(graph.get("links"), list)


def ui_to_api(ui_graph: dict[str, Any], object_info: dict[str, Any] | None,
              rng: random.Random | None = None) -> dict[str, dict[str, Any]]:
    """Convert a UI-format workflow to an API prompt using ComfyUI's ``/object_info``.

    ``rng`` drives ``{a|b}`` choices in dynamic prompts. Raises ``InvalidInput("workflow", ...)``.
    """
    if not is_ui_workflow(ui_graph):
        raise InvalidInput("workflow", "not a UI-format workflow: expected an object with 'nodes' and 'links' lists")
    if not isinstance(object_info, dict):
        raise InvalidInput("workflow", "converting a UI-format workflow needs ComfyUI's /object_info")
    try:
        return _Converter(ui_graph, object_info, rng).convert()
    except InvalidInput:
        raise
    except RecursionError:
        raise InvalidInput("workflow", "the workflow's links or subgraphs nest too deeply") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidInput("workflow", f"malformed UI-format workflow ({type(exc).__name__}: {exc})") from None
