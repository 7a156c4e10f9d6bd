"""The pack's routes answer every failure in the one error shape (docs/errors.md), never a bare 500 page.

A ComfyUI whose model_fetch settings are unusable (``MODEL_FETCH_CONNECTIONS=many``) keeps its loaders
working on files on disk, and its ``/model_fetch/*`` routes answer 503 ``fetch_disabled`` naming the
variable. Below that, ``routes.answers_errors`` on a loopback aiohttp server: a coded error answers its
code and HTTP status, anything else ``internal_error`` without the exception's text.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
import requests

from tests import tiny_weights
from tests.conftest import link_models, start_comfy

pytestmark = pytest.mark.comfyui
ON_DISK = tiny_weights.FILES["unet_low"]


@pytest.fixture(scope="module")
def comfy_with_bad_settings(comfyui_dir, tiny_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-settings")
    link_models(tiny_dir, base / "models", {ON_DISK: "diffusion_models"})
    running = start_comfy(comfyui_dir, base, env={"MODEL_FETCH_MODELS_DIR": str(base / "models"),
                                                  "MODEL_FETCH_CONNECTIONS": "many"})
    try:
        yield running
    finally:
        running.process.stop()


def test_unusable_settings_answer_fetch_disabled_and_the_loaders_keep_working(comfy_with_bad_settings):
    url = comfy_with_bad_settings.url
    for method, path, body in (("GET", "/model_fetch/status", None), ("POST", "/model_fetch/plan", {"workflow": {}}),
                               ("POST", "/api/model_fetch/pull", {"all": True})):
        resp = requests.request(method, url + path, json=body, timeout=30)
        assert resp.status_code == 503, (path, resp.text)
        answer = resp.json()
        assert answer["code"] == "fetch_disabled" and "MODEL_FETCH_CONNECTIONS='many'" in answer["error"], answer
    bad = requests.post(url + "/model_fetch/pull", data=b"not json", timeout=30)
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request"  # the body is checked first
    choices = requests.get(url + "/object_info/WanUnetLoaderGGUF", timeout=30).json()
    assert ON_DISK in choices["WanUnetLoaderGGUF"]["input"]["required"]["unet_name"][0]
    log = comfy_with_bad_settings.process.log_path.read_text(errors="replace")
    assert log.count("fetch on first use disabled") == 1, log[-3000:]


def test_answers_errors_gives_every_failure_a_code(comfyui_dir, monkeypatch):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    monkeypatch.syspath_prepend(str(comfyui_dir))
    if "comfy.cli_args" not in sys.modules:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
    from custom_nodes.wan_serverless import errors, routes

    @routes.answers_errors
    async def refuses(request: web.Request) -> web.Response:
        raise errors.BadRequest("expected a UI workflow")

    @routes.answers_errors
    async def breaks(request: web.Request) -> web.Response:
        raise KeyError("secret-path/HF_TOKEN=abc")

    async def call() -> list[tuple[int, dict]]:
        app = web.Application()
        app.router.add_get("/refuses", refuses)
        app.router.add_get("/breaks", breaks)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path in ("/refuses", "/breaks"):
                resp = await client.get(path)
                out.append((resp.status, await resp.json()))
            return out

    (refused_status, refused), (broken_status, broken) = asyncio.run(call())
    assert (refused_status, refused) == (400, {"error": "expected a UI workflow", "code": "bad_request"})
    assert broken_status == 500 and broken["code"] == "internal_error" and "/breaks" in broken["error"]
    assert "secret" not in broken["error"] and "HF_TOKEN" not in broken["error"]  # the traceback goes to the log only
