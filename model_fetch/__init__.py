"""model_fetch: fill ComfyUI model folders on first use — fast, resumable, verified, safe on shared volumes.

The public API (the worker, the node pack and the CLI all call these)::

    from model_fetch import plan, ensure, status
    p = plan("workflows/wan22_i2v_gguf.api.json")          # which files, which folders, which sources
    ensure(p, on_progress=print)                          # fetch what is missing (mirrors, then origin)
    for f in status(): print(f.entry.name, f.state)       # present / unverified / partial / missing

Every function takes optional ``settings`` (default ``Settings.from_env()``), ``manifest`` and ``store``.
Neither ComfyUI nor torch is imported here.

The public API is ``__all__`` plus three public modules: ``model_fetch.config`` (``Settings``, the
environment), ``model_fetch.errors`` (the errors, with their codes) and ``model_fetch.cli`` (the
``model-fetch`` command). Modules named ``_*.py`` are internal: tests may import them, the worker and
the node pack may not (tests/test_public_api.py walks their imports).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from ._comfy_search_paths import ComfyFolders
from ._model_folders import FOLDERS as MODEL_FOLDERS, canonical as canonical_folder, search_dirs as folder_dirs
from ._manifest import DEFAULT_MANIFEST, Manifest, ModelEntry, load_manifest
from ._progress import FileProgress, Pacer
from ._sizes import human_bytes
from ._store import Store
from .config import Settings
from .errors import (CodedError, DownloadCancelled, DownloadError, HostUnreachable, IntegrityError, LeaseTimeout, ManifestError,
                     ModelFetchError, NotEnoughSpace, OfflineError, SourceNotFound, SourceRefused, UnknownModelError,
                     UrlRefused, WorkflowError)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (3 ms of every CLI start)
if TYPE_CHECKING:
    import threading
    from typing import Any

    from mypy_boto3_s3 import S3Client

    from ._cleanup import GcReport
    from ._verifier import VerifyResult

    from ._embedded import Refusal, check_embedded_sources, workflow_needs
    from ._extra_model_paths import ModelPathsSection, write_model_paths_yaml
    from ._ensure import EnsureReport, Fetched
    from ._inventory import FileStatus
    from ._planner import Need, Plan, PlanItem
    from ._transports import redact as redact_url
    from ._urlguard import check_public_host

# Heavier modules (the engine imports requests) load on first use, so `model-fetch status` starts fast.
# public name -> (internal module, its name there)
_LAZY = {"EnsureReport": ("_ensure", "EnsureReport"), "Fetched": ("_ensure", "Fetched"),
         "FileStatus": ("_inventory", "FileStatus"), "Plan": ("_planner", "Plan"), "PlanItem": ("_planner", "PlanItem"),
         "Need": ("_planner", "Need"), "Refusal": ("_embedded", "Refusal"), "workflow_needs": ("_embedded", "workflow_needs"),
         "check_embedded_sources": ("_embedded", "check_embedded_sources"), "redact_url": ("_transports", "redact"),
         "check_public_host": ("_urlguard", "check_public_host"),
         "ModelPathsSection": ("_extra_model_paths", "ModelPathsSection"),
         "write_model_paths_yaml": ("_extra_model_paths", "write_model_paths_yaml")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'model_fetch' has no attribute {name!r}")


__all__ = [
    # configuration, manifests, the store
    "Settings", "ComfyFolders", "Manifest", "ModelEntry", "Store", "load_manifest", "DEFAULT_MANIFEST", "defaults",
    # ComfyUI's model folders
    "MODEL_FOLDERS", "canonical_folder", "folder_dirs",
    # ComfyUI's extra_model_paths.yaml (write_paths writes the store's; these write any sections)
    "ModelPathsSection", "write_model_paths_yaml",
    # the verbs
    "plan", "ensure", "status", "verify", "gc", "doctor", "write_paths",
    # what they return or report
    "Plan", "PlanItem", "Need", "FileProgress", "FileStatus", "EnsureReport", "Fetched",
    # pacing progress events for a medium (the rule ensure's own events are thinned by)
    "Pacer",
    # sources a workflow carries, untrusted URLs
    "workflow_needs", "check_embedded_sources", "Refusal", "UrlRefused", "check_public_host", "redact_url",
    # S3 (mirrors, and the worker's output bucket)
    "s3_client", "s3_upload", "s3_endpoint_bucket",
    # byte counts as people read them
    "human_bytes",
    # errors (CodedError: the project's one error protocol)
    "CodedError", "ModelFetchError", "ManifestError", "WorkflowError", "UnknownModelError", "SourceRefused", "NotEnoughSpace",
    "IntegrityError", "DownloadError", "DownloadCancelled", "SourceNotFound", "HostUnreachable", "OfflineError",
    "LeaseTimeout",
]


def defaults(settings: Settings | None = None, manifest: Manifest | None = None,
             store: Store | None = None) -> tuple[Settings, Manifest, Store]:
    """Fill in whatever the caller did not pass, from the environment."""
    settings = settings or Settings.from_env()
    manifest = manifest if manifest is not None else load_manifest(settings.manifests, settings.include_default_manifest)
    store = store or Store.from_settings(settings)
    return settings, manifest, store


def plan(workflow: dict[str, Any] | str | Path, *, settings: Settings | None = None, manifest: Manifest | None = None,
         store: Store | None = None, comfy: ComfyFolders | None = None) -> "Plan":
    """The model files ``workflow`` needs (UI or API format), resolved against store, ComfyUI's own
    folders (``comfy``) and manifest."""
    from ._planner import plan_workflow

    settings, manifest, store = defaults(settings, manifest, store)
    return plan_workflow(workflow, manifest, store, comfy, settings)


def ensure(items: "Plan | Iterable[ModelEntry]", *, settings: Settings | None = None, store: Store | None = None,
           on_progress: Callable[[FileProgress], None] | None = None,
           after_place: Callable[[ModelEntry, Path, str, str, bool], None] | None = None,
           cancel: threading.Event | None = None) -> "EnsureReport":
    """Make every entry present (downloading, or waiting on another process that is).

    Setting ``cancel`` (from any thread) stops it with ``DownloadCancelled``; a ``.part`` and its
    journal stay, so the next ``ensure`` resumes where this one stopped."""
    from ._ensure import ensure_entries
    from ._planner import Plan
    from ._s3 import writeback_hook

    settings, _, store = defaults(settings, Manifest(), store)
    entries = items.entries() if isinstance(items, Plan) else list(items)
    return ensure_entries(entries, store, settings, on_progress, after_place or writeback_hook(settings), cancel)


def status(*, settings: Settings | None = None, manifest: Manifest | None = None, store: Store | None = None,
           remote: bool = False) -> "list[FileStatus]":
    """Each manifest entry's state on disk (no network, no hashing); ``remote`` adds the S3 mirror tier."""
    from ._inventory import status as _status

    settings, manifest, store = defaults(settings, manifest, store)
    return _status(manifest, store, settings, remote)


