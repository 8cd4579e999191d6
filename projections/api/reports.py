"""Reports over HTTP (考核报表): the KPI table of a level and period, one unit's trend, and the report's charts."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Annotated, Any, ParamSpec

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from engine.errors import UnknownReference
from projections import kpi_queries, reports
from projections.api.access import Principal, Read
from projections.api.backend import Backend
from projections.api.problems import AccessDenied, problem
from projections.api.security import Caller, require
from projections.divisions import ALL_LEVELS, division
from projections.kpi_queries import LEVELS, Period
from projections.reports_charts import render
from projections.store import Views

JSON = "application/json"
MEDIA = {"svg": "image/svg+xml", "png": "image/png"}
P = ParamSpec("P")

Level = Annotated[str, Query(description=f"One of: {', '.join(LEVELS)}")]
PeriodText = Annotated[str, Query(description="A month 2026-11, an ISO week 2026-W47 or a day 2026-11-23")]
Within = Annotated[
    str | None,
    Query(
        min_length=1, description="Only units inside this division or grid code (default: the caller's jurisdiction)"
    ),
]
Periods = Annotated[int, Query(ge=1, le=reports.MAX_PERIODS, description="How many periods, ending with `period`")]


class ChartFile(StrEnum):
    """A chart of the report, by name and format."""

    RANKING_SVG = "ranking.svg"
    RANKING_PNG = "ranking.png"
    TREND_SVG = "trend.svg"
    TREND_PNG = "trend.png"
    OVERDUE_SVG = "overdue.svg"
    OVERDUE_PNG = "overdue.png"


class RateName(BaseModel):
    key: str
    label: str = Field(description="The rate's Chinese name (按期结案率 …)")


class PeriodModel(BaseModel):
    label: str
    kind: str
    start: str
    end: str


class KpiRowModel(BaseModel):
    rank: int | None = Field(description="Competition rank by score (1, 2, 2, 4); null without a score")
    code: str
    name: str
    score: float | None
    grade: str
    rates: dict[str, float | None] = Field(description="Rates as fractions (0..1); null where nothing was due")
    counts: dict[str, int]


class KpiTable(BaseModel):
    """考核排名: one level's units for one period, best first."""

    level: str
    period: PeriodModel
    within: str | None
    rates: list[RateName]
    rows: list[KpiRowModel]


class TrendPoint(BaseModel):
    period: PeriodModel
    code: str
    name: str
    score: float | None
    grade: str
    rates: dict[str, float | None]
    counts: dict[str, int]


class KpiTrend(BaseModel):
    """One unit's KPI rows over consecutive periods, oldest first."""

    level: str
    code: str
    name: str
    rates: list[RateName]
    periods: list[TrendPoint]


