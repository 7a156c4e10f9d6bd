"""sha256 of whole files at the speed of OpenSSL: large reads overlapped with hashing."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from queue import Queue

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
