"""Fetch on first use: manifest models the loaders list before they are on disk, and download when run.

One download per file per process: a graph that needs a file the ``/model_fetch/pull`` route is
already fetching joins that download instead of starting another. Across processes model_fetch's
lease does the same (the waiting side sees phase ``wait`` with the holder's progress). Downloads
run in daemon threads; the loader's thread only follows their ``Progress`` events, so the ComfyUI
progress bar is updated from the executing node's own context, and an interrupted run stops
waiting while the download finishes in the background for next time. ``cancel()`` (the editor's
Stop, ``POST /model_fetch/cancel``) stops a download: its ``.part`` stays and the next run resumes it.

``context()`` is None when model_fetch is unavailable (see fetch_setup.py); callers then treat
every missing file as unknown.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import fetch_setup, lookup
from .errors import ModelFetchFailed, UnknownModels

if TYPE_CHECKING:  # imported for real (lazily) once fetch_setup found model_fetch
    from model_fetch import FileProgress, Manifest, ModelEntry, Settings, Store

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a waiting loader looks at its download's progress
RATE_WINDOW_S = 5.0  # the download rate shown is averaged over this many seconds
MARK = "\u2913"  # ⤓, shown before fetchable models in the graph editor (web/model_fetch.js)


@dataclass
class Job:
    """One download in this process; ``progress`` is the latest model_fetch event."""

    entry: ModelEntry
    origin: str  # "graph" | "pull"
    started: float = field(default_factory=time.time)
    progress: FileProgress | None = None
    done: threading.Event = field(default_factory=threading.Event)
    path: Path | None = None
    action: str | None = None
    fetched_bytes: int = 0
    error: BaseException | None = None
    cancel: threading.Event = field(default_factory=threading.Event)  # set by PackFetch.cancel
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))  # (time, bytes done) for the rate

    def update(self, progress: FileProgress) -> None:
        self.progress = progress
        self.samples.append((time.monotonic(), progress.done))

    def rate(self) -> float | None:
        """Bytes per second over the last few seconds of progress, None before there is any."""
        now = time.monotonic()
        recent = [s for s in self.samples if now - s[0] <= RATE_WINDOW_S]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        return max(0.0, (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]))


class PackFetch:
    """model_fetch bound to this ComfyUI process: one store, the merged manifest, in-process downloads."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._lock = threading.Lock()
        self._manifest_key: tuple[tuple[str, int, int], ...] | None = None
        self._manifest: Manifest | None = None
        self._manifest_error: Exception | None = None
        self._jobs: dict[tuple[str, str], Job] = {}
        self._failed: dict[tuple[str, str], str] = {}
        self._embedded: dict[tuple[str, str], ModelEntry] = {}  # sources accepted from queued workflows

    def accept(self, entries: Iterable[ModelEntry]) -> None:
        """Add workflow-embedded sources (already checked by model_fetch.check_embedded_sources) for the rest of the process."""
        with self._lock:
            for entry in entries:
                self._embedded[entry.key] = entry

    def known(self) -> Manifest:
        """Every model a source knows: accepted workflow sources, overridden by the manifests."""
        from model_fetch import Manifest

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
        from model_fetch import DEFAULT_MANIFEST

        return ([DEFAULT_MANIFEST] if self.settings.include_default_manifest else []) + list(self.settings.manifests)

    def manifest(self) -> Manifest:
        """The merged manifest, reread when a manifest file changes; raises model_fetch.ManifestError."""
        from model_fetch import ModelFetchError, load_manifest

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
        from model_fetch import Manifest, ModelFetchError

        try:
            return self.manifest()
        except ModelFetchError:
            return Manifest()

    def entry(self, folder: str, name: str) -> ModelEntry | None:
        """The manifest (or accepted workflow) entry for ``name`` in ComfyUI folder ``folder``, or None."""
        from model_fetch import canonical_folder

        entry = self.manifest().find(name, folder) or self._embedded.get((canonical_folder(folder), name))
        return entry if entry is not None and entry.sources else None

    def sources_text(self) -> str:
        return ", ".join(map(str, self.manifest_paths())) or "none"

    # -- listing --------------------------------------------------------------------------------
    def fetchable(self, folder: str, extensions: Iterable[str], on_disk: set[str]) -> dict[str, dict[str, Any]]:
        """Manifest models of ``folder`` with one of ``extensions`` that ComfyUI does not see on disk.

        ``{name: {"size", "state", "done", "label"}}``; ``state`` as in ``status()``.
        """
        from model_fetch import Manifest, canonical_folder

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

    # -- downloads ------------------------------------------------------------------------------
    def start(self, entry: ModelEntry, origin: str) -> tuple[Job, bool]:
        """The download job of ``entry``: the running one, or a new one (then ``True``)."""
        with self._lock:
            job = self._jobs.get(entry.key)
            if job is not None:
                return job, False
            job = self._jobs[entry.key] = Job(entry, origin)
            self._failed.pop(entry.key, None)
        threading.Thread(target=self._run, args=(job,), name=f"model-fetch {entry.name}", daemon=True).start()
        return job, True

    def _run(self, job: Job) -> None:
        from model_fetch import DownloadCancelled, FileProgress, ensure
        from model_fetch.errors import human_bytes

        entry = job.entry
        log.info("model_fetch: fetching %s (%s, %s)", entry.describe(), human_bytes(entry.size), job.origin)
        try:
            # a workflow's own URL is re-checked by model_fetch, with every redirect target
            report = ensure([entry], settings=self.settings, store=self.store, on_progress=job.update,
                            cancel=job.cancel)
            fetched = report.files[0]
            job.path, job.action, job.fetched_bytes = fetched.path, fetched.action, fetched.fetched_bytes
            size = fetched.path.stat().st_size
            job.progress = FileProgress(entry.name, entry.directory, "done", size, size)
            log.info("model_fetch: %s %s -> %s (%s received)", fetched.action, entry.describe(), fetched.path,
                     human_bytes(fetched.fetched_bytes))
        except DownloadCancelled as exc:  # the .part stays: status shows it as partial
            job.error = exc
            log.info("model_fetch: %s stopped on request; the partial file is kept for the next run", entry.describe())
        except BaseException as exc:  # noqa: BLE001 - kept for the waiting loader and for /model_fetch/status
            job.error = exc
            self._failed[entry.key] = f"{type(exc).__name__}: {exc}"
            log.error("model_fetch: %s failed: %s", entry.describe(), exc)
        finally:
            with self._lock:
                if self._jobs.get(entry.key) is job:
                    del self._jobs[entry.key]
            job.done.set()

    def fetch(self, entry: ModelEntry, on_progress: Callable[[FileProgress], None] | None = None,
              on_poll: Callable[[], None] | None = None) -> Path:
        """Block until ``entry`` is on disk. In the caller's thread, ``on_progress`` gets each new event
        and ``on_poll`` runs every POLL_S (it may raise to stop waiting, e.g. on a ComfyUI interrupt)."""
        job, _ = self.start(entry, "graph")
        seen = None
        while True:
            finished = job.done.wait(POLL_S)
            if on_poll is not None and not finished:
                on_poll()
            progress = job.progress
            if on_progress is not None and progress is not None and progress is not seen:
                seen = progress
                on_progress(progress)
            if finished:
                break
        if job.error is not None or job.path is None:
            sources = ", ".join(entry.sources) or "no source"
            raise ModelFetchFailed(f"could not fetch '{entry.name}' into '{entry.directory}' from {sources}: "
                                   f"{job.error}") from job.error
        return job.path

    def cancel(self, names: list[str] | None) -> dict[str, list[dict]]:
        """Stop the named running downloads (all when ``names`` is None); ``{"cancelled", "not_running"}``.

        A name is a file name or ``directory/name``. The downloads stop within one received block."""
        with self._lock:
            jobs = list(self._jobs.values())
        out: dict[str, list[dict]] = {"cancelled": [], "not_running": []}
        for name in names if names is not None else [f"{j.entry.directory}/{j.entry.name}" for j in jobs]:
            found = [j for j in jobs if name in (j.entry.name, f"{j.entry.directory}/{j.entry.name}")]
            for job in found:
                job.cancel.set()
                out["cancelled"].append({"name": job.entry.name, "directory": job.entry.directory})
            if not found:
                out["not_running"].append({"name": name})
        return out

    # -- status and pull --------------------------------------------------------------------------
    def rows(self, manifest: Manifest) -> list[dict[str, Any]]:
        """A status row per entry of ``manifest`` (``status()``'s shape), with this process's downloads."""
        from model_fetch import status

        rows = []
        for f in status(settings=self.settings, manifest=manifest, store=self.store):
            row = f.as_dict()
            row["total"] = f.size
            job = self._jobs.get(f.entry.key)
            if job is not None and f.state != "present":
                p = job.progress
                row["state"] = "downloading"
                row["rate"] = job.rate()
                row["phase"] = p.phase if p is not None else "starting"
                if p is not None:
                    row["done"] = p.done
                    row["total"] = p.total or row["total"]
                    row["size"] = row["size"] or p.total
                    if p.message:
                        row["message"] = p.message
            elif f.entry.key in self._failed and f.state != "present":
                row["error"] = self._failed[f.entry.key]
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
            _, started = self.start(entry, "pull")
            out["started" if started else "running"].append(item)
        return out


