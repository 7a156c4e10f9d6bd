"""What a LoRA did to a model: keys applied, keys with no target (grouped by family), the model patched.

ComfyUI 0.8.0 applies a LoRA in ``comfy.lora.load_lora``, which logs ``lora key not loaded: KEY``
(a warning) for every key with no target in the model and tells nobody else: a LoRA for another
model family applies to nothing and the run still "succeeds". The report makes that visible.

The hook (the least invasive one that sees file, model and keys together): ``install()`` points the
``FUNCTION`` of the stock ``LoraLoader`` and ``LoraLoaderModelOnly`` at a method of the pack that
calls the stock method unchanged while it captures those log records, and returns the same outputs
plus a ``ui`` entry ``wan_serverless_lora`` (ComfyUI stores it in the prompt's history and sends it
in the ``executed`` message). The node also shows the report as its progress text in the editor.
No ComfyUI function is replaced: the stock methods, their results and the log lines stay as they
were. A LoRA of which no key applies stays a warning here; the worker fails the job on it
(``lora_not_applied``, worker/jobs.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LoraReport", "UI_KEY", "capture_not_loaded", "family", "install", "model_label", "report"]

UI_KEY = "wan_serverless_lora"
NOT_LOADED = "lora key not loaded: "
#: the ``FUNCTION`` name the pack gives the stock LoRA loaders (``install``)
OBSERVED_FUNCTION = "wan_serverless_observed"
SOURCE_ATTR = "wan_serverless_source"  # set on a BaseModel by the pack's loaders: the file it came from

log = logging.getLogger(__name__)


def family(key: str) -> str:
    """A LoRA key's family: its module path, block index as ``*``, adapter suffix dropped
    (``diffusion_model.blocks.7.cross_attn.k_img.lora_up.weight`` → ``blocks.*.cross_attn.k_img``)."""
    fam = re.sub(r"^(diffusion_model|model\.diffusion_model|lora_unet)[._]", "", key)
    fam = re.sub(r"\.(lora_down\.weight|lora_up\.weight|lora_A\.weight|lora_B\.weight|diff_b|diff|alpha|dora_scale)$", "", fam)
    return re.sub(r"^blocks\.\d+\.", "blocks.*.", fam)


@dataclass(frozen=True)
class LoraReport:
    """One LoRA on one model: ``applied`` of ``total`` keys; ``no_target`` key counts per family."""

    lora: str
    model: str
    total: int
    applied: int
    no_target: dict[str, int] = field(default_factory=dict)

    @property
    def none_applied(self) -> bool:
        return self.total > 0 and self.applied == 0

    def text(self) -> str:
        """One line a user reads on the node / in the job's warnings."""
        head = f"LoRA {self.lora} on {self.model}: {self.applied} of {self.total} keys applied"
        if not self.no_target:
            return head
        families = ", ".join(f"{fam} ({n})" for fam, n in sorted(self.no_target.items()))
        lead = "no key applies (is it for another model?)" if self.none_applied else "no target for"
        return f"{head}; {lead}: {families}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def model_label(model: Any) -> str:
    """The patched model as a user knows it: its source file when a loader recorded it, and ComfyUI's
    model class (``WAN21_T2V`` for WAN 2.2 I2V A14B: ComfyUI detects it as that class with in_dim 36)."""
    base = getattr(model, "model", None)
    kind = type(getattr(base, "model_config", None) or base).__name__
    source = getattr(base, SOURCE_ATTR, None)
    return f"{source} ({kind})" if source else kind


def report(lora_name: str, model: Any, keys: list[str], not_loaded: list[str]) -> LoraReport:
    """The report from the LoRA's keys and the keys ComfyUI logged as not loaded (a converted
    format may log renamed keys: they count by number)."""
    missing = set(not_loaded)
    no_target: dict[str, int] = {}
    for key in sorted(missing):
        no_target[family(key)] = no_target.get(family(key), 0) + 1
    return LoraReport(Path(lora_name).name, model_label(model), len(keys), max(0, len(keys) - len(missing)), no_target)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.keys: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(NOT_LOADED):
            self.keys.append(message[len(NOT_LOADED):])


@contextmanager
def capture_not_loaded() -> Iterator[list[str]]:
    """The keys ComfyUI logs as ``lora key not loaded`` inside the block (root logger, as it logs)."""
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.keys
    finally:
        root.removeHandler(handler)


def _show(text: str) -> None:
    """The report as the executing node's text in the editor (nothing outside a running server)."""
    try:
        from comfy_execution.utils import get_executing_context
        from server import PromptServer
    except ImportError:
        return
    executing, server = get_executing_context(), getattr(PromptServer, "instance", None)
    if executing is not None and server is not None:
        server.send_progress_text(text, executing.node_id)


def _observed(stock: Callable[..., tuple]) -> Callable[..., dict]:
    def run(self, **inputs) -> dict:
        with capture_not_loaded() as not_loaded:
            result = stock(self, **inputs)
        loaded = getattr(self, "loaded_lora", None)  # (path, state dict), set by the stock loader
        if loaded is None or inputs.get("model") is None or not (inputs.get("strength_model") or inputs.get("strength_clip")):
            return {"result": result}  # strength 0: nothing was loaded
        rep = report(inputs["lora_name"], inputs["model"], list(loaded[1]), not_loaded)
        (log.warning if rep.no_target else log.info)("%s", rep.text())
        _show(rep.text())
        return {"ui": {UI_KEY: [rep.as_dict()]}, "result": result}

    run.__doc__ = f"{stock.__qualname__}, reported (custom_nodes/wan_serverless/lora_report.py)"
    return run


def install(node_classes: Mapping[str, Any] | None = None) -> list[str]:
    """Observe the stock LoRA loaders (``LoraLoader``, ``LoraLoaderModelOnly``); return their names."""
    if node_classes is None:
        import nodes

        node_classes = nodes.NODE_CLASS_MAPPINGS
    done = []
    for name in ("LoraLoader", "LoraLoaderModelOnly"):
        cls = node_classes.get(name)
        if cls is None or cls.__dict__.get("FUNCTION") == OBSERVED_FUNCTION:
            continue
        stock = getattr(cls, cls.FUNCTION)
        setattr(cls, OBSERVED_FUNCTION, _observed(stock))
        cls.FUNCTION = OBSERVED_FUNCTION
        done.append(name)
    return done
