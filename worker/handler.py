"""The RunPod handler: ``handler(job)`` → a result or a structured error, with progress updates."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import model_fetch

from . import jobs
from .runtime import Runtime

log = logging.getLogger(__name__)
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process-wide runtime (configuration + supervised ComfyUI), created on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_env()
        return _runtime


class ProgressReporter:
    """Renders a job's progress events: logs them and, on RunPod (``remote``), sends them to the client.

    Events are paced per stream, a stream being one ``(stage, file)``, by model_fetch's ``Pacer``: at most
    one every ``interval`` s, but a new stream or a new ``phase`` of a stream (a file's ``verify``, its
    ``done``) always passes. The events themselves come from model_fetch (files, already thinned per file
    by the same rule) and ComfyUI (sampling); this only paces them for RunPod's progress channel.
    """

    def __init__(self, job: dict[str, Any], interval: float = 2.0, remote: bool = False) -> None:
        self.job = job
        self.remote = remote and "id" in job
        self.pacer = model_fetch.Pacer(interval)

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.pacer.admit((event.get("stage"), event.get("file")), event.get("phase")):
            return
        log.info("progress %s", event)
        if self.remote:
            import runpod

            try:
                runpod.serverless.progress_update(self.job, event)
            except Exception as exc:  # noqa: BLE001 - progress is best effort
                log.debug("progress update failed: %s", type(exc).__name__)


def runpod_handler(job: dict[str, Any]) -> dict[str, Any]:
    """The handler given to RunPod's SDK. A failure's answer travels as a JSON string in ``error``: the SDK
    (``rp_job.run_job``) keeps only ``error`` of a failed job, and its local API (``--serve``) and the hosted
    API pass a string through unchanged (the SDK sends its own exceptions the same way).
    ``json.loads(answer["error"])`` is the object ``--test-input`` prints: ``code``, ``field``, ``details``."""
    result = handler(job)
    if "error" not in result:
        return result
    wrapped: dict[str, Any] = {"error": json.dumps({k: v for k, v in result.items() if k != "refresh_worker"})}
    if result.get("refresh_worker"):
        wrapped["refresh_worker"] = True
    return wrapped


def handler(job: dict[str, Any]) -> dict[str, Any]:
    rt = runtime()
    reporter = ProgressReporter(job, remote=rt.settings.runpod_remote)
    result = jobs.handle(job.get("input"), rt, reporter, job_id=str(job.get("id", "local")))
    if rt.settings.refresh_worker:
        result["refresh_worker"] = True
    return result
