"""LoRA application is reported (custom_nodes/wan_serverless/lora_report.py), in real ComfyUI 0.8.0.

The stand-in of the LightX2V I2V LoRA (its fixture: keys WAN 2.2 I2V has no target for included) on
the WAN 2.2 I2V stand-in: the exact set of keys with no target, by family, in the prompt's history
(what the worker reads) and as the LoRA node's text on the websocket (what the editor shows).
A LoRA for another model applies to nothing: still a warning in ComfyUI (the run succeeds).
"""

from __future__ import annotations

import struct
import threading
import time

import pytest
import torch
import websocket
from safetensors.torch import save_file

from custom_nodes.wan_serverless.lora_report import UI_KEY, family
from tests import graphs, layouts, tiny_weights

pytestmark = pytest.mark.comfyui

F = tiny_weights.FILES
TEXT_EVENT = 3  # ComfyUI protocol.BinaryEventTypes.TEXT


def expected_no_target(dims: dict) -> dict[str, int]:
    """Families of the fixture's keys that WAN 2.2 I2V has no target for, with their key counts."""
    wanted = layouts.load(layouts.LORA)["no_target_on_wan22_i2v"]
    out: dict[str, int] = {}
    for key in layouts.expand(layouts.LORA, dims):
        fam = family(key)
        if any(fam == w or fam.endswith("." + w) or fam.startswith(w + ".") for w in wanted):
            out[fam] = out.get(fam, 0) + 1
    return out


def test_expected_set_at_full_size():
    """What ComfyUI leaves unloaded of the full-size LoRA on WAN 2.2 I2V: 330 keys in 8 families."""
    full = expected_no_target({})
    assert full == {"blocks.*.cross_attn.k_img": 120, "blocks.*.cross_attn.v_img": 120,
                    "blocks.*.cross_attn.norm_k_img": 40, "blocks.*.diff_m": 40, "img_emb.proj.0": 2,
                    "img_emb.proj.1": 3, "img_emb.proj.3": 3, "img_emb.proj.4": 2}


class TextEvents:
    """Node texts (``send_progress_text``) broadcast on ComfyUI's websocket while a run goes on."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url.replace("http://", "ws://") + "/ws?clientId=lora-report-test",
                                              timeout=5)
        self.ws.settimeout(0.5)
        self.texts: list[tuple[str, str]] = []
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop:
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # noqa: BLE001 - closed
                return
            if isinstance(raw, bytes) and struct.unpack(">I", raw[:4])[0] == TEXT_EVENT:
                n = struct.unpack(">I", raw[4:8])[0]
                self.texts.append((raw[8:8 + n].decode(), raw[8 + n:].decode()))

    def close(self) -> None:
        time.sleep(0.5)
        self.stop = True
        self.thread.join(timeout=5)
        self.ws.close()


@pytest.fixture(scope="module")
def image(comfy):
    return comfy.upload_input("lora-report.png", graphs.input_png(64, 48))


def run(comfy, image: str, lora: str) -> tuple[dict, list[tuple[str, str]]]:
    g = graphs.wan22_i2v(image=image, unet_high=tiny_weights.gguf_name("high", "Q5_0"),
                         unet_low=tiny_weights.gguf_name("low", "Q5_0"), vae=F["vae"], text_encoder=F["umt5"],
                         lora=lora, unet_loader="WanUnetLoaderGGUF", width=32, height=32, length=1, steps=2,
                         split=1, prefix=f"video/lora-report-{lora}")
    events = TextEvents(comfy.url)
    try:
        entry = comfy.run(g)
    finally:
        events.close()
    return entry, events.texts


def test_fixture_lora_on_wan22_i2v_reports_the_exact_no_target_set(comfy, image):
    entry, texts = run(comfy, image, F["lora"])
    expected = expected_no_target(tiny_weights.LORA_DIMS)
    total = len(layouts.expand(layouts.LORA, tiny_weights.LORA_DIMS))
    for node, unet in (("16", tiny_weights.gguf_name("high", "Q5_0")), ("17", tiny_weights.gguf_name("low", "Q5_0"))):
        (rep,) = entry["outputs"][node][UI_KEY]
        assert rep["lora"] == F["lora"] and rep["model"].startswith(unet)
        assert rep["no_target"] == expected
        assert rep["total"] == total and rep["applied"] == total - sum(expected.values())
        assert (node, rep["text"]) in texts  # the node's text in the editor
        assert "blocks.*.cross_attn.k_img (6)" in rep["text"] and "img_emb.proj.1 (3)" in rep["text"]


def test_lora_for_another_model_applies_to_nothing_and_stays_a_warning(comfy, image):
    foreign = {f"diffusion_model.double_blocks.{i}.img_attn.qkv.{part}": torch.zeros(shape, dtype=torch.bfloat16)
               for i in range(2) for part, shape in (("lora_down.weight", (4, 64)), ("lora_up.weight", (192, 4)))}
    save_file(foreign, str(comfy.base_dir / "models" / "loras" / "flux_style_lora.safetensors"))
    entry, texts = run(comfy, image, "flux_style_lora.safetensors")
    assert (entry.get("status") or {}).get("status_str") == "success"
    (rep,) = entry["outputs"]["16"][UI_KEY]
    assert rep["applied"] == 0 and rep["total"] == 4 and rep["no_target"] == {"double_blocks.0.img_attn.qkv": 2,
                                                                              "double_blocks.1.img_attn.qkv": 2}
    assert "no key applies" in rep["text"] and ("16", rep["text"]) in texts
