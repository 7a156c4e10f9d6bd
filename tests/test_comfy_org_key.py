"""`input.comfy_org_api_key` (or worker-comfyui's `api_key_comfy_org`, or `COMFY_ORG_API_KEY`) reaches
ComfyUI's POST /prompt as worker-comfyui sends it, `extra_data.api_key_comfy_org` (ComfyUI keeps that key
out of its history and queue: execution.SENSITIVE_EXTRA_DATA_KEYS), and never appears in a log or an answer.
The /prompt receiver is a loopback HTTP server that records each body and refuses the graph."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.comfy_client import ComfyClient
from worker.config import WorkerSettings
from worker.job_parse import parse_job

KEY = "comfyorg-Key-4b1d9e7c2a"


class Recorder(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        Recorder.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        data = b'{"prompt_id": "p-1", "number": 1, "node_errors": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def comfy_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.bodies.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("field", ["comfy_org_api_key", "api_key_comfy_org"])
def test_the_key_goes_in_extra_data_and_nowhere_else(comfy_url, field, caplog):
    caplog.set_level(logging.DEBUG)
    job = parse_job({"params": {"image": "https://example.com/a.png"}, field: KEY}, WorkerSettings())
    assert KEY not in repr(job)
    ComfyClient(comfy_url).queue_prompt({"1": {"class_type": "X", "inputs": {}}}, api_key=job.comfy_org_api_key)
    assert Recorder.bodies[-1]["extra_data"] == {"api_key_comfy_org": KEY}
    assert KEY not in caplog.text


def test_without_a_key_no_extra_data_and_the_environment_key_is_hidden(comfy_url, monkeypatch):
    ComfyClient(comfy_url).queue_prompt({"1": {"class_type": "X", "inputs": {}}})
    assert "extra_data" not in Recorder.bodies[-1]
    monkeypatch.setenv("COMFY_ORG_API_KEY", KEY)
    settings = WorkerSettings.from_env()
    assert settings.comfy_org_api_key == KEY and KEY not in repr(settings)
