"""KPI queries (考核报表): per level and period, each unit's counts, rates, score and grade, from the KPI facts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from engine.catalogue import GRID, default_catalogue
from projections.divisions import grid_prefix
from projections.kpi import CASE_DUE_DAY, HANDLING_DUE_DAY
from projections.kpi_rates import RATE_NAMES, grade, rates, score
from projections.projection import Cursor, count_if

if TYPE_CHECKING:
    from projections.store import Views

__all__ = [
    "COUNT_NAMES", "LEVELS", "PERIOD_KINDS", "RATE_NAMES", "KpiRow", "Period",
    "kpi_table", "kpi_trend", "parse_period", "periods_before",
]  # fmt: skip

LEVELS = ("grid", "community", "street", "district", "department", "worker")
"""The levels a KPI table can be drawn at: the four places of the tree, the handling unit (部门) and the worker."""

PERIOD_KINDS = ("day", "week", "month")


@dataclass(frozen=True)
class Period:
    """A span of Asia/Shanghai days: ``start`` included, ``end`` excluded; ``label`` as parsed ("2026-11", …)."""

    kind: str
    start: date
    end: date
    label: str


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_PERIOD_FORMS = "a month 2026-11, an ISO week 2026-W47 or a day 2026-11-02"


def parse_period(text: str) -> Period:
    """A period from its label: a month ``2026-11``, an ISO week ``2026-W47`` or a day ``2026-11-02``."""
    value = text.strip()
    try:
        if m := _MONTH.match(value):
            return _month(int(m[1]), int(m[2]))
        if m := _WEEK.match(value):
            return _week(int(m[1]), int(m[2]))
        if m := _DAY.match(value):
            return _day(date(int(m[1]), int(m[2]), int(m[3])))
    except ValueError as error:
        raise ValueError(f"period {text!r} is not a real period ({error}); allowed: {_PERIOD_FORMS}") from None
    raise ValueError(f"period {text!r} is not understood; allowed: {_PERIOD_FORMS}")


def periods_before(period: Period, count: int) -> list[Period]:
    """The ``count`` periods of the same kind ending with ``period``, oldest first."""
    if count < 1:
        raise ValueError(f"count {count} is not a number of periods; allowed: 1 or more")
    found = [period]
    while len(found) < count:
        found.append(_previous(found[-1]))
    return found[::-1]


def _month(year: int, month: int) -> Period:
    start = date(year, month, 1)
    end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return Period("month", start, end, f"{year:04d}-{month:02d}")


def _week(year: int, week: int) -> Period:
    start = date.fromisocalendar(year, week, 1)
    return Period("week", start, start + timedelta(days=7), f"{year:04d}-W{week:02d}")


def _day(day: date) -> Period:
    return Period("day", day, day + timedelta(days=1), day.isoformat())


def _previous(period: Period) -> Period:
    before = period.start - timedelta(days=1)
    if period.kind == "month":
        return _month(before.year, before.month)
    if period.kind == "week":
        year, week, _ = before.isocalendar()
        return _week(year, week)
    return _day(before)


@dataclass(frozen=True)
class KpiRow:
    """One unit's KPIs in one period: named counts, named rates (None: nothing to divide by), score and grade."""

    level: str
    code: str
    name: str
    period: str
    counts: dict[str, int]
    rates: dict[str, float | None]
    score: float | None
    grade: str


# -- the measures: one aggregate over one fact table each ------------------------------------


@dataclass(frozen=True)
class _Measure:
    """Counts over one fact table, bucketed by one day column, attributed to a unit by a column per level."""

    table: str
    day: str
    counts: tuple[tuple[str, str], ...]
    by: dict[str, str]
    where: str = "TRUE"


_PLACES = {"grid": "f.grid", "community": "g.community", "street": "g.street", "district": "g.district"}
_ASSIGNEE = {**_PLACES, "department": "f.unit", "worker": "f.worker"}

