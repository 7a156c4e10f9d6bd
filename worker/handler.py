"""The RunPod handler: ``handler(job)`` → a result or a structured error, with progress updates."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

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
    """Sends progress to the RunPod client (at most every ``interval`` s, stage changes at once); logs it locally."""

    def __init__(self, job: dict, interval: float = 2.0) -> None:
        self.job = job
        self.interval = interval
        self.last = 0.0
        self.last_stage: str | None = None
        self.remote = bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB")) and "id" in job

    def __call__(self, event: dict) -> None:
        now = time.monotonic()
        stage = event.get("stage")
        if stage == self.last_stage and now - self.last < self.interval:
            return
        self.last, self.last_stage = now, stage
        log.info("progress %s", event)
        if self.remote:
            import runpod

            try:
                runpod.serverless.progress_update(self.job, event)
            except Exception as exc:  # noqa: BLE001 - progress is best effort
                log.debug("progress update failed: %s", type(exc).__name__)


def handler(job: dict[str, Any]) -> dict[str, Any]:
    rt = runtime()
    result = jobs.handle(job.get("input"), rt, ProgressReporter(job), job_id=str(job.get("id", "local")))
    if rt.settings.refresh_worker:
        result["refresh_worker"] = True
    return result
