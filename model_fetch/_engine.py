"""The download engine: every source's bytes reach a final file name through here, and only here.

``<name>.part`` is preallocated in the destination folder and mapped into memory; N workers fetch
chunk ranges in order over kept-alive connections and receive them straight into the mapping (one
copy, socket to page cache; ``pwrite`` where the filesystem cannot preallocate, so a full disk is an
error, never a SIGBUS); each finished chunk goes in the journal (so a killed process resumes); a hasher
thread feeds sha256 with the contiguous prefix as it completes (from the page cache, no pass after the
download); then fsync, atomic rename, directory fsync. A partial chunk is resumed
from its last byte on retry. A server that ignores ``Range`` is read as one stream.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import _journal as journal_mod
from .config import Settings
from .errors import DownloadCancelled, DownloadError, IntegrityError, NotEnoughSpace
from ._hashing import PrefixHasher
from ._reach import waiting_line
from ._store import journal_path, part_path
from ._transports import Probe, RangeIgnored, Transient, Transport

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_RETRY_AFTER = 300.0
LEAD_BYTES = 128 * 1024 * 1024  # how far past the hashed prefix the workers may receive


class Cancelled(Exception):
    """Raised inside workers once another worker failed."""


@dataclass
class Result:
    path: Path
    sha256: str
    size: int
    verified: bool  # matched an expected sha256
    fetched_bytes: int  # bytes received from the source in this run


def backoff(attempt: int, settings: Settings, retry_after: float | None) -> float:
    delay = min(settings.backoff_max, settings.backoff_base * 2.0 ** attempt) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def allocated(path: Path) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def preflight(name: str, folder: Path, size: int | None, settings: Settings) -> None:
    """Refuse before downloading when the target filesystem cannot hold the file plus headroom."""
    if size is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    need = max(0, size - allocated(part_path(folder / name)))
    if need + settings.min_free_bytes > free:
        raise NotEnoughSpace(name, str(folder), need, free, settings.min_free_bytes)


class Download:
    """One file from one transport into ``final`` (which must not exist yet)."""

    def __init__(self, transport: Transport, final: Path, settings: Settings, expected_sha256: str | None = None,
                 expected_size: int | None = None, on_bytes: Callable[[int, int, int | None], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, probe_attempts: int | None = None,
                 cancelled: Callable[[], bool] | None = None) -> None:
        self.t = transport
        self.final = Path(final)
        self.part = part_path(self.final)
        self.settings = settings
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.on_bytes = on_bytes
        self.should_stop = should_stop or (lambda: False)
        self.cancelled = cancelled or (lambda: False)  # checked with every block received: DownloadCancelled
        self.probe_attempts = probe_attempts or settings.max_attempts
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._failed: BaseException | None = None
        self.done_bytes = 0
        self.fetched = 0
        self.size: int | None = expected_size
        self.resumed = False  # bytes of an earlier run were kept (a sha256 mismatch may then be theirs)

    # -- helpers --------------------------------------------------------------------------
    def _with_retries(self, what: str, fn: Callable[[], T], attempts: int) -> T:
        for attempt in range(attempts):
            try:
                return fn()
            except Transient as exc:
                if attempt + 1 >= attempts:
                    raise DownloadError(f"{what}: gave up after {attempt + 1} attempts: {exc}") from None
                delay = backoff(attempt, self.settings, exc.retry_after)
                log.info("%s: %s; retrying in %.1fs", what, exc, delay)
                time.sleep(delay)
        raise DownloadError(f"{what}: no attempt allowed")  # attempts < 1

    def _count(self, n: int) -> None:
        if self.cancelled():  # .part and journal stay as they are: the next run resumes
            raise DownloadCancelled(self.final.name)
        with self._lock:
            self.done_bytes += n
            self.fetched += n
        if self.on_bytes:
            self.on_bytes(n, self.done_bytes, self.size)

    # -- main -----------------------------------------------------------------------------
    def run(self) -> Result:
        with waiting_line(self.t.label, self.settings.first_byte_timeout):
            probe: Probe = self._with_retries(f"probe {self.t.label}", self.t.probe, self.probe_attempts)
        self.size = probe.size
        if self.expected_size is not None and probe.size is not None and probe.size != self.expected_size:
            raise IntegrityError(self.final.name, f"{self.expected_size} bytes", f"{probe.size} bytes", self.t.label,
                                 what="size")
        expected = self.expected_sha256 or probe.sha256
        if probe.sha256 and self.expected_sha256 and probe.sha256 != self.expected_sha256:
            raise IntegrityError(self.final.name, self.expected_sha256, probe.sha256, self.t.label + " (declared)")
        preflight(self.final.name, self.final.parent, probe.size, self.settings)
        identity = f"sha256:{expected}|{probe.size}" if expected else probe.identity
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if probe.ranges and probe.size:
                digest = self._ranged(fd, probe.size, identity)
            else:
                digest = self._stream(fd, probe.size, identity)
            if expected and digest != expected:
                self._discard()
                raise IntegrityError(self.final.name, expected, digest, self.t.label)
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.cancelled():
            raise DownloadCancelled(self.final.name)
        if self.should_stop():
            raise DownloadError(f"{self.final.name}: download lease lost to another process; not placing the file")
        os.replace(self.part, self.final)
        _fsync_dir(self.final.parent)
        try:
            os.unlink(journal_path(self.final))
        except FileNotFoundError:
            pass
        return Result(self.final, digest, os.stat(self.final).st_size, bool(expected), self.fetched)

    def _discard(self) -> None:
        for p in (self.part, journal_path(self.final)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def _allocate(self, fd: int, size: int) -> bool:
        """Size the .part and reserve its blocks; False where the filesystem cannot preallocate."""
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            os.posix_fallocate(fd, 0, size)
            return True
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                free = shutil.disk_usage(self.final.parent).free
                raise NotEnoughSpace(self.final.name, str(self.final.parent), size, free) from None
            if exc.errno not in (22, 95):  # EINVAL/EOPNOTSUPP: no fallocate on this filesystem; ftruncate is enough
                raise
            return False

    # -- ranged, parallel -----------------------------------------------------------------
    def _ranged(self, fd: int, size: int, identity: str) -> str:
        header = journal_mod.Header(size=size, chunk=self.settings.chunk_size, validator=identity)
        jr = journal_mod.Journal(journal_path(self.final), header)
        if not jr.resumed:
            os.ftruncate(fd, 0)
        # Blocks reserved: receive into a shared mapping (no ENOSPC can surface later as SIGBUS).
        mm = mmap.mmap(fd, size) if self._allocate(fd, size) else None
        try:
            return self._ranged_into(fd, mm, header, jr, identity)
        finally:
            if mm is not None:
                try:
                    mm.flush()
                    mm.close()
                except (BufferError, ValueError):
                    pass  # a view still alive: the mapping closes when it is collected; fsync follows anyway

    def _ranged_into(self, fd: int, mm: mmap.mmap | None, header: journal_mod.Header, jr: journal_mod.Journal,
                     identity: str) -> str:
        view = memoryview(mm) if mm is not None else None
        done = set(jr.done)
        self.resumed = bool(done or jr.partial)
        self.done_bytes = journal_mod.done_bytes(header, done, jr.partial)
        if done or jr.partial:
            log.info("%s: resuming, %d of %d chunks already here (%d in part)", self.final.name, len(done),
                     header.chunks(), len(jr.partial))
        pending = [i for i in range(header.chunks()) if i not in done]
        hasher = PrefixHasher(fd, header, jr.done, self._cond, mm)  # jr.done grows under self._cond
        hasher_thread = threading.Thread(target=hasher.run, name="sha256", daemon=True)
        hasher_thread.start()
        queue = iter(pending)
        queue_lock = threading.Lock()

        # Workers stay within LEAD_BYTES of the hashed prefix: received-but-unhashed pages of the mapping
        # are resident, so this bounds memory even when one connection lags far behind the others.
        lead = max(self.settings.connections + 1, LEAD_BYTES // header.chunk)

        def next_chunk() -> int | None:
            with queue_lock:
                index = next(queue, None)
            with self._cond:
                while index is not None and index >= hasher.next_index + lead and self._failed is None:
                    self._cond.wait(0.5)
            return index

        def worker() -> None:
            try:
                while self._failed is None:
                    if self.should_stop():
                        raise DownloadError("download lease lost to another process")
                    index = next_chunk()
                    if index is None:
                        return
                    self._fetch_chunk(fd, view, header, index, jr)
                    with self._cond:
                        jr.mark(index)
                        self._cond.notify_all()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                with self._cond:
                    if self._failed is None and not isinstance(exc, Cancelled):
                        self._failed = exc
                    self._cond.notify_all()

        workers = [threading.Thread(target=worker, name=f"range-{i}", daemon=True)
                   for i in range(max(1, min(self.settings.connections, len(pending))))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if self._failed is not None:
            hasher.cancel()
            jr.close()
            if isinstance(self._failed, RangeIgnored):
                log.warning("%s: server ignores Range; reading it as one stream", self.t.label)
                self._failed = None
                self.done_bytes = 0
                return self._stream(fd, header.size, identity)
            raise self._failed
        hasher_thread.join()
        jr.close()
        return hasher.hexdigest()

    def _receive(self, fd: int, view: memoryview | None, pos: int, end: int) -> Iterator[int]:
        """Bytes ``pos..end`` into the .part (the mapping when there is one); yields counts as they land."""
        read_into = getattr(self.t, "read_into", None)
        if view is not None and read_into is not None:
            yield from read_into(pos, end, view[pos:end + 1])
            return
        for block in self.t.read(pos, end):
            n = len(block)
            if view is not None:
                view[pos:pos + n] = block
            else:
                os.pwrite(fd, block, pos)
            pos += n
            yield n

    def _fetch_chunk(self, fd: int, view: memoryview | None, header: journal_mod.Header, index: int,
                     jr: journal_mod.Journal) -> None:
        start, end = header.span(index)
        pos, attempt = max(start, jr.partial.get(index, start)), 0  # resume inside the chunk
        noted = pos
        while True:
            if self._failed is not None:
                raise Cancelled()
            tried_from = pos
            try:
                for n in self._receive(fd, view, pos, end):
                    pos += n
                    self._count(n)
                    if pos - noted >= journal_mod.PARTIAL_EVERY and pos <= end:
                        jr.mark_partial(index, pos)
                        noted = pos
                    if self._failed is not None:
                        raise Cancelled()
                if pos > end:
                    return
                raise Transient(f"{self.t.label} ended early in chunk {index}")
            except Transient as exc:
                attempt = 0 if pos > tried_from else attempt + 1  # progress in this try resets the count
                if attempt >= self.settings.max_attempts:
                    raise DownloadError(f"{self.final.name}: chunk {index} failed {attempt} times: {exc}") from None
                delay = backoff(attempt, self.settings, exc.retry_after)
                log.info("%s: %s; retrying chunk %d at byte %d in %.1fs", self.final.name, exc, index, pos, delay)
                time.sleep(delay)

    # -- single stream (no ranges, or unknown size) ----------------------------------------
    def _stream(self, fd: int, size: int | None, identity: str) -> str:
        if size:
            self._allocate(fd, size)
        for attempt in range(self.settings.max_attempts):
            sha, pos = hashlib.sha256(), 0
            self.done_bytes = 0
            try:
                for block in self.t.read(0, None):
                    os.pwrite(fd, block, pos)
                    sha.update(block)
                    pos += len(block)
                    self._count(len(block))
                    if self.should_stop():
                        raise DownloadError("download lease lost to another process")
                if size is not None and pos != size:
                    raise Transient(f"{self.t.label} sent {pos} of {size} bytes")
                os.ftruncate(fd, pos)
                try:
                    os.unlink(journal_path(self.final))
                except FileNotFoundError:
                    pass
                return sha.hexdigest()
            except Transient as exc:
                delay = backoff(attempt, self.settings, exc.retry_after)
                log.info("%s: %s; restarting the stream in %.1fs", self.final.name, exc, delay)
                time.sleep(delay)
            except RangeIgnored:
                raise DownloadError(f"{self.t.label}: inconsistent range behaviour") from None
        raise DownloadError(f"{self.final.name}: gave up after {self.settings.max_attempts} attempts on {self.t.label}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
