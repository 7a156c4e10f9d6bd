"""Byte counts as people read them."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """``1.5 GB``, ``312 B``, ``unknown size`` (decimal units, as download sizes are published)."""
    if n is None:
        return "unknown size"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"
