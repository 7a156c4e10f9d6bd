"""A worker started with ``--serve`` (runpod's local API), driven the way a client drives it: a
``status`` job over ``/runsync``, the tiny WAN job over ``/run`` then ``/stream`` and ``/status``,
and again over ``/runsync``. Shared by the runtime-only environment test and the image test.

RunPod's local API simulates the hosted one (all routes POST here; the hosted ``/status`` and ``/stream``
are GET): ``/run`` only stores the job, ``/status/<id>`` runs it,
and ``/stream/<id>`` answers FAILED "handler must be a generator" for a handler that returns its
result (ours, like worker-comfyui's), leaving the job in place.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.graphs import input_png

IMAGE = base64.b64encode(input_png(64, 48)).decode()
TINY = {"image": IMAGE, "width": 64, "height": 48, "length": 9, "steps": 4, "fps": 8, "seed": 7,
        "prompt": "a cat walks slowly across the street"}


@dataclass
class Session:
    """The answers of one client session against the local API."""

    status: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)
    polled: dict = field(default_factory=dict)
    runsync: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def videos(self) -> list[str]:
        """The base64 videos of the two tiny jobs."""
        return [answer["output"]["images"][0]["data"] for answer in (self.polled, self.runsync)]


def wait_until_up(url: str, alive: Callable[[], bool], log_text: Callable[[], str], timeout: float = 600) -> None:
    """Until the worker logged "worker ready" and the API server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), "worker exited:\n" + log_text()[-4000:]
        if "worker ready" in log_text():
            try:
                requests.get(f"{url}/docs", timeout=5)
                return
            except requests.RequestException:
                pass
        time.sleep(1)
    raise AssertionError("worker not up in time:\n" + log_text()[-4000:])


def exercise(url: str, timeout: float = 900) -> Session:
    """status over /runsync; the tiny job over /run, /stream, /status; the tiny job over /runsync."""
    s = Session()
    post = lambda path, body: requests.post(f"{url}{path}", json=body, timeout=timeout).json()  # noqa: E731
    t0 = time.monotonic()
    s.status = post("/runsync", {"input": {"action": "status"}})
    s.seconds["status"] = time.monotonic() - t0
    job = {"input": {"workflow": "wan22_i2v_gguf", "params": TINY}}
    s.run = post("/run", job)
    s.stream = post(f"/stream/{s.run['id']}", None)
    t0 = time.monotonic()
    s.polled = post(f"/status/{s.run['id']}", None)
    s.seconds["first_job"] = time.monotonic() - t0
    t0 = time.monotonic()
    s.runsync = post("/runsync", {"input": {"workflow": "wan22_i2v_gguf", "params": {**TINY, "seed": 8}}})
    s.seconds["second_job"] = time.monotonic() - t0
    return s


def check(s: Session, tmp: Path, probe_video: Callable[[Path], dict]) -> None:
    """The answers a worker-comfyui client expects; each video decodes to 9 frames of 64×48."""
    assert s.status["status"] == "COMPLETED" and s.status["output"]["status"] == "success", s.status
    assert s.run["status"] == "IN_PROGRESS" and s.run["id"], s.run
    assert s.stream["status"] == "FAILED" and "generator" in s.stream["error"], s.stream
    for answer in (s.polled, s.runsync):
        assert answer.get("status") == "COMPLETED", json.dumps(answer)[:2000]
    assert len(s.polled["output"]["models"]["fetched"]) == 5  # the first job filled the empty volume
    assert s.runsync["output"]["models"]["fetched"] == []
    for n, data in enumerate(s.videos()):
        path = tmp / f"video{n}.mp4"
        path.write_bytes(base64.b64decode(data))
        info = probe_video(path)
        assert (info["frames"], info["width"], info["height"]) == (9, 64, 48)


def payload_leaks(s: Session, log: str) -> list[str]:
    """Which pieces of the jobs' base64 (the input image, the output videos) appear in ``log``."""
    pieces = {"input image": IMAGE[40:120]}
    for n, data in enumerate(s.videos()):
        pieces[f"video {n} (start)"] = data[100:180]
        pieces[f"video {n} (end)"] = data[-90:-10]
    return [name for name, piece in pieces.items() if piece in log]
