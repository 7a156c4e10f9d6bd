"""Find the ComfyUI checkout the project runs against, or clone the pinned tag.

Search order: ``$COMFYUI_DIR``, ``./.comfyui`` (beside the project), ``/comfyui``.
Where none exists and the network allows, ``ensure()`` clones tag ``v0.8.0``
into ``./.comfyui``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from model_fetch.config import comfyui_dir_from_env

from .config import child_env
from .errors import ComfyNotFound

PINNED_VERSION = "0.8.0"
PINNED_TAG = f"v{PINNED_VERSION}"
UPSTREAM_URL = "https://github.com/comfyanonymous/ComfyUI.git"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)


def candidates() -> list[Path]:
    """Places searched for ComfyUI, in order."""
    out: list[Path] = []
    configured = comfyui_dir_from_env()
    if configured is not None:
        out.append(configured)
    out += [PROJECT_ROOT / ".comfyui", Path("/comfyui")]
    return out


def is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir() and (path / "nodes.py").is_file()


def version_of(path: Path) -> str | None:
    text = (path / "comfyui_version.py").read_text() if (path / "comfyui_version.py").is_file() else ""
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    return m.group(1) if m else None


def find() -> Path | None:
    """The first ComfyUI checkout among ``candidates()``, or None."""
    for path in candidates():
        if is_comfyui(path):
            version = version_of(path)
            if version != PINNED_VERSION:
                log.warning("ComfyUI at %s is version %s; this project is tested with %s", path, version, PINNED_VERSION)
            return path.resolve()
    return None


def missing_message() -> str:
    places = ", ".join(str(p) for p in candidates())
    return (
        f"ComfyUI {PINNED_VERSION} not found (looked in {places}). Provide it with "
        f"COMFYUI_DIR=/path/to/ComfyUI, or `git clone --depth 1 --branch {PINNED_TAG} {UPSTREAM_URL} .comfyui`."
    )


def ensure(clone: bool = True) -> Path:
    """Return a ComfyUI checkout, cloning the pinned tag into ./.comfyui when allowed."""
    found = find()
    if found is not None:
        return found
    if clone:
        target = PROJECT_ROOT / ".comfyui"
        cmd = ["git", "clone", "--quiet", "--depth", "1", "--branch", PINNED_TAG, UPSTREAM_URL, str(target)]
        try:
            subprocess.run(cmd, check=True, timeout=300, capture_output=True, env=child_env(GIT_TERMINAL_PROMPT="0"))
        except (subprocess.SubprocessError, OSError) as exc:
            log.debug("clone of ComfyUI failed: %s", exc)
        if is_comfyui(target):
            return target.resolve()
    raise ComfyNotFound(missing_message())


def main(argv: list[str] | None = None) -> int:
    """``python -m worker.comfyui_home [--no-clone]``: print the path, or one loud line and exit 1."""
    args = sys.argv[1:] if argv is None else argv
    try:
        print(ensure(clone="--no-clone" not in args))
        return 0
    except ComfyNotFound as exc:
        print(f"!!! {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
