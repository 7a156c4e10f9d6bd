"""What the browser tests share: Debian's chromium driven by Playwright (no browser download), a
ComfyUI base directory as a returning user has it, screenshots, and the editor's own scripts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests import graphs
from tests.conftest import PROJECT_ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
WORKFLOW = PROJECT_ROOT / "workflows" / "wan22_i2v_gguf.json"
SHOTS = PROJECT_ROOT / ".cache" / "browser"
RATE = 600_000  # bytes/s per connection of the paced mirror: the 15 MB text encoder takes over 10 s

OUTPUT_VIDEO = """() => {
  for (const out of Object.values(window.app.nodeOutputs ?? {}))
    for (const item of [...(out.images ?? []), ...(out.video ?? [])])
      if (item?.filename?.endsWith('.mp4')) return item;
  return null;
}"""
# A 64x48, 9-frame video, set in the WanImageToVideo node's widgets.
SMALL_VIDEO = """() => {
  const node = window.app.graph.nodes.find((n) => n.type === 'WanImageToVideo');
  for (const [name, value] of [['width', 64], ['height', 48], ['length', 9]])
    node.widgets.find((w) => w.name === name).value = value;
  window.app.graph.setDirtyCanvas(true, true);
}"""


def prepare_base(base: Path) -> None:
    """A ComfyUI base directory with the workflow's start image, as a returning user (no first-run tutorial)."""
    (base / "input").mkdir(parents=True, exist_ok=True)
    (base / "input" / "start_image.png").write_bytes(graphs.input_png(64, 48, seed=3))
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))


def shot(page: Any, name: str, locator: Any = None, clip: dict[str, float] | None = None) -> None:
    """A screenshot into .cache/browser/; ``DOCS_SCREENSHOTS=1`` also writes it, at 64 colours, to docs/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    if locator is not None:
        locator.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), clip=clip)
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=64).save(PROJECT_ROOT / "docs" / name, optimize=True)


@contextlib.contextmanager
def editor_session(comfyui_dir: Path, tiny_dir: Path, tmp: Path, log_name: str,
                   extra_entries: Callable[[Path, Any, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
                   ) -> Iterator[SimpleNamespace]:
    """Real ComfyUI (the pack, an empty models root under ``tmp``, a manifest of tiny stand-ins on a paced
    loopback mirror, plus ``extra_entries(tmp, server, entries)``) and a chromium page, both stopped after."""
    import pytest

    from tests import tiny_weights
    from tests.conftest import start_comfy
    from tests.fileserver import FileServer

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install -y chromium)")
    root, base = tmp / "models", tmp / "base"
    root.mkdir()
    prepare_base(base)
    with FileServer(tmp / "mirror", rate_limit=RATE) as server:
        entries = tiny_weights.stand_in_mirror(tiny_dir, tmp / "mirror", base_url=server.url)
        extra = extra_entries(tmp, server, entries) if extra_entries else []
        manifest = tmp / "manifest.json"
        manifest.write_text(json.dumps({"models": entries + extra}))
        comfy = start_comfy(comfyui_dir, base, env={
            "MODEL_FETCH_MODELS_DIR": str(root), "MODEL_FETCH_MANIFEST": str(manifest),
            "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1"})
        try:
            with playwright.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                yield SimpleNamespace(page=page, comfy=comfy, root=root, entries=entries, base=base, server=server,
                                      tmp=tmp)
                browser.close()
        finally:
            comfy.process.stop()
            if os.environ.get("KEEP_COMFY_LOGS"):
                SHOTS.mkdir(parents=True, exist_ok=True)
                shutil.copy(comfy.process.log_path, SHOTS / log_name)
