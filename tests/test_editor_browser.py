"""The artist's path in a real browser: open the shipped workflow in ComfyUI's editor with empty model
folders, press Run, get a video.

Debian's ``chromium`` (no browser download) driven headless by Playwright from PyPI, against real
ComfyUI 0.8.0 on CPU with the pack, an empty models root and a manifest whose sources are a local
mirror (tiny stand-ins under the production names on a loopback HTTP server, paced so the downloads
take several seconds). The workflow file is opened through the editor's own file input (what Open
and drag-and-drop use), the size set to 64x48 and 9 frames in the node's widgets, Run pressed; the page is reloaded during the downloads.
Screenshots go to ``.cache/browser/`` for review (docs/editor-*.png are copies of them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests import graphs
from tests.editor_harness import (OUTPUT_VIDEO, SMALL_VIDEO, WORKFLOW, editor_session,
                                  shot)

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]  # a browser and a full run: ~1.5 min

FORBIDDEN = ("Value not in list", "Only allowed suffixes")

# One look at the page: the models panel's progress cells and any forbidden phrase on screen.
LOOK = """phrases => ({
  progress: [...document.querySelectorAll('#wan-model-fetch .wan-mf-downloading')].map((td) => td.textContent),
  forbidden: phrases.filter((p) => document.body.innerText.includes(p)),
})"""


def watch(page, until: str, timeout: float, seen: dict) -> object:
    """Look at the page every 0.2 s (recording into ``seen``) until ``until`` returns a value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        look = page.evaluate(LOOK, list(FORBIDDEN))
        seen["progress"] += [p for p in look["progress"] if p not in seen["progress"]]
        seen["forbidden"] += look["forbidden"]
        value = page.evaluate(until)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not seen within {timeout}s: {until}")


@pytest.fixture(scope="module")
def editor(comfyui_dir, tiny_dir, tmp_path_factory):
    with editor_session(comfyui_dir, tiny_dir, tmp_path_factory.mktemp("editor"), "comfyui-editor.log") as session:
        yield session


def test_open_shipped_workflow_press_run_get_video(editor):
    page = editor.page
    prompt_answers: list[str] = []
    page.on("response", lambda r: prompt_answers.append(r.text()) if r.url.endswith("/prompt")
            and r.request.method == "POST" else None)
    page.goto(editor.comfy.url)
    page.wait_for_function("window.app && window.app.graph && document.querySelector('#comfy-file-input')",
                           timeout=120_000)

    # Open the workflow file the way Open / drag-and-drop does.
    page.set_input_files("#comfy-file-input", str(WORKFLOW))
    panel = page.locator("#wan-model-fetch")
    names = [entry["name"] for entry in editor.entries]
    page.wait_for_function("names => names.every((n) => document.querySelector(`#wan-model-fetch tr[data-name='${n}']`))",
                           arg=names, timeout=60_000)
    assert panel.locator("tr").count() == 5
    for entry in editor.entries:
        row = panel.locator(f"tr[data-name='{entry['name']}']")
        assert row.get_attribute("data-state") == "missing"
        text = row.inner_text()
        assert f"into {entry['directory']}" in text and editor.comfy.url.split(":")[0] in text
    assert "to download" in panel.inner_text()
    shot(page, "01-opened.png")
    shot(page, "01-panel.png", panel)

    # A 64x48, 9-frame video, set in the WanImageToVideo node's widgets.
    page.evaluate(SMALL_VIDEO)

    seen: dict = {"progress": [], "forbidden": []}
    watch(page, "() => true", 1, seen)  # after loading
    page.locator("[data-testid='queue-button']").first.click()
    watch(page, "() => [...document.querySelectorAll('#wan-model-fetch .wan-mf-downloading')]"
                ".some((td) => td.textContent.includes('/s'))", 120, seen)  # bytes, rate and ETA shown
    shot(page, "02-downloading.png")
    shot(page, "02-panel-progress.png", panel)
    # Downloads run on the server: after a reload the panel shows them again.
    page.reload()
    page.wait_for_function("window.app && window.app.graph", timeout=120_000)
    watch(page, "() => !!document.querySelector('#wan-model-fetch .wan-mf-downloading')", 60, seen)
    # The output node receives the video (what the editor previews in it).
    item = watch(page, OUTPUT_VIDEO, 300, seen)
    page.evaluate("() => { const n = window.app.graph.nodes.find((n) => n.type === 'SaveVideo'); "
                  "window.app.canvas.centerOnNode(n); window.app.graph.setDirtyCanvas(true, true); }")
    video = page.locator("video")
    video.first.wait_for(state="attached", timeout=30_000)
    time.sleep(1)
    shot(page, "03-video.png")
    assert "view" in (video.first.get_attribute("src") or "") and item["filename"] in video.first.get_attribute("src")

    assert not seen["forbidden"], seen["forbidden"]
    final_text = page.evaluate("document.body.innerText")
    for phrase in FORBIDDEN:
        assert phrase not in final_text
        assert not any(phrase in answer for answer in prompt_answers)
    assert prompt_answers and all('"prompt_id"' in a for a in prompt_answers), prompt_answers
    # The progress display showed bytes moving ("x MB of y MB · rate · ETA").
    assert any(" of " in p and "/s" in p for p in seen["progress"]), seen["progress"]
    for entry in editor.entries:
        assert (editor.root / entry["directory"] / entry["name"]).is_file(), entry["name"]
    # The video in the output node is the one ComfyUI wrote: 9 frames of 64x48.
    found = list((editor.base / "output").rglob(item["filename"]))
    assert found, item
    probe = graphs.probe_video(found[0])
    assert (probe["frames"], probe["width"], probe["height"]) == (9, 64, 48)


