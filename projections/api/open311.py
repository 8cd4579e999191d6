"""Open311 GeoReport v2 (/open311/v2): the catalogue as services, cases as service requests, reports by POST."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from engine.catalogue import GRID, Category
from engine.errors import GridloopError, InvalidCommand, UnknownReference
from engine.lifecycle import OPEN, Status
from projections import queries
from projections.api.access import Principal, Read
from projections.api.backend import Backend
from projections.api.open311_reports import SOURCES, Reports, credentials, form_schema
from projections.api.open311_xml import Open311Error, answer, check_format, failure
from projections.api.problems import AccessDenied, Unauthenticated
from projections.api.reads import scope_of
from projections.api.security import require
from projections.api.writes import Gate
from projections.divisions import division
from projections.scope import EVERYWHERE, Scope

MAX_REQUESTS = 1000
"""Service requests one GET answers with at most (oldest first): narrow start_date for the rest."""
WINDOW = timedelta(days=90)
"""GET requests covers this span by default (before now), and never more."""
CLOSED = frozenset(Status) - OPEN
"""Closed, evaluated, rejected and merged cases: nobody acts on them any more."""
KIND_NAMES: Mapping[str, str] = {"component": "部件", "event": "事件", "service": "民生服务"}
STATUS_NOTES: Mapping[Status, str] = {
    Status.REPORTED: "reported (上报): waiting to be registered",
    Status.REGISTERED: "registered (立案): waiting to be dispatched",
    Status.DISPATCHED: "dispatched (派遣): waiting for the handler to accept it",
    Status.ACCEPTED: "accepted (签收): being handled",
    Status.RETURNED: "returned (退单) by the handler: waiting to be dispatched again",
    Status.EXTENSION_REQUESTED: "being handled; the handler asked for more time (延期申请)",
    Status.SUSPENDED: "suspended (挂账): on hold",
    Status.HANDLED: "handled (处置反馈): waiting to be verified on the spot (核查)",
    Status.REOPENED: "reopened (返工): the work did not pass and is to be done again",
    Status.CLOSED: "closed (结案): handled and verified",
    Status.EVALUATED: "closed (结案) and evaluated (回访): the reporter was called back",
    Status.REJECTED: "rejected (不予立案)",
    Status.MERGED: "merged (合并): a duplicate of another request",
}


def open311_router(backend: Backend) -> APIRouter:
    """GET services, GET services/{code}, POST requests, GET requests, GET requests/{id}; each as .json or .xml."""
    api = APIRouter(prefix="/open311/v2", tags=["open311"])
    geo = GeoReport(backend)
    reports = Reports(geo)

    @api.get("/services.{fmt}", summary="The catalogue's categories as services")
    async def services(request: Request, fmt: str) -> Response:
        try:
            geo.jurisdiction(request.query_params.get("jurisdiction_id"))
            return answer(check_format(fmt), "services", geo.services())
        except GridloopError as exc:
            return failure(request, fmt, exc)

    @api.get("/services/{service_code}.{fmt}", summary="One service: informational and variable attributes")
    async def service_definition(request: Request, service_code: str, fmt: str) -> Response:
        try:
            return answer(check_format(fmt), "service_definition", geo.definition(service_code))
        except GridloopError as exc:
            return failure(request, fmt, exc)

    @api.post(
        "/requests.{fmt}",
        status_code=201,
        summary="上报: report a case (form-encoded; api_key is a bearer token that may report)",
        openapi_extra={"requestBody": form_schema()},
    )
    async def create_request(request: Request, fmt: str) -> Response:
        try:
            body, status = await reports.create(request, check_format(fmt))
            return answer(fmt, "service_requests", body, status)
        except GridloopError as exc:
            return failure(request, fmt, exc)

    @api.get("/requests.{fmt}", summary="Service requests: by id, service code, date, status, jurisdiction")
    async def service_requests(request: Request, fmt: str) -> Response:
        try:
            return answer(check_format(fmt), "service_requests", geo.requests(request))
        except GridloopError as exc:
            return failure(request, fmt, exc)

    @api.get("/requests/{service_request_id}.{fmt}", summary="One service request (a one-element list)")
    async def service_request(request: Request, service_request_id: str, fmt: str) -> Response:
        try:
            return answer(check_format(fmt), "service_requests", geo.request(request, service_request_id))
        except GridloopError as exc:
            return failure(request, fmt, exc)

    return api


class GeoReport:
    """GeoReport v2 over gridloop: categories are services, cases are service requests, a POST is a report."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.gate = Gate(backend)
        self.places = self.gate.places

    # -- services ------------------------------------------------------------------------

    def services(self) -> list[dict[str, Any]]:
        catalogue = self.backend.app.catalogue
        return [self.service(catalogue.categories[code]) for code in sorted(catalogue.categories)]

    def service(self, category: Category) -> dict[str, Any]:
        kind = KIND_NAMES[category.kind]
        keywords = [category.name_en, category.major, kind, category.kind, category.tier, self.handler(category)]
        return {
            "service_code": category.code,
            "service_name": category.name,
            "description": f"{category.name_en}: {self.notice(category)}.",
            "metadata": True,
            "type": "realtime",
            "keywords": ", ".join([*keywords, *(["重点案件 key case"] if category.key else [])]),
            "group": f"{kind}/{category.major}",
        }

    def definition(self, code: str) -> dict[str, Any]:
        category = self.category(code, status=404)
        key = ", 重点案件: a key case, supervised closely" if category.key else ""
        informational = [
            ("time_limit", f"处置时限: handled within {time_limit(category)} of dispatch ({category.tier} tier{key})"),
            ("handling_unit", f"处置单位: handled by {self.handler(category)}"),
        ]
        attributes = [
            _attribute(order, code, "string", description, variable=False)
            for order, (code, description) in enumerate(informational, start=1)
        ]
        first = len(attributes) + 1
        attributes += [
            _attribute(first, "grid", "string", "网格: the grid the problem is in (default: the grid at lat/long)",
                       "a grid code, e.g. 140827100001001 (GET /v1/divisions?level=grid)"),
            _attribute(first + 1, "source", "singlevaluelist", "来源: how the report reached you (default: app)",
                       values=[{"key": key, "name": name} for key, name in SOURCES.items()]),
            _attribute(first + 2, "occurred_at", "datetime", "发现时间: when the problem was seen (default: now)",
                       "a w3c datetime with offset, e.g. 2026-11-03T08:30:00+08:00"),
        ]  # fmt: skip
        return {"service_code": category.code, "attributes": attributes}

    def category(self, code: str, status: int = 400) -> Category:
        try:
            return self.backend.app.catalogue.category(code)
        except UnknownReference as exc:
            if status == 404:
                raise Open311Error(404, f"service_code {code!r} is not a service; GET services for the list") from None
            raise UnknownReference("service_code", code, exc.allowed) from None

    def handler(self, category: Category) -> str:
        if category.department == GRID:
            return "网格员 the grid worker"
        department = self.backend.app.catalogue.department(category.department)
        return f"{department.name} {department.name_en}"

    def notice(self, category: Category) -> str:
        return f"handled by {self.handler(category)} within {time_limit(category)} of dispatch"

    # -- service requests ----------------------------------------------------------------

    def requests(self, request: Request) -> list[dict[str, Any]]:
        query = request.query_params
        scope = self.within(self.reader_scope(request), self.jurisdiction(query.get("jurisdiction_id")))
        now = self.backend.now()
        ids = _listed(query.get("service_request_id"))
        if ids:  # the spec: ids override every other filter (the reader's scope and jurisdiction still hold)
            rows = queries.board(
                self.backend.views, case_ids=[_case_id(text) for text in ids], scope=scope, now=now, limit=MAX_REQUESTS
            )
        else:
            codes = _listed(query.get("service_code"))
            for code in codes:
                self.category(code)
            start, end = _window(query.get("start_date"), query.get("end_date"), now)
            rows = queries.board(
                self.backend.views, category=codes or None, status=_statuses(query.get("status")),
                reported_from=start, reported_to=end + timedelta(microseconds=1), scope=scope, now=now,
                limit=MAX_REQUESTS,
            )  # fmt: skip
        agencies: dict[str, str] = {}
        return [self.service_request(row, agencies) for row in rows]

    def request(self, request: Request, request_id: str) -> list[dict[str, Any]]:
        scope = self.reader_scope(request)
        jurisdiction = self.jurisdiction(request.query_params.get("jurisdiction_id"))
        try:
            row = queries.find_case(self.backend.views, request_id)
        except UnknownReference:
            raise Open311Error(404, f"no service request {request_id!r}") from None
        if not queries.in_scope(self.backend.views, row.case_id, scope):
            raise AccessDenied(f"service request {row.short_id} is outside what the api_key may read")
        if jurisdiction and not queries.in_scope(self.backend.views, row.case_id, Scope(division=jurisdiction)):
            raise Open311Error(404, f"no service request {request_id!r} in jurisdiction {jurisdiction}")
        return [self.service_request(row, {})]

    def service_request(self, row: queries.CaseRow, agencies: dict[str, str]) -> dict[str, Any]:
        """A case as a GeoReport service request: public fields only (never the reporter)."""
        agency = row.unit or row.desk
        if agency not in agencies:
            agencies[agency] = self.agency(agency)
        category = self.backend.app.catalogue.categories.get(row.category)
        return {
            "service_request_id": str(row.case_id),
            "status": "open" if row.status in OPEN else "closed",
            "status_notes": self.status_notes(row),
            "service_name": row.category_name,
            "service_code": row.category,
            "description": row.description,
            "agency_responsible": agencies[agency],
            "service_notice": f"case {row.short_id}" + (f"; {self.notice(category)}" if category else ""),
            "requested_datetime": row.reported_at.isoformat(),
            "updated_datetime": row.last_occurred_at.isoformat(),
            "expected_datetime": row.deadline.isoformat() if row.deadline else None,
            "address": "",
            "address_id": row.grid,
            "zipcode": "",
            "lat": row.lat,
            "long": row.lon,
            "media_url": "",
        }

    def status_notes(self, row: queries.CaseRow) -> str:
        words = STATUS_NOTES[row.status]
        if row.status is Status.MERGED and row.merged_into is not None:
            return f"{words}: merged into service request {row.merged_into}"
        if row.status is Status.REJECTED:
            rejected = [e for e in queries.timeline(self.backend.views, row.case_id) if e.event_type == "Rejected"]
            if rejected:
                return f"{words}: {rejected[-1].details.get('reason', '')}"
        if row.status is Status.SUSPENDED and row.suspended_from is not None:
            return f"{words} (was {row.suspended_from.value})"
        return words

    def agency(self, code: str) -> str:
        """A unit's or a desk's name: a department of the catalogue, or a division of the tree."""
        catalogue = self.backend.app.catalogue
        if catalogue.is_unit(code):
            return catalogue.department(code).name
        found = division(self.backend.views, code)
        return found.name if found is not None else code

    # -- who reads, where ----------------------------------------------------------------

    def authenticate(self, request: Request, key: str) -> Principal:
        if not key:
            raise Unauthenticated("no api_key: send api_key (a bearer token) or Authorization: Bearer <token>")
        principal = self.backend.tokens.authenticate(key)
        if principal is None:
            raise AccessDenied("the api_key is not in the token file (revoked, or never issued)")
        request.state.principal = principal
        return principal

    def reader_scope(self, request: Request) -> Scope:
        """Public reads: everywhere (a key, if sent, must be valid). Otherwise the key's role and scope."""
        key = request.query_params.get("api_key") or credentials(request)
        if self.backend.open311_public_reads and not key:
            return EVERYWHERE
        principal = self.authenticate(request, key)
        if self.backend.open311_public_reads:
            return EVERYWHERE
        require(principal, Read.BOARD)
        return scope_of(principal)

    def jurisdiction(self, code: str | None) -> str:
        """A jurisdiction_id the division tree holds ('' when none was given)."""
        if code and division(self.backend.views, code) is None:
            raise InvalidCommand("jurisdiction_id", f"{code!r} is not in the division tree", "a division or grid code")
        return code or ""

    def within(self, scope: Scope, jurisdiction: str) -> Scope:
        """``scope`` narrowed to ``jurisdiction``; AccessDenied when the two do not overlap."""
        if not jurisdiction:
            return scope
        if scope.division is None or scope.division in self.above(jurisdiction):
            return dataclasses.replace(scope, division=jurisdiction)
        if jurisdiction in self.above(scope.division):
            return scope
        raise AccessDenied(f"jurisdiction {jurisdiction} is outside the api_key's jurisdiction {scope.division}")

    def above(self, code: str) -> list[str]:
        """``code`` and the nodes above it, nearest first, by the division tree's view."""
        chain: list[str] = []
        node: str | None = code
        while node and node not in chain:  # a loop (a corrupted view) stops at the first repeat
            chain.append(node)
            row = division(self.backend.views, node)
            node = row.parent if row is not None else None
        return chain


