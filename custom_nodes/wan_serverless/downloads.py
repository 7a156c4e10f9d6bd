"""This process's downloads: one thread per file, joined by every caller that needs the same file.

One download per file per process: a graph that needs a file the ``/model_fetch/pull`` route is
already fetching joins that download instead of starting another. Across processes model_fetch's
lease does the same (the waiting side sees phase ``wait`` with the holder's progress). Downloads
run in daemon threads; the loader's thread only follows their ``Progress`` events, so the ComfyUI
progress bar is updated from the executing node's own context, and an interrupted run stops
waiting while the download finishes in the background for next time. ``cancel()`` (the editor's
Stop, ``POST /model_fetch/cancel``) stops a download: its ``.part`` stays and the next run resumes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from model_fetch import DownloadCancelled, FileProgress, ModelEntry, Settings, Store, ensure, human_bytes

from .errors import ModelFetchFailed


log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a waiting loader looks at its download's progress
RATE_WINDOW_S = 5.0  # the download rate shown is averaged over this many seconds


@dataclass
class RunningDownload:
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
    cancel: threading.Event = field(default_factory=threading.Event)  # set by Downloads.cancel
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


class Downloads:
    """The table of this process's running downloads (keyed by ``ModelEntry.key``) and their last failures."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], RunningDownload] = {}
        self._failed: dict[tuple[str, str], str] = {}

    def running(self, key: tuple[str, str]) -> RunningDownload | None:
        """The running download of the entry with ``key``, or None."""
        return self._running.get(key)

    def failure(self, key: tuple[str, str]) -> str | None:
        """Why the last download of the entry with ``key`` failed, or None (cleared by the next start)."""
        return self._failed.get(key)

    def start(self, entry: ModelEntry, origin: str) -> tuple[RunningDownload, bool]:
        """The download of ``entry``: the running one, or a new one (then ``True``)."""
        with self._lock:
            download = self._running.get(entry.key)
            if download is not None:
                return download, False
            download = self._running[entry.key] = RunningDownload(entry, origin)
            self._failed.pop(entry.key, None)
        threading.Thread(target=self._run, args=(download,), name=f"model-fetch {entry.name}", daemon=True).start()
        return download, True

    def _run(self, download: RunningDownload) -> None:

        entry = download.entry
        log.info("model_fetch: fetching %s (%s, %s)", entry.describe(), human_bytes(entry.size), download.origin)
        try:
            # a workflow's own URL is re-checked by model_fetch, with every redirect target
            report = ensure([entry], settings=self.settings, store=self.store, on_progress=download.update,
                            cancel=download.cancel)
            fetched = report.files[0]
            download.path, download.action, download.fetched_bytes = fetched.path, fetched.action, fetched.fetched_bytes
            size = fetched.path.stat().st_size
            download.progress = FileProgress(entry.name, entry.directory, "done", size, size)
            log.info("model_fetch: %s %s -> %s (%s received)", fetched.action, entry.describe(), fetched.path,
                     human_bytes(fetched.fetched_bytes))
        except DownloadCancelled as exc:  # the .part stays: status shows it as partial
            download.error = exc
            log.info("model_fetch: %s stopped on request; the partial file is kept for the next run", entry.describe())
        except BaseException as exc:  # noqa: BLE001 - kept for the waiting loader and for /model_fetch/status
            download.error = exc
            self._failed[entry.key] = f"{type(exc).__name__}: {exc}"
            log.error("model_fetch: %s failed: %s", entry.describe(), exc)
        finally:
            with self._lock:
                if self._running.get(entry.key) is download:
                    del self._running[entry.key]
            download.done.set()

    def fetch(self, entry: ModelEntry, on_progress: Callable[[FileProgress], None] | None = None,
              on_poll: Callable[[], None] | None = None) -> Path:
        """Block until ``entry`` is on disk. In the caller's thread, ``on_progress`` gets each new event
        and ``on_poll`` runs every POLL_S (it may raise to stop waiting, e.g. on a ComfyUI interrupt)."""
        download, _ = self.start(entry, "graph")
        seen = None
        while True:
            finished = download.done.wait(POLL_S)
            if on_poll is not None and not finished:
                on_poll()
            progress = download.progress
            if on_progress is not None and progress is not None and progress is not seen:
                seen = progress
                on_progress(progress)
            if finished:
                break
        if download.error is not None or download.path is None:
            sources = ", ".join(entry.sources) or "no source"
            raise ModelFetchFailed(f"could not fetch '{entry.name}' into '{entry.directory}' from {sources}: "
                                   f"{download.error}") from download.error
        return download.path

    def cancel(self, names: list[str] | None) -> dict[str, list[dict]]:
        """Stop the named running downloads (all when ``names`` is None); ``{"cancelled", "not_running"}``.

        A name is a file name or ``directory/name``. The downloads stop within one received block."""
        with self._lock:
            running = list(self._running.values())
        out: dict[str, list[dict]] = {"cancelled": [], "not_running": []}
        for name in names if names is not None else [f"{d.entry.directory}/{d.entry.name}" for d in running]:
            found = [d for d in running if name in (d.entry.name, f"{d.entry.directory}/{d.entry.name}")]
            for download in found:
                download.cancel.set()
                out["cancelled"].append({"name": download.entry.name, "directory": download.entry.directory})
            if not found:
                out["not_running"].append({"name": name})
        return out
