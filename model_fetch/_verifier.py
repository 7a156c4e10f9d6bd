"""``verify``: rehash present files against the manifest (or the hash recorded when they were verified)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._hashing import sha256_file
from ._manifest import ModelEntry
from ._store import Store


@dataclass
class VerifyResult:
    entry: ModelEntry
    state: str  # ok | mismatch | missing | recorded (no expected hash known)
    path: Path | None = None
    sha256: str | None = None
    expected: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.entry.name, "directory": self.entry.directory, "state": self.state,
                "path": str(self.path) if self.path else None, "sha256": self.sha256, "expected": self.expected}


def verify(entries: list[ModelEntry], store: Store) -> list[VerifyResult]:
    """Rehash every present file; a mismatch drops its stamp so the next pull replaces it."""
    results = []
    for entry in entries:
        path = store.find(entry)
        if path is None:
            results.append(VerifyResult(entry, "missing"))
            continue
        stamp = store.read_stamp(path)
        expected = entry.sha256 or (stamp.sha256 if stamp and stamp.expected else None)
        digest = sha256_file(path)
        if expected and digest != expected:
            store.drop_stamp(path)
            results.append(VerifyResult(entry, "mismatch", path, digest, expected))
            continue
        store.write_stamp(path, digest, expected=expected is not None)
        results.append(VerifyResult(entry, "ok" if expected else "recorded", path, digest, expected))
    return results