def time_limit(category: Category) -> str:
    if category.time_limit_days is not None:
        days = category.time_limit_days
        return f"{days} working day{'s' if days != 1 else ''}"
    hours = category.time_limit_hours
    return f"{hours:g} working hour{'s' if hours != 1 else ''}"


def _attribute(
    order: int, code: str, datatype: str, description: str, datatype_description: str = "",
    *, variable: bool = True, values: list[dict[str, str]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "variable": variable, "code": code, "datatype": datatype, "required": False,
        "datatype_description": datatype_description, "order": order, "description": description,
        "values": values or [],
    }  # fmt: skip


def _listed(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _case_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidCommand("service_request_id", f"{text!r} is not a service request id", "a UUID") from None


def _statuses(text: str | None) -> list[str] | None:
    wanted = _listed(text)
    if not wanted:
        return None
    groups = {"open": OPEN, "closed": CLOSED}
    for value in wanted:
        if value not in groups:
            raise InvalidCommand("status", f"{value!r} is not a status", "open, closed (comma-separated)")
    return sorted({status.value for value in wanted for status in groups[value]})


def _moment(name: str, text: str) -> datetime:
    # An unencoded '+' in a query string arrives as a space: take "…T08:00:00 08:00" as the offset it meant.
    repaired = re.sub(r" (\d{2}:?\d{2})$", r"+\1", text.strip())
    try:
        moment = datetime.fromisoformat(repaired)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidCommand(
            name, f"{text!r} is not a w3c datetime with offset", "e.g. 2026-11-01T00:00:00+08:00 or …Z"
        )
    return moment


def _window(start_text: str | None, end_text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """start_date..end_date (inclusive): 90 days before now, or 90 days from the one given; never more."""
    start = _moment("start_date", start_text) if start_text else None
    end = _moment("end_date", end_text) if end_text else None
    if start is None and end is None:
        return now - WINDOW, now
    if start is None:
        assert end is not None
        return end - WINDOW, end
    if end is None:
        return start, start + WINDOW
    if end < start:
        raise InvalidCommand("end_date", f"{end_text} is before start_date {start_text}", "a later end_date")
    if end - start > WINDOW:
        raise InvalidCommand(
            "end_date", f"spans {(end - start).days} days from start_date", "a span of 90 days at most"
        )
    return start, end
