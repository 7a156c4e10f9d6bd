"""The pack's LoRA reports in a finished prompt's history: warnings for the job result, and the
failure when a LoRA applied to nothing (custom_nodes/wan_serverless/lora_report.py writes them as the
``wan_serverless_lora`` ui entry of each LoRA loader node)."""

from __future__ import annotations

from typing import Any

from .errors import LoraNotApplied

__all__ = ["UI_KEY", "check", "reports"]

UI_KEY = "wan_serverless_lora"  # the pack's lora_report.UI_KEY (the worker does not import the pack)


def reports(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every LoRA report of a history entry, each with the ``node_id`` of its loader."""
    out = []
    for node_id, node_out in sorted((entry.get("outputs") or {}).items()):
        for item in (node_out or {}).get(UI_KEY) or []:
            if isinstance(item, dict):
                out.append({**item, "node_id": node_id})
    return out


def check(found: list[dict[str, Any]]) -> list[str]:
    """The job's ``warnings`` from its LoRA ``reports`` (one line per LoRA that left keys without a target);
    raises ``LoraNotApplied`` naming file and model when a LoRA applied to none of its keys."""
    for rep in found:
        if rep.get("total") and not rep.get("applied"):
            raise LoraNotApplied(
                f"LoRA '{rep.get('lora')}' applied to none of the weights of {rep.get('model')} "
                f"(0 of {rep.get('total')} keys have a target): it was made for another model; "
                f"use a LoRA for this model, or remove it from the workflow",
                lora=rep.get("lora"), model=rep.get("model"), node_id=rep.get("node_id"),
                no_target=rep.get("no_target"))
    return [str(rep.get("text")) for rep in found if rep.get("no_target")]