MEASURES: tuple[_Measure, ...] = (
    _Measure(
        "kpi_case",
        "f.reported_day",
        (
            ("reported", "COUNT(*)"),
            ("patrol_reports_decided", count_if("f.source = 'patrol' AND f.decided IS NOT NULL")),
            ("patrol_reports_valid", count_if("f.source = 'patrol' AND f.decided = 'registered'")),
        ),
        {**_PLACES, "worker": "CASE WHEN f.source = 'patrol' THEN f.reporter END"},  # a worker's own finds
    ),
    _Measure("kpi_case", "f.registered_day", (("registered", "COUNT(*)"),), _ASSIGNEE),
    _Measure(
        "kpi_case",
        CASE_DUE_DAY,
        (
            ("due_to_close", count_if("f.suspended = 0")),
            ("closed", count_if("f.suspended = 0 AND f.closed_at IS NOT NULL")),
            ("closed_on_time", count_if("f.suspended = 0 AND f.closed_at <= f.deadline")),
            ("suspended", count_if("f.suspended = 1")),
        ),
        _ASSIGNEE,
    ),
    _Measure(
        "kpi_case",
        "f.first_dispatch_day",
        (
            ("first_dispatched", "COUNT(*)"),
            ("dispatched_on_time", count_if("f.first_dispatch_at <= f.dispatch_due")),
            ("dispatched_accurately", count_if("f.first_returned = 0")),
        ),
        _PLACES,
    ),
    _Measure(
        "kpi_assignment",
        "f.dispatched_day",
        (
            ("dispatched", "COUNT(*)"),
            ("accepted_on_time", count_if("f.accepted_at <= f.accept_due")),
            ("returned", count_if("f.outcome = 'returned'")),
        ),
        _ASSIGNEE,
    ),
    _Measure(
        "kpi_assignment",
        HANDLING_DUE_DAY,
        (
            ("due_to_handle", count_if("f.suspended = 0")),
            ("handled", count_if("f.suspended = 0 AND f.handled_at IS NOT NULL")),
            ("handled_on_time", count_if("f.suspended = 0 AND f.handled_at <= f.deadline")),
            ("reworked", count_if("f.handled_at IS NOT NULL AND f.reworked = 1")),
            ("extended", count_if("f.suspended = 0 AND f.extended = 1")),
        ),
        _ASSIGNEE,
        "(f.outcome IS NULL OR f.outcome = 'handled')",
    ),
    _Measure(
        "kpi_assignment",
        "f.verified_day",
        (("verified", "COUNT(*)"), ("verified_on_time", count_if("f.verified_at <= f.verify_due"))),
        _PLACES,
    ),
    _Measure(
        "kpi_callback",
        "f.day",
        (
            ("callbacks", "COUNT(*)"),
            ("contacted", "SUM(f.contacted)"),
            ("solved", count_if("f.contacted = 1 AND f.fixed = 1")),
            ("satisfied", count_if("f.contacted = 1 AND f.satisfaction >= 4")),
            ("basically_satisfied", count_if("f.contacted = 1 AND f.satisfaction = 3")),
            ("dissatisfied", count_if("f.contacted = 1 AND f.satisfaction <= 2")),
        ),
        _ASSIGNEE,
    ),
)
"""Every count the KPIs need, the fact table it is counted in, the day it is bucketed by and who it belongs to.

A measure with no column for a level is not attributed at that level (a worker has no dispatch timeliness:
the dispatcher's desk is not a worker), so those counts stay 0 there and the rates built on them are None.
"""

COUNT_NAMES: tuple[str, ...] = (*(name for m in MEASURES for name, _ in m.counts), "overdue")
"""Every count a KpiRow carries, in order; ``overdue`` (超期) is due_to_close - closed_on_time."""


