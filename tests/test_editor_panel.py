"""The models panel never misleads, in a real browser (Debian's chromium driven by Playwright) against
real ComfyUI 0.8.0 on CPU with the pack, an empty models root and a local mirror of tiny stand-ins
(paced so downloads take seconds), as test_editor_browser.py sets it up.

In order, on one page: ComfyUI's fresh default graph (its v1-5 checkpoint no source knows) opens no
panel but marks the node, and View › "Models for this workflow" lists it with no button; a workflow
with something to download opens the panel, its button stays in view beside a ✗ row, and the rows
follow dropdown changes and removed nodes; Stop halts a running download on the server with its
``.part`` kept, the labels of the downloaded models follow the disk without a reload, the Model
Library lists the GGUFs, and Run resumes the stopped download and makes the video.
Screenshots go to ``.cache/browser/panel-*.png`` (docs/editor-panel-*.png are copies of them).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from model_fetch._store import part_path
from tests import graphs
from tests.editor_harness import OUTPUT_VIDEO, WORKFLOW, editor_session, shot

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]  # a browser and a full run: ~2 min

MARK, CROSS = "\u2913", "\u2717"
ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
GGUFS = ["wan2.2_i2v_high_noise_14B_Q5_0.gguf", "wan2.2_i2v_low_noise_14B_Q5_0.gguf"]
EXTRA_VAE = "wan_2.1_vae_other.safetensors"  # in the manifest, used by no shipped node
MISLEADING = ["Downloading on the server\u2026"]  # the old disabled button
# What the panel shows now: each row's state and text, the button, anything misleading.
LOOK = """phrases => ({
  rows: [...document.querySelectorAll('#wan-model-fetch tr')].map((tr) => [tr.dataset.name, tr.dataset.state, tr.innerText]),
  button: document.querySelector('#wan-model-fetch .wan-mf-pull')?.textContent ?? null,
  intro: document.querySelector('#wan-model-fetch .wan-mf-intro')?.textContent ?? null,
  misleading: phrases.filter((p) => document.body.innerText.includes(p)),
})"""
# The text the canvas draws in each model widget (ComboWidget._displayValue), by node type.
LABELS = """() => Object.fromEntries(window.app.graph.nodes.filter((n) => n.widgets?.some((w) => w.type === 'combo'))
  .map((n) => [n.id, n.widgets.filter((w) => w.type === 'combo').map((w) => w._displayValue)]))"""


class Page:
    """The page plus every look taken at it (for the never-misleading checks at the end)."""

    def __init__(self, page) -> None:
        self.page, self.seen = page, []

    def look(self) -> dict:
        look = self.page.evaluate(LOOK, MISLEADING)
        self.seen.append(look)
        return look

    def until(self, check, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            look = self.look()
            value = check(look)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"not seen within {timeout}s: {what}; last look: {self.seen[-1]}")

    def states(self) -> dict[str, str]:
        return {name: state for name, state, _ in self.look()["rows"]}


def _extra_vae(tmp: Path, server, entries: list[dict]) -> list[dict]:
    """A second VAE in the manifest that no shipped node uses."""
    vae = next(e for e in entries if e["directory"] == "vae")
    shutil.copyfile(tmp / "mirror" / vae["name"], tmp / "mirror" / EXTRA_VAE)
    return [{**vae, "name": EXTRA_VAE, "url": f"{server.url}/{EXTRA_VAE}"}]


@pytest.fixture(scope="module")
def editor(comfyui_dir, tiny_dir, tmp_path_factory):
    with editor_session(comfyui_dir, tiny_dir, tmp_path_factory.mktemp("panel"), "comfyui-panel.log",
                        _extra_vae) as session:
        session.page = Page(session.page)
        yield session


def open_workflow(page, workflow: dict, path: Path) -> None:
    """Open ``workflow`` the way File › Open and drag-and-drop do (the editor's file input)."""
    path.write_text(json.dumps(workflow))
    page.set_input_files("#comfy-file-input", str(path))


def test_default_graph_opens_no_panel_marks_the_unknown_model_and_the_view_menu_lists_it(editor):
    p, page = editor.page, editor.page.page
    page.goto(editor.comfy.url)
    page.wait_for_function("window.app?.graph?.nodes?.some((n) => n.type === 'CheckpointLoaderSimple')", timeout=120_000)
    # The plan has been read once the unknown checkpoint is marked on its node (the editor's red outline).
    page.wait_for_function("window.app.graph.nodes.find((n) => n.type === 'CheckpointLoaderSimple').has_errors === true",
                           timeout=60_000)
    time.sleep(2)
    assert page.locator("#wan-model-fetch").count() == 0  # nothing to download: no panel pops up
    shown = page.evaluate("window.app.graph.nodes.find((n) => n.type === 'CheckpointLoaderSimple').widgets[0]._displayValue")
    assert shown.startswith(f"{CROSS} v1-5-pruned-emaonly-fp16.safetensors") and "no source" in shown
    shot(page, "panel-01-default-graph.png")

    page.locator(".comfy-menu-button-wrapper").first.click()
    page.get_by_role("menuitem", name="View").first.hover()
    page.get_by_role("menuitem", name="Models for this workflow").first.click()
    p.until(lambda look: look["rows"], 30, "the panel opened from the View menu")
    look = p.look()
    assert [(n, s) for n, s, _ in look["rows"]] == [("v1-5-pruned-emaonly-fp16.safetensors", "unknown")]
    assert "no source knows it" in look["rows"][0][2]
    assert look["button"] is None  # nothing it could start: no button
    shot(page, "panel-02-reopened.png", page.locator("#wan-model-fetch"))
    page.locator("#wan-model-fetch .wan-mf-close").click()
    assert page.locator("#wan-model-fetch").count() == 0


def test_panel_follows_the_graph_and_keeps_its_button_in_view(editor):
    p, page = editor.page, editor.page.page
    page.set_viewport_size({"width": 1280, "height": 520})
    workflow = json.loads(WORKFLOW.read_text())
    vae_node = next(n for n in workflow["nodes"] if n["type"] == "VAELoader")
    vae_node["widgets_values"][0] = "not_in_any_manifest.safetensors"
    open_workflow(page, workflow, editor.tmp / "with_unknown.json")
    p.until(lambda look: len(look["rows"]) == 5, 60, "the panel opened by itself with five rows")
    states = p.states()
    assert states.pop("not_in_any_manifest.safetensors") == "unknown"
    assert set(states.values()) == {"missing"}
    button = page.locator("#wan-model-fetch .wan-mf-pull")
    assert button.text_content() == "Download 4 file(s) now on the server"
    box = button.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 520, box  # in view beside the ✗ row
    shot(page, "panel-03-small-window.png")

    # A dropdown change to a model not downloaded yet: the panel follows; the old name, used by no node, goes.
    page.evaluate("""name => {
      const node = window.app.graph.nodes.find((n) => n.type === 'VAELoader');
      const widget = node.widgets[0];
      widget.value = name;
      widget.callback?.(name, window.app.canvas, node);
    }""", EXTRA_VAE)
    p.until(lambda look: p.states().get(EXTRA_VAE) == "missing" and "not_in_any_manifest.safetensors" not in p.states(),
            30, "the changed dropdown in the panel")
    assert page.locator("#wan-model-fetch .wan-mf-pull").text_content() == "Download 5 file(s) now on the server"
    # Nodes removed: the LoRA no node uses any more leaves the list.
    page.evaluate("""() => { for (const n of window.app.graph.nodes.filter((n) => n.type === 'LoraLoaderModelOnly'))
      window.app.graph.remove(n); }""")
    lora = next(e["name"] for e in editor.entries if e["directory"] == "loras")
    p.until(lambda look: lora not in p.states() and len(look["rows"]) == 4, 30, "the removed LoRA gone from the panel")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_stop_keeps_the_part_labels_follow_the_disk_and_run_resumes(editor):
    p, page, server, root = editor.page, editor.page.page, editor.server, editor.root
    workflow = json.loads(WORKFLOW.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "WanImageToVideo":
            node["widgets_values"][:3] = [64, 48, 9]  # a 64x48, 9-frame video
    open_workflow(page, workflow, editor.tmp / "shipped.json")
    p.until(lambda look: len(look["rows"]) == 5 and {s for _, s, _ in look["rows"]} == {"missing"}, 60, "five rows")
    labels = page.evaluate(LABELS)
    assert any(label.startswith(f"{MARK} {GGUFS[0]}") for row in labels.values() for label in row), labels

    page.locator("#wan-model-fetch .wan-mf-pull").click()
    p.until(lambda look: any(n == ENCODER and s == "downloading" and "/s" in t for n, s, t in look["rows"]), 60,
            "the text encoder downloading, with a rate")
    first = len(p.seen) - 1
    time.sleep(3)  # a few refreshes of the running download
    p.look()
    # Downloads go on after closing the panel or cancelling the run: the panel says so.
    assert "go on when you close this panel or cancel the run" in p.seen[-1]["intro"]
    shot(page, "panel-04-downloading.png", page.locator("#wan-model-fetch"))
    page.locator(f"#wan-model-fetch tr[data-name='{ENCODER}'] .wan-mf-stop").click()
    p.until(lambda look: p.states().get(ENCODER) == "partial", 30, "the stopped download paused")
    # Once shown, rate and ETA stay on screen while it downloads (smoothed; no blinking in and out).
    running = [t for look in p.seen[first:] for n, s, t in look["rows"] if n == ENCODER and s == "downloading"]
    assert len(running) >= 3 and all("/s" in t and "ETA" in t for t in running), running
    final = root / "text_encoders" / ENCODER
    assert part_path(final).exists() and not final.exists()  # the server stopped it and kept what had arrived
    served = server.counters.bytes_by_path[f"/{ENCODER}"]
    time.sleep(2)
    assert server.counters.bytes_by_path[f"/{ENCODER}"] == served  # nothing more is downloaded
    p.until(lambda look: [s for n, s, _ in look["rows"] if n != ENCODER] == ["present"] * 4, 120, "the others on disk")
    look = p.look()
    assert "next Run resumes" in dict((n, t) for n, _, t in look["rows"])[ENCODER]
    assert look["button"] == "Resume 1 download(s) now on the server"
    shot(page, "panel-05-stopped.png", page.locator("#wan-model-fetch"))

    # The labels follow the disk, without a reload: the GGUFs plain, the paused encoder still marked.
    page.wait_for_function("ggufs => { const all = Object.values((" + LABELS + ")()).flat();"
                           " return ggufs.every((g) => all.includes(g)); }", arg=GGUFS, timeout=30_000)
    encoder_label = next(label for row in page.evaluate(LABELS).values() for label in row if ENCODER in label)
    assert encoder_label.startswith(MARK), encoder_label

    # The Model Library lists the GGUFs on disk.
    page.locator("#wan-model-fetch .wan-mf-close").click()
    page.locator(".model-library-tab-button").first.click()
    library = page.locator(".model-lib-tree-explorer").first
    library.get_by_text("diffusion_models", exact=True).first.click()
    for name in GGUFS:
        library.get_by_text(name.removesuffix(".gguf")).first.wait_for(timeout=30_000)
    shot(page, "panel-06-model-library.png")
    page.locator(".model-library-tab-button").first.click()

    # Run: the stopped download resumes from its .part, and the video comes.
    server.reset_counters()
    page.locator("[data-testid='queue-button']").first.click()
    item = p.until(lambda look: page.evaluate(OUTPUT_VIDEO), 300, "the video in the output node")
    size = next(e["size"] for e in editor.entries if e["name"] == ENCODER)
    assert final.is_file() and not part_path(final).exists()
    assert server.counters.bytes_by_path[f"/{ENCODER}"] < size  # resumed, not fetched again from the start
    found = list((editor.base / "output").rglob(item["filename"]))
    assert found and graphs.probe_video(found[0])["frames"] == 9
    assert not any(look["misleading"] for look in p.seen), [look["misleading"] for look in p.seen if look["misleading"]]
