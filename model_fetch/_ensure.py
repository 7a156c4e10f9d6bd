"""Make model files present: check the store, take the file's lease (or wait on whoever holds it),
try the sources in tier order (mirrors, then origin), stamp the result.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import _journal as journal
from .config import MiB, Settings
from ._engine import Download, preflight
from .errors import (DownloadCancelled, DownloadError, HostUnreachable, IntegrityError, LeaseTimeout, ModelFetchError,
                     NoSource, NotEnoughSpace, OfflineError, SourceNotFound, os_error, unwritable)
from ._hashing import sha256_file
from ._sizes import human_bytes
from ._lease import Lease
from ._manifest import WORKFLOW_ORIGIN, ModelEntry
from ._progress import FileProgress, PerFileThrottle
from ._transport_factory import transport_for
from ._transports import is_network
from ._store import Store, journal_path, part_path, writable

log = logging.getLogger(__name__)
OnProgress = Callable[[FileProgress], None]
AfterPlace = Callable[[ModelEntry, Path, str, str, bool], None]  # entry, path, sha256, source url, verified


@dataclass
class Fetched:
    entry: ModelEntry
    path: Path
    sha256: str | None
    action: str  # "present" | "verified" | "downloaded" | "waited"
    source: str = ""
    fetched_bytes: int = 0


@dataclass
class EnsureReport:
    files: list[Fetched] = field(default_factory=list)

    @property
    def downloaded_bytes(self) -> int:
        return sum(f.fetched_bytes for f in self.files)


def _noop(_: FileProgress) -> None:
    pass


class Fetcher:
    """Ensures entries in one store with one configuration; setting ``cancel`` stops its downloads
    (``DownloadCancelled``, each ``.part`` kept for a later resume)."""

    def __init__(self, store: Store, settings: Settings, on_progress: OnProgress | None = None,
                 after_place: AfterPlace | None = None, cancel: threading.Event | None = None) -> None:
        self.store, self.settings = store, settings
        self.cancel = cancel or threading.Event()
        self.emit: OnProgress = PerFileThrottle(on_progress) if on_progress is not None else _noop
        self.after_place = after_place

    # -- already present --------------------------------------------------------------------
    def present(self, entry: ModelEntry) -> Fetched | None:
        """The entry's file if present and trustworthy; rehash once when it has no valid stamp."""
        path = self.store.find(entry)
        if path is None:
            return None
        stamp = self.store.valid_stamp(path)
        if stamp is not None and (entry.sha256 is None or stamp.sha256 == entry.sha256):
            return Fetched(entry, path, stamp.sha256, "present")
        total = os.stat(path).st_size
        self.emit(FileProgress(entry.name, entry.directory, "verify", 0, total))
        digest = sha256_file(
            path, on_bytes=lambda done: self.emit(FileProgress(entry.name, entry.directory, "verify", done, total)))
        if entry.sha256 and digest != entry.sha256:
            bad = path.with_name(path.name + f".corrupt-{int(time.time())}")
            os.replace(path, bad)
            self.store.drop_stamp(path)
            log.error("%s: sha256 mismatch on disk; moved aside to %s and fetching again", entry.name, bad.name)
            return None
        self.store.write_stamp(path, digest, expected=entry.sha256 is not None)
        return Fetched(entry, path, digest, "verified")

    # -- leases -----------------------------------------------------------------------------
    def _lease_for(self, final: Path) -> Lease:
        return Lease(self.store.lease_path(final), ttl=self.settings.lease_ttl, heartbeat=self.settings.lease_heartbeat)

    def _wait_report(self, entry: ModelEntry, final: Path, lease: Lease) -> None:
        header, done, partial = journal.read_progress(journal_path(final))
        holder = lease.holder()
        who = f"{holder.host}:{holder.pid}" if holder else "another process"
        total = header.size if header else entry.size
        self.emit(FileProgress(entry.name, entry.directory, "wait", journal.done_bytes(header, done, partial) if header else 0,
                               total, message=f"downloaded by {who}"))

    # -- downloading ------------------------------------------------------------------------
    def _expected_sha(self, entry: ModelEntry) -> str | None:
        """The manifest hash, or (for mirrors in front of a Hub origin) the Hub's LFS sha256."""
        if entry.sha256 or not entry.mirrors or not entry.url or self.settings.offline:
            return entry.sha256
        try:
            return transport_for(entry.url, self.settings).probe().sha256
        except Exception as exc:  # noqa: BLE001 - the origin may be unreachable; mirrors still get tried
            log.info("%s: origin metadata unavailable (%s); mirror bytes are checked only if a hash is known",
                     entry.name, type(exc).__name__)
            return None

    def sources(self, entry: ModelEntry) -> list[str]:
        """Tier order: the entry's mirrors, the configured S3 mirror, then the origin."""
        sources = list(entry.mirrors)
        if self.settings.mirror_writeback:
            from ._s3 import mirror_url

            auto = mirror_url(self.settings.mirror_writeback, entry)
            if auto not in sources:
                sources.append(auto)
        if entry.url:
            sources.append(entry.url)
        return [s for s in sources if not (self.settings.offline and is_network(s))]

    def _settings_for(self, entry: ModelEntry, url: str) -> Settings | None:
        """Settings for one request; a URL a workflow supplied (untrusted) is checked, and so is every
        redirect target (https, public addresses): None when ``url`` itself breaks those rules."""
        if entry.origin != WORKFLOW_ORIGIN or url != entry.url or self.settings.url_guard is not None:
            return self.settings
        from ._reach import unreachable
        from ._urlguard import HostUnresolved, UrlRefused, request_guard

        guard = request_guard(self.settings.allow_private_urls)
        try:
            guard(url)
        except HostUnresolved:
            raise unreachable(url, "does not resolve", self.settings.first_byte_timeout, hub=False) from None
        except UrlRefused as exc:
            log.warning("%s: %s", entry.name, exc)
            return None
        return self.settings.with_(url_guard=guard)

    def _download(self, entry: ModelEntry, final: Path, lease: Lease) -> Fetched:
        sources = self.sources(entry)
        if not sources:
            raise OfflineError([entry.describe()])
        if entry.size is not None:  # the manifest gives the size: refuse before any request
            preflight(entry.name, final.parent, entry.size, self.settings)
        expected = self._expected_sha(entry)
        failures: list[ModelFetchError] = []
        for i, url in enumerate(sources):
            if self.cancel.is_set():
                raise DownloadCancelled(entry.name)
            is_origin = url == entry.url
            try:
                settings = self._settings_for(entry, url)
            except HostUnreachable as exc:
                failures.append(exc)
                continue
            if settings is None:
                failures.append(SourceNotFound(f"{entry.describe()}: {url} is refused for a workflow source"))
                continue
            transport = transport_for(url, settings)
            attempts = 1 + (self.settings.integrity_retries if is_origin else 0)
            for _attempt in range(attempts):
                def on_bytes(_n: int, done: int, total: int | None, label: str = transport.label) -> None:
                    self.emit(FileProgress(entry.name, entry.directory, "download", done, total, source=label))

                dl = Download(transport, final, settings, expected_sha256=expected, expected_size=entry.size,
                              on_bytes=on_bytes, should_stop=lambda: lease.lost,
                              probe_attempts=None if is_origin else 2, cancelled=self.cancel.is_set)
                try:
                    result = dl.run()
                except IntegrityError as exc:
                    failures.append(exc)
                    log.warning("%s", exc)
                    if dl.resumed:  # the bytes of an earlier run (a power loss?) may be the bad ones: once more
                        continue
                    break
                except (SourceNotFound, DownloadError) as exc:
                    failures.append(exc)
                    if i + 1 < len(sources):
                        log.warning("%s: %s unavailable (%s); falling back to %s", entry.name, transport.label, exc,
                                    "the next mirror" if i + 2 < len(sources) else "the origin")
                    break
                self.store.write_stamp(result.path, result.sha256, expected=result.verified)
                if not result.verified:
                    log.warning("%s: no expected sha256 known; recorded %s… (add `hash:` to the manifest to pin it)",
                                entry.name, result.sha256[:16])
                self.emit(FileProgress(entry.name, entry.directory, "done", result.size, result.size, source=transport.label))
                if self.after_place is not None:
                    self.after_place(entry, result.path, result.sha256, url, result.verified)
                return Fetched(entry, result.path, result.sha256, "downloaded", transport.label, dl.fetched)
        if len(failures) == 1 or all(isinstance(f, IntegrityError) for f in failures) \
                or all(isinstance(f, HostUnreachable) for f in failures):
            raise failures[-1]
        raise DownloadError(f"{entry.describe()}: every source failed: " + "; ".join(str(f) for f in failures))

    def _check_source(self, entry: ModelEntry) -> None:
        """``no_source`` for an entry with neither ``url`` nor ``mirrors`` (nor a configured S3 mirror)."""
        if not entry.sources and not self.settings.mirror_writeback:
            raise NoSource(f"{entry.describe()} (from {entry.origin or 'a manifest'}) has no 'url' and no 'mirrors' "
                           "to download it from: add one to the manifest, or place the file there yourself")

    def _place(self, entry: ModelEntry) -> Path:
        """Where ``entry``'s download lands: the first writable root, unless its filesystem cannot hold the
        manifest's size plus the headroom (``MODEL_FETCH_MIN_FREE_MB``) and a later root can (a too-full
        volume falls back to the local root). A root that already holds a partial download of it wins."""
        first = self.store.target(entry)
        if entry.size is None:
            return first
        later = self.store.roots[self.store.roots.index(self.store.write_root()) + 1:]
        candidates = [first] + [root / first.parent.name / entry.name for root in later]
        for path in candidates:
            if part_path(path).exists():
                return path
        for path in candidates:
            if path != first and not writable(path.parent.parent):
                continue
            if _free(path.parent) >= entry.size + self.settings.min_free_bytes:
                if path != first:
                    log.warning("%s: %s lacks %s free (size + %d MiB headroom); downloading to %s", entry.name,
                                first.parent.parent, human_bytes(entry.size + self.settings.min_free_bytes),
                                self.settings.min_free_bytes // MiB, path.parent.parent)
                return path
        return first  # nowhere fits: the preflight names the folder, the need, the headroom and the free space

    # -- one entry, many entries ------------------------------------------------------------
    def try_ensure(self, entry: ModelEntry) -> Fetched | None:
        """Fetch ``entry`` unless another process is downloading it (then None)."""
        found = self.present(entry)
        if found is not None:
            self.emit(FileProgress(entry.name, entry.directory, "present", found.path.stat().st_size,
                               found.path.stat().st_size))
            return found
        self._check_source(entry)
        if self.settings.offline and not self.sources(entry):
            raise OfflineError([entry.describe()])
        with _os_errors():
            final = self._place(entry)
            final.parent.mkdir(parents=True, exist_ok=True)
        lease = self._lease_for(final)
        with _os_errors(), _space_errors(entry, final, self.settings.min_free_bytes):
            if not lease.try_acquire():
                return None
            try:
                found = self.present(entry)  # finished by someone else just before we took the lease
                if found is not None:
                    return found
                return self._download(entry, final, lease)
            finally:
                lease.release()

    def ensure_one(self, entry: ModelEntry) -> Fetched:
        deadline = time.monotonic() + self.settings.wait_timeout
        waited = False
        while True:
            result = self.try_ensure(entry)
            if result is not None:
                if waited and result.action == "present":
                    result.action = "waited"
                return result
            waited = True
            if self.cancel.is_set():
                raise DownloadCancelled(entry.name)
            final = self._place(entry)
            lease = self._lease_for(final)
            self._wait_report(entry, final, lease)
            if time.monotonic() > deadline:
                holder = lease.holder()
                raise LeaseTimeout(f"{entry.describe()}: still being downloaded by "
                                   f"{holder.host + ':' + str(holder.pid) if holder else 'another process'} after "
                                   f"{self.settings.wait_timeout:.0f}s (MODEL_FETCH_WAIT_TIMEOUT)")
            time.sleep(0.5)

    def ensure(self, entries: Iterable[ModelEntry]) -> EnsureReport:
        """Every entry present; files other processes are downloading are waited on last."""
        entries = list(entries)
        for entry in entries:
            if self.store.find(entry) is None:
                self._check_source(entry)
        if self.settings.offline:
            missing = [e.describe() for e in entries if self.store.find(e) is None and not self.sources(e)]
            if missing:
                raise OfflineError(missing)
        report, deferred = EnsureReport(), []
        for entry in entries:
            result = self.try_ensure(entry)
            if result is None:
                deferred.append(entry)
            else:
                report.files.append(result)
        for entry in deferred:
            report.files.append(self.ensure_one(entry))
        return report


@contextlib.contextmanager
def _os_errors() -> Iterator[None]:
    """A folder that cannot be written (read-only volume, permissions) becomes ``StorageError``, naming it."""
    try:
        yield
    except ModelFetchError:
        raise
    except OSError as exc:
        if not unwritable(exc):
            raise
        raise os_error(exc) from None


def _free(folder: Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``folder``."""
    for path in (folder, *folder.parents):
        if path.exists():
            return shutil.disk_usage(path).free
    return 0


@contextlib.contextmanager
def _space_errors(entry: ModelEntry, final: Path, headroom: int) -> Iterator[None]:
    """The filesystem filled up after the preflight (another writer): any write failing with ENOSPC/EDQUOT
    (chunk journal, lease, stamp) becomes NotEnoughSpace, one clear error; a ``.part`` stays resumable."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        part = part_path(final)
        need = entry.size or (part.stat().st_size if part.exists() else 0)
        raise NotEnoughSpace(entry.name, str(final.parent), need, shutil.disk_usage(final.parent).free,
                             headroom) from None


def ensure_entries(entries: Iterable[ModelEntry], store: Store, settings: Settings,
                   on_progress: OnProgress | None = None, after_place: AfterPlace | None = None,
                   cancel: threading.Event | None = None) -> EnsureReport:
    return Fetcher(store, settings, on_progress, after_place, cancel).ensure(entries)


__all__ = ["Fetcher", "Fetched", "EnsureReport", "ensure_entries", "ModelFetchError"]
