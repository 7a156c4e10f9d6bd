"""The pack as an artist installs it, into a ComfyUI that is not ours: docs/editor.md's "Install into
your ComfyUI" commands, run as written, then the shipped workflow on empty model folders in the browser.

* "Your ComfyUI": a fresh virtual environment (``uv venv``, from uv's cache) holding only ComfyUI
  0.8.0's own requirements (its requirements.txt; every version, torch's included, as
  requirements/lock.txt pins it) and a fresh base directory. Not the project's .venv, no link to
  this repository: the pack comes from the archive, model_fetch from the wheel ``make pack`` builds.
* The commands are read out of docs/editor.md's bash block and run with bash, ``PYTHON`` and
  ``CUSTOM_NODES`` pointing at that environment and base directory.
* ComfyUI started with that Python, ``--base-directory`` and ``--cpu``; model_fetch's settings left
  to their defaults (downloads into ComfyUI's own models/), except the sources: a manifest of tiny
  stand-ins under the production names on a loopback mirror, since there is no network.
* Chromium (Playwright) opens workflows/wan22_i2v_gguf.json, the models panel lists the files to
  download, Run gives the video. Screenshots go to .cache/browser/install-*.png;
  ``DOCS_SCREENSHOTS=1`` also writes them to docs/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import graphs, tiny_weights
from tests.conftest import PROJECT_ROOT
from tests.fileserver import FileServer
from tests.editor_harness import CHROMIUM, CHROMIUM_FLAGS, OUTPUT_VIDEO, SHOTS, SMALL_VIDEO, WORKFLOW, prepare_base, shot

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]  # uv venv, make pack, pip, ComfyUI, a full run: ~2 min

DOC = PROJECT_ROOT / "docs" / "editor.md"
SECTION = "## Install into your ComfyUI"
LOCK = PROJECT_ROOT / "requirements" / "lock.txt"
UV = Path(sys.executable).with_name("uv")
# What this repository's environments have and an artist's ComfyUI must not need.
PROJECT_ONLY = {"wan-serverless", "runpod", "pytest", "playwright", "moto", "websocket-client"}


def install_commands() -> str:
    """The bash block of docs/editor.md's install section, as a reader copies it."""
    section = DOC.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def installed(python: Path) -> dict[str, str]:
    """``{normalized name: version}`` of what ``python``'s environment holds."""
    out = subprocess.run([str(UV), "pip", "list", "--python", str(python), "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {row["name"].lower().replace("_", "-"): row["version"] for row in json.loads(out)}


def fresh_comfyui_env(comfyui_dir: Path, venv: Path) -> Path:
    """A virtual environment with ComfyUI's requirements only (pip seeded, as a user's venv has it)."""
    subprocess.run([str(UV), "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(python), "-r", str(comfyui_dir / "requirements.txt"),
                    "-c", str(LOCK)], check=True)
    return python


def test_install_from_archive_then_the_shipped_workflow_gives_a_video(comfyui_dir, tiny_dir, tmp_path):
    from worker.supervisor import ComfyProcess, ComfySettings

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install -y chromium)")

    # Your ComfyUI: its own environment and a base directory with empty folders.
    python = fresh_comfyui_env(comfyui_dir, tmp_path / "venv")
    base = tmp_path / "base"
    custom_nodes = base / "custom_nodes"
    custom_nodes.mkdir(parents=True)
    before = installed(python)
    assert "model-fetch" not in before and not PROJECT_ONLY & before.keys()

    # The install section, literally.
    subprocess.run(["bash", "-euo", "pipefail", "-c", install_commands()], cwd=PROJECT_ROOT, check=True,
                   env={**os.environ, "PYTHON": str(python), "CUSTOM_NODES": str(custom_nodes)}, timeout=600)
    pack = custom_nodes / "wan_serverless"
    assert (pack / "__init__.py").is_file() and (pack / "web" / "model_fetch.js").is_file() and not pack.is_symlink()
    assert not (pack / "model_fetch").exists()  # model_fetch came as a package, not inside the archive
    after = installed(python)
    added = after.keys() - before.keys()
    assert {"model-fetch", "gguf"} <= added and not PROJECT_ONLY & after.keys(), sorted(added)
    assert {name: after[name] for name in before} == before  # nothing of ComfyUI's was changed
    code = "import model_fetch as m; print(m.__file__, len(m.load_manifest().entries))"
    where, known = subprocess.run([str(python), "-c", code], cwd=comfyui_dir, check=True, capture_output=True,
                                  text=True).stdout.split()
    assert where.startswith(str(tmp_path / "venv")) and int(known) > 0, (where, known)  # the wheel, its manifest too
    subprocess.run([str(python.parent / "model-fetch"), "--help"], check=True, capture_output=True)  # and the CLI

    prepare_base(base)

    with FileServer(tmp_path / "mirror") as server:
        entries = tiny_weights.stand_in_mirror(tiny_dir, tmp_path / "mirror", base_url=server.url)
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps({"models": entries}))
        process = ComfyProcess(ComfySettings(
            comfyui_dir=comfyui_dir, base_dir=base, cpu=True, python=str(python), link_pack=False,
            env={"MODEL_FETCH_MANIFEST": str(manifest), "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1",
                 # defaults otherwise; no volume, and model_fetch's own local root an empty folder of the test
                 "MODEL_FETCH_MODELS_DIR": "", "MODEL_FETCH_VOLUME_DIR": str(tmp_path / "no-volume"),
                 "MODEL_FETCH_LOCAL_DIR": str(tmp_path / "local")}))
        process.start()
        try:
            process.wait_ready(timeout=240)
            log = process.log_path.read_text(errors="replace")
            assert str(pack) in log and "IMPORT FAILED" not in log, process.log_tail(60)
            status = requests.get(f"{process.url}/model_fetch/status", timeout=30).json()
            assert status["enabled"] and status["write_root"] == str(base / "models"), status
            with playwright.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                try:
                    run_in_browser(browser.new_page(viewport={"width": 1280, "height": 800}), process.url, entries)
                finally:
                    browser.close()
        finally:
            process.stop()
            if os.environ.get("KEEP_COMFY_LOGS"):
                SHOTS.mkdir(parents=True, exist_ok=True)
                shutil.copy(process.log_path, SHOTS / "comfyui-install.log")

    for entry in entries:  # fetched on first use into ComfyUI's own models folders
        assert (base / "models" / entry["directory"] / entry["name"]).is_file(), entry["name"]
    videos = list((base / "output").rglob("*.mp4"))
    assert len(videos) == 1, videos
    probe = graphs.probe_video(videos[0])
    assert (probe["frames"], probe["width"], probe["height"]) == (9, 64, 48)


