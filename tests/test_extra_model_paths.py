"""ComfyUI's ``extra_model_paths.yaml``, written in one place (model_fetch/_extra_model_paths.py) for its two
writers: ``model-fetch paths`` (every models root, every folder alias) and the worker (a ComfyUI install's
own ``models/``, which ``--base-directory`` hides). ComfyUI's own loader reads what both write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from model_fetch import Store
from model_fetch._extra_model_paths import write_extra_model_paths
from worker.config import WorkerSettings
from worker.runtime import Runtime


def comfyui_reads(comfyui_dir: Path, config: Path, folder: str) -> tuple[str, list[str]]:
    """What ComfyUI 0.8.0 makes of ``config``: the first directory of ``folder`` and the files it lists there."""
    code = textwrap.dedent(f"""
        import json, sys; sys.path.insert(0, {str(comfyui_dir)!r})
        import folder_paths
        from utils.extra_config import load_extra_path_config
        load_extra_path_config({str(config)!r})
        print(json.dumps([folder_paths.get_folder_paths({folder!r})[0], folder_paths.get_filename_list({folder!r})]))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, names = json.loads(res.stdout.strip().splitlines()[-1])
    return first, names


def test_extra_model_paths_yaml_maps_every_folder(tmp_path):
    store = Store([tmp_path / "vol", tmp_path / "local"])
    out = write_extra_model_paths(store, tmp_path / "extra_model_paths.yaml")
    assert out.read_text().startswith("# written by `model-fetch paths`")
    doc = yaml.safe_load(out.read_text())
    first = doc["model_fetch_0"]
    assert first["base_path"] == str(tmp_path / "vol") and first["is_default"] is True
    assert set(first["diffusion_models"].split()) == {"diffusion_models", "unet"}
    assert set(first["text_encoders"].split()) == {"text_encoders", "clip"}
    for key in ("unet", "clip", "vae", "loras", "clip_vision"):
        assert key in first
    assert "is_default" not in doc["model_fetch_1"]
    assert (tmp_path / "local" / "unet").is_dir()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.comfyui
def test_comfyui_reads_our_extra_model_paths(comfyui_dir, tmp_path):
    """ComfyUI's own loader accepts the YAML and maps unet and clip to our roots."""
    store = Store([tmp_path / "vol"])
    out = write_extra_model_paths(store, tmp_path / "extra.yaml")
    (tmp_path / "vol" / "clip" / "t.safetensors").write_bytes(b"")
    assert comfyui_reads(comfyui_dir, out, "diffusion_models")[0] == str(tmp_path / "vol" / "diffusion_models")
    assert "t.safetensors" in comfyui_reads(comfyui_dir, out, "text_encoders")[1]


@pytest.mark.comfyui
def test_comfyui_reads_the_workers_map_of_its_install_models(comfyui_dir, tmp_path):
    """The worker maps every folder of the install's models/ (a custom one too) through the same writer."""
    install = tmp_path / "ComfyUI"
    for folder, name in (("loras", "style.safetensors"), ("diffusion_models", "wan.safetensors"), ("my_custom", "x.bin")):
        (install / "models" / folder).mkdir(parents=True)
        (install / "models" / folder / name).write_bytes(b"")
    runtime = Runtime(WorkerSettings(base_dir=tmp_path / "base"))
    (config,) = runtime.install_models_file(install)
    assert config == tmp_path / "base" / "comfyui_install_models.yaml"
    section = yaml.safe_load(config.read_text())["comfyui_install"]
    assert section["base_path"] == str(install / "models") and "is_default" not in section
    assert set(section) == {"base_path", "loras", "diffusion_models", "my_custom"}
    assert comfyui_reads(comfyui_dir, config, "loras")[1] == ["style.safetensors"]
    assert "wan.safetensors" in comfyui_reads(comfyui_dir, config, "diffusion_models")[1]
    # an install whose models/ is the base directory's needs no map
    assert Runtime(WorkerSettings(base_dir=install)).install_models_file(install) == []
