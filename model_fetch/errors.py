"""The project's one error protocol, and model_fetch's failure kinds.

``CodedError`` is the base of every error family (model_fetch's here, the worker's ``worker.errors``, the
pack's ``custom_nodes/wan_serverless/errors.py``): a ``code`` from docs/errors.md's one table, a message
that says what to do, answer ``fields``, and ``to_answer()``. The CLI prints one red line and exits 1
(2 for ``usage``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._sizes import human_bytes


class CodedError(Exception):
    """An error a user gets an answer for: ``{"error": <message>, "code": <code>, **fields}``. The base
    code, ``internal_error``, is the answer to anything unexpected."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}

    def to_answer(self) -> dict[str, Any]:
        """The answer: ``{"error": <message>, "code": <code>, **fields}`` (a job adds ``details``)."""
        return {"error": self.message, "code": self.code, **self.fields}


class ModelFetchError(CodedError):
    """Base class of every model_fetch failure: a ``code`` (docs/errors.md) and a message that says what to do."""

    code = "model_fetch_error"


class ManifestError(ModelFetchError):
    """A manifest file or entry is malformed."""

    code = "manifest_invalid"

    def __init__(self, source: str, message: str, entry: str | None = None) -> None:
        where = f"{source}" + (f", entry {entry}" if entry else "")
        super().__init__(f"{where}: {message}")
        self.source, self.entry = source, entry


class WorkflowError(ModelFetchError):
    """A workflow file cannot be read or is not a ComfyUI graph."""

    code = "workflow_unreadable"


class UnknownModelError(ModelFetchError):
    """A needed model is neither on disk nor in any manifest."""

    code = "model_unknown"

    def __init__(self, missing: list[tuple[str, str]]) -> None:
        listed = ", ".join(f"'{name}' in '{folder}'" for name, folder in missing)
        super().__init__(f"no source known for {listed}: add it to a manifest (--manifest) or place the file there")
        self.missing = missing


class SourceRefused(ModelFetchError):
    """A needed model's only source is a URL embedded in the workflow that breaks the URL rules."""

    code = "source_refused"

    def __init__(self, refused: list[tuple[str, str, str]]) -> None:
        listed = "; ".join(f"'{name}' in '{folder}': {rule}" for name, folder, rule in refused)
        super().__init__(f"not fetched from the workflow's own URLs: {listed} "
                         "(put the model in a manifest, or see MODEL_FETCH_ALLOWED_HOSTS)")
        self.refused = refused


class NotEnoughSpace(ModelFetchError):
    """The target filesystem has too little free space for a download."""

    code = "disk_full"

    def __init__(self, name: str, folder: str, need: int, free: int, headroom: int = 0) -> None:
        kept = f" plus {headroom / 2**20:g} MiB headroom (MODEL_FETCH_MIN_FREE_MB)" if headroom else ""
        super().__init__(f"'{name}' needs {human_bytes(need)}{kept} in {folder}, {human_bytes(free)} free: "
                         f"free space, or point MODEL_FETCH_MODELS_DIR at a larger volume")
        self.name, self.folder, self.need, self.free, self.headroom = name, folder, need, free, headroom


class IntegrityError(ModelFetchError):
    """Downloaded bytes do not match the expected sha256."""

    code = "integrity_error"

    def __init__(self, name: str, expected: str, actual: str, source: str, what: str = "sha256") -> None:
        super().__init__(f"'{name}' from {source}: expected {what} {expected}, got {actual}; nothing was placed "
                         f"(check the manifest's {'hash' if what == 'sha256' else what} and the source)")
        self.name, self.expected, self.actual, self.what = name, expected, actual, what


class DownloadError(ModelFetchError):
    """A source kept failing; a partial download, if any, stays resumable."""

    code = "download_failed"


class DownloadCancelled(ModelFetchError):
    """The caller cancelled a running download (``ensure(cancel=...)``); its ``.part`` and journal stay
    for a later resume."""

    code = "download_cancelled"

    def __init__(self, name: str) -> None:
        super().__init__(f"the download of '{name}' was cancelled; its partial file is kept and the next run resumes it")
        self.name = name


class SourceNotFound(DownloadError):
    """The source answered that the object does not exist (404) or refused access (401/403)."""

    code = "source_not_found"


class OfflineError(ModelFetchError):
    """Offline mode is on and models are missing."""

    code = "offline_missing"

    def __init__(self, missing: list[str]) -> None:
        super().__init__("offline mode (HF_HUB_OFFLINE/--offline) and these models are missing: " + ", ".join(missing))
        self.missing = missing


class LeaseTimeout(ModelFetchError):
    """Another process holds the download of a file for longer than the wait allows."""

    code = "lease_timeout"


class SettingError(ModelFetchError, ValueError):
    """An environment variable holds a value its setting cannot take; the message names both."""

    code = "settings_invalid"


class StorageError(ModelFetchError, PermissionError):
    """A models root or folder cannot be written (read-only, permissions)."""

    code = "storage_unwritable"


class NoSource(ModelFetchError):
    """A manifest entry has neither ``url`` nor ``mirrors``: nothing to download it from."""

    code = "no_source"


class HostUnreachable(DownloadError):
    """A source's host does not resolve, refuses connections or never answers: failing at once. A network
    failure, not a rule broken (``plan`` never resolves names)."""

    code = "host_unreachable"


class UploadError(ModelFetchError):
    """Uploading to an S3 mirror failed (missing bucket, credentials, network)."""

    code = "upload_failed"


class UsageError(ModelFetchError):
    """Wrong command-line usage (exit code 2)."""

    code = "usage"


def unwritable(exc: OSError) -> bool:
    """Whether ``exc`` says a folder cannot be written (permissions, read-only filesystem)."""
    import errno

    return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def os_error(exc: OSError) -> ModelFetchError:
    """An ``OSError`` from the filesystem as the error a user can act on: a folder that cannot be written is
    ``storage_unwritable`` (naming it), anything else the base code with the system's words."""
    import errno

    where = exc.filename or "a models folder"
    if isinstance(exc, ModelFetchError):
        return exc
    if unwritable(exc):
        reason = "read-only filesystem" if exc.errno == errno.EROFS else "permission denied"
        return StorageError(f"cannot write {where} ({reason}): make it writable, or point --models-dir / "
                            "MODEL_FETCH_MODELS_DIR at a writable folder")
    return ModelFetchError(f"{where}: {exc.strerror or exc}")


class UrlRefused(ModelFetchError, ValueError):
    """A URL (or the file it names) breaks a rule for untrusted URLs (model_fetch/_urlguard.py); the
    message names the rule. Raised for job image URLs and workflow-embedded model URLs."""

    code = "url_refused"
