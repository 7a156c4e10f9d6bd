"""Every setting of model_fetch, read from the environment in one place (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

from .errors import SettingError

MiB = 1024 * 1024


@overload
def env(name: str) -> str | None: ...
@overload
def env(name: str, default: str) -> str: ...
def env(name: str, default: str | None = None) -> str | None:
    """The variable ``name``; ``default`` when it is unset or empty. The one env helper of the project
    (worker/config.py uses it too)."""
    value = os.environ.get(name)
    return value if value else default


def number(name: str, default: str, kind: type = float, minimum: float | None = 0, above: bool = False) -> float:
    """The variable ``name`` as ``kind`` (int or float), checked against ``minimum`` (exclusive when ``above``);
    ``SettingError`` (``settings_invalid``) naming the variable and the value expected. Used by worker/config.py too."""
    raw = env(name, default)
    try:
        value: float = kind(raw.strip())
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected {'a whole number' if kind is int else 'a number'}") from None
    if minimum is not None and (value <= minimum if above else value < minimum):
        raise SettingError(f"{name}={raw!r}: expected a number {'above' if above else 'of at least'} {minimum:g}")
    return value


def choice(name: str, default: str, allowed: tuple[str, ...], aliases: dict[str, str] | None = None) -> str:
    """The variable ``name``, one of ``allowed`` (any case; ``aliases`` maps other spellings to one of them);
    ``SettingError`` naming the variable and the choices."""
    raw = env(name, default)
    value = raw.strip().lower()
    value = (aliases or {}).get(value, value)
    if value not in allowed:
        raise SettingError(f"{name}={raw!r}: expected one of {', '.join(allowed)}")
    return value


def truthy(value: str | None) -> bool:
    """``1``/``true``/``yes``/``on`` (any case) are true; anything else, unset included, is false."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def comfyui_dir_from_env() -> Path | None:
    """``COMFYUI_DIR`` (``~`` expanded), or None: the one reading of it (model_fetch and the worker)."""
    value = env("COMFYUI_DIR")
    return Path(value).expanduser() if value else None


def _paths(value: str | None) -> list[Path]:
    return [Path(p).expanduser() for p in (value or "").split(os.pathsep) if p]


