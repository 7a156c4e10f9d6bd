"""Shared fixtures: real ComfyUI 0.8.0 on CPU, tiny WAN 2.2 weights, temporary model trees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny_weights
from worker import comfyui_home

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TINY_CACHE = Path(os.environ.get("TINY_WEIGHTS_DIR", PROJECT_ROOT / ".cache" / "tiny-weights"))

# Which ComfyUI folder each tiny file goes in.
TINY_FOLDERS = {
    tiny_weights.FILES["unet_high"]: "diffusion_models",
    tiny_weights.FILES["unet_low"]: "diffusion_models",
    tiny_weights.FILES["vae"]: "vae",
    tiny_weights.FILES["umt5"]: "text_encoders",
    tiny_weights.FILES["umt5_gguf"]: "text_encoders",
    tiny_weights.FILES["lora"]: "loras",
}


def pytest_report_header(config):
    found = comfyui_home.find()
    if found is None:
        return f"!!! ComfyUI-dependent tests WILL BE SKIPPED: {comfyui_home.missing_message()}"
    return f"ComfyUI: {found} (version {comfyui_home.version_of(found)})"


def pytest_collection_modifyitems(config, items):
    if comfyui_home.find() is not None:
        return
    skip = pytest.mark.skip(reason=comfyui_home.missing_message())
    for item in items:
        if "comfyui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    found = comfyui_home.find()
    if found is None:
        pytest.skip(comfyui_home.missing_message())
    return found


@pytest.fixture(scope="session")
def tiny_dir(comfyui_dir) -> Path:
    """Directory holding every tiny weight file (generated once, cached in .cache/tiny-weights)."""
    if tiny_weights.read_index(TINY_CACHE) is None:
        subprocess.run([sys.executable, "-m", "tests.tiny_weights", str(TINY_CACHE), "--comfyui", str(comfyui_dir)],
                       cwd=PROJECT_ROOT, check=True, capture_output=True)
    return TINY_CACHE


def link_models(tiny: Path, models_dir: Path, names: dict[str, str] | None = None) -> Path:
    """Populate a ComfyUI models tree with links to tiny files: ``{file_name: folder}``."""
    names = names if names is not None else {**TINY_FOLDERS, **{
        tiny_weights.gguf_name(s, q): "diffusion_models" for s in ("high", "low") for q in tiny_weights.GGUF_UNET_TYPES}}
    for name, folder in names.items():
        dest = models_dir / folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.symlink_to(tiny / name)
    return models_dir


class RunningComfy:
    """A started ComfyUI with a client; ``run(graph)`` queues and waits for it."""

    def __init__(self, process, base_dir: Path):
        from worker.comfy_client import ComfyClient

        self.process = process
        self.base_dir = base_dir
        self.client = ComfyClient(process.url)

    @property
    def url(self) -> str:
        return self.process.url

    def run(self, graph: dict, timeout: float = 300.0) -> dict:
        import time

        prompt_id = self.client.queue_prompt(graph)
        return self.client.follow(prompt_id, deadline=time.monotonic() + timeout, is_alive=self.process.alive)

    def upload_input(self, name: str, data: bytes) -> str:
        return self.client.upload_image(name, data)

    def output_path(self, item: dict) -> Path:
        return self.base_dir / item.get("type", "output") / item.get("subfolder", "") / item["filename"]


def start_comfy(comfyui_dir: Path, base_dir: Path, extra_model_paths: list[Path] | None = None,
                env: dict[str, str] | None = None) -> RunningComfy:
    from worker.supervisor import ComfyProcess, ComfySettings

    settings = ComfySettings(comfyui_dir=comfyui_dir, base_dir=base_dir, extra_model_paths=extra_model_paths or [],
                             cpu=True, env=env or {})
    process = ComfyProcess(settings)
    process.start()
    try:
        process.wait_ready(timeout=240)
    except BaseException:
        process.stop()
        raise
    return RunningComfy(process, base_dir)


@pytest.fixture(scope="session")
def comfy(comfyui_dir, tiny_dir, tmp_path_factory):
    """One ComfyUI for the session, every tiny model visible in its default models folder."""
    base = tmp_path_factory.mktemp("comfy-base")
    link_models(tiny_dir, base / "models")
    running = start_comfy(comfyui_dir, base)
    yield running
    running.process.stop()
    if os.environ.get("KEEP_COMFY_LOGS"):
        shutil.copy(running.process.log_path, PROJECT_ROOT / "comfyui-test.log")
