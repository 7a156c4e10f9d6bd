"""sha256 at the speed of OpenSSL: of whole files (large reads overlapped with hashing), and of a download's
prefix as its chunks complete (``PrefixHasher``, the engine's hasher thread)."""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from queue import Queue

from . import _journal as journal_mod

BUF = 8 * 1024 * 1024


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hash ``path``; a reader thread fills buffers while this thread hashes (hashlib releases the GIL)."""
    sha = hashlib.sha256()
    free: Queue[bytearray] = Queue()
    full: Queue[tuple[bytearray, int]] = Queue()
    for _ in range(3):
        free.put(bytearray(BUF))
    error: list[BaseException] = []

    def reader() -> None:
        try:
            with open(path, "rb", buffering=0) as f:
                try:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                except (AttributeError, OSError):
                    pass
                while True:
                    buf = free.get()
                    n = f.readinto(buf)
                    full.put((buf, n))
                    if not n:
                        return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)
            full.put((bytearray(), 0))

    t = threading.Thread(target=reader, name="sha256-reader", daemon=True)
    t.start()
    done = 0
    while True:
        buf, n = full.get()
        if not n:
            break
        sha.update(memoryview(buf)[:n])
        done += n
        free.put(buf)
        if on_bytes is not None:
            on_bytes(done)
    t.join()
    if error:
        raise error[0]
    return sha.hexdigest()


class PrefixHasher:
    """Hashes chunks in order as soon as each is complete (from the mapping, else read back with ``pread``);
    every ``SYNC_EVERY`` bytes starts the hashed prefix's writeback, so the final fsync has little left to
    do, and drops it from the mapping, so resident memory stays bounded."""

    SYNC_EVERY = 32 * 1024 * 1024

    def __init__(self, fd: int, header: journal_mod.Header, done: set[int], cond: threading.Condition,
                 mm: mmap.mmap | None = None) -> None:
        self.fd, self.header, self.done, self.cond, self.mm = fd, header, done, cond, mm
        self._synced_to = 0
        self.next_index = 0  # the first chunk not hashed yet (read by the workers under ``cond``)
        self.sha = hashlib.sha256()
        self._cancel = False
        self._buf = bytearray(4 * 1024 * 1024)

    def cancel(self) -> None:
        with self.cond:
            self._cancel = True
            self.cond.notify_all()

    def run(self) -> None:
        for index in range(self.header.chunks()):
            with self.cond:
                while index not in self.done and not self._cancel:
                    self.cond.wait(1.0)
                if self._cancel:
                    return
            start, end = self.header.span(index)
            if self.mm is not None:
                with memoryview(self.mm) as whole, whole[start:end + 1] as chunk:
                    self.sha.update(chunk)
            else:
                pos, view = start, memoryview(self._buf)
                while pos <= end:
                    n = os.preadv(self.fd, [view[: min(len(self._buf), end - pos + 1)]], pos)
                    if n <= 0:
                        raise OSError(f"short read at {pos}")
                    self.sha.update(view[:n])
                    pos += n
            if end + 1 - self._synced_to >= self.SYNC_EVERY:
                self._sync(end + 1)
            with self.cond:
                self.next_index = index + 1
                self.cond.notify_all()

    def _sync(self, upto: int) -> None:
        """Unmap the hashed prefix (dirty pages stay in the page cache) and start its writeback without
        waiting for it: writeback overlaps the download instead of trailing it, resident memory stays bounded."""
        start = self._synced_to - self._synced_to % mmap.PAGESIZE
        if self.mm is not None and hasattr(self.mm, "madvise"):
            self.mm.madvise(mmap.MADV_DONTNEED, start, upto - start)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, start, upto - start, os.POSIX_FADV_DONTNEED)  # Linux: async writeback
        elif self.mm is not None:
            self.mm.flush(start, upto - start)
        else:
            os.fdatasync(self.fd)
        self._synced_to = upto

    def hexdigest(self) -> str:
        return self.sha.hexdigest()
