"""Progress events: model_fetch emits ``FileProgress``; the CLI, the worker and the node pack render them.

``PerFileThrottle`` thins them at the source: per file, a phase change and the final
``present``/``done`` event always pass; repeats of a phase pass at most every ``interval`` seconds.
Two renderers thin again for their medium, with the same rule (a new phase always passes): the
worker's ``ProgressReporter`` (RunPod's progress channel, every 2 s) and the CLI's ``PlainLines``
(a line per 10 % or 5 s when stderr is not a terminal).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

PHASES = ("present", "verify", "wait", "download", "done")
FINAL = ("present", "done")


@dataclass(frozen=True)
class FileProgress:
    """Where one file stands: ``phase`` is one of PHASES; ``done``/``total`` in bytes."""

    name: str
    directory: str
    phase: str
    done: int
    total: int | None
    source: str = ""
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PerFileThrottle:
    """Forwards events to ``on_progress``, at most one per file and phase every ``interval`` seconds;
    phase changes and final events (``present``, ``done``) are never dropped."""

    def __init__(self, on_progress: Callable[[FileProgress], None], interval: float = 0.25) -> None:
        self.on_progress = on_progress
        self.interval = interval
        self._last: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, p: FileProgress) -> None:
        key, now = (p.directory, p.name), time.monotonic()
        with self._lock:
            phase, sent = self._last.get(key, ("", 0.0))
            if p.phase == phase and p.phase not in FINAL and now - sent < self.interval:
                return
            self._last[key] = (p.phase, now)
        self.on_progress(p)
