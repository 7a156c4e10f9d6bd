"""Fetch on first use: the process's catalog (catalog.py: manifest models the loaders list before
they are on disk, and the status rows) and its downloads (downloads.py: one thread per file).

``context()`` is None when fetch on first use is off (its settings are unusable, logged once); callers
then treat every missing file as unknown.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from . import store_roots
from .catalog import Catalog
from .downloads import Downloads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackFetch:
    """model_fetch bound to this ComfyUI process: the catalog of its store (``catalog.store``) and its downloads."""

    catalog: Catalog
    downloads: Downloads


_context: PackFetch | None = None
_disabled: str | None = None
_init_lock = threading.Lock()


def context() -> PackFetch | None:
    """The process's PackFetch, built on first use; None (logged once) when its settings are unusable."""
    global _context, _disabled
    if _context is not None or _disabled is not None:
        return _context
    with _init_lock:
        if _context is None and _disabled is None:
            try:
                settings, store = store_roots.make_store()
            except Exception as exc:  # noqa: BLE001 - bad settings must not take the loaders down
                _disabled = f"model_fetch settings unusable: {type(exc).__name__}: {exc}"
                log.warning("fetch on first use disabled: %s. The loaders use files on disk only.", _disabled)
                return None
            downloads = Downloads(settings, store)
            _context = PackFetch(Catalog(settings, store, downloads), downloads)
    return _context


def disabled_reason() -> str | None:
    """Why fetch on first use is off, or None when it is on (or not initialised yet)."""
    return _disabled
