"""ComfyUI's output: every byte kept in its log file (but long base64-like runs: ``worker.redact``), each
line forwarded to the worker's stdout with a ``[comfyui]`` prefix (so node tracebacks reach RunPod's log
stream), rate-limited so that a chatty node cannot flood it; suppressed lines are counted and printed."""

from __future__ import annotations

import io
import re
import sys
import threading
import time
from typing import BinaryIO, TextIO

from .redact import clip_bytes

PREFIX = "[comfyui] "
_SPLIT = re.compile(rb"(\r\n|\r|\n)")  # tqdm redraws with \r: each redraw is its own line


class LineBudget:
    """Token bucket: ``rate`` lines per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate * 10)))
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return False
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class LogPump:
    """Copies a child's output pipe to ``logfile`` and forwards its lines to ``out`` (a thread)."""

    def __init__(self, pipe: io.BufferedIOBase, logfile: BinaryIO, rate: float, out: TextIO | None = None) -> None:
        self.pipe, self.logfile, self._out = pipe, logfile, out
        self.budget = LineBudget(rate)
        self.suppressed = 0
        self.thread = threading.Thread(target=self._run, name="comfyui-log", daemon=True)

    @property
    def out(self) -> TextIO:
        """The given stream, else whatever ``sys.stdout`` is now (``--test-input`` points it at stderr)."""
        return self._out or sys.stdout

    def start(self) -> "LogPump":
        self.thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def _emit(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip()
        if not text or self.budget.rate <= 0:
            return
        if not self.budget.take():
            self.suppressed += 1
            return
        if self.suppressed:
            self._write(f"{PREFIX}... {self.suppressed} line(s) not shown (rate limit); all are in the log file\n")
            self.suppressed = 0
        self._write(PREFIX + text + "\n")

    def _write(self, text: str) -> None:
        """Forward to stdout; if stdout is gone, stop forwarding but keep draining the pipe to the file."""
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            self.budget.rate = 0

    def _line(self, line: bytes, end: bytes) -> None:
        line = clip_bytes(line)  # no echo of user data (base64 in an error message) in either place
        self.logfile.write(line + end)
        self._emit(line)

    def _run(self) -> None:
        pending = b""
        try:
            while chunk := self.pipe.read1(65536):
                *parts, pending = _SPLIT.split(pending + chunk)  # line, separator, line, ..., rest
                for line, end in zip(parts[::2], parts[1::2]):
                    self._line(line, end)
                self.logfile.flush()
            if pending:
                self._line(pending, b"")
                self.logfile.flush()
            if self.suppressed:
                self._write(f"{PREFIX}... {self.suppressed} line(s) not shown (rate limit); all are in the log file\n")
        except (OSError, ValueError):
            pass  # the pipe or the log file went away with the process
        finally:
            self.logfile.close()
            self.pipe.close()
