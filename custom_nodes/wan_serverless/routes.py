"""HTTP routes on ComfyUI's PromptServer for fetch on first use (also under ``/api/...``).

``GET /model_fetch/status``
    200 ``{"enabled": true, "roots": [...], "write_root": str|null, "manifests": [...], "models": [row]}``;
    a row is ``{name, directory, state, size, done, total, path, sha256, holder, tiers, comfyui_path}``
    plus ``phase``/``message`` while this process downloads it and ``error`` after a failed download.
    ``state`` is model_fetch's (present, unverified, downloading, partial, missing); ``done``/``total``
    are bytes; ``comfyui_path`` is where ComfyUI's loaders find the file (it may lie outside the store).
``POST /model_fetch/plan`` with ``{"workflow": <UI workflow>}``
    200 ``{"models": [row]}``: what the workflow needs (workflow_plan.py), for the editor's panel.
``POST /model_fetch/pull`` with ``{"names": [name or "directory/name", ...]}`` or ``{"all": true}``,
    optionally with ``"workflow"`` (its embedded sources are checked and accepted first)
    202 ``{"started": [...], "running": [...], "present": [...]}`` at once; the downloads run in
    background threads and show in ``/model_fetch/status``.
``POST /model_fetch/cancel`` with ``{"names": [name or "directory/name", ...]}`` or ``{"all": true}``
    200 ``{"cancelled": [...], "not_running": [...]}``: the named downloads of this process stop
    within one received block; each ``.part`` stays (state ``partial``) and the next run resumes it.

Errors are ``{"error": message, "code": ...}``: 400 ``bad_request`` (body), 400 ``model_unknown``
(with ``unknown``: the names no manifest lists), 400 ``model_fetch_refused`` (a workflow source breaks
a rule), 500 with model_fetch's code (``manifest_invalid``, ...), 503 ``fetch_disabled``.
Work that touches the disk runs in a thread, never on ComfyUI's event loop.

library.py adds the pack's ``.gguf`` files to the Model Library's ``/experiment/models/{folder}``.

A middleware checks the model sources embedded in every ``POST /prompt`` before ComfyUI sees it
(``workflow_plan.admit_prompt``): refused sources answer 400 in ComfyUI's own error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from . import fetch, library, workflow_plan
from .errors import UnknownModels

log = logging.getLogger(__name__)
_registered: set[int] = set()


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, "code": code, **extra}, status=status)


def _context_or_error() -> fetch.PackFetch | web.Response:
    """The pack's fetch context, or the ``fetch_disabled`` answer when model_fetch is unavailable."""
    fetcher = fetch.context()
    if fetcher is None:
        return _error(503, "fetch_disabled", f"fetch on first use is disabled: {fetch.disabled_reason()}")
    return fetcher


def _status_document(fetcher: fetch.PackFetch) -> dict:
    try:
        write_root = str(fetcher.store.write_root())
    except PermissionError:
        write_root = None
    return {"enabled": True, "roots": [str(r) for r in fetcher.store.roots], "write_root": write_root,
            "manifests": [str(p) for p in fetcher.catalog.manifest_paths()], "models": fetcher.catalog.status()}


def parse_pull(body: Any) -> list[str] | None:
    """The names a pull request asks for, None for all; ValueError with the reason when malformed."""
    usage = 'expected {"names": ["<model file name>", ...]} or {"all": true}'
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object: {usage}")
    unknown_keys = set(body) - {"names", "all", "workflow"}
    if unknown_keys:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown_keys))}: {usage}")
    if "workflow" in body and not isinstance(body["workflow"], dict):
        raise ValueError('"workflow" must be a UI workflow (a JSON object)')
    if body.get("all") is True and "names" not in body:
        return None
    names = body.get("names")
    if "all" in body or not isinstance(names, list) or not names \
            or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(usage)
    return [n.strip() for n in names]


async def get_status(request: web.Request) -> web.Response:
    fetcher = _context_or_error()
    if isinstance(fetcher, web.Response):
        return fetcher
    from model_fetch import ModelFetchError  # importable once the context exists (fetch_setup)

    try:
        return web.json_response(await asyncio.to_thread(_status_document, fetcher))
    except ModelFetchError as exc:
        return _error(500, getattr(exc, "code", "model_fetch_error"), str(exc))


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, or None when it is not JSON (``parse_pull`` then says what is expected)."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


async def post_pull(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        names = parse_pull(body)
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    fetcher = _context_or_error()
    if isinstance(fetcher, web.Response):
        return fetcher
    from model_fetch import ModelFetchError  # importable once the context exists (fetch_setup)

    refused = await asyncio.to_thread(workflow_plan.admit_prompt, fetcher.catalog,
                                      {"extra_data": {"extra_pnginfo": {"workflow": body.get("workflow")}}})
    if refused is not None:
        return _error(400, "model_fetch_refused", "; ".join(refused["error"]["extra_info"]["refusals"]))
    try:
        started = await asyncio.to_thread(fetcher.catalog.pull, names)
    except UnknownModels as exc:
        return web.json_response(exc.to_answer(), status=400)
    except ModelFetchError as exc:
        return _error(500, getattr(exc, "code", "model_fetch_error"), str(exc))
    log.info("model_fetch pull: started %d, already running %d, present %d",
             len(started["started"]), len(started["running"]), len(started["present"]))
    return web.json_response(started, status=202)


async def post_cancel(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        if isinstance(body, dict) and "workflow" in body:
            raise ValueError('unknown field(s) workflow: expected {"names": ["<model file name>", ...]} or {"all": true}')
        names = parse_pull(body)
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    fetcher = _context_or_error()
    if isinstance(fetcher, web.Response):
        return fetcher
    answer = fetcher.downloads.cancel(names)
    log.info("model_fetch cancel: %d download(s) stopping", len(answer["cancelled"]))
    return web.json_response(answer)


async def post_plan(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("workflow"), dict):
        return _error(400, "bad_request", 'expected {"workflow": <UI workflow>}')
    fetcher = _context_or_error()
    if isinstance(fetcher, web.Response):
        return fetcher
    from model_fetch import ModelFetchError  # importable once the context exists (fetch_setup)

    try:
        return web.json_response({"models": await asyncio.to_thread(workflow_plan.plan_rows, fetcher.catalog, body["workflow"])})
    except ModelFetchError as exc:
        return _error(500, getattr(exc, "code", "model_fetch_error"), str(exc))


@web.middleware
async def check_embedded_sources(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse a queued prompt whose workflow-embedded model URLs break a rule, before ComfyUI queues it."""
    if request.method != "POST" or request.path not in ("/prompt", "/api/prompt"):
        return await handler(request)
    fetcher = fetch.context()
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return await handler(request)
    if fetcher is not None and isinstance(body, dict):
        refused = await asyncio.to_thread(workflow_plan.admit_prompt, fetcher.catalog, body)
        if refused is not None:
            log.warning("prompt refused: %s", "; ".join(refused["error"]["extra_info"]["refusals"]))
            return web.json_response(refused, status=400)
    return await handler(request)


def register(server: Any) -> None:
    """Add the routes to ``server`` (ComfyUI's PromptServer instance), once."""
    if id(server) in _registered:
        return
    _registered.add(id(server))
    server.routes.get("/model_fetch/status")(get_status)
    server.routes.post("/model_fetch/pull")(post_pull)
    server.routes.post("/model_fetch/plan")(post_plan)
    server.routes.post("/model_fetch/cancel")(post_cancel)
    server.app.middlewares.append(check_embedded_sources)
    server.app.middlewares.append(library.list_gguf_files)  # the app is not frozen while packs load
