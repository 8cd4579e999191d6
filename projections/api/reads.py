"""Queries over HTTP: the board, one case, its timeline and trace, a worker's queue, the summary, the division tree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from engine.errors import InvalidCommand, UnknownReference
from engine.lifecycle import allowed_actions
from projections import queries
from projections.api import models
from projections.api.access import Principal, Read, Role
from projections.api.backend import Backend, poll
from projections.api.problems import AccessDenied
from projections.api.security import Caller, require
from projections.audit import trace as audit_trace
from projections.audit.trace_export import trace_html, trace_json
from projections.divisions import divisions as divisions_of
from projections.projection import iso
from projections.scope import Scope

JSON = "application/json"
HTML = "text/html"
MAX_PAGE = 500
POSITION_HEADER = "X-Gridloop-Position"
STALE_HEADER = "X-Gridloop-Stale"

Position = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**63 - 1,  # a log position is a 64-bit integer; a larger one cannot be written back as JSON
        description="A log position from a command's answer: wait (bounded) until the views include it",
    ),
]
Wait = Annotated[
    float | None,
    Query(ge=0, le=60, description="Seconds to wait for `position` at most (default and ceiling: the server's)"),
]
Now = Annotated[
    models.Moment | None,
    Query(description="Judge 'overdue' at this moment (ISO 8601 with offset; default: now)"),
]


def scope_of(principal: Principal) -> Scope:
    """What a principal may see: its jurisdiction, and for grid workers and departments only their own cases."""
    return Scope(
        division=principal.jurisdiction,
        worker=principal.actor if principal.role is Role.GRID_WORKER else None,
        unit=principal.actor if principal.role is Role.DEPARTMENT else None,
    )


def plain(value: Any) -> Any:
    """A row (a dataclass) or a value as JSON-ready data: times in ISO 8601, ids as text, states by value."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return iso(value)  # the views' own form (UTC, fixed width), so every answer writes a time alike
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def case_json(row: queries.CaseRow, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = plain(row)
    data["overdue"] = row.is_overdue(now)
    return data


def answer(body: dict[str, Any], consistency: dict[str, Any]) -> Response:
    """JSON with the consistency block, and the same facts in headers for clients that only look there."""
    body["consistency"] = consistency
    return Response(orjson.dumps(body), 200, headers=consistency_headers(consistency), media_type=JSON)


def consistency_headers(consistency: dict[str, Any]) -> dict[str, str]:
    """Where the views stood when they answered, and whether the wait for the asked position timed out."""
    headers = {}
    if consistency["position"] is not None:
        headers[POSITION_HEADER] = str(consistency["position"])
    if not consistency["reached"]:
        headers[STALE_HEADER] = "true"
    return headers


class Reader:
    """The read handlers' shared steps: the caller's scope, the clock, and waiting for a position."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def now(self, moment: datetime | None) -> datetime:
        if moment is None:
            return self.backend.now()
        if moment.tzinfo is None:
            raise InvalidCommand("now", f"{moment.isoformat()} has no UTC offset", "e.g. 2026-11-23T09:30+08:00")
        return moment

    def timeout(self, wait: float | None) -> float:
        limit = self.backend.read_wait_seconds
        return limit if wait is None else min(wait, limit)

    async def settle(
        self, position: int | None, wait: float | None, probe: Callable[[], int | None] | None = None
    ) -> dict[str, Any]:
        """Wait for ``position`` (when given). Embedded: every view's tracking. Kafka mode: ``probe`` — the position
        the case's own rows record — when the read is about one case; a whole-board read cannot know, and says so."""
        if self.backend.exact_positions:
            if position is None:
                return {"requested": None, "position": self.backend.view_position(), "reached": True, "exact": True}
            reached, at = await self.backend.wait_for(position, self.timeout(wait))
            return {"requested": position, "position": at, "reached": reached, "exact": True}
        if probe is None or position is None:
            return {"requested": position, "position": None, "reached": position is None, "exact": False}
        reached, at = await poll(probe, position, self.timeout(wait))
        return {"requested": position, "position": at, "reached": reached, "exact": True}

    def case(self, principal: Principal, case: str) -> queries.CaseRow:
        """The case (id or unique prefix) if the principal may see it; AccessDenied if it exists outside its reach."""
        row = queries.find_case(self.backend.views, case)
        if not queries.in_scope(self.backend.views, row.case_id, scope_of(principal)):
            raise AccessDenied(f"case {row.short_id} is outside what {principal.name} may see", [])
        return row


def router(backend: Backend) -> APIRouter:
    """The read endpoints under /v1."""
    api = APIRouter(prefix="/v1", tags=["views"])
    reader = Reader(backend)
    problems: dict[int | str, dict[str, Any]] = {
        code: {"model": models.Problem, "content": {"application/problem+json": {}}} for code in (401, 403, 404, 422)
    }

    @api.get("/whoami", response_model=models.Me, responses=problems, summary="The calling principal and its rights")
    async def whoami(principal: Caller) -> dict[str, Any]:
        return {
            "name": principal.name,
            "role": principal.role.value,
            "jurisdiction": principal.jurisdiction,
            "actor": principal.actor,
            "commands": principal.commands(),
            "reads": [r.value for r in Read if principal.may_read(r)],
        }

    @api.get(
        "/board", response_model=models.BoardPage, responses=problems, summary="案件总览: cases, filtered and paged"
    )
    async def board(
        principal: Caller,
        status: Annotated[str | None, Query(description="One status or several, comma-separated")] = None,
        grid: str | None = None,
        community: str | None = None,
        street: str | None = None,
        category: Annotated[str | None, Query(description="A code (E0101), a 大类 (E01) or a kind (E)")] = None,
        overdue: bool | None = None,
        assignee: Annotated[str | None, Query(description="A worker's or a unit's code")] = None,
        now: Now = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
        position: Position = None,
        wait: Wait = None,
    ) -> Response:
        require(principal, Read.BOARD)
        consistency = await reader.settle(position, wait)
        moment = reader.now(now)
        # Records straight from the rows (ids and times stay the text the view stores): a page is served
        # without parsing 30 columns into objects only to format them back (measured: most of a read's CPU).
        rows = queries.board_records(
            backend.views,
            status=_listed(status),
            grid=grid,
            community=community,
            street=street,
            category=_listed(category),
            overdue=overdue,
            assignee=assignee,
            scope=scope_of(principal),
            now=moment,
            limit=limit + 1,
            after=_cursor(cursor),
        )
        page = rows[:limit]
        body = {
            "cases": page,
            "next_cursor": page[-1]["case_id"] if len(rows) > limit else None,
            "now": iso(moment),
        }
        return answer(body, consistency)

    @api.get("/board/summary", response_model=models.Summary, responses=problems, summary="The board in numbers")
    async def summary(
        principal: Caller,
        now: Now = None,
        top: Annotated[int, Query(ge=1, le=100)] = 10,
        position: Position = None,
        wait: Wait = None,
    ) -> Response:
        require(principal, Read.BOARD)
        consistency = await reader.settle(position, wait)
        moment = reader.now(now)
        numbers = queries.summary(backend.views, moment, top, scope=scope_of(principal))
        return answer({**plain(numbers), "now": iso(moment)}, consistency)

    @api.get(
        "/board/grids",
        response_model=models.GridLoads,
        responses=problems,
        summary="Open and overdue cases per grid (the console's map)",
    )
    async def grid_loads(principal: Caller, now: Now = None, position: Position = None, wait: Wait = None) -> Response:
        require(principal, Read.BOARD)
        consistency = await reader.settle(position, wait)
        moment = reader.now(now)
        loads = queries.grid_loads(backend.views, moment, scope=scope_of(principal))
        return answer({"grids": plain(loads), "now": iso(moment)}, consistency)

    @api.get(
        "/board/escalations",
        response_model=models.BoardPage,
        responses=problems,
        summary="超期与督办: overdue, escalated and warned cases, the most urgent first",
    )
    async def escalations(
        principal: Caller,
        now: Now = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        position: Position = None,
        wait: Wait = None,
    ) -> Response:
        require(principal, Read.BOARD)
        consistency = await reader.settle(position, wait)
        moment = reader.now(now)
        rows = queries.escalations(backend.views, now=moment, scope=scope_of(principal), limit=limit)
        body = {"cases": [case_json(r, moment) for r in rows], "next_cursor": None, "now": iso(moment)}
        return answer(body, consistency)

    @api.get("/cases/{case}", response_model=models.CaseDetail, responses=problems, summary="One case")
    async def case_detail(
        principal: Caller,
        case: str,
        now: Now = None,
        position: Position = None,
        wait: Wait = None,
    ) -> Response:
        require(principal, Read.BOARD)
        probe = case_position(backend, case, position)
        consistency = await reader.settle(position, wait, probe)
        row = reader.case(principal, case)
        body = {"case": case_json(row, reader.now(now)), "allowed_actions": list(allowed_actions(row.status))}
        return answer(body, consistency)

    @api.get(
        "/cases/{case}/timeline",
        response_model=models.Timeline,
        responses=problems,
        summary="办理过程: every event of a case, who, when and why",
    )
    async def case_timeline(principal: Caller, case: str, position: Position = None, wait: Wait = None) -> Response:
        require(principal, Read.TIMELINE)
        probe = case_position(backend, case, position)
        consistency = await reader.settle(position, wait, probe)
        row = reader.case(principal, case)
        events = queries.timeline(backend.views, row.case_id)
        return answer({"case_id": str(row.case_id), "events": plain(events)}, consistency)

    @api.get(
        "/cases/{case}/trace",
        response_model=models.Trace,
        responses={**problems, 200: {"content": {HTML: {}}, "description": "The trace (JSON, or the HTML export)"}},
        summary="痕迹: every step of a case, who, when, what, why, time in state, deadline status",
    )
    async def case_trace(
        request: Request,
        principal: Caller,
        case: str,
        format: Annotated[
            Literal["json", "html"] | None,
            Query(description="html: the self-contained HTML export (also chosen by Accept: text/html)"),
        ] = None,
        now: Annotated[
            models.Moment | None, Query(description="Count the open case's last state up to this moment (default: now)")
        ] = None,
        position: Position = None,
        wait: Wait = None,
    ) -> Response:
        require(principal, Read.TIMELINE)
        probe = case_position(backend, case, position)
        consistency = await reader.settle(position, wait, probe)
        row = reader.case(principal, case)
        trace = audit_trace.case_trace(backend.views, str(row.case_id), backend.app.calendar, now=reader.now(now))
        if format == "html" or (format is None and HTML in request.headers.get("accept", "")):
            headers = consistency_headers(consistency)
            return Response(trace_html(trace), 200, headers=headers, media_type=HTML)
        return answer(trace_json(trace), consistency)

    @api.get(
        "/workers/{worker}/queue",
        response_model=models.Queue,
        responses=problems,
        summary="A worker's open cases, soonest deadline first",
    )
    async def worker_queue(principal: Caller, worker: str, position: Position = None, wait: Wait = None) -> Response:
        require(principal, Read.QUEUE)
        if principal.assigned_only and worker != principal.actor:
            raise AccessDenied(f"{principal.name} may read only its own queue ({principal.actor})", [])
        consistency = await reader.settle(position, wait)
        rows = queries.queue(backend.views, worker, scope=scope_of(principal))
        return answer({"worker": worker, "cases": plain(rows)}, consistency)

    @api.get(
        "/divisions",
        response_model=models.Divisions,
        responses=problems,
        summary="The five-level tree: divisions and grids (with GeoJSON boundaries)",
    )
    async def divisions(
        principal: Caller,
        level: Annotated[str | None, Query(description="city, district, street, community or grid")] = None,
        parent: str | None = None,
    ) -> Response:
        require(principal, Read.REFERENCE)
        rows = divisions_of(backend.views, level=level, parent=parent)
        body = {"divisions": plain(rows)}
        return Response(orjson.dumps(body), 200, media_type=JSON)

    return api


def _listed(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    return items or None


def _cursor(text: str | None) -> UUID | None:
    if not text:
        return None
    try:
        return UUID(text)
    except ValueError:
        raise InvalidCommand("cursor", f"{text!r} is not a cursor", "the next_cursor of the previous page") from None


def case_position(backend: Backend, case: str, position: int | None) -> Callable[[], int | None]:
    """Kafka and distributed modes: how far the case's board row has read (None while the views do not have it).

    The position a command answers with is its receipt's, which no view reads; so once the row exists, the probe
    answers ``position`` itself when the row holds the case's own last event at or before it.
    """
    target: list[int] = []

    def probe() -> int | None:
        try:
            row = queries.find_case(backend.views, case)
        except UnknownReference:
            return None
        if position is None:
            return row.position
        if not target:
            target.append(backend.app.last_position_of(row.case_id, position))
        return position if row.position >= target[0] else row.position

    return probe
