"""Chunk journal beside a ``.part`` file: which chunks are complete, so a later process resumes.

Format: a JSON header line ``{"v": 1, "size", "chunk", "validator"}``, then one completed chunk
index per line, appended with ``O_APPEND`` (small writes are atomic). A torn last line is ignored.
A chunk is marked only after its bytes were written; ``finish()`` removes the journal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

VERSION = 1


@dataclass(frozen=True)
class Header:
    size: int
    chunk: int
    validator: str

    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk)) if self.size else 1

    def span(self, index: int) -> tuple[int, int]:
        """Inclusive byte range of chunk ``index``."""
        start = index * self.chunk
        return start, min(self.size, start + self.chunk) - 1


def read(path: Path) -> tuple[Header | None, set[int]]:
    """Header and completed chunk indices of a journal (``(None, set())`` if absent or unreadable)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None, set()
    lines = text.split("\n")[:-1]  # a last line without its newline was torn by a crash: ignored
    if not lines:
        return None, set()
    try:
        raw = json.loads(lines[0])
        header = Header(size=int(raw["size"]), chunk=int(raw["chunk"]), validator=str(raw["validator"]))
        if raw.get("v") != VERSION:
            return None, set()
    except (ValueError, KeyError, TypeError):
        return None, set()
    done = {int(x) for x in lines[1:] if x.strip().isdigit() and int(x) < header.chunks()}
    return header, done


def done_bytes(header: Header, done: set[int]) -> int:
    return sum(header.span(i)[1] - header.span(i)[0] + 1 for i in done)


class Journal:
    """Open (or start) the journal of one download."""

    def __init__(self, path: Path, header: Header) -> None:
        self.path = Path(path)
        self.header = header
        old, done = read(self.path)
        self.resumed = old == header
        self.done: set[int] = done if self.resumed else set()
        if not self.resumed:
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"v": VERSION, "size": header.size, "chunk": header.chunk,
                                       "validator": header.validator}) + "\n")
            os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def mark(self, index: int) -> None:
        os.write(self._fd, f"{index}\n".encode())
        self.done.add(index)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def finish(self) -> None:
        """The download is complete: drop the journal."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
