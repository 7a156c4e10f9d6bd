"""What is on disk for each manifest entry: no network, no hashing (stamps are trusted while they match)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _journal as journal
from ._comfy_search_paths import ComfyFolders
from ._model_folders import FOLDERS
from .config import Settings
from ._lease import Lease
from ._manifest import Manifest, ModelEntry
from ._store import PART, Store, journal_path


@dataclass
class FileStatus:
    entry: ModelEntry
    state: str  # present | unverified | downloading | partial | missing
    path: Path | None = None
    size: int | None = None
    done: int = 0
    sha256: str | None = None
    holder: str | None = None
    tiers: list[str] = field(default_factory=list)
    comfyui: bool = False  # found in ComfyUI's own folders (``--comfyui-dir``), not in a models root

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.entry.name, "directory": self.entry.directory, "state": self.state,
                "path": str(self.path) if self.path else None, "size": self.size, "done": self.done,
                "sha256": self.sha256, "holder": self.holder, "tiers": self.tiers, "comfyui": self.comfyui}


def _partials(store: Store, entry: ModelEntry) -> list[Path]:
    out = []
    for root in store.roots:
        for d in FOLDERS.get(entry.directory, (entry.directory,)):
            part = root / d / (entry.name + PART)
            if part.exists():
                out.append(part)
    return out


def file_status(entry: ModelEntry, store: Store, lease_ttl: float = 30.0) -> FileStatus:
    path = store.find(entry)
    if path is not None:
        stamp = store.valid_stamp(path)
        size = path.stat().st_size
        if stamp is not None and (entry.sha256 is None or entry.sha256 == stamp.sha256):
            return FileStatus(entry, "present", path, size, size, stamp.sha256, tiers=["local"])
        return FileStatus(entry, "unverified", path, size, size, tiers=["local"])
    for part in _partials(store, entry):
        final = part.with_name(part.name[: -len(PART)])
        header, done, partial = journal.read_progress(journal_path(final))
        lease = Lease(store.lease_path(final), ttl=lease_ttl)
        holder = lease.holder()
        active = holder is not None and not lease.is_stale(holder)
        return FileStatus(entry, "downloading" if active else "partial", part,
                          header.size if header else entry.size, journal.done_bytes(header, done, partial) if header else 0,
                          holder=f"{holder.host}:{holder.pid}" if active and holder is not None else None)
    return FileStatus(entry, "missing", None, entry.size)


def remote_tiers(entry: ModelEntry, settings: Settings) -> list[str]:
    """``s3-mirror`` for each S3 mirror that holds the object (one HEAD each), ``origin`` if there is one."""
    from ._s3 import S3Transport, mirror_url

    tiers = []
    mirrors = [m for m in entry.mirrors if m.startswith("s3://")]
    if settings.mirror_writeback:
        mirrors.append(mirror_url(settings.mirror_writeback, entry))
    for url in dict.fromkeys(mirrors):
        try:
            probe = S3Transport(url, settings).probe()
            if entry.sha256 is None or probe.sha256 in (None, entry.sha256):
                tiers.append("s3-mirror")
        except Exception:  # noqa: BLE001 - absent, forbidden or unreachable: not a tier that holds it
            pass
    if entry.url:
        tiers.append("origin")
    return tiers


def status(manifest: Manifest, store: Store, settings: Settings | None = None, remote: bool = False,
           comfy: ComfyFolders | None = None) -> list[FileStatus]:
    """Local state of every entry; a file only ComfyUI's own folders (``comfy``) hold is ``present`` with
    ``comfyui`` set; with ``remote`` also which S3 mirrors hold it (network calls)."""
    settings = settings or Settings()
    files = [file_status(e, store, settings.lease_ttl) for e in manifest]
    for i, f in enumerate(files):
        found = comfy.find(f.entry.name, f.entry.directory) if comfy is not None and f.state == "missing" else None
        if found is not None:
            size = found.stat().st_size
            files[i] = f = FileStatus(f.entry, "present", found, size, size, comfyui=True)
        elif f.tiers and f.path is not None:
            root = store.root_of(f.path)
            f.tiers = ["volume" if root == settings.volume_dir.absolute() else "local"]
        if remote:
            f.tiers += remote_tiers(f.entry, settings)
    return files
