"""Per-file lease: one downloader per file across processes and hosts sharing a volume.

Correctness never depends on ``flock`` (a no-op on some network filesystems): the lease is a file
created with ``O_CREAT|O_EXCL`` holding ``{host, pid, token}``; its holder touches it every
``heartbeat`` seconds. A lease is stale when its heartbeat is older than ``ttl`` or, on the same
host, when its process is gone. Breaking a stale lease happens under a second exclusive file
(``.break``) and re-checks the token, so two waiters never both take over.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
HOST = os.uname().nodename  # what socket.gethostname() returns, without importing socket


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    token: str
    heartbeat: float  # the lease file's mtime
    started: float = 0.0

    def alive_locally(self) -> bool | None:
        """On this host: is the holder's process running? None when it runs elsewhere."""
        if self.host != HOST:
            return None
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def read_holder(path: Path) -> Holder | None:
    try:
        st = os.stat(path)
        data = json.loads(Path(path).read_text())
        return Holder(host=data["host"], pid=int(data["pid"]), token=data["token"], heartbeat=st.st_mtime,
                      started=float(data.get("started", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Lease:
    """``try_acquire()`` / ``release()``; while held, a daemon thread keeps the heartbeat fresh."""

    def __init__(self, path: Path, ttl: float = 30.0, heartbeat: float = 5.0) -> None:
        self.path = Path(path)
        self.ttl, self.heartbeat = ttl, heartbeat
        self.token = os.urandom(16).hex()
        self.lost = False  # set when another process broke this lease (e.g. after a long pause)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._thread is not None and not self.lost

    def holder(self) -> Holder | None:
        return read_holder(self.path)

    def is_stale(self, holder: Holder | None) -> bool:
        if holder is None:
            # unreadable: half-written by a crashed creator, or just removed; judge by mtime alone
            try:
                return time.time() - os.stat(self.path).st_mtime > self.ttl
            except FileNotFoundError:
                return False
        if holder.alive_locally() is False:
            return True
        return time.time() - holder.heartbeat > self.ttl

    def try_acquire(self) -> bool:
        """Take the lease if free (or stale); False when a live holder has it."""
        if self.held:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._create():
                self._start_heartbeat()
                return True
            if not self._break_if_stale():
                return False
        return False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"host": HOST, "pid": os.getpid(), "token": self.token, "started": time.time()}, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # e.g. ENOSPC: an empty lease would block every other process for the TTL
            try:
                os.unlink(self.path)
            except OSError:
                pass
            raise
        return True

    def _break_if_stale(self) -> bool:
        holder = self.holder()
        if not self.is_stale(holder):
            return False
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:  # a breaker that died mid-break leaves this file behind
                if time.time() - os.stat(breaker).st_mtime > self.ttl:
                    os.unlink(breaker)
            except OSError:
                pass
            return False
        try:
            os.close(fd)
            current = self.holder()
            same = (current is None and holder is None) or (current and holder and current.token == holder.token)
            if same and self.is_stale(current):
                log.warning("taking over stale download lease %s (holder %s)", self.path.name,
                            f"{holder.host}:{holder.pid}" if holder else "unknown")
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                return True
            return False
        finally:
            try:
                os.unlink(breaker)
            except OSError:
                pass

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            holder = self.holder()
            if holder is None or holder.token != self.token:
                log.error("download lease %s was taken by another process", self.path.name)
                self.lost = True
                return
            try:
                os.utime(self.path)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    self.lost = True
                    return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 1)
            self._thread = None
        holder = self.holder()
        if holder is not None and holder.token == self.token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
