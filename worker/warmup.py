"""``WORKER_PRELOAD=warmup``: once ComfyUI answers, run the default workflow at a tiny size, so its loaders,
kernels and caches are warm before the first job.

A job is never failed by it: before a job queues its prompt it calls ``yield_to_job``, which stops a warm-up
not yet queued, takes a queued one off ComfyUI's queue, or interrupts a running one *by its prompt id*
(ComfyUI 0.8 ignores a targeted interrupt for a prompt that is not running, and clears the flag when the
next prompt starts). The job's prompt then runs next; what the warm-up loaded stays in ComfyUI's caches.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING, Protocol

from .comfy_client import ComfyClient

if TYPE_CHECKING:
    import model_fetch

    from .config import WorkerSettings


class WarmupHost(Protocol):
    """What a warm-up needs of the worker's runtime (worker.runtime.Runtime), passed in: nothing imports back."""

    settings: WorkerSettings
    fetch_settings: model_fetch.Settings

    def ready(self) -> ComfyClient: ...
    def store(self) -> model_fetch.Store: ...
    def comfy_folders(self) -> model_fetch.ComfyFolders: ...
    def alive(self) -> bool: ...

log = logging.getLogger(__name__)
__all__ = ["Warmup", "WARMUP_PARAMS"]

#: The smallest legal run of the default workflow: one step per stage.
WARMUP_PARAMS = {"width": 16, "height": 16, "length": 1, "steps": 2, "seed": 0, "fps": 8}
WARMUP_DEADLINE = 3600.0


def tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A grey RGB PNG (the warm-up's start image), without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Warmup:
    """One warm-up run in a background thread; ``state`` is pending, running, done, skipped, yielded or failed."""

    def __init__(self, runtime: WarmupHost) -> None:
        self.runtime = runtime
        self.state = "pending"
        self.prompt_id: str | None = None
        self.seconds: float | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="warmup", daemon=True)

    def start(self) -> "Warmup":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        import model_fetch

        from .workflows import apply_params, load_workflow

        rt, t0 = self.runtime, time.monotonic()
        client: ComfyClient | None = None
        try:
            client = rt.ready()
            loaded = load_workflow(rt.settings.default_workflow, workflows_dir=rt.settings.workflows_dir)
            plan = model_fetch.plan(loaded.graph, settings=rt.fetch_settings, store=rt.store(), comfy=rt.comfy_folders())
            if plan.missing() or loaded.param_map is None:
                self.state = "skipped"
                log.info("warm-up skipped: %s", "models not on disk yet" if plan.missing() else "no parameter map")
                return
            image = client.upload_image("warmup_start.png", tiny_png())
            graph = apply_params(loaded.graph, loaded.param_map, {**WARMUP_PARAMS, "image": image})
            with self._lock:
                if self._cancelled:
                    self.state = "yielded"
                    return
                self.prompt_id = client.queue_prompt(graph)
                self.state = "running"
            log.info("warm-up: the default workflow at %dx%d, %d steps", WARMUP_PARAMS["width"], WARMUP_PARAMS["height"],
                     WARMUP_PARAMS["steps"])
            client.follow(self.prompt_id, deadline=time.monotonic() + WARMUP_DEADLINE, is_alive=rt.alive)
            self.state, self.seconds = "done", round(time.monotonic() - t0, 3)
            log.info("warm-up done in %.1fs", self.seconds)
        except Exception as exc:  # noqa: BLE001 - a warm-up is best effort; the job reports real failures
            with self._lock:
                self.state = "yielded" if self._cancelled else "failed"
            log.info("warm-up %s: %s", self.state, exc)
        finally:
            if client is not None and self.prompt_id:
                client.delete_history(self.prompt_id)

    def yield_to_job(self, client: ComfyClient) -> None:
        """Called before a job queues its prompt: the warm-up gives way (never raises, never waits long)."""
        with self._lock:
            self._cancelled = True
            prompt_id = self.prompt_id if self.state == "running" else None
        if prompt_id is None:
            return
        try:
            client.dequeue(prompt_id)
            client.interrupt(prompt_id)
        except Exception as exc:  # noqa: BLE001 - the job runs after the warm-up either way
            log.info("warm-up: could not stop it (%s); the job waits for it", type(exc).__name__)