def refused_workflow(path: Path) -> Path:
    """Two UNET loaders and a VAE loader whose models only the workflow names, at http:// URLs (refused)."""
    models = {"diffusion_models": "refused_unet.safetensors", "vae": "refused_vae.safetensors"}
    nodes = [{"id": i, "type": kind, "pos": [100, 150 * i], "size": [300, 80], "mode": 0, "flags": {}, "order": i,
              "inputs": [], "outputs": [], "widgets_values": widgets,
              "properties": {"models": [{"name": models[folder], "directory": folder,
                                         "url": f"http://127.0.0.1:9/{models[folder]}"}]}}
             for i, (kind, folder, widgets) in enumerate([("UNETLoader", "diffusion_models", [models["diffusion_models"], "default"]),
                                                           ("UNETLoader", "diffusion_models", [models["diffusion_models"], "default"]),
                                                           ("VAELoader", "vae", [models["vae"]])], start=1)]
    path.write_text(json.dumps({"last_node_id": 3, "last_link_id": 0, "nodes": nodes, "links": [], "groups": [],
                                "config": {}, "extra": {}, "version": 0.4}))
    return path


def test_a_refused_model_url_is_shown_once(editor, tmp_path):
    """The editor's error dialog (``PromptExecutionError``) lists each refusal once; every loader is marked."""
    page = editor.page
    page.goto(editor.comfy.url)
    page.wait_for_function("window.app && window.app.graph && document.querySelector('#comfy-file-input')",
                           timeout=120_000)
    page.set_input_files("#comfy-file-input", str(refused_workflow(tmp_path / "refused.json")))
    page.wait_for_function("() => window.app.graph.nodes.length === 3", timeout=60_000)
    answers: list[str] = []
    page.on("response", lambda r: answers.append(r.text()) if r.url.endswith("/prompt")
            and r.request.method == "POST" else None)
    page.locator("[data-testid='queue-button']").first.click()
    page.wait_for_function("() => document.body.innerText.includes('only https:// URLs')", timeout=60_000)
    time.sleep(1)
    shot(page, "04-refused.png")
    assert answers and "model_fetch_refused" in answers[0], answers
    text = page.evaluate("document.body.innerText")
    for name in ("refused_unet.safetensors", "refused_vae.safetensors"):
        assert text.count(f"model '{name}'") == 1, text
    assert text.count("Model download refused") == 1, text
    assert set(json.loads(answers[0])["node_errors"]) == {"1", "2", "3"}
