"""Models roots in ComfyUI's layout, where each file lives, and verification stamps.

Layout of a root::

    <root>/diffusion_models/<name>          final files (only a renamed file counts as present)
    <root>/diffusion_models/<name>.part     download in progress, preallocated
    <root>/diffusion_models/<name>.part.journal   completed chunks of that download
    <root>/.model-fetch/stamps/<folder>/<name>.json   size, mtime_ns, inode, sha256 of a verified file
    <root>/.model-fetch/leases/<folder>/<name>.lease  who is downloading it (see lease.py)

The network volume (``/runpod-volume/models``) comes first when one is attached (see ``volume_attached``;
its ``models/`` folder is created on a fresh volume); a local root is the fallback.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import Settings
from .errors import StorageError
from ._model_folders import FOLDERS, canonical, is_file, search_dirs
from ._manifest import ModelEntry

log = logging.getLogger(__name__)
META = ".model-fetch"
PART = ".part"
JOURNAL = ".part.journal"


@dataclass(frozen=True)
class Stamp:
    """Proof that a file was hashed: valid while size, mtime_ns and inode are unchanged."""

    size: int
    mtime_ns: int
    inode: int
    sha256: str
    verified_at: float
    expected: bool  # the hash matched an expected value (manifest or Hub), not only recorded

    def matches(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (self.size, self.mtime_ns, self.inode)


def writable(path: Path) -> bool:
    """True if ``path`` exists (or can be created) and accepts new files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


RUNPOD_VOLUME = Path("/runpod-volume")


def volume_attached(volume_dir: Path) -> bool:
    """A network volume is there: ``volume_dir`` exists, its parent is a mount point, or it is the
    default ``/runpod-volume/models`` and ``/runpod-volume`` exists (a fresh volume has no ``models/``)."""
    parent = volume_dir.parent
    mounted = parent != Path(parent.anchor) and os.path.ismount(parent)  # "/" is a mount point, never a volume
    return volume_dir.is_dir() or mounted or (parent == RUNPOD_VOLUME and parent.is_dir())


class Store:
    """An ordered list of models roots; downloads go to the first writable one."""

    def __init__(self, roots: list[Path]) -> None:
        if not roots:
            raise ValueError("a Store needs at least one models root")
        self.roots = [Path(r).expanduser().absolute() for r in roots]
        self._write_root: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Store":
        if settings.models_dirs:
            return cls(list(settings.models_dirs))
        roots = []
        if volume_attached(settings.volume_dir):
            roots.append(settings.volume_dir)
            try:
                settings.volume_dir.mkdir(exist_ok=True)
            except OSError as exc:
                log.warning("network volume at %s: cannot create %s (%s); models go to %s", settings.volume_dir.parent,
                            settings.volume_dir.name, exc.strerror or exc, settings.local_dir)
        return cls(roots + [settings.local_dir])

    def write_root(self) -> Path:
        if self._write_root is None:
            for root in self.roots:
                if writable(root):
                    self._write_root = root
                    break
                log.warning("models root %s is not writable; trying the next one", root)
            else:
                raise StorageError(f"no writable models root among {', '.join(map(str, self.roots))}: make one "
                                   "writable, or point --models-dir / MODEL_FETCH_MODELS_DIR at a writable folder")
        return self._write_root

    # -- locations ------------------------------------------------------------------------
    def find(self, entry: ModelEntry) -> Path | None:
        """The final file of ``entry`` in any root (any alias folder), or None."""
        for root in self.roots:
            for d in search_dirs(entry.directory):
                path = root / d / entry.name
                if is_file(path):
                    return path
        return None

    def target(self, entry: ModelEntry) -> Path:
        """Where a new download of ``entry`` lands."""
        folder = FOLDERS.get(canonical(entry.directory), (canonical(entry.directory),))[0]
        return self.write_root() / folder / entry.name

    def root_of(self, path: Path) -> Path:
        path = Path(path).absolute()
        for root in self.roots:
            if path.is_relative_to(root):
                return root
        raise ValueError(f"{path} is not under any models root")

    def _meta_path(self, path: Path, kind: str, suffix: str) -> Path:
        root = self.root_of(path)
        return root / META / kind / path.relative_to(root).parent / (path.name + suffix)

    def lease_path(self, path: Path) -> Path:
        return self._meta_path(path, "leases", ".lease")

    # -- stamps ---------------------------------------------------------------------------
    def stamp_path(self, path: Path) -> Path:
        return self._meta_path(path, "stamps", ".json")

    def read_stamp(self, path: Path) -> Stamp | None:
        try:
            return Stamp(**json.loads(self.stamp_path(path).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def valid_stamp(self, path: Path) -> Stamp | None:
        """The stamp of ``path`` if it still describes the file on disk (no rehash)."""
        stamp = self.read_stamp(path)
        if stamp is None:
            return None
        try:
            return stamp if stamp.matches(os.stat(path)) else None
        except OSError:
            return None

    def write_stamp(self, path: Path, sha256: str, expected: bool) -> Stamp:
        st = os.stat(path)
        stamp = Stamp(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, sha256=sha256,
                      verified_at=time.time(), expected=expected)
        target = self.stamp_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(stamp)))
        os.replace(tmp, target)
        return stamp

    def drop_stamp(self, path: Path) -> None:
        try:
            self.stamp_path(path).unlink()
        except (OSError, ValueError):
            pass


def part_path(final: Path) -> Path:
    return final.with_name(final.name + PART)


def journal_path(final: Path) -> Path:
    return final.with_name(final.name + JOURNAL)
