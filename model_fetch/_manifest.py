"""Manifests: which model files exist, where each goes and where its bytes come from.

An entry has ComfyUI's workflow model-metadata shape ``{name, url, directory, hash?, hash_type?}``
plus ``size?`` and ``mirrors?: [url]``. A manifest file (YAML or JSON) is a list of entries or
``{"models": [...]}``. Several manifests merge; a later entry with the same (folder, name) wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from .errors import ManifestError
from ._model_folders import canonical, unknown_folder_hint

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_MANIFEST = Path(__file__).with_name("default_manifest.json")
URL_SCHEMES = ("http://", "https://", "hf://", "file://", "s3://")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


#: ``ModelEntry.origin`` of a source a workflow carries itself: untrusted, checked by ``urlguard``.
WORKFLOW_ORIGIN = "workflow"


@dataclass(frozen=True)
class ModelEntry:
    """One model file: its name inside a ComfyUI folder and its sources (mirrors first, then ``url``)."""

    name: str
    directory: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    mirrors: tuple[str, ...] = ()
    origin: str = ""  # the manifest (or workflow) it came from

    @property
    def key(self) -> tuple[str, str]:
        return (self.directory, self.name)

    @property
    def sources(self) -> tuple[str, ...]:
        """Mirrors in order, then the origin URL."""
        return tuple(self.mirrors) + ((self.url,) if self.url else ())

    def describe(self) -> str:
        return f"{self.directory}/{self.name}"


def check_name(name: Any, where: str, entry: str | None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ManifestError(where, "'name' must be a non-empty string", entry)
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or "\\" in name or name.startswith("."):
        raise ManifestError(where, f"'name' {name!r} must be a relative file name without '..'", entry)
    return name


def parse_entry(raw: Any, where: str, index: int) -> ModelEntry:
    """Validate one raw manifest entry; errors name the file and the entry."""
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise ManifestError(where, "each entry must be a mapping with name, url and directory", label)
    if isinstance(raw.get("name"), str):
        label = f"#{index + 1} ({raw['name']})"
    name = check_name(raw.get("name"), where, label)
    directory = raw.get("directory")
    if not isinstance(directory, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", directory.strip()):
        raise ManifestError(
            where, f"'directory' must be a ComfyUI folder name such as diffusion_models, got {directory!r}", label)
    hint = unknown_folder_hint(directory)
    if hint:
        raise ManifestError(where, f"'directory' {hint}", label)
    url = raw.get("url")
    mirrors = raw.get("mirrors") or []
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    for u in ([url] if url is not None else []) + list(mirrors):
        if not isinstance(u, str) or not u.startswith(URL_SCHEMES):
            raise ManifestError(where, f"source {u!r} must start with one of {', '.join(URL_SCHEMES)}", label)
    hash_type = str(raw.get("hash_type") or "sha256").lower()
    digest = raw.get("hash") or raw.get("sha256")
    if digest is not None:
        if hash_type != "sha256":
            raise ManifestError(where, f"hash_type {hash_type!r} is not supported (only sha256)", label)
        digest = str(digest).lower().removeprefix("sha256:")
        if not _HEX64.match(digest):
            raise ManifestError(where, "'hash' must be 64 hex digits of sha256", label)
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ManifestError(where, "'size' must be a non-negative integer (bytes)", label)
    unknown = set(raw) - {"name", "url", "directory", "hash", "hash_type", "sha256", "size", "mirrors", "description"}
    if unknown:
        raise ManifestError(where, f"unknown field(s) {', '.join(sorted(unknown))}", label)
    return ModelEntry(name=name, directory=canonical(directory), url=url, sha256=digest, size=size,
                      mirrors=tuple(mirrors), origin=where)


@dataclass
class Manifest:
    """Merged entries keyed by (canonical folder, name)."""

    entries: dict[tuple[str, str], ModelEntry] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def add(self, entry: ModelEntry) -> None:
        self.entries[entry.key] = entry

    def merge(self, other: "Manifest") -> None:
        for entry in other.entries.values():
            self.add(entry)
        self.sources += other.sources

    def find(self, name: str, directory: str | None = None) -> ModelEntry | None:
        if directory is not None:
            return self.entries.get((canonical(directory), name))
        matches = [e for (_, n), e in self.entries.items() if n == name]
        return matches[0] if len(matches) == 1 else None

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def parse_manifest(data: Any, where: str) -> Manifest:
    if isinstance(data, dict) and "models" in data:
        data = data["models"]  # other top-level keys (such as "_comment") are ignored
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ManifestError(where, "a manifest is a list of entries or a mapping with a 'models' list")
    manifest = Manifest(sources=[where])
    for i, raw in enumerate(data):
        manifest.add(parse_entry(raw, where, i))
    return manifest


def read_manifest(path: Path) -> Manifest:
    """Read one YAML or JSON manifest file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(str(path), f"not valid JSON: {exc}") from None
    else:
        import yaml  # only YAML manifests pay for the import

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ManifestError(str(path), f"not valid YAML{where}: {problem}") from None
    return parse_manifest(data, str(path))


def load_manifest(paths: list[Path] | tuple[Path, ...] = (), include_default: bool = True) -> Manifest:
    """The default manifest (unless excluded) merged with ``paths`` in order."""
    merged = Manifest()
    for path in ([DEFAULT_MANIFEST] if include_default else []) + [Path(p) for p in paths]:
        merged.merge(read_manifest(path))
    return merged
