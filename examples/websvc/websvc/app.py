"""The ASGI application (Starlette).

Why Starlette: a small, well-kept ASGI toolkit (the base of FastAPI) with
plain routing, JSON responses and lifespan handling, and nothing the example
does not need; uvicorn and gunicorn's UvicornWorker serve it as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import catalogue, service
from .service import FAULT_KINDS, Service

log = logging.getLogger("websvc")
ITEMS = catalogue.make()


def svc() -> Service:
    s = service.current()
    assert s is not None, "the service starts in the lifespan"
    return s


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "worker": os.getpid(), "tasks": svc().runner.mode})


async def list_items(request: Request) -> JSONResponse:
    q = request.query_params.get("q", "")
    try:
        limit = max(1, min(100, int(request.query_params.get("limit", "20"))))
    except ValueError:
        return _error(400, "limit must be an integer")
    return JSONResponse({"items": catalogue.search(ITEMS, q, limit)})


async def get_item(request: Request) -> JSONResponse:
    i = request.path_params["item_id"]
    if not 0 <= i < len(ITEMS):
        return _error(404, f"no item {i}")
    return JSONResponse(ITEMS[i])


async def tag_report(request: Request) -> JSONResponse:
    return JSONResponse(catalogue.report(ITEMS))


def _session_json(sid: str, session: dict[str, Any]) -> dict[str, Any]:
    return {"sid": sid, "user": session["user"], "created": session["created"],
            "expires": session["expires"], "data": session["data"]}


async def create_session(request: Request) -> JSONResponse:
    body = await _json_body(request)
    if body is None or not isinstance(body.get("user"), str):
        return _error(400, 'body must be a JSON object with a "user" string')
    s = svc()
    ttl = float(body.get("ttl", s.settings.session_ttl))
    data = body.get("data", {})
    if not isinstance(data, dict):
        return _error(400, '"data" must be an object')
    sid, session = s.state.create_session(body["user"], ttl, data)
    return JSONResponse(_session_json(sid, session), status_code=201)


async def get_session(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    session = svc().state.get_session(sid)
    if session is None:
        return _error(404, "no such session (or it expired)")
    return JSONResponse(_session_json(sid, session))


async def update_session(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("data", {}), dict):
        return _error(400, 'body must be a JSON object; "data" an object')
    ttl = body.get("ttl")
    session = svc().state.update_session(sid, body.get("data", {}),
                                         None if ttl is None else float(ttl))
    if session is None:
        return _error(404, "no such session (or it expired)")
    return JSONResponse(_session_json(sid, session))


async def stall(request: Request) -> JSONResponse:
    """A request that waits for a slow dependency (it does not block the loop)."""
    try:
        ms = max(0, min(600_000, int(request.query_params.get("ms", "1000"))))
    except ValueError:
        return _error(400, "ms must be an integer")
    await asyncio.sleep(ms / 1000)
    return JSONResponse({"stalled_ms": ms})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(svc().registry), media_type=CONTENT_TYPE_LATEST)


async def debug_stuck(request: Request) -> JSONResponse:
    s = svc()
    return JSONResponse({"checked_at": s.stuck_checked, "threshold": s.settings.stuck_after,
                         "worker": os.getpid(), "stuck": s.stuck})


async def debug_tasks(request: Request) -> JSONResponse:
    return JSONResponse(svc().describe_tasks())


async def debug_inflight(request: Request) -> JSONResponse:
    """This worker's requests in flight, per handler (this one included)."""
    counts: dict[str, int] = {}
    for handler, _started, _worker in list(svc().state.inflight.values()):
        counts[handler] = counts.get(handler, 0) + 1
    return JSONResponse({"worker": os.getpid(), "inflight": counts})


async def debug_fault(request: Request) -> JSONResponse:
    """Make the next run of a task fail: ?task=watchdog|metrics|expiry&kind=<a FAULT_KINDS
    kind: segv, abort, hang, memory, raise, exit, osexit> (only with --faults; see
    tasks.inject).  In thread mode segv, abort, osexit and exit end the whole service."""
    s = svc()
    if not s.settings.faults:
        return _error(404, "fault injection is off (start with --faults)")
    task = request.query_params.get("task", "")
    kind = request.query_params.get("kind", "")
    if task not in s.runner.status or kind not in FAULT_KINDS:
        return _error(400, f"task in {sorted(s.runner.status)}, kind in {FAULT_KINDS}")
    s.faults[task] = kind
    return JSONResponse({"task": task, "kind": kind, "armed_at": time.time()})


ROUTES = [
    Route("/health", health),
    Route("/items", list_items),
    Route("/items/{item_id:int}", get_item),
    Route("/report", tag_report),
    Route("/sessions", create_session, methods=["POST"]),
    Route("/sessions/{sid}", get_session, methods=["GET"]),
    Route("/sessions/{sid}", update_session, methods=["PATCH"]),
    Route("/stall", stall),
    Route("/metrics", metrics),
    Route("/debug/stuck", debug_stuck),
    Route("/debug/tasks", debug_tasks),
    Route("/debug/inflight", debug_inflight),
    Route("/debug/fault", debug_fault, methods=["POST"]),
]


def _handler_of(scope: Scope) -> str:
    for route in ROUTES:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return f"{scope['method']} {route.path}"
    return f"{scope['method']} (unrouted)"


class TrackRequests:
    """Keeps the in-flight table and the ring of request records (a plain
    ASGI middleware: no per-request task, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = service.current()
        if scope["type"] != "http" or s is None:
            await self.app(scope, receive, send)
            return
        handler = _handler_of(scope)
        state = s.state
        rid = state.request_started(handler)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            state.request_ended(rid, handler, status, time.perf_counter() - started)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Under gunicorn, post_fork (gunicorn_conf.py) made this worker's service;
    # run alone, uvicorn imports the app in the serving process: make it here.
    s = service.create()
    s.start()
    log.info("websvc worker %d serving, tasks in %s mode", os.getpid(), s.runner.mode)
    try:
        yield
    finally:
        await s.stop()
        service.forget()


app = Starlette(routes=ROUTES, lifespan=lifespan)
app.add_middleware(TrackRequests)
