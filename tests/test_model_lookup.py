"""Every loader fetches on first use, through ComfyUI's hooked model lookup (real ComfyUI 0.8.0, CPU).

One ComfyUI with empty model folders. Two kinds of source:

* a manifest (``MODEL_FETCH_MANIFEST``) naming tiny weights on a loopback HTTP server, run by a
  graph of stock loaders only (``UNETLoader``, ``VAELoader``, ``LoraLoaderModelOnly``) plus the
  pack's text-encoder loader;
* the shipped UI workflow itself, its ``properties.models``/``models`` URLs pointed at a loopback
  **https** server (a test CA trusted through ``REQUESTS_CA_BUNDLE``) whose host is the only one on
  ``MODEL_FETCH_ALLOWED_HOSTS``, queued the way the editor queues it (``extra_data.extra_pnginfo``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests import graphs, tiny_weights
from tests.conftest import start_comfy
from tests.fileserver import FileServer, sha256_file
from tests.tls import make_cert, server_context
from worker import workflows
from worker.comfy_client import output_files

pytestmark = pytest.mark.comfyui

F = tiny_weights.FILES
STOCK = {F["unet_high"]: "diffusion_models", F["unet_low"]: "diffusion_models", F["vae"]: "vae",
         F["umt5"]: "text_encoders", F["lora"]: "loras"}
UI_WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "wan22_i2v_gguf.json"


@pytest.fixture(scope="module")
def env(comfyui_dir, tiny_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lookup")
    root = tmp / "models"
    root.mkdir()
    index = tiny_weights.read_index(tiny_dir)["files"]
    mirror_entries = tiny_weights.stand_in_mirror(tiny_dir, tmp / "mirror")
    cert = make_cert(tmp / "tls")
    with FileServer(tiny_dir) as plain, FileServer(tmp / "mirror", tls=server_context(cert)) as secure:
        manifest = tmp / "manifest.json"
        manifest.write_text(json.dumps({"models": [
            {"name": n, "directory": d, "url": f"{plain.url}/{n}", "hash": index[n]["sha256"], "size": index[n]["size"]}
            for n, d in STOCK.items()]}))
        running = start_comfy(comfyui_dir, tmp / "base", env={
            "MODEL_FETCH_MODELS_DIR": str(root), "MODEL_FETCH_MANIFEST": str(manifest),
            "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1", "MODEL_FETCH_ALLOWED_HOSTS": "127.0.0.1",
            "MODEL_FETCH_ALLOW_PRIVATE_URLS": "1", "REQUESTS_CA_BUNDLE": str(cert.ca), "SSL_CERT_FILE": str(cert.ca)})
        try:
            image = running.upload_input("lookup_start.png", graphs.input_png(64, 48, seed=7))
            yield SimpleNamespace(comfy=running, plain=plain, secure=secure, root=root, index=index, image=image,
                                  mirror={e["name"]: e for e in mirror_entries})
        finally:
            running.process.stop()


def queue(env, body: dict) -> requests.Response:
    return requests.post(f"{env.comfy.url}/prompt", json=body, timeout=60)


def follow(env, prompt_id: str) -> tuple[dict, list]:
    events: list = []
    entry = env.comfy.client.follow(prompt_id, deadline=time.monotonic() + 300, on_progress=events.append,
                                    is_alive=env.comfy.process.alive)
    return entry, events


def video_of(env, entry: dict) -> dict:
    videos = [f for f in output_files(entry) if f["filename"].endswith(".mp4")]
    assert len(videos) == 1, output_files(entry)
    return graphs.probe_video(env.comfy.output_path(videos[0]))


def test_stock_loaders_list_and_fetch_manifest_models(env):
    info = requests.get(f"{env.comfy.url}/object_info", timeout=60).json()
    assert F["unet_high"] in info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert F["vae"] in info["VAELoader"]["input"]["required"]["vae_name"][0]
    assert F["lora"] in info["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0]
    assert not any(env.root.rglob("*.safetensors"))
    g = graphs.wan22_i2v(image=env.image, unet_high=F["unet_high"], unet_low=F["unet_low"], vae=F["vae"],
                         text_encoder=F["umt5"], lora=F["lora"], unet_loader="UNETLoader", width=64, height=48,
                         length=5, steps=2, split=1, prefix="video/stock")
    resp = queue(env, {"prompt": g})
    assert resp.status_code == 200, resp.text
    entry, events = follow(env, resp.json()["prompt_id"])
    assert (video_of(env, entry)["frames"], video_of(env, entry)["width"]) == (5, 64)
    for name, folder in STOCK.items():
        path = env.root / folder / name
        assert path.is_file() and sha256_file(path) == env.index[name]["sha256"], name
    # Byte progress on the stock nodes that asked: the VAE loader (5) and the first UNET loader (6).
    for node, name in (("5", F["vae"]), ("6", F["unet_high"])):
        bars = [e for e in events if e.node == node]
        assert bars and bars[-1].value == bars[-1].max == env.index[name]["size"], (node, bars)


def ui_workflow(env, base_url: str) -> dict:
    """The shipped editor workflow, its embedded model URLs pointed at ``base_url`` (sha256 added)."""
    ui = json.loads(UI_WORKFLOW.read_text())
    for models in [ui.get("models") or []] + [(n.get("properties") or {}).get("models") or [] for n in ui["nodes"]]:
        for m in models:
            m["url"] = f"{base_url}/{m['name']}"
            m["hash"] = env.mirror[m["name"]]["hash"]
    return ui


def api_prompt(env, prefix: str) -> dict:
    loaded = workflows.load_workflow("wan22_i2v_gguf")
    params = {"image": env.image, "width": 64, "height": 48, "length": 5, "steps": 2}
    graph = workflows.apply_params(loaded.graph, loaded.param_map, params)
    graph["17"]["inputs"]["filename_prefix"] = prefix
    return graph


def editor_text(body: dict) -> str:
    """The text ComfyUI's frontend (1.35) shows for a refused POST /prompt: ``PromptExecutionError.toString``
    prints ``error.message + ": " + error.details``, then per node ``class_type:`` and ``- message: details``."""
    text = body["error"]["message"] + ": " + body["error"]["details"]
    for node in body.get("node_errors", {}).values():
        text += "\n" + str(node["class_type"]) + ":"
        for err in node["errors"]:
            text += "\n    - " + err["message"] + ": " + err["details"]
    return text


@pytest.mark.parametrize("base, rule", [("http://127.0.0.1:{port}", "only https:// URLs"),
                                        ("https://localhost:{port}", "not in MODEL_FETCH_ALLOWED_HOSTS")])
def test_embedded_url_breaking_a_rule_is_refused_naming_model_and_rule(env, base, rule):
    env.secure.reset_counters()
    ui = ui_workflow(env, base.format(port=env.secure.port))
    resp = queue(env, {"prompt": api_prompt(env, "video/refused"), "extra_data": {"extra_pnginfo": {"workflow": ui}}})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "model_fetch_refused"
    shown = editor_text(resp.json())  # what the editor's error dialog prints
    for name in env.mirror:
        assert shown.count(f"model '{name}'") == 1, shown  # each refusal once
    assert rule in shown
    assert "6" in resp.json()["node_errors"]  # the high-noise UNET loader is marked in the editor
    plan = requests.post(f"{env.comfy.url}/model_fetch/plan", json={"workflow": ui}, timeout=60).json()["models"]
    assert {r["state"] for r in plan} == {"refused"} and all(rule in r["reason"] for r in plan)
    # the panel's Download button sends the same workflow to /model_fetch/pull: the one error shape, one
    # refusal per file, nothing started
    pulled = requests.post(f"{env.comfy.url}/model_fetch/pull", json={"all": True, "workflow": ui}, timeout=60)
    assert pulled.status_code == 400 and pulled.json()["code"] == "model_fetch_refused", pulled.text
    assert len(pulled.json()["refusals"]) == len(env.mirror) and all(rule in r for r in pulled.json()["refusals"])
    assert not any(p.is_file() for p in env.root.rglob("*") if p.name in env.mirror)
    assert env.secure.counters.connections == 0  # nothing fetched, not even probed


def test_embedded_urls_on_an_allowed_https_host_run_on_empty_folders(env):
    ui = ui_workflow(env, env.secure.url)
    plan = requests.post(f"{env.comfy.url}/model_fetch/plan", json={"workflow": ui}, timeout=60).json()["models"]
    assert {r["name"]: r["state"] for r in plan} == {n: "missing" for n in env.mirror}
    assert all(r["origin"] == "workflow" and r["source"].startswith(env.secure.url) for r in plan)
    resp = queue(env, {"prompt": api_prompt(env, "video/embedded"), "extra_data": {"extra_pnginfo": {"workflow": ui}}})
    assert resp.status_code == 200, resp.text
    entry, events = follow(env, resp.json()["prompt_id"])
    video = video_of(env, entry)
    assert (video["frames"], video["width"], video["height"]) == (5, 64, 48)
    for name, e in env.mirror.items():
        assert (env.root / e["directory"] / name).is_file(), name
    plan = requests.post(f"{env.comfy.url}/model_fetch/plan", json={"workflow": ui}, timeout=60).json()["models"]
    assert {r["state"] for r in plan} == {"present"}


def test_plan_names_a_model_no_source_knows_with_its_folder(env):
    ui = {"nodes": [{"id": 3, "type": "VAELoader", "mode": 0, "widgets_values": ["nowhere_vae.safetensors"]}],
          "links": []}
    plan = requests.post(f"{env.comfy.url}/model_fetch/plan", json={"workflow": ui}, timeout=60).json()["models"]
    assert len(plan) == 1 and plan[0]["state"] == "unknown" and plan[0]["name"] == "nowhere_vae.safetensors"
    assert "'vae' folder" in plan[0]["reason"] and plan[0]["target"] == str(env.root / "vae")


def test_comfyui_start_up_log_is_clean(env):
    """What an artist reads when ComfyUI starts with the pack: no import failures (ComfyUI's audio nodes need
    torchaudio matching torch), no database error (the supervisor puts the database in the base directory)."""
    log = env.comfy.process.log_path.read_text(errors="replace")
    start_up = log.split("To see the GUI go to", 1)[0]
    for phrase in ("IMPORT FAILED", "Failed to initialize database", "Traceback", "Cannot import"):
        assert phrase not in start_up, start_up[-3000:]
    assert "ComfyUI's model lookup hooked" in start_up
    assert (env.comfy.base_dir / "user" / "comfyui.db").is_file()
