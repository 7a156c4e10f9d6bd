"""``doctor``: what users of serverless ComfyUI workers used to find out by hand.

Environment (secrets shown as set/unset only), each models root (present, writable, free space),
free space against what the manifest still needs, the network volume, offline readiness, and
where ComfyUI will look for each folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .config import Settings, env_report
from ._sizes import human_bytes
from ._model_folders import FOLDERS
from ._manifest import Manifest
from ._inventory import status
from ._store import Store, volume_attached, writable


def _free(path: Path) -> int | None:
    for p in [path, *path.parents]:
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def _volume_problems(settings: Settings, write_root: Path | None, need: int) -> list[str]:
    """An attached volume that cannot take the models: unwritable, or too full for what is missing."""
    vol = settings.volume_dir.absolute()
    if not writable(vol):
        return [f"network volume at {vol.parent} is attached but not writable ({vol} cannot be created or written): "
                f"models go to {write_root or settings.local_dir} instead; remount it read-write"]
    free = _free(vol)
    if free is not None and need + settings.min_free_bytes > free:
        return [f"network volume at {vol.parent} is full: {human_bytes(free)} free, the manifest still needs "
                f"{human_bytes(need)} (+{human_bytes(settings.min_free_bytes)} headroom); free space or grow the volume"]
    return []


def doctor(settings: Settings, manifest: Manifest, store: Store) -> dict[str, Any]:
    """A JSON-ready report; ``problems`` lists what needs attention, ``ok`` is False if any is fatal."""
    problems: list[str] = []
    fatal = False
    roots = []
    for root in store.roots:
        exists = root.is_dir()
        roots.append({"path": str(root), "exists": exists, "writable": writable(root) if exists else False,
                      "free_bytes": _free(root), "network_volume": root == settings.volume_dir.absolute()})
    try:
        write_root = store.write_root()
    except PermissionError as exc:
        write_root = None
        problems.append(str(exc))
        fatal = True
    volume = volume_attached(settings.volume_dir)
    if not volume and not settings.models_dirs:
        problems.append(f"no network volume at {settings.volume_dir}: models go to {settings.local_dir} and are "
                        f"downloaded again by every new worker (attach a volume or set MODEL_FETCH_VOLUME_DIR)")
    files = status(manifest, store, settings)
    missing = [f for f in files if f.state not in ("present", "unverified")]
    need_known = sum((f.size or 0) - f.done for f in missing if f.size is not None)
    unknown_sizes = [f.entry.name for f in missing if f.size is None]
    free = _free(write_root) if write_root else None
    volume_problems = _volume_problems(settings, write_root, need_known) \
        if volume and settings.volume_dir.absolute() in store.roots else []
    problems += volume_problems
    if free is not None and need_known + settings.min_free_bytes > free and not volume_problems:
        problems.append(f"the manifest still needs {human_bytes(need_known)} but {write_root} has {human_bytes(free)} free")
    offline_ready = all(f.state == "present" for f in files)
    if settings.offline and not offline_ready:
        problems.append("offline mode is on but these are not present and stamped: "
                        + ", ".join(f.entry.describe() for f in files if f.state != "present"))
    tmp = Path(tempfile.gettempdir())
    return {
        "ok": not fatal,
        "problems": problems,
        "env": env_report(),
        "roots": roots,
        "write_root": str(write_root) if write_root else None,
        "network_volume": {"path": str(settings.volume_dir), "detected": volume, "problems": volume_problems},
        "manifest": {"files": len(manifest), "sources": manifest.sources},
        "space": {"missing_bytes_known": need_known, "missing_unknown_size": unknown_sizes, "free_bytes": free},
        "offline": {"enabled": settings.offline, "ready": offline_ready,
                    "not_ready": [f.entry.describe() for f in files if f.state != "present"]},
        "tmp": {"path": str(tmp), "free_bytes": _free(tmp), "note": "downloads never use the temp dir"},
        "comfyui_folders": {folder: [str(root / d) for root in store.roots for d in dirs]
                            for folder, dirs in FOLDERS.items() if folder in
                            ("diffusion_models", "text_encoders", "vae", "loras", "clip_vision", "checkpoints")},
        "files": [f.as_dict() for f in files],
    }
