"""A small ComfyUI client: upload, queue, follow over the websocket, read history and files.

HTTP goes through one ``requests.Session`` with explicit timeouts; the websocket through
``websocket-client``. ``follow()`` never hangs: it reconnects when the socket drops, falls back
to ``/history`` polling, checks that ComfyUI is still alive, and stops at the deadline.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import websocket

from .errors import ComfyExecutionError, ComfyInterrupted, ComfyUnavailable, ComfyValidationError, DeadlineExceeded

log = logging.getLogger(__name__)

HTTP_TIMEOUT = (5.0, 60.0)
OUTPUT_KEYS = ("images", "gifs", "videos", "animated", "audio")


@dataclass
class Progress:
    """One progress event of a running prompt."""

    node: str | None
    value: int
    max: int


def first_node_error(node_errors: dict[str, Any], prompt: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first entry of ComfyUI's ``node_errors`` as ``{node_id, node_type, message}``."""
    for node_id, entry in (node_errors or {}).items():
        errors = entry.get("errors") or [{}]
        err = errors[0]
        message = err.get("message", "invalid input")
        if err.get("details"):
            message = f"{message}: {err['details']}"
        node_type = entry.get("class_type") or ((prompt or {}).get(node_id) or {}).get("class_type")
        return {"node_id": str(node_id), "node_type": node_type, "message": message}
    return {}


