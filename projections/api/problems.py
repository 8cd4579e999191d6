"""Errors over HTTP: RFC 9457 problem details (application/problem+json) from gridloop's error types."""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from engine.errors import (
    ConcurrencyConflict,
    DuplicateCommand,
    GridloopError,
    IllegalTransition,
    InvalidCommand,
    UnknownReference,
)
from projections.api.access import Principal

log = structlog.get_logger()

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:gridloop:problem:"
SHOWN_ALLOWED = 50
"""Allowed values listed in a problem at most (a catalogue has hundreds of codes)."""
ROUTING_DETAILS = {
    404: "{method} {path}: no such route (the routes are in /openapi.json)",
    405: "{method} {path}: the route does not take {method} (see allowed_methods)",
}
"""What the router's bare 404 and 405 say instead of their reason phrase."""


class Unauthenticated(GridloopError):
    """No bearer token, or one the token file does not know."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AccessDenied(GridloopError):
    """A principal asking for something outside its role or its jurisdiction."""

    def __init__(self, reason: str, allowed: Sequence[str] = ()) -> None:
        self.reason = reason
        self.allowed = tuple(allowed)
        super().__init__(reason)


def problem(
    status: int, slug: str, title: str, detail: str, headers: Mapping[str, str] | None = None, **extensions: Any
) -> Response:
    """One problem+json response: type, title, status, detail, and gridloop's extension members."""
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail, **extensions}
    sent = dict(headers or {})
    if status == 401:
        sent["WWW-Authenticate"] = 'Bearer realm="gridloop"'
    return Response(json.dumps(body, ensure_ascii=False), status, headers=sent, media_type=PROBLEM_JSON)


def from_error(exc: GridloopError) -> Response:
    """The problem an error of the engine or of access control stands for."""
    if isinstance(exc, IllegalTransition):
        return problem(
            409, "illegal-transition", "The current state does not allow this action", str(exc),
            state=exc.state, action=exc.action, allowed_actions=list(exc.allowed),
        )  # fmt: skip
    if isinstance(exc, InvalidCommand):
        return problem(
            422, "invalid-field", "A field is missing or malformed", str(exc),
            field=exc.field, problem=exc.problem, expected=exc.expected,
        )  # fmt: skip
    if isinstance(exc, UnknownReference):
        status = 404 if exc.kind in ("case", "worker", "division") else 422
        return problem(
            status, "unknown-reference", f"Unknown {exc.kind}", str(exc),
            kind=exc.kind, value=exc.value, allowed=list(exc.allowed[:SHOWN_ALLOWED]),
        )  # fmt: skip
    if isinstance(exc, DuplicateCommand):
        return problem(
            409, "duplicate-command-id", "The command id was used for another command", str(exc),
            command_id=exc.command_id, first_command=exc.first_command,
        )  # fmt: skip
    if isinstance(exc, ConcurrencyConflict):
        return problem(409, "concurrency-conflict", "Another writer kept changing the case", str(exc), retry=True)
    if isinstance(exc, Unauthenticated):
        return problem(401, "unauthenticated", "A valid bearer token is needed", exc.reason)
    if isinstance(exc, AccessDenied):
        return problem(403, "access-denied", "Not allowed", exc.reason, allowed_actions=list(exc.allowed))
    return problem(400, "refused", "Refused", str(exc))


def log_refusal(request: Request, status: int, reason: str) -> None:
    """Every denied attempt, with the principal (never its token) and the reason."""
    principal: Principal | None = getattr(request.state, "principal", None)
    log.warning(
        "access_denied",
        status=status,
        principal=principal.name if principal else None,
        role=principal.role.value if principal else None,
        jurisdiction=principal.jurisdiction if principal else None,
        method=request.method,
        path=request.url.path,
        reason=reason,
    )


def install(app: FastAPI) -> None:
    """Answer every error as problem+json: gridloop's errors, bad requests, unknown routes, and (logged) the rest."""

    async def gridloop_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GridloopError)
        response = from_error(exc)
        if isinstance(exc, Unauthenticated | AccessDenied):
            log_refusal(request, response.status_code, str(exc))
        return response

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": ".".join(str(part) for part in error.get("loc", ())), "problem": error.get("msg", "")}
            for error in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "problem": "malformed request"}
        detail = f"{first['field']}: {first['problem']}" if first["field"] else first["problem"]
        return problem(422, "invalid-request", "The request is malformed", detail, errors=errors)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        # The headers go along: a 405 must name the allowed methods in Allow (RFC 9110).
        headers = dict(exc.headers or {})
        allowed = headers.get("Allow", "")
        extensions = {"allowed_methods": allowed.split(", ")} if allowed else {}
        detail = str(exc.detail)
        if exc.status_code in ROUTING_DETAILS and detail == HTTPStatus(exc.status_code).phrase:
            detail = ROUTING_DETAILS[exc.status_code].format(method=request.method, path=request.url.path)
        return problem(exc.status_code, "http", str(exc.detail), detail, headers, **extensions)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The traceback as text, not exc_info: a console renderer would print each frame's locals, and the
        # request's headers (its bearer token) are among them.
        trace = "".join(traceback.format_exception(exc))
        log.error("api_internal_error", path=request.url.path, method=request.method, exception=trace)
        return problem(500, "internal", "Internal error", "the server failed; the error is logged")

    app.add_exception_handler(GridloopError, gridloop_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
