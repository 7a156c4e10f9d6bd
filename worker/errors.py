"""Failure kinds of the worker, each with a stable ``code`` the job answer carries (every code of the
project, worker, model_fetch and pack, is in docs/errors.md).

A job never ends in a bare traceback: every failure becomes ``WorkerError.to_answer()``,
``{"error": <message>, "code": <code>, "details": [<lines>], ...fields}`` (``details`` as
worker-comfyui clients read it: the message, then one line per ComfyUI node error).
"""

from __future__ import annotations

from typing import Any

from model_fetch.errors import CodedError

from .redact import clip_all


def detail_lines(exc: CodedError) -> list[str]:
    """The message, then one line per ComfyUI node error (``node_errors``), as worker-comfyui clients read them."""
    lines = [exc.message]
    for node_id, node in (exc.fields.get("node_errors") or {}).items():
        for err in (node.get("errors") or []) if isinstance(node, dict) else []:
            lines.append(f"node {node_id} ({node.get('class_type', '?')}): {err.get('message', '')}"
                         + (f": {err['details']}" if err.get("details") else ""))
    return lines


def job_answer(exc: CodedError) -> dict[str, Any]:
    """A job's answer to any coded error: its ``to_answer()`` plus ``details``, long base64-like runs in any
    string cut (``worker.redact``): no echo of user data."""
    answer: dict[str, Any] = clip_all({**CodedError.to_answer(exc), "details": detail_lines(exc)})
    return answer


class WorkerError(CodedError):
    """Base class: a message a user can act on, a stable code (``internal_error`` unless refined) and answer fields."""

    def to_answer(self) -> dict[str, Any]:
        return job_answer(self)


class InvalidInput(WorkerError):
    """The job input is malformed; ``field`` names the offending field."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class ComfyUnavailable(WorkerError):
    """ComfyUI did not start, stopped answering, or died."""

    code = "comfyui_unavailable"


class ComfyNotFound(ComfyUnavailable):
    """No ComfyUI install where the worker looks (``COMFYUI_DIR``, ./.comfyui, /comfyui); ``reason`` says so."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="comfyui_not_found")


class ComfyValidationError(WorkerError):
    """ComfyUI refused the graph (HTTP 400 with ``node_errors``)."""

    code = "workflow_invalid"


class ComfyExecutionError(WorkerError):
    """A node raised while the graph ran."""

    code = "execution_error"


class ComfyInterrupted(WorkerError):
    """The run was interrupted inside ComfyUI."""

    code = "execution_interrupted"


class DeadlineExceeded(WorkerError):
    """The job ran past its deadline; ComfyUI was asked to interrupt it."""

    code = "deadline_exceeded"


class ModelsUnavailable(WorkerError):
    """A model the workflow needs could not be planned or fetched."""

    code = "models_unavailable"


class OutputTooLarge(WorkerError):
    """Base64 outputs would exceed the serverless payload limit."""

    code = "output_too_large"


class OutputUnavailable(WorkerError):
    """Checked before the run: S3 output has no credentials, or its bucket does not answer or take a write."""

    code = "output_unavailable"


class OutputUploadFailed(WorkerError):
    """Uploading outputs to the bucket failed."""

    code = "output_upload_failed"


class GpuUnavailable(WorkerError):
    """A GPU was expected (``WORKER_EXPECT_GPU``) but CUDA is unusable: driver, build or device."""

    code = "gpu_unavailable"


class LoraNotApplied(WorkerError):
    """A LoRA in the workflow applied to none of the model's weights (made for another model family)."""

    code = "lora_not_applied"