def run_in_browser(page, url: str, entries: list[dict]) -> None:
    """Open the shipped workflow, see the models panel, press Run, wait for the video in the output node."""
    page.goto(url)
    page.wait_for_function("window.app && window.app.graph && document.querySelector('#comfy-file-input')",
                           timeout=120_000)
    page.set_input_files("#comfy-file-input", str(WORKFLOW))
    names = [entry["name"] for entry in entries]
    page.wait_for_function("names => names.every((n) => document.querySelector(`#wan-model-fetch tr[data-name='${n}']`))",
                           arg=names, timeout=60_000)
    panel = page.locator("#wan-model-fetch")
    for name in names:
        assert panel.locator(f"tr[data-name='{name}']").get_attribute("data-state") == "missing", name
    shot(page, "install-panel.png", locator=panel)

    page.evaluate(SMALL_VIDEO)
    page.locator("[data-testid='queue-button']").first.click()
    deadline = time.monotonic() + 400
    item = None
    while item is None and time.monotonic() < deadline:
        item = page.evaluate(OUTPUT_VIDEO)
        time.sleep(0.5)
    assert item, "no video in the output node within 400 s"
    page.evaluate("() => { const n = window.app.graph.nodes.find((n) => n.type === 'SaveVideo'); "
                  "window.app.canvas.centerOnNode(n); window.app.graph.setDirtyCanvas(true, true); }")
    video = page.locator("video").first
    video.wait_for(state="attached", timeout=30_000)
    assert item["filename"] in (video.get_attribute("src") or "")
    time.sleep(1)
    shot(page, "install-video.png", clip=page.evaluate(NODE_BOX, "SaveVideo"))


# The page area around a node (its title bar, its inputs' neighbours on the left), for a screenshot.
NODE_BOX = """(type) => {
  const n = window.app.graph.nodes.find((n) => n.type === type), ds = window.app.canvas.ds;
  const rect = document.querySelector('#graph-canvas').getBoundingClientRect();
  const [x, y] = ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - 30]);
  const w = n.size[0] * ds.scale, h = (n.size[1] + 30) * ds.scale;
  return {x: rect.x + x - 320, y: rect.y + y - 20, width: w + 340, height: h + 40};
}"""
