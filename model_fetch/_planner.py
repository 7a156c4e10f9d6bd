"""Which model files a ComfyUI workflow needs, where they go, and where they come from.

UI-format graphs: ``properties.models`` of each active node (modes 2 muted and 4 bypassed are
skipped, subgraph nodes included; a known loader's entries only for the names its widgets hold),
the model names in known loaders' widgets, and the top-level
``models`` list. API-format graphs: the file inputs of known loader nodes (``_model_folders.LOADER_INPUTS``).
Each need resolves against the store (already present), the manifest, then the workflow's own
metadata; a need with none of these is an ``UnknownModelError`` naming file and folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._comfy_search_paths import ComfyFolders
from .config import Settings
from .errors import ManifestError, SourceRefused, UnknownModelError, WorkflowError
from ._model_folders import LOADER_INPUTS, NOT_FILES, canonical
from ._manifest import WORKFLOW_ORIGIN, Manifest, ModelEntry, parse_entry
from ._store import Store

SKIPPED_MODES = (2, 4)


@dataclass
class Need:
    name: str
    directory: str
    nodes: list[str] = field(default_factory=list)
    embedded: ModelEntry | None = None  # metadata carried by the workflow itself

    @property
    def key(self) -> tuple[str, str]:
        return (self.directory, self.name)


@dataclass
class PlanItem:
    name: str
    directory: str
    entry: ModelEntry | None
    path: Path | None
    nodes: list[str]
    outside_store: bool = False  # ComfyUI finds it in its own folders (or lists it); never fetched

    @property
    def present(self) -> bool:
        return self.path is not None or self.outside_store


@dataclass
class Plan:
    items: list[PlanItem]

    def missing(self) -> list[PlanItem]:
        return [i for i in self.items if not i.present]

    def entries(self) -> list[ModelEntry]:
        """Entries to ensure (every item with a known source that ComfyUI does not already have)."""
        return [i.entry for i in self.items if i.entry is not None and not i.outside_store]

    def as_dict(self) -> list[dict[str, Any]]:
        return [{"name": i.name, "directory": i.directory, "present": i.present,
                 "path": str(i.path) if i.path else None, "url": i.entry.url if i.entry else None,
                 "nodes": i.nodes, "comfyui": i.outside_store} for i in self.items]


def read_workflow(source: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise WorkflowError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WorkflowError(f"{path}: a workflow is a JSON object")
    return data


def is_ui_format(graph: dict[str, Any]) -> bool:
    return isinstance(graph.get("nodes"), list)


def _add(needs: dict[tuple[str, str], Need], name: Any, directory: str, node: str, embedded: ModelEntry | None = None) -> None:
    if not isinstance(name, str) or name in NOT_FILES:
        return
    key = (canonical(directory), name)
    need = needs.setdefault(key, Need(name=name, directory=key[0]))
    if node and node not in need.nodes:
        need.nodes.append(node)
    if embedded is not None and need.embedded is None:
        need.embedded = embedded


def _embedded(raw: Any, where: str) -> ModelEntry | None:
    try:
        return replace(parse_entry(raw, where, 0), origin=WORKFLOW_ORIGIN)
    except ManifestError:
        return None


def _ui_nodes(graph: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [n for n in graph.get("nodes") or [] if isinstance(n, dict)]
    for sub in ((graph.get("definitions") or {}).get("subgraphs") or []):
        if isinstance(sub, dict):
            nodes += [n for n in sub.get("nodes") or [] if isinstance(n, dict)]
    return nodes


def needs_of_ui(graph: dict[str, Any], where: str = "workflow") -> dict[tuple[str, str], Need]:
    needs: dict[tuple[str, str], Need] = {}
    skipped_names: set[Any] = set()  # raw widget values and model names of muted/bypassed nodes
    for node in _ui_nodes(graph):
        node_id = str(node.get("id", "?"))
        models = (node.get("properties") or {}).get("models") or []
        widgets = node.get("widgets_values")
        inputs = LOADER_INPUTS.get(str(node.get("type")), {})
        names = []
        for i, (input_name, folder) in enumerate(inputs.items()):
            value = widgets.get(input_name) if isinstance(widgets, dict) else (
                widgets[i] if isinstance(widgets, list) and i < len(widgets) else None)
            names.append((value, folder))
        if node.get("mode") in SKIPPED_MODES:
            skipped_names |= {m.get("name") for m in models if isinstance(m, dict)} | {v for v, _ in names}
            continue
        used = {v for v, _ in names if isinstance(v, str)}
        for raw in models:
            entry = _embedded(raw, f"{where} node {node_id}")
            # a known loader uses only what its widgets name: metadata of a model it no longer names is stale
            if entry is not None and (not used or entry.name in used):
                _add(needs, entry.name, entry.directory, node_id, entry)
        for value, folder in names:
            _add(needs, value, folder, node_id)
    active = {name for _, name in needs}
    for raw in graph.get("models") or []:
        entry = _embedded(raw, f"{where} models")
        if entry is None:
            continue
        if entry.name in active or entry.name not in skipped_names:
            _add(needs, entry.name, entry.directory, "", entry)
    return needs


def needs_of_api(graph: dict[str, Any]) -> dict[tuple[str, str], Need]:
    needs: dict[tuple[str, str], Need] = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            continue
        for input_name, folder in LOADER_INPUTS.get(str(node.get("class_type")), {}).items():
            _add(needs, (node.get("inputs") or {}).get(input_name), folder, str(node_id))
    return needs


def needs_of(workflow: dict[str, Any] | str | Path) -> list[Need]:
    graph = read_workflow(workflow)
    where = str(workflow) if not isinstance(workflow, dict) else "workflow"
    if "prompt" in graph and isinstance(graph["prompt"], dict) and not is_ui_format(graph):
        graph = graph["prompt"]
    if is_ui_format(graph):
        return list(needs_of_ui(graph, where).values())
    if all(isinstance(v, dict) and "class_type" in v for v in graph.values()) and graph:
        return list(needs_of_api(graph).values())
    raise WorkflowError(f"{where}: neither a UI-format graph (nodes, links) nor an API-format graph (class_type per node)")


def plan_workflow(workflow: dict[str, Any] | str | Path, manifest: Manifest, store: Store,
                  comfy: ComfyFolders | None = None, settings: Settings | None = None) -> Plan:
    """Resolve every need against the store, then ComfyUI's own folders (``comfy``); raise
    UnknownModelError for files no one has and no source knows, and SourceRefused for a missing file
    whose only source is a workflow URL breaking ``urlguard``'s rules (before anything is fetched)."""
    from ._urlguard import UrlRefused, check_embedded_url

    settings = settings or Settings.from_env()
    items, unknown, refused = [], [], []
    for need in needs_of(workflow):
        entry = manifest.find(need.name, need.directory) or need.embedded
        probe = entry or ModelEntry(name=need.name, directory=need.directory)
        path, outside = store.find(probe), False
        if path is None and comfy is not None:
            path = comfy.find(need.name, need.directory)
            outside = path is not None or comfy.lists(need.name, need.directory)
        if path is None and not outside and (entry is None or not entry.sources):
            unknown.append((need.name, need.directory))
        elif path is None and not outside and entry is not None and entry.origin == WORKFLOW_ORIGIN:
            try:
                check_embedded_url(entry.url, need.name, need.directory, settings.allowed_hosts,
                                   settings.allow_private_urls)
            except UrlRefused as exc:
                refused.append((need.name, need.directory, str(exc)))
        items.append(PlanItem(need.name, need.directory, entry, path, need.nodes, outside))
    if unknown:
        raise UnknownModelError(unknown)
    if refused:
        raise SourceRefused(refused)
    return Plan(items)