def refusing_bad_parameters(handler: Callable[P, Response]) -> Callable[P, Response]:
    """A report parameter gridloop does not have (level, period) answers 400 naming what is allowed."""

    @wraps(handler)
    def checked(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return handler(*args, **kwargs)
        except reports.ReportParameterError as exc:
            return problem(
                400, "invalid-parameter", "A report parameter is not allowed", str(exc),
                parameter=exc.parameter, value=str(exc.value), allowed=list(exc.allowed),
            )  # fmt: skip

    return checked


def may_read_reports(principal: Principal) -> None:
    """Reports rank units and people: for the desk, supervision, audit, analysts; not for one worker or unit."""
    require(principal, Read.BOARD)
    if principal.assigned_only:
        raise AccessDenied(
            f"role {principal.role.value} reads only the cases assigned to it, not the reports of units",
            [r.value for r in Read if principal.may_read(r)],
        )


def inside(store: Views, code: str, ancestor: str) -> bool:
    """Whether the division or grid ``code`` is ``ancestor`` or lies under it in the five-level tree."""
    node = division(store, code)
    if node is None:
        raise UnknownReference("division", code)
    for _ in ALL_LEVELS:  # a node has at most this many ancestors, itself included
        if node.code == ancestor:
            return True
        if not node.parent or (node := division(store, node.parent)) is None:
            return False
    return False


def within_of(store: Views, principal: Principal, within: str | None) -> str:
    """The division a report may cover: ``within`` if it lies in the caller's jurisdiction, else a refusal."""
    if within is None:
        return principal.jurisdiction
    if not inside(store, within, principal.jurisdiction):
        raise AccessDenied(
            f"{within} is outside {principal.name}'s jurisdiction {principal.jurisdiction}", [principal.jurisdiction]
        )
    return within


def unit_in_reach(store: Views, principal: Principal, level: str, code: str, periods: list[Period]) -> None:
    """Refuse a trend of a unit outside the caller's jurisdiction: a division or grid by the tree; a worker or a
    department when it has no row inside the jurisdiction in any of the periods asked for."""
    if level in ("worker", "department"):
        visible = any(
            any(row.code == code for row in kpi_queries.kpi_table(store, level, p, within=principal.jurisdiction))
            for p in periods
        )
    else:
        visible = division(store, code) is not None and inside(store, code, principal.jurisdiction)
    if not visible:
        raise AccessDenied(f"{level} {code} is outside {principal.name}'s jurisdiction {principal.jurisdiction}", [])


def router(backend: Backend) -> APIRouter:
    """The report endpoints under /v1/reports."""
    api = APIRouter(prefix="/v1/reports", tags=["reports"])
    store = backend.views
    problems: dict[int | str, dict[str, Any]] = {
        code: {"content": {"application/problem+json": {}}} for code in (400, 401, 403, 404, 422)
    }

    @api.get("/kpi", response_model=KpiTable, responses=problems, summary="考核排名: KPI rows of a level, best first")
    @refusing_bad_parameters
    def kpi_table(principal: Caller, level: Level, period: PeriodText, within: Within = None) -> Response:
        may_read_reports(principal)
        made = reports.report(store, level, period, within_of(store, principal, within))
        return Response(orjson.dumps(reports.report_json(made)), 200, media_type=JSON)

    @api.get("/kpi/trend", response_model=KpiTrend, responses=problems, summary="One unit's KPIs over periods")
    @refusing_bad_parameters
    def kpi_trend(
        principal: Caller,
        level: Level,
        code: Annotated[str, Query(min_length=1, description="The unit's code (a division, grid, unit or worker)")],
        periods: Periods = reports.TREND_PERIODS,
        period: Annotated[str | None, Query(description="The last period (default: this month)")] = None,
    ) -> Response:
        may_read_reports(principal)
        reports.checked_level(level)
        last = reports.checked_period(period) if period else reports.current_period(backend.now())
        spans = reports.trend_periods(last, reports.checked_count(periods))
        unit_in_reach(store, principal, level, code, spans)
        rows = kpi_queries.kpi_trend(store, level, code, spans)
        return Response(orjson.dumps(reports.trend_json(level, code, spans, rows)), 200, media_type=JSON)

    @api.get(
        "/charts/{chart}",
        responses={**problems, 200: {"content": {MEDIA["svg"]: {}, MEDIA["png"]: {}}, "description": "The chart"}},
        response_class=Response,
        summary="A report's chart: ranking, trend or overdue, as SVG or PNG",
    )
    @refusing_bad_parameters
    def chart(
        principal: Caller,
        chart: ChartFile,
        level: Level,
        period: PeriodText,
        within: Within = None,
        periods: Periods = reports.TREND_PERIODS,
    ) -> Response:
        may_read_reports(principal)
        name, fmt = chart.value.split(".")
        made = reports.report(store, level, period, within_of(store, principal, within))
        figure = reports.figures(store, made, periods, [name])[name]
        return Response(render(figure, fmt), 200, media_type=MEDIA[fmt])

    return api
