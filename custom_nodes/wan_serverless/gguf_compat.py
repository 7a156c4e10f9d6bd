"""Whether city96's ComfyUI-GGUF is installed, so the pack leaves its node names to it.

The pack provides ``UnetLoaderGGUF`` and ``CLIPLoaderGGUF`` (that pack's node names and inputs) so
shared WAN 2.2 GGUF workflows run unchanged, but only when ComfyUI-GGUF is absent. Imports neither
ComfyUI nor torch.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

COMPAT_NODE_NAMES = ("UnetLoaderGGUF", "CLIPLoaderGGUF")
#: Folder names city96's ComfyUI-GGUF is installed under (git clone, registry id, zip download).
COMMUNITY_PACK_DIR = re.compile(r"comfyui[-_]?gguf([-_.][\w.-]*)?", re.IGNORECASE)


def community_pack_reason(registered: Iterable[str], custom_node_dirs: Iterable[str],
                          own_dir: str | None = None) -> str | None:
    """Why city96's ComfyUI-GGUF counts as installed (so its node names are left to it), or None.

    ComfyUI imports packs in directory-listing order and a later pack overwrites an earlier one's
    names. If that pack came first its names are already registered; if it comes later its folder is
    already there. Folders ending in ``.disabled`` are not loaded by ComfyUI and do not count.
    """
    taken = sorted(set(COMPAT_NODE_NAMES) & set(registered))
    if taken:
        return f"node(s) {', '.join(taken)} already registered"
    own = os.path.realpath(own_dir) if own_dir else None
    for base in custom_node_dirs:
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(base, entry)
            if (COMMUNITY_PACK_DIR.fullmatch(entry) and not entry.endswith(".disabled") and os.path.isdir(path)
                    and os.path.realpath(path) != own):
                return f"custom node folder {path} present"
    return None


def compat_mappings(classes: dict[str, type[Any]], registered: Iterable[str], custom_node_dirs: Iterable[str],
                    own_dir: str | None = None) -> tuple[dict, dict]:
    """``(class mappings, display names)`` of the compatibility ``classes`` to register (empty when
    ComfyUI-GGUF is installed); display names are each class's ``TITLE``."""
    reason = community_pack_reason(registered, custom_node_dirs, own_dir)
    if reason:
        log.info("ComfyUI-GGUF detected (%s): leaving %s to it", reason, ", ".join(COMPAT_NODE_NAMES))
        return {}, {}
    return dict(classes), {name: cls.TITLE for name, cls in classes.items()}
