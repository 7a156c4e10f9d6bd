"""Background write-back of verified origin downloads to an S3 mirror (see s3.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .config import Settings
from ._manifest import ModelEntry


def writeback_hook(settings: Settings) -> Callable[[ModelEntry, Path, str, str], None] | None:
    """A hook for ``ensure`` that uploads origin downloads to ``MODEL_FETCH_MIRROR_WRITEBACK``; None when unset."""
    if not settings.mirror_writeback:
        return None
    from ._s3 import writeback_uploader

    return writeback_uploader(settings)
