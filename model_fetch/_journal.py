"""Chunk journal beside a ``.part`` file: which chunks are complete, so a later process resumes.

Format: a JSON header line ``{"v": 1, "size", "chunk", "validator"}``, then one line per event,
appended with ``O_APPEND`` (small writes are atomic): ``<index>`` when a chunk is complete, and
``<index>@<offset>`` as a chunk in flight passes ``offset`` (every ``PARTIAL_EVERY`` bytes), so a killed
process loses at most that much per connection. A torn last line is ignored. Lines are written only
after their bytes were; ``finish()`` removes the journal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
PARTIAL_EVERY = 1024 * 1024


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


def read_progress(path: Path) -> tuple[Header | None, set[int], dict[int, int]]:
    """Header, completed chunks, and for chunks in flight the offset up to which bytes are written."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None, set(), {}
    lines = text.split("\n")[:-1]  # a last line without its newline was torn by a crash: ignored
    if not lines:
        return None, set(), {}
    try:
        raw = json.loads(lines[0])
        header = Header(size=int(raw["size"]), chunk=int(raw["chunk"]), validator=str(raw["validator"]))
        if raw.get("v") != VERSION:
            return None, set(), {}
    except (ValueError, KeyError, TypeError):
        return None, set(), {}
    done: set[int] = set()
    partial: dict[int, int] = {}
    for line in lines[1:]:
        index, at, offset = line.strip().partition("@")
        if not index.isdigit() or int(index) >= header.chunks():
            continue
        i = int(index)
        if not at:
            done.add(i)
        elif offset.isdigit() and header.span(i)[0] <= int(offset) <= header.span(i)[1] + 1:
            partial[i] = max(partial.get(i, 0), int(offset))
    return header, done, {i: o for i, o in partial.items() if i not in done}


def done_bytes(header: Header, done: set[int], partial: dict[int, int] | None = None) -> int:
    """Bytes known to be written: complete chunks plus the written prefix of chunks in flight."""
    full = sum(header.span(i)[1] - header.span(i)[0] + 1 for i in done)
    return full + sum(offset - header.span(i)[0] for i, offset in (partial or {}).items())


class Journal:
    """Open (or start) the journal of one download."""

    def __init__(self, path: Path, header: Header) -> None:
        self.path = Path(path)
        self.header = header
        old, done, partial = read_progress(self.path)
        self.resumed = old == header
        self.done: set[int] = done if self.resumed else set()
        self.partial: dict[int, int] = partial if self.resumed else {}
        if not self.resumed:
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"v": VERSION, "size": header.size, "chunk": header.chunk,
                                       "validator": header.validator}) + "\n")
            os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def mark(self, index: int) -> None:
        os.write(self._fd, f"{index}\n".encode())
        self.done.add(index)
        self.partial.pop(index, None)

    def mark_partial(self, index: int, offset: int) -> None:
        """Bytes of chunk ``index`` up to ``offset`` (exclusive) are written."""
        os.write(self._fd, f"{index}@{offset}\n".encode())
        self.partial[index] = offset

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