def default_local_root() -> Path:
    cache = env("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "model-fetch" / "models"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. ``Settings.from_env()`` reads the environment; tests build one directly."""

    models_dirs: list[Path] = field(default_factory=list)  # explicit roots (first is written to)
    volume_dir: Path = Path("/runpod-volume/models")
    local_dir: Path = field(default_factory=default_local_root)
    manifests: list[Path] = field(default_factory=list)  # merged after the default manifest
    include_default_manifest: bool = True
    connections: int = 8
    chunk_size: int = 8 * MiB
    offline: bool = False
    connect_timeout: float = 10.0
    stall_timeout: float = 30.0  # no byte for this long on a connection: abandon and retry it
    first_byte_timeout: float = 30.0  # a source's first answer: no answer for this long and it has failed
    max_attempts: int = 8  # per chunk
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    integrity_retries: int = 1  # full re-downloads after a sha256 mismatch of a *resumed* download
    lease_ttl: float = 30.0  # a lease without heartbeat for this long is stale
    lease_heartbeat: float = 5.0
    wait_timeout: float = 4 * 3600.0  # longest wait on another process's download
    min_free_bytes: int = 256 * MiB  # headroom kept free on the target filesystem
    hf_token: str | None = None
    hf_endpoint: str = "https://huggingface.co"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    mirror_writeback: str | None = None  # s3://bucket/prefix to upload origin downloads to
    comfyui_dir: Path | None = None  # a ComfyUI install whose own model folders count as present
    allowed_hosts: tuple[str, ...] = ("huggingface.co", "civitai.com")  # hosts of model URLs embedded in workflows
    allow_private_urls: bool = False  # embedded model URLs may resolve to loopback/private addresses
    url_guard: Callable[[str], None] | None = None  # raises urlguard.UrlRefused: checks each request and redirect target

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        settings = cls(
            models_dirs=_paths(env("MODEL_FETCH_MODELS_DIR")),
            volume_dir=Path(env("MODEL_FETCH_VOLUME_DIR", "/runpod-volume/models")).expanduser(),
            local_dir=Path(env("MODEL_FETCH_LOCAL_DIR", str(default_local_root()))).expanduser(),
            manifests=_paths(env("MODEL_FETCH_MANIFEST")),
            include_default_manifest=not truthy(env("MODEL_FETCH_NO_DEFAULT_MANIFEST")),
            connections=int(number("MODEL_FETCH_CONNECTIONS", "8", int, 1)),
            chunk_size=int(number("MODEL_FETCH_CHUNK_MB", "8", float, 0, above=True) * MiB) or 1,
            offline=truthy(env("HF_HUB_OFFLINE")) or truthy(env("MODEL_FETCH_OFFLINE")),
            stall_timeout=number("MODEL_FETCH_STALL_TIMEOUT", "30", float, 0, above=True),
            first_byte_timeout=number("MODEL_FETCH_FIRST_BYTE_TIMEOUT", "30", float, 0, above=True),
            max_attempts=int(number("MODEL_FETCH_MAX_ATTEMPTS", "8", int, 1)),
            lease_ttl=number("MODEL_FETCH_LEASE_TTL", "30", float, 0, above=True),
            wait_timeout=number("MODEL_FETCH_WAIT_TIMEOUT", str(4 * 3600), float, 0),
            min_free_bytes=int(number("MODEL_FETCH_MIN_FREE_MB", "256", float, 0) * MiB),
            hf_token=env("HF_TOKEN") or env("HUGGING_FACE_HUB_TOKEN"),
            hf_endpoint=(env("HF_ENDPOINT", "https://huggingface.co") or "").rstrip("/"),
            s3_endpoint_url=env("BUCKET_ENDPOINT_URL") or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
            s3_region=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or env("BUCKET_REGION"),
            s3_access_key_id=env("BUCKET_ACCESS_KEY_ID"),
            s3_secret_access_key=env("BUCKET_SECRET_ACCESS_KEY"),
            mirror_writeback=env("MODEL_FETCH_MIRROR_WRITEBACK"),
            comfyui_dir=comfyui_dir_from_env(),
            allowed_hosts=tuple(h.strip().lower().rstrip(".") for h in
                                (env("MODEL_FETCH_ALLOWED_HOSTS", "huggingface.co,civitai.com") or "").split(",")
                                if h.strip()),
            allow_private_urls=truthy(env("MODEL_FETCH_ALLOW_PRIVATE_URLS")),
        )
        return replace(settings, **overrides) if overrides else settings

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


# Names (never values) of the variables `doctor` reports.
REPORTED_ENV = (
    "MODEL_FETCH_MODELS_DIR", "MODEL_FETCH_VOLUME_DIR", "MODEL_FETCH_LOCAL_DIR", "MODEL_FETCH_MANIFEST",
    "MODEL_FETCH_CONNECTIONS", "MODEL_FETCH_CHUNK_MB", "MODEL_FETCH_FIRST_BYTE_TIMEOUT",
    "MODEL_FETCH_OFFLINE", "MODEL_FETCH_MIRROR_WRITEBACK",
    "MODEL_FETCH_ALLOWED_HOSTS", "MODEL_FETCH_ALLOW_PRIVATE_URLS",
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_ENABLE_HF_TRANSFER",
    "TMPDIR", "BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "COMFYUI_DIR",
)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def env_report() -> dict[str, str]:
    """``doctor``'s view of the environment: each ``REPORTED_ENV`` name, its value, "unset", or "set (hidden)"."""
    out = {}
    for name in REPORTED_ENV:
        value = os.environ.get(name)
        if value is None:
            out[name] = "unset"
        elif name in SECRET_ENV:
            out[name] = "set (hidden)"
        else:
            out[name] = value
    return out
