"""The models this process knows: the manifests (reread when one changes), the workflow sources
accepted for queued prompts, and the status rows the editor's panel and ``/model_fetch/status`` show.

A row merges model_fetch's ``status`` with this process's downloads (``downloads.Downloads``);
``pull`` names known models and starts their downloads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from model_fetch import (DEFAULT_MANIFEST, Manifest, ModelEntry, ModelFetchError, Settings, Store, canonical_folder,
                         human_bytes, load_manifest, status)

from . import lookup
from .downloads import Downloads
from .errors import UnknownModels


log = logging.getLogger(__name__)

MARK = "\u2913"  # ⤓, shown before fetchable models in the graph editor (web/model_fetch.js)


class Catalog:
    """The merged manifest and accepted workflow sources of one store, with status rows and pull."""

    def __init__(self, settings: Settings, store: Store, downloads: Downloads) -> None:
        self.settings, self.store, self.downloads = settings, store, downloads
        self._lock = threading.Lock()
        self._manifest_key: tuple[tuple[str, int, int], ...] | None = None
        self._manifest: Manifest | None = None
        self._manifest_error: Exception | None = None
        self._embedded: dict[tuple[str, str], ModelEntry] = {}  # sources accepted from queued workflows

    def accept(self, entries: Iterable[ModelEntry]) -> None:
        """Add workflow-embedded sources (already checked by model_fetch.check_embedded_sources) for the rest of the process."""
        with self._lock:
            for entry in entries:
                self._embedded[entry.key] = entry

    def known(self) -> Manifest:
        """Every model a source knows: accepted workflow sources, overridden by the manifests."""
        merged = Manifest()
        for entry in list(self._embedded.values()):
            merged.add(entry)
        merged.merge(self.manifest_or_empty())
        return merged

    def known_names(self, directory: str) -> list[str]:
        """Names of the models of ``directory`` that a source knows."""
        return [e.name for e in self.known() if e.directory == directory and e.sources]

    # -- manifest -----------------------------------------------------------------------------
    def manifest_paths(self) -> list[Path]:
        return ([DEFAULT_MANIFEST] if self.settings.include_default_manifest else []) + list(self.settings.manifests)

    def manifest(self) -> Manifest:
        """The merged manifest, reread when a manifest file changes; raises model_fetch.ManifestError."""
        key = tuple((str(p), *_mtime(p)) for p in self.manifest_paths())
        with self._lock:
            if key != self._manifest_key:
                self._manifest_key = key
                try:
                    self._manifest = load_manifest(self.settings.manifests, self.settings.include_default_manifest)
                    self._manifest_error = None
                except ModelFetchError as exc:
                    self._manifest, self._manifest_error = None, exc
                    log.error("model_fetch manifest unusable, fetch on first use lists nothing: %s", exc)
            if self._manifest_error is not None:
                raise self._manifest_error
            assert self._manifest is not None  # set together with _manifest_key
            return self._manifest

    def manifest_or_empty(self) -> Manifest:
        try:
            return self.manifest()
        except ModelFetchError:
            return Manifest()

    def entry(self, folder: str, name: str) -> ModelEntry | None:
        """The manifest (or accepted workflow) entry for ``name`` in ComfyUI folder ``folder``, or None."""
        entry = self.manifest().find(name, folder) or self._embedded.get((canonical_folder(folder), name))
        return entry if entry is not None and entry.sources else None

    def sources_text(self) -> str:
        return ", ".join(map(str, self.manifest_paths())) or "none"

    # -- listing --------------------------------------------------------------------------------
    def fetchable(self, folder: str, extensions: Iterable[str], on_disk: set[str]) -> dict[str, dict[str, Any]]:
        """Manifest models of ``folder`` with one of ``extensions`` that ComfyUI does not see on disk.

        ``{name: {"size", "state", "done", "label"}}``; ``state`` as in ``status()``.
        """
        wanted = {e.lower() for e in extensions}
        manifest = self.known()
        entries = [e for e in manifest if e.directory == canonical_folder(folder) and e.sources and e.name not in on_disk
                   and os.path.splitext(e.name)[1].lower() in wanted]
        if not entries:
            return {}
        sub = Manifest()
        for e in entries:
            sub.add(e)
        out = {}
        for row in self.rows(sub):
            out[row["name"]] = {"size": row["size"], "state": row["state"], "done": row["done"],
                                "label": label(row["name"], row["state"], row["done"], row["size"])}
        return out

    # -- status and pull --------------------------------------------------------------------------
    def rows(self, manifest: Manifest) -> list[dict[str, Any]]:
        """A status row per entry of ``manifest`` (``status()``'s shape), with this process's downloads."""
        rows = []
        for f in status(settings=self.settings, manifest=manifest, store=self.store):
            row = f.as_dict()
            row["total"] = f.size
            download = self.downloads.running(f.entry.key)
            failure = self.downloads.failure(f.entry.key)
            if download is not None and f.state != "present":
                p = download.progress
                row["state"] = "downloading"
                row["rate"] = download.rate()
                row["phase"] = p.phase if p is not None else "starting"
                if p is not None:
                    row["done"] = p.done
                    row["total"] = p.total or row["total"]
                    row["size"] = row["size"] or p.total
                    if p.message:
                        row["message"] = p.message
            elif failure is not None and f.state != "present":
                row["error"] = failure
            if row.get("rate") and row.get("total"):
                row["eta_s"] = max(0.0, (row["total"] - row["done"]) / row["rate"])
            row["comfyui_path"] = lookup.original_full_path(f.entry.directory, f.entry.name)
            rows.append(row)
        return rows

    def status(self) -> list[dict[str, Any]]:
        """Every manifest model: name, directory, state, size, done/total bytes, path, comfyui_path, ..."""
        self.manifest()  # raises when a manifest is unusable
        return self.rows(self.known())

    def pull(self, names: list[str] | None) -> dict[str, list[dict[str, Any]]]:
        """Start background downloads of the named known models (all when ``names`` is None)."""
        self.manifest()  # raises when a manifest is unusable
        manifest = self.known()
        if names is None:
            entries = [e for e in manifest if e.sources]
        else:
            entries, unknown = [], []
            for name in names:
                found = [e for e in manifest if e.sources and name in (e.name, f"{e.directory}/{e.name}")]
                if not found:
                    unknown.append(name)
                entries += [e for e in found if e not in entries]
            if unknown:
                raise UnknownModels(unknown)
        out: dict[str, list[dict[str, Any]]] = {"started": [], "running": [], "present": []}
        for entry in entries:
            item = {"name": entry.name, "directory": entry.directory}
            stored = self.store.find(entry)
            if stored is not None and self.store.valid_stamp(stored) is not None:
                out["present"].append({**item, "path": str(stored)})
                continue
            elsewhere = lookup.original_full_path(entry.directory, entry.name) if stored is None else None
            if elsewhere is not None:  # ComfyUI already sees it outside the store
                out["present"].append({**item, "path": elsewhere})
                continue
            _, started = self.downloads.start(entry, "pull")
            out["started" if started else "running"].append(item)
        return out


def label(name: str, state: str, done: int, size: int | None) -> str:
    """How the graph editor shows a model that is not on disk yet."""
    if state in ("downloading", "partial") and size:
        return f"{MARK} {name}  ({human_bytes(done)} of {human_bytes(size)}, {state})"
    return f"{MARK} {name}  ({human_bytes(size) + ', ' if size is not None else ''}downloads on first run)"


def _mtime(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return -1, -1
