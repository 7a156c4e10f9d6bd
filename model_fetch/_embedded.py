"""Model sources a workflow carries itself (``properties.models``, top-level ``models``), checked as untrusted input.

A UI workflow may name, for each model, the URL it comes from (ComfyUI's templates and many
community workflows do). Such a URL is used only for a file that is neither on disk nor known to
a manifest (the operator's manifests always win), and only when it passes ``urlguard``'s rules
(https, an allowed host, a safe suffix, a public address) and a sha256, when given, is well formed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings
from ._manifest import WORKFLOW_ORIGIN, Manifest, ModelEntry
from ._planner import Need, needs_of_ui
from ._urlguard import UrlRefused, check_embedded_url


@dataclass(frozen=True)
class Refusal:
    """An embedded source that may not be fetched: which model, which nodes use it, which rule it breaks."""

    name: str
    directory: str
    url: str | None
    nodes: tuple[str, ...]
    reason: str

    def message(self) -> str:
        from ._transports import redact

        where = f" from {redact(self.url)}" if isinstance(self.url, str) and self.url else ""
        return f"model '{self.name}' ({self.directory}){where} is not fetched: {self.reason}"


def workflow_needs(workflow: object) -> list[Need]:
    """The model needs of a UI workflow (``[]`` for anything else)."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return []
    return list(needs_of_ui(workflow).values())


def check_embedded_sources(needs: list[Need], manifest: Manifest, settings: Settings,
                  present: Callable[[str, str], bool]) -> tuple[list[ModelEntry], list[Refusal]]:
    """``(entries to accept, refusals)`` for the embedded sources of ``needs`` that would be fetched."""
    accepted: list[ModelEntry] = []
    refused: list[Refusal] = []
    for need in needs:
        embedded = need.embedded
        if embedded is None or manifest.find(need.name, need.directory) is not None or present(need.directory, need.name):
            continue
        try:
            check_embedded_url(embedded.url, need.name, need.directory, settings.allowed_hosts,
                               settings.allow_private_urls)
        except UrlRefused as exc:
            refused.append(Refusal(need.name, need.directory, embedded.url, tuple(need.nodes), str(exc)))
            continue
        accepted.append(ModelEntry(name=embedded.name, directory=embedded.directory, url=embedded.url,
                                   sha256=embedded.sha256, size=embedded.size, origin=WORKFLOW_ORIGIN))
    return accepted, refused
