"""What a workflow needs, for the editor's panel, and the check of its embedded sources when it is queued.

``plan_rows(catalog, workflow)`` answers ``POST /model_fetch/plan``: one row per model file the
workflow uses, with the state the editor shows (``present``, ``missing`` = will be fetched,
``downloading``/``partial`` with bytes, rate and ETA, ``refused`` with the rule an embedded URL
breaks, ``unknown`` when no source knows it), where it comes from and the folder it goes into.

``admit_prompt(catalog, body)`` runs on every ``POST /prompt`` before ComfyUI validates it: the
workflow the frontend embeds (``extra_data.extra_pnginfo.workflow``) may carry model URLs; those
that would be fetched are checked, and either all are accepted as sources or ``SourcesRefused`` names
each model and the rule, and nothing is fetched. ``comfy_error_body`` turns it into ComfyUI's error shape.
"""

from __future__ import annotations

from typing import Any

from model_fetch import Manifest, check_embedded_sources, folder_dirs, redact_url, workflow_needs

from . import lookup
from .catalog import Catalog
from .errors import SourcesRefused


def _present(directory: str, name: str) -> bool:
    return lookup.original_full_path(directory, name) is not None


def embedded_workflow(body: Any) -> dict | None:
    """The UI workflow a queued prompt carries, or None."""
    extra = body.get("extra_data") if isinstance(body, dict) else None
    info = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
    workflow = info.get("workflow") if isinstance(info, dict) else None
    return workflow if isinstance(workflow, dict) else None


def _target(catalog: Catalog, directory: str) -> str | None:
    try:
        return str(catalog.store.write_root() / folder_dirs(directory)[0])
    except PermissionError:
        return None


def plan_rows(catalog: Catalog, workflow: Any) -> list[dict]:
    """One row per model file of ``workflow`` (UI format), as the editor's panel shows it."""
    needs = workflow_needs(workflow)
    accepted, refused = check_embedded_sources(needs, catalog.manifest_or_empty(), catalog.settings, _present)
    accepted_keys = {e.key for e in accepted}
    refused_by_key = {(r.directory, r.name): r for r in refused}
    known = catalog.known()
    for entry in accepted:
        if known.find(entry.name, entry.directory) is None:
            known.add(entry)
    sub = Manifest()
    for need in needs:
        found = known.find(need.name, need.directory)
        if found is not None and found.sources:
            sub.add(found)
    status = {(r["directory"], r["name"]): r for r in catalog.rows(sub)} if len(sub) else {}
    rows = []
    for need in needs:
        key = (need.directory, need.name)
        row = {"name": need.name, "directory": need.directory, "nodes": need.nodes, "target": _target(catalog, need.directory)}
        path = lookup.original_full_path(need.directory, need.name)
        if key in status and (source := known.find(need.name, need.directory)) is not None:
            s = status[key]
            row.update({k: s.get(k) for k in ("state", "size", "done", "total", "rate", "eta_s", "phase", "error")})
            row["source"] = redact_url(source.sources[-1])
            row["origin"] = "workflow" if key in accepted_keys or source.origin == "workflow" else "manifest"
            if path is not None:
                row["state"], row["path"] = "present", path
        elif path is not None:
            row.update(state="present", path=path)
        elif key in refused_by_key:
            refusal = refused_by_key[key]
            row.update(state="refused", reason=refusal.reason, source=redact_url(refusal.url) if refusal.url else None)
        else:
            row.update(state="unknown", reason=f"no source knows it: put the file into the '{need.directory}' folder, "
                                               f"or add it to a manifest (MODEL_FETCH_MANIFEST)")
        if row.get("state") == "unverified":
            row["state"] = "present"
        rows.append(row)
    return rows


def admit_prompt(catalog: Catalog, body: Any) -> None:
    """Accept the embedded sources of a prompt about to be queued; ``SourcesRefused`` when one breaks a rule
    (nothing accepted, nothing fetched)."""
    admit_workflow(catalog, embedded_workflow(body))


def admit_workflow(catalog: Catalog, workflow: dict[str, Any] | None) -> None:
    """Accept the sources a UI workflow embeds, all or none: ``SourcesRefused`` when one breaks a rule."""
    needs = workflow_needs(workflow)
    if not needs:
        return
    accepted, refused = check_embedded_sources(needs, catalog.manifest_or_empty(), catalog.settings, _present)
    if refused:
        raise SourcesRefused(refused)
    catalog.accept(accepted)


def comfy_error_body(refusal: SourcesRefused, body: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's own ``POST /prompt`` error shape for a refusal, so the editor shows it as it shows any
    invalid prompt: each loader node marked, and every refusal printed once."""
    prompt: dict[str, Any] = body["prompt"] if isinstance(body.get("prompt"), dict) else {}
    node_errors: dict[str, dict[str, Any]] = {}
    unplaced = []
    for r in refusal.refused:
        nodes = [node for node in r.nodes if node in prompt]
        for node in nodes:  # every node is marked; the reason is printed once, on the first
            node_errors.setdefault(node, {"errors": [], "dependent_outputs": [],
                                          "class_type": prompt[node].get("class_type")})["errors"].append(
                {"type": refusal.code, "message": "Model URL refused",
                 "details": r.message() if node == nodes[0] else f"the same file as node {nodes[0]}",
                 "extra_info": {"model": r.name, "directory": r.directory}})
        if not nodes:
            unplaced.append(r.message())
    # The editor prints "message: details", then each node error: every refusal appears once.
    details = "; ".join(unplaced) or "see the loader nodes below"
    return {"error": {"type": refusal.code, "message": "Model download refused", "details": details,
                      "extra_info": {"models": [r.name for r in refusal.refused], "refusals": refusal.fields["refusals"]}},
            "node_errors": node_errors}
