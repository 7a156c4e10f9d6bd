"""Where ComfyUI itself finds model files, outside our models roots.

A file ComfyUI will load counts as present: its install's (or ``--base-directory``'s) ``models/``
folder, the folders of ``extra_model_paths.yaml`` files (read as ComfyUI 0.8.0 reads them), and
names a running ComfyUI lists under ``GET /models/{folder}`` (``add_listing``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ._model_folders import canonical, is_file, search_dirs

log = logging.getLogger(__name__)


@dataclass
class ComfyFolders:
    """Directories per canonical folder, and names a running ComfyUI reported per folder."""

    dirs: dict[str, list[Path]] = field(default_factory=dict)
    listed: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of_install(cls, comfyui_dir: Path, base_dir: Path | None = None,
                   extra_configs: list[Path] | tuple[Path, ...] = ()) -> "ComfyFolders":
        """ComfyUI's models roots: ``<base>/models`` (install and base directory), its own
        ``extra_model_paths.yaml`` and ``extra_configs``."""
        folders = cls()
        for base in dict.fromkeys(p for p in (comfyui_dir, base_dir) if p is not None):
            folders.add_models_root(Path(base) / "models")
        for config in [Path(comfyui_dir) / "extra_model_paths.yaml", *extra_configs]:
            if Path(config).is_file():
                folders.add_config(Path(config))
        return folders

    def add_dir(self, folder: str, path: Path) -> None:
        paths = self.dirs.setdefault(canonical(folder), [])
        if path not in paths:
            paths.append(path)

    def add_models_root(self, root: Path) -> None:
        """Every folder under a ComfyUI-layout models root (``<root>/diffusion_models``, ``<root>/unet``, ...)."""
        if not root.is_dir():
            return
        for child in sorted(root.iterdir()):
            if child.is_dir():
                self.add_dir(child.name, child)

    def add_config(self, path: Path) -> None:
        """The folders of an ``extra_model_paths.yaml``; an unreadable file is logged and skipped."""
        import yaml

        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            log.warning("cannot read %s: %s", path, exc)
            return
        for section in config.values() if isinstance(config, dict) else ():
            if not isinstance(section, dict):
                continue
            base = section.get("base_path")
            if isinstance(base, str):
                base = Path(os.path.expandvars(os.path.expanduser(base)))
                base = base if base.is_absolute() else path.parent / base
            for key, value in section.items():
                if key in ("base_path", "is_default") or not isinstance(value, str):
                    continue
                for line in filter(None, value.split("\n")):
                    line = line.strip()
                    full = Path(base) / line if base else (Path(line) if Path(line).is_absolute() else path.parent / line)
                    self.add_dir(key, Path(os.path.normpath(full)))

    def add_listing(self, folder: str, names: list[str]) -> None:
        self.listed.setdefault(canonical(folder), set()).update(n for n in names if isinstance(n, str))

    def find(self, name: str, directory: str) -> Path | None:
        """The file ComfyUI would load for ``name`` in ``directory`` (either alias), or None."""
        for folder in dict.fromkeys([canonical(directory), *map(canonical, search_dirs(directory))]):
            for d in self.dirs.get(folder, []):
                path = d / name
                if is_file(path):
                    return path
        return None

    def lists(self, name: str, directory: str) -> bool:
        return name in self.listed.get(canonical(directory), set())