class ComfyClient:
    """Talks to one ComfyUI server at ``base_url``."""

    def __init__(self, base_url: str, client_id: str | None = None, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.session = session or requests.Session()

    # -- plain HTTP -------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        try:
            return self.session.request(method, f"{self.base_url}{path}", **kwargs)
        except requests.RequestException as exc:
            raise ComfyUnavailable(f"ComfyUI at {self.base_url} did not answer {method} {path}: {type(exc).__name__}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, **kwargs)
        if resp.status_code >= 500:
            raise ComfyUnavailable(f"ComfyUI answered {resp.status_code} to {method} {path}")
        resp.raise_for_status()
        return resp.json()

    def object_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._json("GET", "/object_info")
        return info

    def list_models(self, folder: str) -> list[str]:
        """``GET /models/{folder}``: every file ComfyUI finds for a model folder (none for an unknown folder)."""
        resp = self._request("GET", f"/models/{quote(folder, safe='')}")
        if resp.status_code == 404:
            return []
        if resp.status_code >= 500:
            raise ComfyUnavailable(f"ComfyUI answered {resp.status_code} to GET /models/{folder}")
        resp.raise_for_status()
        return [n for n in resp.json() if isinstance(n, str)]

    def upload_image(self, name: str, data: bytes, subfolder: str = "", overwrite: bool = True) -> str:
        """Upload into ComfyUI's input folder; return the name LoadImage should use."""
        files = {"image": (name, data, "application/octet-stream")}
        form = {"overwrite": "true" if overwrite else "false", "type": "input", "subfolder": subfolder}
        body = self._json("POST", "/upload/image", files=files, data=form)
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    def queue_prompt(self, prompt: dict[str, Any], api_key: str | None = None) -> str:
        """POST /prompt; raise ComfyValidationError (with node id, type, message) on 400. ``api_key``: a
        Comfy.org key for API nodes, sent as worker-comfyui sends it (``extra_data.api_key_comfy_org``,
        which ComfyUI keeps out of its history and queue)."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if api_key:
            body["extra_data"] = {"api_key_comfy_org": api_key}
        resp = self._request("POST", "/prompt", json=body)
        if resp.status_code == 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            error = body.get("error") or {}
            detail = first_node_error(body.get("node_errors") or {}, prompt)
            message = detail.pop("message", None) or error.get("message") or "ComfyUI rejected the workflow"
            raise ComfyValidationError(message, comfy_error=error.get("type"), node_errors=body.get("node_errors") or None,
                                       **detail)
        if resp.status_code >= 500:
            raise ComfyUnavailable(f"ComfyUI answered {resp.status_code} to POST /prompt")
        resp.raise_for_status()
        return str(resp.json()["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of ``prompt_id``, or None while it has not finished."""
        entry: dict[str, Any] | None = self._json("GET", f"/history/{prompt_id}").get(prompt_id)
        return entry

    def delete_history(self, prompt_id: str) -> None:
        self._request("POST", "/history", json={"delete": [prompt_id]})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt; with ``prompt_id``, only when that prompt is the one running."""
        try:
            self._request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})
        except ComfyUnavailable:
            pass

    def dequeue(self, prompt_id: str) -> None:
        """Take a prompt that has not started off ComfyUI's queue (nothing happens once it runs)."""
        self._request("POST", "/queue", json={"delete": [prompt_id]})

    # -- following a prompt -----------------------------------------------------------------
    def _connect(self, timeout: float) -> websocket.WebSocket:
        ws_url = self.base_url.replace("http://", "ws://").replace("https://", "wss://")
        return websocket.create_connection(f"{ws_url}/ws?clientId={self.client_id}", timeout=timeout)

    def follow(self, prompt_id: str, deadline: float, on_progress: Callable[[Progress], None] | None = None,
               is_alive: Callable[[], bool] | None = None, history_every: float = 5.0,
               on_node: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Wait for ``prompt_id`` to finish; return its history entry.

        ``deadline`` is a ``time.monotonic()`` value; ``on_node(node_id)`` hears each node ComfyUI starts
        executing (the worker reads the next stage's models meanwhile). Raises ComfyExecutionError,
        ComfyInterrupted, ComfyUnavailable (ComfyUI died) or DeadlineExceeded.
        """
        ws: websocket.WebSocket | None = None
        last_history = 0.0
        reconnect_delay = 0.5
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    self.interrupt()
                    raise DeadlineExceeded("the job ran past its deadline; ComfyUI was asked to interrupt it",
                                           prompt_id=prompt_id)
                if is_alive is not None and not is_alive():
                    raise ComfyUnavailable("ComfyUI died while running the job", prompt_id=prompt_id)
                if now - last_history >= history_every or ws is None:
                    last_history = now
                    entry = self._finished_entry(prompt_id)
                    if entry is not None:
                        return entry
                if ws is None:
                    try:
                        ws = self._connect(timeout=min(5.0, max(0.1, deadline - now)))
                        ws.settimeout(1.0)
                        reconnect_delay = 0.5
                        continue  # re-check history once connected: events may have been missed
                    except (OSError, websocket.WebSocketException) as exc:
                        log.warning("websocket connect failed (%s); retrying in %.1fs", type(exc).__name__, reconnect_delay)
                        time.sleep(min(reconnect_delay, max(0.0, deadline - time.monotonic())))
                        reconnect_delay = min(reconnect_delay * 2, 5.0)
                        continue
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                except (OSError, websocket.WebSocketException) as exc:
                    log.warning("websocket lost (%s); reconnecting", type(exc).__name__)
                    _close(ws)
                    ws = None
                    continue
                if not isinstance(raw, str):
                    continue  # binary preview frames
                done = self._handle_message(json.loads(raw), prompt_id, on_progress, on_node)
                if done:
                    entry = self._finished_entry(prompt_id, wait=5.0)
                    if entry is not None:
                        return entry
        finally:
            _close(ws)

    def _handle_message(self, msg: dict[str, Any], prompt_id: str, on_progress: Callable[[Progress], None] | None,
                        on_node: Callable[[str], None] | None = None) -> bool:
        kind, data = msg.get("type"), msg.get("data") or {}
        if data.get("prompt_id") not in (None, prompt_id):
            return False
        if kind == "executing" and on_node is not None and data.get("node") is not None:
            on_node(str(data["node"]))
        if kind == "progress" and on_progress is not None:
            on_progress(Progress(node=data.get("node"), value=int(data.get("value", 0)), max=int(data.get("max", 0))))
        elif kind == "execution_error":
            raise ComfyExecutionError(data.get("exception_message", "execution failed").strip(), prompt_id=prompt_id,
                                      node_id=str(data.get("node_id")), node_type=data.get("node_type"),
                                      exception_type=data.get("exception_type"))
        elif kind == "execution_interrupted":
            raise ComfyInterrupted("the run was interrupted in ComfyUI", prompt_id=prompt_id,
                                   node_id=data.get("node_id"), node_type=data.get("node_type"))
        elif kind == "execution_success":
            return True
        elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return True
        return False

    def _finished_entry(self, prompt_id: str, wait: float = 0.0) -> dict[str, Any] | None:
        """History entry if the prompt has finished; raise if it finished with an error."""
        stop = time.monotonic() + wait
        while True:
            entry = self.history(prompt_id)
            if entry is not None and (entry.get("status") or {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") == "error":
                    raise _error_from_status(status, prompt_id)
                return entry
            if time.monotonic() >= stop:
                return None
            time.sleep(0.1)


def _error_from_status(status: dict[str, Any], prompt_id: str) -> Exception:
    for name, data in status.get("messages") or []:
        if name == "execution_error":
            return ComfyExecutionError(data.get("exception_message", "execution failed").strip(), prompt_id=prompt_id,
                                       node_id=str(data.get("node_id")), node_type=data.get("node_type"),
                                       exception_type=data.get("exception_type"))
        if name == "execution_interrupted":
            return ComfyInterrupted("the run was interrupted in ComfyUI", prompt_id=prompt_id)
    return ComfyExecutionError("the run failed in ComfyUI", prompt_id=prompt_id)


def output_files(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file a history entry lists: ``{node_id, kind, filename, subfolder, type}``."""
    out = []
    for node_id, node_out in (entry.get("outputs") or {}).items():
        for kind in OUTPUT_KEYS:
            for item in node_out.get(kind) or []:
                if isinstance(item, dict) and item.get("filename"):
                    out.append({"node_id": node_id, "kind": kind, "filename": item["filename"],
                                "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")})
    return out


def _close(ws: websocket.WebSocket | None) -> None:
    if ws is not None:
        try:
            ws.close()
        except Exception:  # noqa: BLE001 - closing a dead socket may raise anything
            pass