def kpi_table(store: Views, level: str, period: Period, *, within: str | None = None) -> list[KpiRow]:
    """Every unit of ``level`` with activity in ``period`` (only cases in grids under ``within``), best first.

    Ranked by score (highest first, unscored last), then code.
    """
    _check(level, within)
    with store.reading() as cursor:
        [found] = _counts(cursor, level, [period], within, None)
        names = _names(cursor, level, found)
    rows = [_row(level, code, names.get(code, ""), period, counts) for code, counts in found.items()]
    return sorted(rows, key=lambda r: (r.score is None, -(r.score or 0.0), r.code))


def kpi_trend(store: Views, level: str, code: str, periods: Sequence[Period]) -> list[KpiRow]:
    """One unit's KPIs in each of ``periods``, in their order (all counts 0 in a period without activity)."""
    _check(level, None)
    if not code:
        raise ValueError("code is empty; allowed: the code of a unit at that level")
    if not periods:
        return []
    with store.reading() as cursor:
        name = _names(cursor, level, [code]).get(code, "")
        found = _counts(cursor, level, periods, None, code)
    return [
        _row(level, code, name, period, counts.get(code, dict.fromkeys(COUNT_NAMES, 0)))
        for period, counts in zip(periods, found, strict=True)
    ]


def _check(level: str, within: str | None) -> None:
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is not a KPI level; allowed: {', '.join(LEVELS)}")
    if within is not None and not within.isdigit():
        raise ValueError(f"within {within!r} is not a division code; allowed: the digits of a division or grid code")


def _counts(
    cursor: Cursor, level: str, periods: Sequence[Period], within: str | None, code: str | None
) -> list[dict[str, dict[str, int]]]:
    """For each period, in order, the counts of every unit with activity in it (one query per measure in all)."""
    spans = [(p.start.isoformat(), p.end.isoformat()) for p in periods]
    params = {
        "start": min(s for s, _ in spans),
        "end": max(e for _, e in spans),
        "within": f"{grid_prefix(within or '')}%",
    }
    if code is not None:
        params["code"] = code
    found: list[dict[str, dict[str, int]]] = [{} for _ in periods]
    for measure in MEASURES:
        unit = measure.by.get(level)
        if unit is None:
            continue
        sums = ", ".join(f"COALESCE({expression}, 0) AS {name}" for name, expression in measure.counts)
        sql = (
            f"SELECT {unit} AS owner, {measure.day} AS day, {sums} "  # noqa: S608 - constants only
            f"FROM {measure.table} f LEFT JOIN kpi_grid g ON g.code = f.grid "
            f"WHERE {measure.day} >= :start AND {measure.day} < :end AND {measure.where} AND f.grid LIKE :within "
            + (f"AND {unit} = :code " if code is not None else "")
            + f"AND {unit} != '' GROUP BY 1, 2"
        )
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            for (start, end), units in zip(spans, found, strict=True):
                if start <= row[1] < end:
                    counts = units.setdefault(row[0], dict.fromkeys(COUNT_NAMES, 0))
                    for index, (name, _) in enumerate(measure.counts, start=2):
                        counts[name] += row[index]
    for units in found:
        for counts in units.values():
            counts["overdue"] = counts["due_to_close"] - counts["closed_on_time"]
    return [{c: counts for c, counts in units.items() if any(counts.values())} for units in found]


def _names(cursor: Cursor, level: str, codes: Iterable[str]) -> dict[str, str]:
    """The units' names: from the tree and the enrolments; a department's from the catalogue, else the tree."""
    wanted = set(codes)
    if level == "department":
        cursor.execute("SELECT code, name FROM kpi_name")
    else:
        cursor.execute("SELECT code, name FROM kpi_name WHERE level = ?", (level,))
    known = {row[0]: row[1] for row in cursor.fetchall() if row[0] in wanted}
    if level == "department":
        departments = default_catalogue().departments
        known |= {code: departments[code].name for code in wanted if code in departments}
        known |= {GRID: "网格"} if GRID in wanted else {}
    return known


def _row(level: str, code: str, name: str, period: Period, counts: dict[str, int]) -> KpiRow:
    found = rates(counts)
    value = score(found)
    return KpiRow(level, code, name, period.label, dict(counts), found, value, grade(value))
