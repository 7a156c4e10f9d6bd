"""Show progress on stderr: rich bars on a terminal, plain lines (every 10% or 5 s) otherwise."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

from ._sizes import human_bytes
from ._progress import FINAL, FileProgress, Pacer


class PlainLines:
    """One line per phase change, then at most one per 10% or 5 seconds per file."""

    def __init__(self, stream: TextIO = sys.stderr, pacer: Pacer | None = None) -> None:
        self.stream = stream
        self.pacer = pacer or Pacer(5.0, step=0.1)

    def __call__(self, p: FileProgress) -> None:
        key = f"{p.directory}/{p.name}"
        frac = p.fraction or 0.0
        if not self.pacer.admit(key, p.phase, p.fraction, final=p.phase in FINAL):
            return
        total = f" of {human_bytes(p.total)}" if p.total else ""
        pct = f" ({frac:.0%})" if p.total else ""
        extra = f" — {p.message}" if p.message else ""
        print(f"{p.phase:<8} {key}: {human_bytes(p.done)}{total}{pct}{extra}", file=self.stream, flush=True)


@contextlib.contextmanager
def progress_renderer(enabled: bool = True, stream: TextIO = sys.stderr) -> Iterator[Callable[[FileProgress], None]]:
    if not enabled:
        yield lambda p: None
        return
    if not stream.isatty():
        yield PlainLines(stream)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress as Bars, TaskID, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    bars = Bars(TextColumn("{task.fields[phase]:<8} {task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=Console(file=stream), transient=False)
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def update(p: FileProgress) -> None:
        key = f"{p.directory}/{p.name}"
        with lock:
            if key not in tasks:
                tasks[key] = bars.add_task(key, total=p.total, phase=p.phase)
            bars.update(tasks[key], completed=p.done, total=p.total, phase=p.phase)

    with bars:
        yield update
