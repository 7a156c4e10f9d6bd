"""The type checker and the linter run in `make test` (configured in pyproject.toml): mypy strict on
model_fetch and worker, basic on the pack; ruff on everything we ship. A failure shows their output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_mypy_finds_no_type_error():
    result = _run("mypy")
    assert result.returncode == 0, f"mypy (pyproject.toml [tool.mypy]):\n{result.stdout}{result.stderr}"


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, f"ruff check (pyproject.toml [tool.ruff]):\n{result.stdout}{result.stderr}"


def test_mypy_catches_a_settings_field_that_does_not_exist(tmp_path):
    """The bug that broke S3 output by environment: jobs.py read ``OutputSettings.bucket_endpoint_url``
    after the field had moved. With this configuration the checker fails on such a read."""
    probe = tmp_path / "reads_a_missing_field.py"
    probe.write_text("from worker.config import WorkerSettings\n\n\n"
                     "def bucket(settings: WorkerSettings) -> str | None:\n"
                     "    return settings.output.bucket_endpoint_url\n")
    result = _run("mypy", "--strict", "--no-error-summary", str(probe))
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"OutputSettings" has no attribute "bucket_endpoint_url"' in result.stdout, result.stdout
