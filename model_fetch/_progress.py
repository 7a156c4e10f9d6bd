"""Progress events: model_fetch emits ``FileProgress``; the CLI, the worker and the node pack render them.

``Pacer`` is the one rule that thins them, wherever they are thinned: per stream, a new stream, a new
phase or a final event always passes; repeats pass at most every ``interval`` seconds (or once the
fraction done has moved by ``step``). Three callers use it: ``PerFileThrottle`` here, at the source
(per file, 0.25 s; ``present``/``done`` are final), the worker's ``ProgressReporter`` (per
``(stage, file)``, 2 s, for RunPod's progress channel) and the CLI's ``PlainLines`` (per file, 5 s
or 10 %, when stderr is not a terminal).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
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


class Pacer:
    """Decides which events of several streams pass; thread-safe.

    ``admit`` says yes to the first event of a stream, to a new phase of it, to a ``final`` event,
    to one that comes ``interval`` seconds or more after the last one admitted, and (with ``step``)
    to one whose ``fraction`` is ``step`` or more past the last one admitted; no to the rest.

    Internal logic: only an admitted event moves the stream's (phase, time, fraction), so a burst
    of repeats is measured from the last event that passed, never from one that was dropped.
    """

    def __init__(self, interval: float, step: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.step = step
        self._clock = clock
        self._last: dict[Hashable, tuple[object, float, float | None]] = {}  # stream -> (phase, time, fraction)
        self._lock = threading.Lock()

    def admit(self, stream: Hashable, phase: object, fraction: float | None = None, final: bool = False) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last.get(stream)
            if last is not None and not final and last[0] == phase and now - last[1] < self.interval \
                    and not self._stepped(last[2], fraction):
                return False
            self._last[stream] = (phase, now, fraction)
            return True

    def _stepped(self, last: float | None, fraction: float | None) -> bool:
        return self.step is not None and fraction is not None and fraction - (last or 0.0) >= self.step


class PerFileThrottle:
    """Forwards events to ``on_progress``, at most one per file and phase every ``interval`` seconds;
    phase changes and final events (``present``, ``done``) are never dropped."""

    def __init__(self, on_progress: Callable[[FileProgress], None], interval: float = 0.25) -> None:
        self.on_progress = on_progress
        self.pacer = Pacer(interval)

    def __call__(self, p: FileProgress) -> None:
        if self.pacer.admit((p.directory, p.name), p.phase, final=p.phase in FINAL):
            self.on_progress(p)
