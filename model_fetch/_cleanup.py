"""``gc``: remove what interrupted downloads and broken files leave behind, never an active download."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _journal as journal
from ._lease import Lease
from ._store import JOURNAL, META, PART, Store, journal_path


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_active: list[str] = field(default_factory=list)
    kept_partial: list[str] = field(default_factory=list)  # resumable downloads, kept unless ``partials``

    def as_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "kept_active": self.kept_active,
                "kept_partial": self.kept_partial}


def _remove(path: Path, report: GcReport) -> None:
    try:
        size = path.stat().st_blocks * 512
        path.unlink()
        report.removed.append(str(path))
        report.freed_bytes += size
    except OSError:
        pass


def gc(store: Store, lease_ttl: float = 30.0, partials: bool = False) -> GcReport:
    """Remove quarantined ``.corrupt-*`` files, journals without their ``.part``, ``.part`` files no (valid) journal
    can resume, stale leases and stamps. A resumable partial download (``.part`` with its journal) is kept, since
    the next pull continues it, unless ``partials``; an active download is never touched."""
    report = GcReport()
    for root in store.roots:
        if not root.is_dir():
            continue
        meta = root / META
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != META]
            for fname in filenames:
                path = Path(dirpath) / fname
                if fname.endswith(PART):
                    final = path.with_name(fname[: -len(PART)])
                    lease = Lease(store.lease_path(final), ttl=lease_ttl)
                    holder = lease.holder()
                    if holder is not None and not lease.is_stale(holder):
                        report.kept_active.append(str(path))
                        continue
                    if not partials and journal.read_progress(journal_path(final))[0] is not None:
                        report.kept_partial.append(str(path))
                        continue
                    _remove(path, report)
                    _remove(journal_path(final), report)
                elif fname.endswith(JOURNAL) and not path.with_name(fname[: -len(JOURNAL)] + PART).exists():
                    _remove(path, report)
                elif ".corrupt-" in fname:
                    _remove(path, report)
        for lease_file in (meta / "leases").rglob("*.lease*") if (meta / "leases").is_dir() else []:
            if lease_file.name.endswith(".lease"):
                lease = Lease(lease_file, ttl=lease_ttl)
                if lease.is_stale(lease.holder()):
                    _remove(lease_file, report)
            elif lease_file.name.endswith(".break") and time.time() - lease_file.stat().st_mtime > lease_ttl:
                _remove(lease_file, report)
        for stamp in (meta / "stamps").rglob("*") if (meta / "stamps").is_dir() else []:
            if stamp.is_file():
                rel = stamp.relative_to(meta / "stamps")
                final = root / rel.parent / rel.name.removesuffix(".json")
                if stamp.name.endswith(".tmp") or not final.exists():
                    _remove(stamp, report)
    return report
