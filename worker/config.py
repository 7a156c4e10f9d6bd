"""Every worker setting, read from the environment in one place (documented in docs/configuration.md).

No other worker module reads ``os.environ`` (tests/test_env_reads.py): they take a ``WorkerSettings``,
or call ``child_env`` for a subprocess's environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model_fetch.config import choice as _choice, comfyui_dir_from_env, env as _env, number as _number, truthy as _truthy

MB = 1000 * 1000  # WORKER_*_MB count megabytes of 10^6 bytes (model_fetch's MODEL_FETCH_*_MB count MiB)
DEFAULT_WORKFLOW = "wan22_i2v_gguf"  # the saved workflow a job without ``workflow`` runs
WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"
DEFAULT_MAX_INPUT_MB = 25
DEFAULT_MAX_BASE64_MB = 19  # a whole answer with inline outputs; RunPod refuses results over 20 MB
PRELOAD_MODES = ("off", "cache", "warmup")


@dataclass(frozen=True)
class OutputSettings:
    """Where outputs go: inline base64, or an S3 bucket (all S3 output settings in one group)."""

    mode: str = "base64"  # a job's output mode when it names none; "s3" when BUCKET_ENDPOINT_URL is set
    max_base64_bytes: int = DEFAULT_MAX_BASE64_MB * MB  # the whole inline answer; RunPod's limit is 20 MB
    bucket: str | None = None
    prefix: str = "outputs"
    url_expires: int = 3600
    metadata: bool = False  # embed the graph and prompt in output files (ComfyUI without --disable-metadata)

    @classmethod
    def from_env(cls) -> "OutputSettings":
        return cls(
            mode=_choice("WORKER_OUTPUT_MODE", "s3" if _env("BUCKET_ENDPOINT_URL") else "base64", ("base64", "s3")),
            bucket=_env("WORKER_OUTPUT_BUCKET") or _env("BUCKET_NAME"),
            prefix=_env("WORKER_OUTPUT_PREFIX", "outputs"),
            url_expires=int(_number("WORKER_OUTPUT_URL_EXPIRES", "3600", int, 1)),
            max_base64_bytes=int(_number("WORKER_MAX_BASE64_MB", str(DEFAULT_MAX_BASE64_MB), above=True) * MB),
            metadata=_truthy(_env("WORKER_OUTPUT_METADATA")),
        )


@dataclass(frozen=True)
class WorkerSettings:
    comfyui_dir: Path | None = None  # None: found by worker.comfyui_home
    base_dir: Path = Path("/tmp/comfyui-worker")  # ComfyUI --base-directory (input, output, user, custom_nodes)
    extra_model_paths: Path | None = None  # the operator's own extra_model_paths.yaml, passed to ComfyUI if it exists
    host: str = "127.0.0.1"
    port: int = 8188
    cpu: bool = False
    comfy_args: list[str] = field(default_factory=list)
    start_timeout: float = 300.0
    timeout_base: float = 300.0  # job deadline = base + per_unit × (work / reference work), capped
    timeout_per_unit: float = 600.0
    timeout_max: float = 3600.0
    max_input_bytes: int = DEFAULT_MAX_INPUT_MB * MB  # each decoded input image
    allow_http_urls: bool = False
    allow_private_urls: bool = False
    url_timeout: float = 30.0
    output: OutputSettings = field(default_factory=OutputSettings)
    default_workflow: str = DEFAULT_WORKFLOW
    workflows_dir: Path = WORKFLOWS_DIR
    refresh_worker: bool = False  # ask RunPod to recycle the worker after each job
    expect_gpu: bool = False  # jobs answer gpu_unavailable when CUDA is unusable (never with cpu)
    serve_host: str = "127.0.0.1"  # --serve: where runpod's local API server listens
    comfy_log_rate: float = 20.0  # ComfyUI output lines per second forwarded to stdout (0: file only)
    runpod_remote: bool = False  # RUNPOD_WEBHOOK_GET_JOB set: running on RunPod, progress goes to the client
    comfy_org_api_key: str | None = field(default=None, repr=False)  # COMFY_ORG_API_KEY: for ComfyUI's API nodes
    preload: str = "off"  # off | cache (read the default workflow's models while ComfyUI boots) | warmup (+ a tiny run)
    preload_reserve: int = 4000 * MB  # memory a preload pass leaves available
    preload_max: int = 0  # most bytes one preload pass reads (0: as memory allows)

    @classmethod
    def from_env(cls, **overrides: Any) -> "WorkerSettings":
        s = cls(
            comfyui_dir=comfyui_dir_from_env(),
            base_dir=Path(_env("WORKER_COMFY_BASE_DIR", "/tmp/comfyui-worker")),
            extra_model_paths=Path(p) if (p := _env("WORKER_EXTRA_MODEL_PATHS")) else None,
            host=_env("WORKER_COMFY_HOST", "127.0.0.1"),
            port=int(_number("WORKER_COMFY_PORT", "8188", int, 1)),
            cpu=_truthy(_env("WORKER_COMFY_CPU")),
            comfy_args=(_env("WORKER_COMFY_ARGS", "") or "").split(),
            start_timeout=_number("WORKER_START_TIMEOUT", "300", above=True),
            timeout_base=_number("WORKER_TIMEOUT_BASE", "300"),
            timeout_per_unit=_number("WORKER_TIMEOUT_PER_UNIT", "600"),
            timeout_max=_number("WORKER_TIMEOUT_MAX", "3600", above=True),
            max_input_bytes=int(_number("WORKER_MAX_INPUT_MB", str(DEFAULT_MAX_INPUT_MB), above=True) * MB),
            allow_http_urls=_truthy(_env("WORKER_ALLOW_HTTP_URLS")),
            allow_private_urls=_truthy(_env("WORKER_ALLOW_PRIVATE_URLS")),
            output=OutputSettings.from_env(),
            default_workflow=_env("WORKER_DEFAULT_WORKFLOW", DEFAULT_WORKFLOW),
            refresh_worker=_truthy(_env("WORKER_REFRESH")) or _truthy(_env("REFRESH_WORKER")),
            expect_gpu=_truthy(_env("WORKER_EXPECT_GPU")),
            serve_host=_env("WORKER_SERVE_HOST", "127.0.0.1"),
            comfy_log_rate=_number("WORKER_COMFY_LOG_RATE", "20"),
            runpod_remote=bool(_env("RUNPOD_WEBHOOK_GET_JOB")),
            comfy_org_api_key=_env("COMFY_ORG_API_KEY"),
            preload=_choice("WORKER_PRELOAD", "cache", PRELOAD_MODES),
            preload_reserve=int(_number("WORKER_PRELOAD_RESERVE_MB", "4000") * MB),
            preload_max=int(_number("WORKER_PRELOAD_MAX_MB", "0") * MB),
        )
        return replace(s, **overrides) if overrides else s

    def with_(self, **changes: Any) -> "WorkerSettings":
        return replace(self, **changes)


def child_env(**extra: str) -> dict[str, str]:
    """The environment a subprocess (ComfyUI, git) inherits: this process's, plus ``extra``."""
    return {**os.environ, **extra}


def default_runpod_log_level(level: str = "INFO") -> None:
    """Set ``RUNPOD_LOG_LEVEL`` unless the operator set it (or the older ``RUNPOD_DEBUG_LEVEL``)."""
    if not (_env("RUNPOD_LOG_LEVEL") or _env("RUNPOD_DEBUG_LEVEL")):
        os.environ["RUNPOD_LOG_LEVEL"] = level
