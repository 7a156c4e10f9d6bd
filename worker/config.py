"""Every worker setting, read from the environment in one place (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

MB = 1000 * 1000


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class WorkerSettings:
    comfyui_dir: Path | None = None  # None: found by worker.comfyui_home
    base_dir: Path = Path("/tmp/comfyui-worker")  # ComfyUI --base-directory (input, output, user, custom_nodes)
    extra_model_paths: Path | None = None  # written by model_fetch at start-up when None
    host: str = "127.0.0.1"
    port: int = 8188
    cpu: bool = False
    comfy_args: list[str] = field(default_factory=list)
    start_timeout: float = 300.0
    timeout_base: float = 300.0  # job deadline = base + per_unit × (work / reference work), capped
    timeout_per_unit: float = 600.0
    timeout_max: float = 3600.0
    max_base64_bytes: int = 20 * MB  # RunPod's response limit for inline outputs
    max_input_bytes: int = 25 * MB  # each decoded input image
    allow_http_urls: bool = False
    allow_private_urls: bool = False
    url_timeout: float = 30.0
    output_bucket: str | None = None
    output_prefix: str = "outputs"
    output_url_expires: int = 3600
    default_workflow: str = "wan22_i2v_gguf"
    workflows_dir: Path = Path(__file__).resolve().parent.parent / "workflows"
    refresh_worker: bool = False  # ask RunPod to recycle the worker after each job
    output_mode: str = "base64"  # a job's output mode when it names none; "s3" when BUCKET_ENDPOINT_URL is set
    bucket_endpoint_url: str | None = None  # worker-comfyui's S3 switch (credentials: BUCKET_ACCESS_KEY_ID/_SECRET_)
    expect_gpu: bool = False  # jobs answer gpu_unavailable when CUDA is unusable (never with cpu)
    serve_host: str = "127.0.0.1"  # --serve: where runpod's local API server listens
    comfy_log_rate: float = 20.0  # ComfyUI output lines per second forwarded to stdout (0: file only)

    @classmethod
    def from_env(cls, **overrides) -> "WorkerSettings":
        s = cls(
            comfyui_dir=Path(_env("COMFYUI_DIR")) if _env("COMFYUI_DIR") else None,
            base_dir=Path(_env("WORKER_COMFY_BASE_DIR", "/tmp/comfyui-worker")),
            extra_model_paths=Path(_env("WORKER_EXTRA_MODEL_PATHS")) if _env("WORKER_EXTRA_MODEL_PATHS") else None,
            host=_env("WORKER_COMFY_HOST", "127.0.0.1"),
            port=int(_env("WORKER_COMFY_PORT", "8188")),
            cpu=_truthy(_env("WORKER_COMFY_CPU")),
            comfy_args=(_env("WORKER_COMFY_ARGS", "") or "").split(),
            start_timeout=float(_env("WORKER_START_TIMEOUT", "300")),
            timeout_base=float(_env("WORKER_TIMEOUT_BASE", "300")),
            timeout_per_unit=float(_env("WORKER_TIMEOUT_PER_UNIT", "600")),
            timeout_max=float(_env("WORKER_TIMEOUT_MAX", "3600")),
            max_base64_bytes=int(float(_env("WORKER_MAX_BASE64_MB", "20")) * MB),
            max_input_bytes=int(float(_env("WORKER_MAX_INPUT_MB", "25")) * MB),
            allow_http_urls=_truthy(_env("WORKER_ALLOW_HTTP_URLS")),
            allow_private_urls=_truthy(_env("WORKER_ALLOW_PRIVATE_URLS")),
            output_bucket=_env("WORKER_OUTPUT_BUCKET") or _env("BUCKET_NAME"),
            output_prefix=_env("WORKER_OUTPUT_PREFIX", "outputs"),
            output_url_expires=int(_env("WORKER_OUTPUT_URL_EXPIRES", "3600")),
            default_workflow=_env("WORKER_DEFAULT_WORKFLOW", "wan22_i2v_gguf"),
            refresh_worker=_truthy(_env("WORKER_REFRESH")) or _truthy(_env("REFRESH_WORKER")),
            output_mode=_env("WORKER_OUTPUT_MODE") or ("s3" if _env("BUCKET_ENDPOINT_URL") else "base64"),
            bucket_endpoint_url=_env("BUCKET_ENDPOINT_URL"),
            expect_gpu=_truthy(_env("WORKER_EXPECT_GPU")),
            serve_host=_env("WORKER_SERVE_HOST", "127.0.0.1"),
            comfy_log_rate=float(_env("WORKER_COMFY_LOG_RATE", "20")),
        )
        return replace(s, **overrides) if overrides else s

    def with_(self, **changes) -> "WorkerSettings":
        return replace(self, **changes)
