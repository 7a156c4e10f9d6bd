"""Fixtures of the reliability suites: scratch directories that are always deleted (large files), one 1 GiB model."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fileserver import make_file
from tests.reliability.helpers import GiB


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh directory, removed after the test (pytest's tmp_path would keep large files around)."""
    path = Path(tempfile.mkdtemp(prefix="model-fetch-reliability-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def gib_model() -> Iterator[tuple[Path, str]]:
    """A served directory holding ``model.bin`` (1 GiB of seeded pseudo-random bytes) and its sha256."""
    root = Path(tempfile.mkdtemp(prefix="model-fetch-reliability-src-"))
    try:
        yield root, make_file(root / "model.bin", GiB, seed=2024)
    finally:
        shutil.rmtree(root, ignore_errors=True)