def label(name: str, state: str, done: int, size: int | None) -> str:
    """How the graph editor shows a model that is not on disk yet."""
    from model_fetch.errors import human_bytes

    if state in ("downloading", "partial") and size:
        return f"{MARK} {name}  ({human_bytes(done)} of {human_bytes(size)}, {state})"
    return f"{MARK} {name}  ({human_bytes(size) + ', ' if size is not None else ''}downloads on first run)"


def _mtime(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return -1, -1


_context: PackFetch | None = None
_disabled: str | None = None
_init_lock = threading.Lock()


def context() -> PackFetch | None:
    """The process's PackFetch, built on first use; None (logged once) when model_fetch is unavailable."""
    global _context, _disabled
    if _context is not None or _disabled is not None:
        return _context
    with _init_lock:
        if _context is None and _disabled is None:
            mf, why = fetch_setup.import_model_fetch()  # makes `import model_fetch` work below
            if mf is None:
                _disabled = why
                log.warning("fetch on first use disabled: %s. The loaders use files on disk only.", why)
                return None
            try:
                settings, store = fetch_setup.make_store()
            except Exception as exc:  # noqa: BLE001 - bad settings must not take the loaders down
                _disabled = f"model_fetch settings unusable: {type(exc).__name__}: {exc}"
                log.warning("fetch on first use disabled: %s. The loaders use files on disk only.", _disabled)
                return None
            _context = PackFetch(settings, store)
    return _context


def disabled_reason() -> str | None:
    """Why fetch on first use is off, or None when it is on (or not initialised yet)."""
    return _disabled
