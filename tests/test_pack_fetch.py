"""Fetch on first use in real ComfyUI 0.8.0 (CPU): manifest models listed before they exist, fetched when run.

One ComfyUI for the module, configured as a deployment would be: ``MODEL_FETCH_MODELS_DIR`` (one
models root, mapped into ComfyUI with ``model_fetch.write_paths``), ``MODEL_FETCH_MANIFEST`` naming
tiny weight files that a loopback HTTP server serves (sha256 and size pinned), no default manifest.
Only the VAE (read by ComfyUI's stock VAELoader) and one model no manifest lists are on disk at first.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import model_fetch
from tests import graphs, tiny_weights
from tests.conftest import link_models, start_comfy
from tests.fileserver import FileServer
from worker.comfy_client import output_files
from worker.errors import ComfyExecutionError, ComfyInterrupted, ComfyValidationError

pytestmark = pytest.mark.comfyui

F = tiny_weights.FILES
DM, TE = "diffusion_models", "text_encoders"
Q8_HIGH, Q8_LOW = tiny_weights.gguf_name("high", "Q8_0"), tiny_weights.gguf_name("low", "Q8_0")
Q5_HIGH, F16_HIGH = tiny_weights.gguf_name("high", "Q5_0"), tiny_weights.gguf_name("high", "F16")
DENSE_HIGH = F["unet_high"]  # a .safetensors manifest model: listed by WanUnetLoaderGGUF, not by UnetLoaderGGUF
UMT5 = F["umt5_gguf"]
ON_DISK = F["unet_low"]  # on disk from the start, in no manifest
LORA = F["lora"]  # a manifest model for no loader of this pack, fetched by the pull of all models
MANIFEST = {Q8_HIGH: DM, Q8_LOW: DM, Q5_HIGH: DM, F16_HIGH: DM, DENSE_HIGH: DM, UMT5: TE, LORA: "loras"}
BROKEN = "broken_Q8_0.gguf"  # listed in the manifest, its URL answers 404
CHUNK = 128 * 1024  # small chunks, so a download's journal (what other processes see) advances in steps
SLOW = 16_000  # bytes/s per connection: a download crawls until the test has seen what it looks for
PROBE = 1  # model_fetch's HTTP probe reads byte 0 (Range: bytes=0-0) before the download


@pytest.fixture(scope="module")
def env(comfyui_dir, tiny_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pack-fetch")
    root = tmp / "models"
    link_models(tiny_dir, root, {F["vae"]: "vae", ON_DISK: DM})
    index = tiny_weights.read_index(tiny_dir)["files"]
    with FileServer(tiny_dir) as server:
        manifest = tmp / "manifest.json"
        manifest.write_text(json.dumps({"models": [
            {"name": name, "directory": folder, "url": f"{server.url}/{name}", "hash": index[name]["sha256"],
             "size": index[name]["size"]} for name, folder in MANIFEST.items()]
            + [{"name": BROKEN, "directory": DM, "url": f"{server.url}/no-such-file.gguf"}]}))
        settings = model_fetch.Settings(models_dirs=[root], manifests=[manifest], include_default_manifest=False,
                                        chunk_size=CHUNK)
        paths = model_fetch.write_paths(tmp / "extra_model_paths.yaml", settings=settings)
        running = start_comfy(comfyui_dir, tmp / "base", extra_model_paths=[paths], env={
            "MODEL_FETCH_MODELS_DIR": str(root), "MODEL_FETCH_MANIFEST": str(manifest),
            "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1", "MODEL_FETCH_CHUNK_MB": str(CHUNK / (1 << 20))})
        try:
            image = running.upload_input("fetch_start.png", graphs.input_png(64, 48, seed=5))
            yield SimpleNamespace(comfy=running, server=server, root=root, settings=settings, index=index,
                                  image=image, manifest=model_fetch.load_manifest([manifest], include_default=False))
        finally:
            running.process.stop()
            if os.environ.get("KEEP_COMFY_LOGS"):
                Path("comfyui-pack-fetch.log").write_bytes(running.process.log_path.read_bytes())


def size(env, name: str) -> int | None:
    return env.index[name]["size"] if name in env.index else None


def served(env, name: str) -> int:
    return env.server.counters.bytes_by_path[f"/{name}"]


def status(env) -> dict:
    resp = requests.get(f"{env.comfy.url}/model_fetch/status", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def rows(env) -> dict[str, dict]:
    return {row["name"]: row for row in status(env)["models"]}


def pull(env, body) -> requests.Response:
    return requests.post(f"{env.comfy.url}/model_fetch/pull", json=body, timeout=30)


def graph(env, unet_high: str, unet_low: str = Q8_LOW, text_encoder: str = UMT5, video: bool = True,
          prefix: str = "fetch") -> dict:
    g = graphs.wan22_i2v(image=env.image, unet_high=unet_high, unet_low=unet_low, vae=F["vae"],
                         text_encoder=text_encoder, unet_loader="WanUnetLoaderGGUF", width=64, height=48, length=5,
                         steps=2, split=1, prefix=f"video/{prefix}")
    if not video:  # the sampled latent is enough output
        for node in ("13", "14", "15"):
            del g[node]
        g["18"] = {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": f"latents/{prefix}"}}
    return g


def run(env, g: dict, timeout: float = 300.0) -> tuple[dict, list]:
    """Queue ``g`` (raises ComfyValidationError when refused) and follow it; return (history entry, progress events)."""
    client = env.comfy.client
    prompt_id = client.queue_prompt(g)
    events: list = []
    entry = client.follow(prompt_id, deadline=time.monotonic() + timeout, on_progress=events.append,
                          is_alive=env.comfy.process.alive)
    return entry, events


def have(env, *names: str) -> None:
    """Put ``names`` in the models root from the test process (no-op when present), unthrottled."""
    model_fetch.ensure([env.manifest.find(n, MANIFEST[n]) for n in names], settings=env.settings,
                       store=model_fetch.Store([env.root]))


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


# --- listing ---------------------------------------------------------------------------------------

def test_object_info_lists_missing_manifest_models_marked(env):
    info = requests.get(f"{env.comfy.url}/object_info", timeout=30).json()
    ggufs = {Q8_HIGH, Q8_LOW, Q5_HIGH, F16_HIGH, BROKEN}
    for node, inp, on_disk, missing in (("WanUnetLoaderGGUF", "unet_name", [ON_DISK], ggufs | {DENSE_HIGH}),
                                        ("UnetLoaderGGUF", "unet_name", [], ggufs),
                                        ("WanTextEncoderLoader", "clip_name", [], {UMT5}),
                                        ("CLIPLoaderGGUF", "clip_name", [], {UMT5})):
        choices, options = info[node]["input"]["required"][inp]
        # Plain file names, what is on disk first: the stored workflow value never carries a marker.
        assert choices == on_disk + sorted(missing), node
        marked = options["model_fetch"]["missing"]
        assert set(marked) == missing, node
        for name in missing:
            assert marked[name]["size"] == size(env, name) and marked[name]["state"] == "missing"
            assert marked[name]["label"].startswith("\u2913 " + name) and "downloads on first run" in marked[name]["label"]
            assert name in options["tooltip"]
        assert "not downloaded yet" in options["tooltip"]
    js = requests.get(f"{env.comfy.url}/extensions/wan_serverless/model_fetch.js", timeout=30)
    assert js.status_code == 200 and "getOptionLabel" in js.text


FAKE_APP = "export const app = { registerExtension(ext) { globalThis.extension = ext; } };\n"
FAKE_API = "export const api = { fetchApi: async () => ({ ok: false }), addEventListener() {} };\n"
LABELS = """
import "./extensions/wan_serverless/model_fetch.js";
import { readFileSync } from "node:fs";
const info = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = {};
for (const [type, def] of Object.entries(info)) {
  await globalThis.extension.beforeRegisterNodeDef({}, def);
  // A node as the frontend creates it: a combo widget per list input, its values the choices.
  const widgets = Object.entries(def.input.required ?? {}).filter(([, spec]) => Array.isArray(spec[0]))
    .map(([name, spec]) => ({ name, type: "combo", options: { values: spec[0] } }));
  const node = { comfyClass: type, widgets };
  globalThis.extension.nodeCreated(node);
  for (const w of widgets) {
    if (w.options.getOptionLabel)
      out[`${type}/${w.name}`] = Object.fromEntries(w.options.values.map((v) => [v, w.options.getOptionLabel(v)]));
  }
}
console.log(JSON.stringify(out));
"""


def test_editor_extension_labels_missing_models_and_keeps_plain_values(env, tmp_path):
    """The served web extension, run in node against this ComfyUI's /object_info (only the frontend's ``app``
    object is stood in for): choices not on disk get the ⤓ label, the others keep their name, and the value
    (what a saved workflow stores) is untouched. The pinned frontend's combo widget reads ``getOptionLabel``."""
    import shutil
    import subprocess

    from comfyui_frontend_package import __file__ as frontend

    node = shutil.which("node")
    if node is None:
        pytest.skip("!!! node is not installed: the editor extension's labels are not checked (apt-get install nodejs)")
    assets = Path(frontend).parent / "static" / "assets"
    assert any("options.getOptionLabel" in f.read_text(errors="ignore") for f in assets.glob("*.js"))
    js = requests.get(f"{env.comfy.url}/extensions/wan_serverless/model_fetch.js", timeout=30).text
    (tmp_path / "extensions" / "wan_serverless").mkdir(parents=True)
    (tmp_path / "extensions" / "wan_serverless" / "model_fetch.js").write_text(js)
    panel = requests.get(f"{env.comfy.url}/extensions/wan_serverless/model_panel.js", timeout=30).text
    (tmp_path / "extensions" / "wan_serverless" / "model_panel.js").write_text(panel)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(FAKE_APP)
    (tmp_path / "scripts" / "api.js").write_text(FAKE_API)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "labels.js").write_text(LABELS)
    info = requests.get(f"{env.comfy.url}/object_info", timeout=30).json()
    info = {k: v for k, v in info.items() if k in ("WanUnetLoaderGGUF", "WanTextEncoderLoader", "VAELoader")}
    (tmp_path / "object_info.json").write_text(json.dumps(info))
    run = subprocess.run([node, "labels.js", "object_info.json"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    labels = json.loads(run.stdout)
    assert set(labels) == {"WanUnetLoaderGGUF/unet_name", "WanTextEncoderLoader/clip_name", "VAELoader/vae_name"}
    assert all(label == value for value, label in labels["VAELoader/vae_name"].items())  # no status: plain names
    unet = labels["WanUnetLoaderGGUF/unet_name"]
    missing = info["WanUnetLoaderGGUF"]["input"]["required"]["unet_name"][1]["model_fetch"]["missing"]
    assert unet[ON_DISK] == ON_DISK
    for name in missing:
        assert unet[name] == missing[name]["label"] and unet[name].startswith("\u2913 " + name)
    assert labels["WanTextEncoderLoader/clip_name"][UMT5].startswith("\u2913 " + UMT5)


def test_status_before_any_fetch(env):
    doc = status(env)
    assert doc["enabled"] is True
    assert doc["roots"] == [str(env.root)] and doc["write_root"] == str(env.root)
    by_name = {row["name"]: row for row in doc["models"]}
    assert set(by_name) == set(MANIFEST) | {BROKEN}
    for name, folder in MANIFEST.items():
        row = by_name[name]
        assert (row["directory"], row["state"], row["size"], row["done"], row["path"], row["comfyui_path"]) == \
            (folder, "missing", size(env, name), 0, None, None), row


# --- fetch when the graph runs ---------------------------------------------------------------------

def test_graph_naming_missing_models_fetches_them_then_runs(env):
    fetched = (Q8_HIGH, Q8_LOW, UMT5)
    assert all(rows(env)[name]["state"] == "missing" for name in fetched)
    before = {name: served(env, name) for name in fetched}
    entry, events = run(env, graph(env, Q8_HIGH))  # accepted although none of the three is on disk
    for name in fetched:
        assert served(env, name) - before[name] == PROBE + size(env, name), name  # each downloaded exactly once
        assert (env.root / MANIFEST[name] / name).is_file()
    # The loader nodes showed byte progress bars: total = file size, ending full.
    for node, name in (("6", Q8_HIGH), ("7", Q8_LOW), ("2", UMT5)):
        bars = [e for e in events if e.node == node]
        assert bars and all(e.max == size(env, name) for e in bars), (node, bars)
        assert bars[-1].value == size(env, name)
    videos = [f for f in output_files(entry) if f["filename"].endswith(".mp4")]
    assert len(videos) == 1
    video = graphs.probe_video(env.comfy.output_path(videos[0]))
    assert (video["frames"], video["width"], video["height"]) == (5, 64, 48)
    after = rows(env)
    for name in fetched:
        row = after[name]
        assert row["state"] == "present" and row["sha256"] == env.index[name]["sha256"]
        assert row["path"] == str(env.root / MANIFEST[name] / name) == row["comfyui_path"]
    assert after[Q5_HIGH]["state"] == "missing"
    # Now on disk, the models move to the plain part of the list.
    info = requests.get(f"{env.comfy.url}/object_info/WanUnetLoaderGGUF", timeout=30).json()
    choices, options = info["WanUnetLoaderGGUF"]["input"]["required"]["unet_name"]
    assert Q8_HIGH in choices and Q8_HIGH not in options["model_fetch"]["missing"]


def test_graph_waits_for_a_download_another_process_runs(env):
    """The test process downloads F16 (slowly); the graph needing it waits (phase wait) instead of downloading."""
    have(env, Q8_LOW, UMT5)  # the graph's other models, so that it reaches the F16 loader soon
    entry = env.manifest.find(F16_HIGH, DM)
    before = served(env, F16_HIGH)
    env.server.rate_limit = SLOW
    outcome: dict = {}

    def download() -> None:
        try:
            outcome["report"] = model_fetch.ensure([entry], settings=env.settings, store=model_fetch.Store([env.root]))
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    other = threading.Thread(target=download, daemon=True)
    try:
        other.start()
        wait_for(lambda: rows(env)[F16_HIGH]["state"] == "downloading", timeout=30)
        prompt_id = env.comfy.client.queue_prompt(graph(env, F16_HIGH, video=False, prefix="fetch-wait"))
        waiting = wait_for(lambda: (lambda r: r if r.get("phase") == "wait" else None)(rows(env)[F16_HIGH]), timeout=60)
        assert waiting["holder"].endswith(f":{os.getpid()}") and "downloaded by" in waiting["message"]
        env.server.rate_limit = None  # seen waiting: let the other download finish
        events: list = []
        env.comfy.client.follow(prompt_id, deadline=time.monotonic() + 300, on_progress=events.append,
                                is_alive=env.comfy.process.alive)
    finally:
        env.server.rate_limit = None
        other.join(60)
    assert "error" not in outcome, outcome
    assert outcome["report"].files[0].action == "downloaded"
    assert served(env, F16_HIGH) - before == PROBE + size(env, F16_HIGH)  # one download: ComfyUI only waited
    bars = [e for e in events if e.node == "6"]
    assert all(e.max == size(env, F16_HIGH) for e in bars) and bars[-1].value == size(env, F16_HIGH)
    assert len({e.value for e in bars}) >= 2, bars  # the wait reported the other process's progress
    assert rows(env)[F16_HIGH]["state"] == "present"


def test_interrupt_stops_waiting_and_the_download_completes_in_the_background(env):
    have(env, Q8_LOW, UMT5)
    before = served(env, DENSE_HIGH)
    env.server.rate_limit = SLOW
    try:
        prompt_id = env.comfy.client.queue_prompt(graph(env, DENSE_HIGH, video=False, prefix="fetch-interrupt"))
        wait_for(lambda: rows(env)[DENSE_HIGH].get("phase") == "download", timeout=60)
        t0 = time.monotonic()
        env.comfy.client.interrupt()
        with pytest.raises(ComfyInterrupted):
            env.comfy.client.follow(prompt_id, deadline=time.monotonic() + 60, is_alive=env.comfy.process.alive)
        assert time.monotonic() - t0 < 10
        assert rows(env)[DENSE_HIGH]["state"] == "downloading"  # not cancelled: it finishes for the next run
    finally:
        env.server.rate_limit = None
    wait_for(lambda: rows(env)[DENSE_HIGH]["state"] == "present", timeout=60, every=0.1)
    assert served(env, DENSE_HIGH) - before == PROBE + size(env, DENSE_HIGH)


def test_a_failed_fetch_is_an_execution_error_naming_file_folder_and_source(env):
    have(env, Q8_LOW, UMT5)
    with pytest.raises(ComfyExecutionError) as err:
        run(env, graph(env, BROKEN, video=False, prefix="fetch-broken"))
    message = str(err.value)
    assert f"could not fetch '{BROKEN}' into 'diffusion_models' from {env.server.url}/no-such-file.gguf" in message
    assert "404" in message, message
    row = rows(env)[BROKEN]
    assert row["state"] == "missing" and "404" in row["error"]


# --- routes ------------------------------------------------------------------------------------------

def test_pull_fetches_in_the_background_with_progress(env):
    assert rows(env)[Q5_HIGH]["state"] == "missing"
    before = served(env, Q5_HIGH)
    env.server.rate_limit = SLOW
    try:
        t0 = time.monotonic()
        resp = pull(env, {"names": [Q5_HIGH]})
        assert resp.status_code == 202, resp.text
        assert time.monotonic() - t0 < 2.0  # answered at once, not after the download
        assert resp.json() == {"started": [{"name": Q5_HIGH, "directory": DM}], "running": [], "present": []}
        again = pull(env, {"names": [f"{DM}/{Q5_HIGH}"]})
        assert again.status_code == 202 and again.json()["running"] == [{"name": Q5_HIGH, "directory": DM}]

        def moving() -> dict | None:
            row = rows(env)[Q5_HIGH]
            return row if row["state"] == "downloading" and 0 < row["done"] < size(env, Q5_HIGH) else None

        row = wait_for(moving, timeout=60, every=0.1)
        assert row["total"] == size(env, Q5_HIGH) and row["phase"] == "download", row
        env.server.rate_limit = None
        wait_for(lambda: rows(env)[Q5_HIGH]["state"] == "present", timeout=60, every=0.1)
    finally:
        env.server.rate_limit = None
    assert served(env, Q5_HIGH) - before == PROBE + size(env, Q5_HIGH)
    assert (env.root / DM / Q5_HIGH).is_file()
    resp = pull(env, {"names": [Q5_HIGH]})
    assert resp.status_code == 202 and resp.json()["present"] == [
        {"name": Q5_HIGH, "directory": DM, "path": str(env.root / DM / Q5_HIGH)}]


@pytest.mark.parametrize("body, code, needle", [
    ({"names": ["nope.gguf", Q5_HIGH]}, "model_unknown", "'nope.gguf'"),
    ({"names": []}, "bad_request", '"names"'),
    ({"names": "x.gguf"}, "bad_request", '"names"'),
    ({"all": True, "names": ["x.gguf"]}, "bad_request", '"all"'),
    ({"model": "x.gguf"}, "bad_request", "unknown field(s) model"),
    (["x.gguf"], "bad_request", "JSON object"),
])
def test_pull_rejects_bad_requests(env, body, code, needle):
    resp = pull(env, body)
    assert resp.status_code == 400, resp.text
    doc = resp.json()
    assert doc["code"] == code and needle in doc["error"], doc
    if code == "model_unknown":
        assert doc["unknown"] == ["nope.gguf"]


def test_pull_rejects_a_body_that_is_not_json(env):
    resp = requests.post(f"{env.comfy.url}/api/model_fetch/pull", data=b"names=x", timeout=30)
    assert resp.status_code == 400 and resp.json()["code"] == "bad_request"


def test_cancel_answers_what_it_stopped_and_rejects_bad_requests(env):
    url = f"{env.comfy.url}/model_fetch/cancel"
    bad = requests.post(url, json={"names": []}, timeout=30)
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request" and '"names"' in bad.json()["error"]
    idle = requests.post(url, json={"names": ["nothing_running.gguf"]}, timeout=30)
    assert idle.status_code == 200 and idle.json() == {"cancelled": [], "not_running": [{"name": "nothing_running.gguf"}]}
    # a running download stopped: tests/test_editor_panel.py (the editor's Stop); the engine: tests/test_fetch_http.py


def test_model_library_lists_gguf_files_on_disk(env):
    """The editor's Model Library reads /experiment/models/{folder}; ComfyUI's listing drops .gguf."""
    gguf = env.root / DM / "sub" / "library_only.gguf"  # removed again: other tests list this folder
    gguf.parent.mkdir(exist_ok=True)
    gguf.write_bytes(b"GGUF" + bytes(60))
    try:
        rows = requests.get(f"{env.comfy.url}/api/experiment/models/{DM}", timeout=30).json()
        names = [r["name"] for r in rows]
        assert ON_DISK in names and "sub/library_only.gguf" in names  # ComfyUI's own rows are kept
        row = next(r for r in rows if r["name"] == "sub/library_only.gguf")
        assert row["size"] == 64 and isinstance(row["pathIndex"], int)
        assert len(rows) == len({(r["pathIndex"], r["name"]) for r in rows})  # each file once
    finally:
        gguf.unlink()
        gguf.parent.rmdir()


def test_unknown_file_is_refused_naming_file_and_folder(env):
    with pytest.raises(ComfyValidationError) as err:
        run(env, graph(env, "nope_high.gguf"))
    message = str(err.value)
    assert "'nope_high.gguf'" in message and "'diffusion_models' folder" in message and str(env.root) in message
    assert "no model_fetch manifest lists it" in message, message
    assert err.value.fields["node_id"] == "6" and err.value.fields["node_type"] == "WanUnetLoaderGGUF"


def test_pull_all_fetches_every_manifest_model(env):
    resp = pull(env, {"all": True})
    assert resp.status_code == 202, resp.text
    doc = resp.json()
    assert {"name": LORA, "directory": "loras"} in doc["started"]
    assert sorted(i["name"] for key in ("started", "running", "present") for i in doc[key]) == sorted([*MANIFEST, BROKEN])
    wait_for(lambda: all(r["state"] == "present" for n, r in rows(env).items() if n != BROKEN), timeout=60, every=0.1)
    broken = wait_for(lambda: rows(env)[BROKEN].get("error"), timeout=60)
    assert "no-such-file.gguf" in broken and rows(env)[BROKEN]["state"] == "missing"
    assert all(served(env, name) == PROBE + size(env, name) for name in MANIFEST)  # nothing was fetched twice


# --- without model_fetch, and with unusable settings ---------------------------------------------------

MISSING_PROBE = """
import importlib.util, json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in (getattr(f, "__module__", "") or "")]
sys.path[:] = [p for p in sys.path if p not in ("", {repo!r})]
try:
    import model_fetch
    before = model_fetch.__file__
except ImportError:
    before = None
path_before = list(sys.path)
spec = importlib.util.spec_from_file_location("wan_serverless", {init!r}, submodule_search_locations=[{pack!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["wan_serverless"] = pack
try:
    spec.loader.exec_module(pack)
    error = None
except ImportError as exc:
    error = {{"type": type(exc).__name__, "message": str(exc)}}
print(json.dumps({{"before": before, "error": error, "path_changed": sys.path != path_before}}))
"""


def test_model_fetch_not_installed_the_pack_says_how_to_install_it(tmp_path):
    """model_fetch is imported normally, as an installed package (the repository the pack sits in is never put
    on sys.path); without it the pack does not load, and ComfyUI's import-failure log carries the command."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    pack = repo / "custom_nodes" / "wan_serverless"
    code = MISSING_PROBE.format(repo=str(repo), init=str(pack / "__init__.py"), pack=str(pack))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["before"] is None  # the probe really hid the installed package
    assert result["error"]["type"] == "ImportError" and not result["path_changed"]
    assert "wan_serverless needs model_fetch" in result["error"]["message"]
    assert "pip install -r " + str(pack / "requirements.txt") in result["error"]["message"]


@pytest.fixture()
def pack_offline(comfyui_dir, monkeypatch, tmp_path):
    """The pack imported in this process against ComfyUI's code, its model_fetch settings unusable (fetch on first
    use off), one model on disk."""
    import sys

    if str(comfyui_dir) not in sys.path:
        sys.path.append(str(comfyui_dir))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import folder_paths

    from custom_nodes.wan_serverless import nodes, pack_fetch

    monkeypatch.setattr(pack_fetch, "_context", None)
    monkeypatch.setattr(pack_fetch, "_disabled", None)
    monkeypatch.setenv("MODEL_FETCH_CONNECTIONS", "many")  # settings_invalid: fetch on first use turns off
    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    (folder / "on_disk.gguf").write_bytes(b"GGUF")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "diffusion_models", ([str(folder)], set()))
    return SimpleNamespace(nodes=nodes, folder=folder)


def test_with_fetch_off_the_loaders_use_files_on_disk(pack_offline, caplog):
    nodes = pack_offline.nodes
    with caplog.at_level("WARNING"):
        choices, options = nodes.WanUnetLoaderGGUF.INPUT_TYPES()["required"]["unet_name"]
        assert choices == ["on_disk.gguf"] and options["model_fetch"]["missing"] == {}
        assert nodes.list_models("diffusion_models", {".gguf"}) == ["on_disk.gguf"]
        assert nodes.resolve_model("diffusion_models", "on_disk.gguf") == str(pack_offline.folder / "on_disk.gguf")
        assert nodes.WanUnetLoaderGGUF.VALIDATE_INPUTS("on_disk.gguf") is True
        refusal = nodes.WanUnetLoaderGGUF.VALIDATE_INPUTS("absent.gguf")
        with pytest.raises(nodes.ModelNotFound) as err:
            nodes.resolve_model("diffusion_models", "absent.gguf")
    for message in (refusal, str(err.value)):
        assert "'absent.gguf'" in message and "'diffusion_models' folder" in message
        assert str(pack_offline.folder) in message and "fetch on first use is off" in message
    assert len([r for r in caplog.records if "fetch on first use disabled" in r.getMessage()]) == 1
