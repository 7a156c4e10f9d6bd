"""No echo of user data: long runs of base64-like text (base64 images, data URIs, huge values) are cut
wherever text leaves the worker: error answers, log lines, and ComfyUI's log.

A run of at least ``TOKEN`` characters from the base64/data-URI alphabet becomes its first ``KEEP``
characters and a count, ``iVBORw0KGgoAAAANSUhEUgAA…[5000000 chars]``; any other string in an error
answer is cut at ``TEXT`` characters. Model names, paths and messages stay whole.
"""

from __future__ import annotations

import logging
import re
from typing import Any

TOKEN = 160
KEEP = 24
TEXT = 2000
_ALPHABET = r"[A-Za-z0-9+/=_\-.:;,%~]"  # base64 (standard and URL-safe), data: URIs, URL-encoded text
_RUN = re.compile(_ALPHABET + "{" + str(TOKEN) + ",}")
_RUN_BYTES = re.compile(_ALPHABET.encode() + b"{" + str(TOKEN).encode() + b",}")


def _cut(match: re.Match[str]) -> str:
    run = match.group(0)
    return f"{run[:KEEP]}…[{len(run)} chars]"


def clip_runs(text: str) -> str:
    """``text`` with every long base64-like run cut."""
    return _RUN.sub(_cut, text)


def clip(text: str) -> str:
    """``text`` with every long base64-like run cut, and at most ``TEXT`` characters."""
    text = clip_runs(text)
    return text if len(text) <= TEXT else f"{text[:TEXT]}…[{len(text)} chars]"


def clip_bytes(line: bytes) -> bytes:
    """A log line (bytes) with every long base64-like run cut."""
    return _RUN_BYTES.sub(lambda m: m.group(0)[:KEEP] + f"...[{len(m.group(0))} chars]".encode(), line)


def clip_all(value: Any) -> Any:
    """A copy of a JSON-like value with every string clipped (keys too); iterative, so depth is no limit."""
    def one(v: Any) -> Any:
        return clip(v) if isinstance(v, str) else v

    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        v = parent[key]
        if isinstance(v, dict):
            mapping = {one(k): item for k, item in v.items()}
            parent[key] = mapping
            stack.extend((mapping, k) for k in mapping)
        elif isinstance(v, (list, tuple)):
            items = list(v)
            parent[key] = items
            stack.extend((items, i) for i in range(len(items)))
        else:
            parent[key] = one(v)
    return root[0]


class ClipFilter(logging.Filter):
    """A handler filter: the record's formatted message and traceback, clipped (its args are consumed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        clipped = clip(message)
        if clipped != message:
            record.msg, record.args = clipped, None
        if record.exc_info and not record.exc_text:  # a traceback may quote the value too
            record.exc_text = clip_runs(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Clip every record the handlers of ``logger`` (default: the root logger) write."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ClipFilter) for f in handler.filters):
            handler.addFilter(ClipFilter())