def verify(names: Iterable[str] = (), *, settings: Settings | None = None, manifest: Manifest | None = None,
           store: Store | None = None) -> list[VerifyResult]:
    """Rehash present files (all manifest entries, or those named)."""
    from ._verifier import verify as _verify

    settings, manifest, store = defaults(settings, manifest, store)
    wanted = set(names)
    return _verify([e for e in manifest if not wanted or e.name in wanted], store)


def gc(*, settings: Settings | None = None, store: Store | None = None, partials: bool = False) -> GcReport:
    """Clean the models roots; resumable partial downloads are kept unless ``partials``."""
    from ._cleanup import gc as _gc

    settings, _, store = defaults(settings, Manifest(), store)
    return _gc(store, settings.lease_ttl, partials=partials)


def doctor(*, settings: Settings | None = None, manifest: Manifest | None = None, store: Store | None = None) -> dict[str, Any]:
    from ._diagnostics import doctor as _doctor

    settings, manifest, store = defaults(settings, manifest, store)
    return _doctor(settings, manifest, store)


def write_paths(path: str | Path, *, settings: Settings | None = None, store: Store | None = None) -> Path:
    """Write ComfyUI's ``extra_model_paths.yaml`` for the store's roots."""
    from ._extra_model_paths import write_extra_model_paths

    settings, _, store = defaults(settings, Manifest(), store)
    return write_extra_model_paths(store, Path(path))


def s3_client(settings: Settings | None = None) -> S3Client:
    """A boto3 S3 client for the configured endpoint and credentials (``BUCKET_*`` / ``AWS_*``)."""
    from ._s3 import make_client

    return make_client(settings or Settings.from_env())


def s3_endpoint_bucket(settings: Settings | None = None) -> str | None:
    """The bucket ``BUCKET_ENDPOINT_URL`` names: its host's first label when virtual-hosted
    (``https://BUCKET.s3.REGION.amazonaws.com``), else its path's first segment; None when it names none."""
    from ._s3 import parse_endpoint

    return parse_endpoint((settings or Settings.from_env()).s3_endpoint_url).bucket


def s3_upload(client: S3Client, path: str | Path, url: str, *, sha256: str | None = None,
              content_type: str | None = None) -> None:
    """Upload ``path`` to ``s3://bucket/key`` (multipart; the sha256, when given, in the object metadata)."""
    from ._s3 import upload

    upload(client, Path(path), url, sha256=sha256, content_type=content_type)
