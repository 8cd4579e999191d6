"""The HTTP API: FastAPI over the views (queries) and the command path (commands), with tokens and problems."""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.api import callbacks, problems, reads, reports, writes
from projections.api.backend import Backend
from projections.api.console import router as console
from projections.api.open311 import open311_router

log = structlog.get_logger()

API_VERSION = "1.0.0"
REDACTED_PARAMS = frozenset({"api_key", "token", "access_token"})
"""Query parameters whose values never reach a log line (Open311 clients put their key in the query)."""


def create_app(backend: Backend) -> FastAPI:
    """The operator API on ``backend``: /v1 (gridloop's own), /open311/v2 (GeoReport v2), /healthz, /openapi.json."""
    app = FastAPI(
        title="gridloop operator API",
        version=API_VERSION,
        summary="Work orders and grid dispatch (网格化治理): commands, projected views, Open311 GeoReport v2.",
        description=(
            "Every command takes a client command id and answers with the log position it was recorded at. "
            "A query given `position` waits (bounded) until its views have read that position "
            "(read-your-writes); on timeout it answers with the current state and says so (`consistency`). "
            "Errors are RFC 9457 problem+json with the reason and the allowed actions. "
            "Authenticate with `Authorization: Bearer <token>`."
        ),
    )
    app.state.backend = backend
    problems.install(app)
    app.include_router(reads.router(backend))
    app.include_router(writes.router(backend))
    app.include_router(reports.router(backend))
    app.include_router(callbacks.router(backend))
    app.include_router(open311_router(backend))
    app.include_router(console.router())

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(console.PREFIX + "/", status_code=307)

    @app.get("/healthz", tags=["health"], summary="Liveness and how far the views have read the log")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "views": dict(backend.views.positions(backend.view_names))}

    app.add_middleware(AccessLog)
    return app


class AccessLog:
    """The access log (debug level), as plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and
    a stream per request. Ours replaces uvicorn's, which prints the raw query string, keys and all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.enabled = structlog.get_logger().is_enabled_for(logging.DEBUG)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log.debug(
                "http_request",
                method=scope["method"],
                path=scope["path"],
                query=redacted_query(scope.get("query_string", b"").decode("latin-1")),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


def redacted_query(query: str) -> str:
    """A query string with secret-bearing parameters' values replaced by ***."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{key}={'***' if key.lower() in REDACTED_PARAMS else value}" for key, value in pairs)
