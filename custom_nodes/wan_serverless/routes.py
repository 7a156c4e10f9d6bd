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

Errors are ``CodedError.to_answer()``, ``{"error": message, "code": ..., ...fields}`` (``answers_errors``):
400 ``bad_request`` (body), 400 ``model_unknown`` (with ``unknown``: the names no manifest lists), 400
``model_fetch_refused`` (a workflow source breaks a rule; ``refusals``), 500 with model_fetch's code
(``manifest_invalid``, ...), 503 ``fetch_disabled``, 500 ``internal_error`` for anything unexpected.
Work that touches the disk runs in a thread, never on ComfyUI's event loop.

library.py adds the pack's ``.gguf`` files to the Model Library's ``/experiment/models/{folder}``.

A middleware checks the model sources embedded in every ``POST /prompt`` before ComfyUI sees it
(``workflow_plan.admit_prompt``): refused sources answer 400 in ComfyUI's own error shape.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from model_fetch.errors import CodedError

from . import library, pack_fetch, workflow_plan
from .errors import BadRequest, FetchDisabled, PackError, SourcesRefused

log = logging.getLogger(__name__)
_registered: set[int] = set()
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
PULL_USAGE = 'expected {"names": ["<model file name>", ...]} or {"all": true}'


def answer(exc: CodedError) -> web.Response:
    """``exc.to_answer()`` with the HTTP status of its kind (a pack error's own, 500 for any other)."""
    return web.json_response(exc.to_answer(), status=exc.http_status if isinstance(exc, PackError) else 500)


def answers_errors(route: Route) -> Route:
    """``route`` with every failure answered in the one error shape: a coded error with its code, anything
    else as ``internal_error`` (its traceback goes to ComfyUI's log, not to the client)."""

    @functools.wraps(route)
    async def answered(request: web.Request) -> web.StreamResponse:
        try:
            return await route(request)
        except CodedError as exc:
            return answer(exc)
        except Exception:  # noqa: BLE001 - a client gets an answer, never a bare 500 page
            log.exception("model_fetch: %s %s failed", request.method, request.path)
            return answer(CodedError(f"internal error in {request.path}: see ComfyUI's log"))

    return answered


def _fetcher() -> pack_fetch.PackFetch:
    """The pack's fetch context; ``FetchDisabled`` when fetch on first use is off."""
    fetcher = pack_fetch.context()
    if fetcher is None:
        raise FetchDisabled(f"fetch on first use is disabled: {pack_fetch.disabled_reason()}")
    return fetcher


def _status_document(fetcher: pack_fetch.PackFetch) -> dict[str, Any]:
    store = fetcher.catalog.store
    try:
        write_root = str(store.write_root())
    except PermissionError:
        write_root = None
    return {"enabled": True, "roots": [str(r) for r in store.roots], "write_root": write_root,
            "manifests": [str(p) for p in fetcher.catalog.manifest_paths()], "models": fetcher.catalog.status()}


def parse_names(body: Any, extra_fields: tuple[str, ...] = ()) -> list[str] | None:
    """The names a pull or cancel request asks for, None for all; ``BadRequest`` saying why when malformed."""
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object: {PULL_USAGE}")
    unknown_keys = set(body) - {"names", "all", *extra_fields}
    if unknown_keys:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown_keys))}: {PULL_USAGE}")
    if body.get("all") is True and "names" not in body:
        return None
    names = body.get("names")
    if "all" in body or not isinstance(names, list) or not names \
            or not all(isinstance(n, str) and n.strip() for n in names):
        raise BadRequest(PULL_USAGE)
    return [n.strip() for n in names]


def parse_pull(body: Any) -> list[str] | None:
    """``parse_names`` for a pull, which may carry the ``workflow`` whose embedded sources it fetches."""
    names = parse_names(body, extra_fields=("workflow",))
    if "workflow" in body and not isinstance(body["workflow"], dict):
        raise BadRequest('"workflow" must be a UI workflow (a JSON object)')
    return names


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, or None when it is not JSON (the parsers then say what is expected)."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


@answers_errors
async def get_status(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_status_document, _fetcher()))


@answers_errors
async def post_pull(request: web.Request) -> web.Response:
    body = await _json_body(request)
    names = parse_pull(body)
    fetcher = _fetcher()
    await asyncio.to_thread(workflow_plan.admit_workflow, fetcher.catalog, body.get("workflow"))
    started = await asyncio.to_thread(fetcher.catalog.pull, names)
    log.info("model_fetch pull: started %d, already running %d, present %d",
             len(started["started"]), len(started["running"]), len(started["present"]))
    return web.json_response(started, status=202)


@answers_errors
async def post_cancel(request: web.Request) -> web.Response:
    names = parse_names(await _json_body(request))
    result = _fetcher().downloads.cancel(names)
    log.info("model_fetch cancel: %d download(s) stopping", len(result["cancelled"]))
    return web.json_response(result)


@answers_errors
async def post_plan(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("workflow"), dict):
        raise BadRequest('expected {"workflow": <UI workflow>}')
    fetcher = _fetcher()
    return web.json_response({"models": await asyncio.to_thread(workflow_plan.plan_rows, fetcher.catalog, body["workflow"])})


@web.middleware
async def check_embedded_sources(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a queued prompt whose workflow-embedded model URLs break a rule, before ComfyUI queues it."""
    if request.method != "POST" or request.path not in ("/prompt", "/api/prompt"):
        return await handler(request)
    fetcher = pack_fetch.context()
    body = await _json_body(request)
    if fetcher is not None and isinstance(body, dict):
        try:
            await asyncio.to_thread(workflow_plan.admit_prompt, fetcher.catalog, body)
        except SourcesRefused as exc:
            log.warning("prompt refused: %s", exc.message)
            return web.json_response(workflow_plan.comfy_error_body(exc, body), status=400)
    return await handler(request)


def register(server: Any) -> None:
    """Add the routes to ``server`` (ComfyUI's PromptServer instance, untyped), once."""
    if id(server) in _registered:
        return
    _registered.add(id(server))
    server.routes.get("/model_fetch/status")(get_status)
    server.routes.post("/model_fetch/pull")(post_pull)
    server.routes.post("/model_fetch/plan")(post_plan)
    server.routes.post("/model_fetch/cancel")(post_cancel)
    server.app.middlewares.append(check_embedded_sources)
    server.app.middlewares.append(library.list_gguf_files)  # the app is not frozen while packs load
