"""The pack's own settings, read from the environment at each use (ComfyUI's process; the worker's
ComfyUI inherits them). Model roots and sources are model_fetch's settings (``model_fetch.config``)."""

from __future__ import annotations

import os

RESIDENT_ENV = "WAN_GGUF_RESIDENT"
RESIDENT_RESERVE_ENV = "WAN_GGUF_RESIDENT_RESERVE_MB"
RESIDENT_MODES = ("off", "auto", "on")


def resident_mode() -> str:
    """``WAN_GGUF_RESIDENT``: off (default), auto or on; an unknown value is an error naming the variable."""
    value = os.environ.get(RESIDENT_ENV, "off").strip().lower() or "off"
    if value in ("0", "false", "no"):
        value = "off"
    elif value in ("1", "true", "yes"):
        value = "on"
    if value not in RESIDENT_MODES:
        raise ValueError(f"{RESIDENT_ENV}={value!r}: expected one of {', '.join(RESIDENT_MODES)}")
    return value


def resident_reserve_bytes() -> int:
    """``WAN_GGUF_RESIDENT_RESERVE_MB`` (MiB, default 2048): free memory ``auto`` keeps beyond the weights."""
    raw = os.environ.get(RESIDENT_RESERVE_ENV, "2048")
    try:
        return int(float(raw) * 2**20)
    except ValueError:
        raise ValueError(f"{RESIDENT_RESERVE_ENV}={raw!r}: expected a number of MiB") from None
