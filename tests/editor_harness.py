"""What the browser tests share: Debian's chromium driven by Playwright (no browser download), a
ComfyUI base directory as a returning user has it, screenshots, and the editor's own scripts."""

from __future__ import annotations

import json
import os
from pathlib import Path
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
