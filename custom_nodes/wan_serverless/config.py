"""The pack's own settings, read from the environment at each use (ComfyUI's process; the worker's
ComfyUI inherits them) with model_fetch's env helpers, so a bad value is ``settings_invalid`` naming the
variable. Model roots and sources are model_fetch's settings (``model_fetch.config``)."""

from __future__ import annotations

from model_fetch.config import choice, number

RESIDENT_ENV = "WAN_GGUF_RESIDENT"
RESIDENT_RESERVE_ENV = "WAN_GGUF_RESIDENT_RESERVE_MB"
RESIDENT_MODES = ("off", "auto", "on")
_SWITCH_WORDS = {"0": "off", "false": "off", "no": "off", "1": "on", "true": "on", "yes": "on"}


def resident_mode() -> str:
    """``WAN_GGUF_RESIDENT``: off (default), auto or on (0/false/no and 1/true/yes too)."""
    return choice(RESIDENT_ENV, "off", RESIDENT_MODES, aliases=_SWITCH_WORDS)


def resident_reserve_bytes() -> int:
    """``WAN_GGUF_RESIDENT_RESERVE_MB`` (MiB, default 2048): free memory ``auto`` keeps beyond the weights."""
    return int(number(RESIDENT_RESERVE_ENV, "2048") * 2**20)
