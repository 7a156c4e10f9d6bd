"""A worker runtime for the reliability suites: real ComfyUI on CPU, tiny stand-ins of the production
models in a file:// mirror (so offline mode still works), and the known secrets in its environment."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import model_fetch
from tests import tiny_weights
from tests.reliability.helpers import AUDIT, SECRETS
from worker.config import WorkerSettings
from worker.runtime import Runtime
from worker.supervisor import free_port


class LogCapture(logging.Handler):
    """Every log record of every logger, formatted, for the secrets audit."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + (f"\n{record.exc_text}" if record.exc_text else ""))
        except Exception:  # noqa: BLE001
            self.lines.append(str(record.msg))


@contextmanager
def capture_all_logs():
    handler = LogCapture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@contextmanager
def secret_env():
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_runtime(comfyui_dir: Path, tiny_dir: Path, tmp: Path) -> Runtime:
    entries = tiny_weights.stand_in_mirror(tiny_dir, tmp / "mirror")
    manifest = tmp / "manifest.json"
    manifest.write_text(json.dumps({"models": entries}))
    fetch = model_fetch.Settings.from_env(models_dirs=[tmp / "models"], manifests=[manifest],
                                          include_default_manifest=False, min_free_bytes=0, offline=True)
    return Runtime(WorkerSettings(comfyui_dir=comfyui_dir, base_dir=tmp / "comfy", port=free_port(), cpu=True,
                                  start_timeout=240), fetch)


def audit_runtime_logs(rt: Runtime, capture: LogCapture, answers: list, where: str) -> list[str]:
    """Search our log records, every answer and ComfyUI's own log for the secret values."""
    leaks = AUDIT.check("\n".join(capture.lines), f"{where}: worker logs")
    leaks += AUDIT.check(json.dumps(answers, default=str), f"{where}: answers")
    if rt.process is not None and rt.process.log_path.exists():
        leaks += AUDIT.check(rt.process.log_path.read_text(errors="replace"), f"{where}: ComfyUI log")
    return leaks
