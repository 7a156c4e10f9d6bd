"""Saved workflows and their parameter maps: load a graph, check its map, apply job parameters.

A workflow named ``NAME`` lives in ``workflows/`` as ``NAME.api.json`` (API format; or only ``NAME.json``,
the graph editor's format, converted with ``/object_info``) plus ``NAME.params.json``, the parameter
map an artist edits: which node input each job parameter sets, with the parameter's type, bounds and
default. Each target names the node by id and records its class and title, so ``check_param_map``
can tell when a re-export renumbered or renamed nodes. A target may carry ``"scale": 0.5`` (and
``"round": "floor" | "ceil" | "nearest"``) to set a derived value, e.g. the two-stage split = steps // 2.

Inline graphs (API or UI format) get the parameter map of the first saved workflow whose map fits
them exactly (every target node present with the same class, title and input), so an artist's
re-saved copy of a product workflow still takes parameters; any other inline graph takes none.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULT_WORKFLOW, WORKFLOWS_DIR
from .errors import InvalidInput
from .ui_to_api import is_ui_workflow, ui_to_api

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PARAM_TYPES = ("integer", "number", "string", "image")
ROUNDING = {"floor": math.floor, "ceil": math.ceil, "nearest": lambda x: math.floor(x + 0.5)}


@dataclass(frozen=True)
class LoadedWorkflow:
    """An API-format graph, the parameter map that applies to it (or None), and where it came from."""

    graph: dict[str, dict[str, Any]]
    param_map: dict[str, Any] | None
    name: str | None  # the saved workflow it is (by name) or matches (inline)
    source: str  # "name", "api" or "ui"


def _dir(workflows_dir: Path | None) -> Path:
    return Path(workflows_dir) if workflows_dir is not None else WORKFLOWS_DIR


def list_workflows(workflows_dir: Path | None = None) -> list[str]:
    """Names of the saved workflows: ``NAME.api.json`` or a graph-editor ``NAME.json``."""
    names = set()
    for path in _dir(workflows_dir).glob("*.json") if _dir(workflows_dir).is_dir() else []:
        stem = path.name[:-len(".json")]
        if stem.endswith(".params"):
            continue
        name = stem[:-len(".api")] if stem.endswith(".api") else stem
        if NAME_RE.match(name):
            names.add(name)
    return sorted(names)


def _read_json(path: Path, field: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(field, f"cannot read {path.name}: {exc}") from None


def load_param_map(name: str, workflows_dir: Path | None = None) -> dict[str, Any] | None:
    """The parameter map saved beside workflow ``name``, or None."""
    path = _dir(workflows_dir) / f"{name}.params.json"
    return _read_json(path, "workflow") if path.is_file() else None


def check_api_graph(graph: Any, field: str = "workflow") -> dict[str, dict[str, Any]]:
    """``graph`` if it is an API-format prompt (``{id: {class_type, inputs}}``), else InvalidInput."""
    if not isinstance(graph, dict) or not graph:
        raise InvalidInput(field, "must be a non-empty API-format graph {node_id: {class_type, inputs}} "
                                  "or a graph-editor workflow with 'nodes' and 'links'")
    for node_id, node in graph.items():
        shown = str(node_id)[:40]
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or not node["class_type"]:
            raise InvalidInput(field, f"node '{shown}' needs a string 'class_type'")
        if not isinstance(node.get("inputs", {}), dict):
            raise InvalidInput(field, f"node '{shown}' ({node['class_type']}): 'inputs' must be an object")
    return graph


def load_workflow(source: str | dict[str, Any], object_info: dict[str, Any] | None = None,
                  workflows_dir: Path | None = None) -> LoadedWorkflow:
    """Load a saved workflow by name, or take an inline API/UI graph; always return API format.

    UI-format graphs (saved or inline) need ``object_info`` (ComfyUI's ``/object_info``).
    """
    if isinstance(source, str):
        return _load_named(source, object_info, workflows_dir)
    if is_ui_workflow(source):
        graph, kind = ui_to_api(source, object_info), "ui"
    else:
        graph, kind = check_api_graph(source), "api"
    for name in sorted(list_workflows(workflows_dir), key=lambda n: n != DEFAULT_WORKFLOW):
        pmap = load_param_map(name, workflows_dir)
        if pmap is not None and not check_param_map(graph, pmap, check_defaults=False):
            log.info("inline workflow matches '%s': its parameter map applies", name)
            return LoadedWorkflow(graph, pmap, name, kind)
    return LoadedWorkflow(graph, None, None, kind)


def _load_named(name: str, object_info: dict[str, Any] | None, workflows_dir: Path | None) -> LoadedWorkflow:
    known = list_workflows(workflows_dir)
    if not NAME_RE.match(name) or name not in known:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidInput("workflow", f"unknown workflow {shown!r}; saved workflows: {', '.join(known) or 'none'}")
    base = _dir(workflows_dir)
    api_path = base / f"{name}.api.json"
    if api_path.is_file():
        graph = check_api_graph(_read_json(api_path, "workflow"))
    else:
        ui = _read_json(base / f"{name}.json", "workflow")
        if not is_ui_workflow(ui):
            raise InvalidInput("workflow", f"{name}.json is not a graph-editor workflow (no 'nodes' and 'links')")
        graph = ui_to_api(ui, object_info)
    return LoadedWorkflow(graph, load_param_map(name, workflows_dir), name, "name")


# -- parameters -------------------------------------------------------------------------------------
def validate_param(name: str, spec: dict[str, Any], value: Any) -> Any:
    """``value`` checked against the map entry ``spec`` (type, bounds); returns the normalised value."""
    field, kind = f"params.{name}", spec.get("type")
    if kind == "integer":
        if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(field, "must be an integer")
        step, offset = spec.get("multiple_of"), spec.get("offset", 0)
        if step and (value - offset) % step:
            raise InvalidInput(field, f"must be a multiple of {step}" if not offset else
                               f"must be {offset} more than a multiple of {step} "
                               f"({', '.join(str(offset + step * k) for k in range(4))}, ...)")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(field, "must be a finite number")
    elif kind in ("string", "image"):
        if not isinstance(value, str):
            raise InvalidInput(field, "must be a string")
        if "max_length" in spec and len(value) > spec["max_length"]:
            raise InvalidInput(field, f"is longer than {spec['max_length']} characters")
        if "choices" in spec and value not in spec["choices"]:
            raise InvalidInput(field, f"must be one of {', '.join(map(str, spec['choices']))}")
        if kind == "image" and (not value or value.startswith(("/", ".")) or "\\" in value or "\x00" in value
                                or ".." in value.split("/")):
            raise InvalidInput(field, "must be the name of a file in ComfyUI's input folder")
    else:
        raise InvalidInput(field, f"the parameter map declares an unknown type {kind!r}")
    if kind in ("integer", "number"):
        low, high = spec.get("minimum"), spec.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidInput(field, f"must be between {low} and {high}" if low is not None and high is not None
                               else f"must be {'at least ' + str(low) if low is not None else 'at most ' + str(high)}")
    return value


def target_value(spec: dict[str, Any], target: dict[str, Any], value: Any) -> Any:
    """The value a target receives: ``value``, or ``value * scale`` rounded (integers) per the target."""
    if "scale" not in target:
        return value
    scaled = value * target["scale"]
    if spec.get("type") == "integer" or "round" in target:
        return int(ROUNDING[target.get("round", "floor")](scaled))
    return scaled


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def apply_params(api_graph: dict[str, Any], param_map: dict[str, Any] | None, params: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``api_graph`` with ``params`` set on their targets; ``api_graph`` is never changed."""
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("params", "must be an object")
    params = params or {}
    specs = (param_map or {}).get("params") or {}
    for name in params:
        if name not in specs:
            known = ", ".join(specs) or "none: this workflow takes no parameters"
            raise InvalidInput(f"params.{str(name)[:60]}", f"unknown parameter; known parameters: {known}")
    for name, spec in specs.items():
        if spec.get("required") and name not in params:
            raise InvalidInput(f"params.{name}", "is required")
    graph = copy.deepcopy(api_graph)
    for name, value in params.items():
        set_param(graph, specs[name], name, value)
    return graph


def set_param(graph: dict[str, Any], spec: dict[str, Any], name: str, value: Any) -> None:
    """Validate ``value`` against ``spec`` and set it on the targets of parameter ``name`` in ``graph``, in place."""
    value = validate_param(name, spec, value)
    for target in spec.get("targets") or []:
        node = graph.get(str(target.get("node")))
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict) or target.get("input") not in inputs or _is_link(inputs[target["input"]]):
            raise InvalidInput(f"params.{name}", f"the parameter map targets node {target.get('node')} input "
                                                 f"{target.get('input')!r}, which this workflow does not have")
        inputs[target["input"]] = target_value(spec, target, value)


