"""Progress events the engine emits and the CLI, the worker and the node pack render."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

PHASES = ("present", "verify", "wait", "download", "done", "error")


@dataclass(frozen=True)
class Progress:
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

    def as_dict(self) -> dict:
        return asdict(self)


class Throttle:
    """True at most every ``interval`` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False