def _map_problems(param_map: Any) -> list[str]:
    if not isinstance(param_map, dict) or not isinstance(param_map.get("params"), dict):
        return ["the parameter map needs a 'params' object"]
    problems = []
    for name, spec in param_map["params"].items():
        where = f"params.{name}"
        if not isinstance(spec, dict) or spec.get("type") not in PARAM_TYPES:
            problems.append(f"{where}: 'type' must be one of {', '.join(PARAM_TYPES)}")
            continue
        targets = spec.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(f"{where}: needs a non-empty 'targets' list")
            continue
        for i, t in enumerate(targets):
            if not isinstance(t, dict) or not all(isinstance(t.get(k), str) for k in ("node", "input",
                                                                                      "class_type", "title")):
                problems.append(f"{where}.targets[{i}]: needs string 'node', 'input', 'class_type' and 'title'")
            elif "scale" in t and (isinstance(t["scale"], bool) or not isinstance(t["scale"], (int, float))):
                problems.append(f"{where}.targets[{i}]: 'scale' must be a number")
            elif t.get("round", "floor") not in ROUNDING:
                problems.append(f"{where}.targets[{i}]: 'round' must be one of {', '.join(ROUNDING)}")
        if "default" not in spec:
            problems.append(f"{where}: needs a 'default' (the value in the graph)")
        else:
            try:
                validate_param(name, spec, spec["default"])
            except InvalidInput as exc:
                problems.append(f"{where}: default {spec['default']!r} is invalid: {exc.message.split(': ', 1)[1]}")
    return problems


def check_param_map(api_graph: dict[str, Any], param_map: dict[str, Any], check_defaults: bool = True) -> list[str]:
    """Problems between a parameter map and the graph it is for; empty when they fit.

    Every target node must exist with the recorded class and title and have the input (not a link);
    with ``check_defaults`` each default must also be what the graph holds.
    """
    problems = _map_problems(param_map)
    if problems:
        return problems
    for name, spec in param_map["params"].items():
        for i, t in enumerate(spec["targets"]):
            where = f"params.{name}.targets[{i}] (node {t['node']} {t['title']!r})"
            node = api_graph.get(t["node"]) if isinstance(api_graph, dict) else None
            if not isinstance(node, dict):
                problems.append(f"{where}: the workflow has no node {t['node']}{_hint(api_graph, t)}")
                continue
            title = (node.get("_meta") or {}).get("title")
            if node.get("class_type") != t["class_type"] or title != t["title"]:
                problems.append(f"{where}: node {t['node']} is {node.get('class_type')!r} titled {title!r}, "
                                f"the map expects {t['class_type']!r} titled {t['title']!r}{_hint(api_graph, t)}")
                continue
            inputs = node.get("inputs") or {}
            if t["input"] not in inputs:
                problems.append(f"{where}: node has no input {t['input']!r}")
            elif _is_link(inputs[t["input"]]):
                problems.append(f"{where}: input {t['input']!r} is fed by a link; a parameter can only set a value")
            elif check_defaults and inputs[t["input"]] != target_value(spec, t, spec["default"]):
                problems.append(f"{where}: default {spec['default']!r} gives {target_value(spec, t, spec['default'])!r}"
                                f" but the graph holds {inputs[t['input']]!r}")
    return problems


def _hint(api_graph: Any, target: dict[str, Any]) -> str:
    for node_id, node in (api_graph.items() if isinstance(api_graph, dict) else []):
        if isinstance(node, dict) and node.get("class_type") == target["class_type"] \
                and (node.get("_meta") or {}).get("title") == target["title"]:
            return f" (a re-export moved it? node {node_id} has that class and title)"
    return " (was the workflow re-exported? update the parameter map)"
