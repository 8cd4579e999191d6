"""Queries over the views (read-only): the board, escalations, one case, its timeline, a worker's queue, a summary.

The division tree's queries (``division``, ``divisions``) live with its view in projections.divisions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack
from uuid import UUID

from engine.errors import InvalidCommand, UnknownReference
from engine.lifecycle import ASSIGNEE_STATES, OPEN, Status
from projections.divisions import DivisionRow as DivisionRow
from projections.divisions import division as division
from projections.divisions import divisions as divisions
from projections.projection import count_if, iso, sql_set, starts_with
from projections.queue import QUEUED_SQL
from projections.scope import EVERYWHERE, Scope, ScopeFilter, scope_filter
from projections.store import Views
from projections.store import held_aggregates as held_aggregates  # moved to the store; callers import them here
from projections.store import view_checksum as view_checksum
from projections.store import view_rows as view_rows
from projections.store import wait_for as wait_for


@dataclass(frozen=True)
class CaseRow:
    """One case as the board shows it."""

    case_id: UUID
    short_id: str
    status: Status
    suspended_from: Status | None
    category: str
    category_name: str
    source: str
    grid: str
    community: str
    street: str
    desk: str
    description: str
    lon: float | None
    lat: float | None
    unit: str
    worker: str
    accountable: str | None
    deadline: datetime | None
    escalation_level: int
    escalation_due: datetime | None
    """When the current 督办 level must be answered (None if not escalated, or no due time was set)."""
    light: str
    """The deadline light (预警灯) of the current step: '', 'green', 'yellow' or 'red'."""
    reported_at: datetime
    last_occurred_at: datetime
    closed_at: datetime | None
    rework_count: int
    return_count: int
    duplicate_count: int
    merged_into: UUID | None
    satisfaction: int | None
    version: int
    position: int

    def is_overdue(self, now: datetime) -> bool:
        """超期: an assignee holds the case (dispatched, accepted, extension requested) and its deadline has passed.

        Not a handled case (it waits for the desk's verification), not a returned or reopened one
        (the desk holds it), not a suspended one (the clock is paused).
        """
        return self.status in ASSIGNEE_STATES and self.deadline is not None and self.deadline < now


@dataclass(frozen=True)
class TimelineRow:
    """One event of a case's history."""

    case_id: UUID
    version: int
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    details: Mapping[str, Any]
    position: int


@dataclass(frozen=True)
class QueueRow:
    """One case in a worker's queue: the worker is accountable for it."""

    case_id: UUID
    short_id: str
    worker: str
    unit: str
    status: Status
    suspended_from: Status | None
    category: str
    category_name: str
    grid: str
    deadline: datetime | None
    assigned_at: datetime | None
    position: int


@dataclass(frozen=True)
class GridLoad:
    """How many open and overdue cases one grid has."""

    grid: str
    community: str
    open: int
    overdue: int


@dataclass(frozen=True)
class BoardSummary:
    """The board in numbers: counts by status, open, overdue, closed, escalated, the busiest grids."""

    by_status: Mapping[str, int]
    open: int
    overdue: int
    closed: int
    escalated: int
    top_grids: tuple[GridLoad, ...]


_OPEN_SQL = sql_set(OPEN)
# CaseRow.is_overdue as SQL. "deadline IS NOT NULL" keeps it true or false, never NULL, so NOT and SUM behave.
_OVERDUE_SQL = f"(status IN {sql_set(ASSIGNEE_STATES)} AND deadline IS NOT NULL AND deadline < :now)"
_CLOSED = (Status.CLOSED.value, Status.EVALUATED.value)
_HEX = re.compile(r"[0-9a-f]{1,32}")
_CATEGORY = re.compile(r"[A-Z](?:[0-9]{2}){0,2}")
_FULL_CODE = 5
_UUID_GROUPS = (8, 4, 4, 4, 12)


def _dashed(digits: str) -> str:
    """Hex digits as the start of a canonical UUID text (dashes where str(UUID) has them)."""
    parts, rest = [], digits
    for size in _UUID_GROUPS:
        if not rest:
            break
        parts.append(rest[:size])
        rest = rest[size:]
    return "-".join(parts)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _state(text: str | None) -> Status | None:
    return Status(text) if text else None


def _cases(rows: Sequence[Any]) -> list[CaseRow]:
    """Rows of the ``board`` SQL view as CaseRows (every column of it is a field of CaseRow)."""
    if not rows:
        return []
    columns = rows[0].keys()
    return [_case(dict(zip(columns, row, strict=True))) for row in rows]


def _case(fields: dict[str, Any]) -> CaseRow:
    """One row of the board as a CaseRow, its text turned into ids, states and times.

    Made without calling the dataclass's ``__init__``: a frozen dataclass sets each of its 31 fields
    through ``object.__setattr__``, measured at 14 of the 26 µs a row took (a page of 100 rows: 2.6
    against 1.2 ms). CaseRow has no ``__post_init__``, and a test checks its fields are the board's columns.
    """
    merged_into = fields["merged_into"]
    fields.update(
        case_id=UUID(fields["case_id"]), status=Status(fields["status"]),
        suspended_from=_state(fields["suspended_from"]), deadline=_time(fields["deadline"]),
        escalation_due=_time(fields["escalation_due"]),
        reported_at=datetime.fromisoformat(fields["reported_at"]),
        last_occurred_at=datetime.fromisoformat(fields["last_occurred_at"]), closed_at=_time(fields["closed_at"]),
        merged_into=UUID(merged_into) if merged_into else None,
    )  # fmt: skip
    row = object.__new__(CaseRow)
    row.__dict__.update(fields)
    return row


def _timeline_row(row: Any) -> TimelineRow:
    return TimelineRow(
        case_id=UUID(row["case_id"]), version=row["version"], event_type=row["event_type"],
        occurred_at=datetime.fromisoformat(row["occurred_at"]),
        recorded_at=datetime.fromisoformat(row["recorded_at"]), actor=row["actor"],
        details=json.loads(row["details"]), position=row["position"],
    )  # fmt: skip


def _queue_row(row: Any) -> QueueRow:
    return QueueRow(
        case_id=UUID(row["case_id"]), short_id=row["short_id"], worker=row["worker"], unit=row["unit"],
        status=Status(row["status"]), suspended_from=_state(row["suspended_from"]), category=row["category"],
        category_name=row["category_name"], grid=row["grid"], deadline=_time(row["deadline"]),
        assigned_at=_time(row["assigned_at"]), position=row["position"],
    )  # fmt: skip


class BoardFilters(TypedDict, total=False):
    """The board's filters, one definition for every query that takes them (see ``board``)."""

    status: str | Sequence[str] | None
    grid: str | None
    community: str | None
    street: str | None
    category: str | Sequence[str] | None
    overdue: bool | None
    assignee: str | None
    case_ids: Sequence[UUID] | None
    reported_from: datetime | None
    reported_to: datetime | None
    scope: Scope
    limit: int
    after: UUID | None


def board(store: Views, *, now: datetime, **filters: Unpack[BoardFilters]) -> list[CaseRow]:
    """Cases in report order that pass every filter given; ``after`` is the last case of the previous page.

    ``status`` and ``category`` take one value or several (a case passes with any of them; none, with
    an empty list). A category value is a full code (``E0101``), a 大类 (``E01``: each of its
    小类) or a kind letter (``E``: every category of that kind). ``assignee`` matches the case's
    worker or its unit; ``reported_from <= reported_at < reported_to``; ``overdue`` is judged at
    ``now`` (``CaseRow.is_overdue``); ``scope`` keeps the cases a reader may see.
    """
    return _cases(_board_rows(store, now, "*", filters))


def board_records(store: Views, *, now: datetime, **filters: Unpack[BoardFilters]) -> list[dict[str, Any]]:
    """``board`` as JSON-ready records (the board's columns as stored: ids and times as text) plus ``overdue``
    judged at ``now``. The API's read path: no parsing of text into objects only to format them back."""
    rows = _board_rows(store, now, f"*, {_OVERDUE_SQL} AS overdue", filters)
    if not rows:
        return []
    columns = rows[0].keys()
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    for record in records:
        record["overdue"] = bool(record["overdue"])
    return records


def _board_rows(store: Views, now: datetime, select: str, filters: BoardFilters) -> list[Any]:
    """The board rows (``select``: the columns) that pass every filter; see ``board``."""
    status, category, overdue = filters.get("status"), filters.get("category"), filters.get("overdue")
    assignee, case_ids, after = filters.get("assignee"), filters.get("case_ids"), filters.get("after")
    reported_from, reported_to = filters.get("reported_from"), filters.get("reported_to")
    places = (("grid", filters.get("grid")), ("community", filters.get("community")), ("street", filters.get("street")))
    where: list[str] = []
    params: dict[str, Any] = {"now": iso(now), "limit": filters.get("limit", 100)}
    if status is not None:
        where.append(_any_of("status", [_status(s).value for s in _values(status)], params))
    for column, value in places:
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if category is not None:
        where.append(_categories(_values(category), params))
    if overdue is not None:
        where.append(_OVERDUE_SQL if overdue else f"NOT {_OVERDUE_SQL}")
    if assignee is not None:
        where.append("(worker = :assignee OR unit = :assignee)")
        params["assignee"] = assignee
    if case_ids is not None:
        where.append(_any_of("case_id", [str(case_id) for case_id in case_ids], params))
    if reported_from is not None:
        where.append("reported_at >= :reported_from")
        params["reported_from"] = iso(reported_from)
    if reported_to is not None:
        where.append("reported_at < :reported_to")
        params["reported_to"] = iso(reported_to)
    if after is not None:
        where.append("(reported_at, case_id) > (SELECT reported_at, case_id FROM board_case WHERE case_id = :after)")
        params["after"] = str(after)
    with store.reading() as cursor:
        scoped = _scoped(scope_filter(cursor, filters.get("scope", EVERYWHERE)), where, params)
        cursor.execute(f"SELECT {select} FROM board {scoped}ORDER BY reported_at, case_id LIMIT :limit", params)  # noqa: S608
        rows: list[Any] = cursor.fetchall()
        return rows


def escalations(store: Views, *, now: datetime, scope: Scope = EVERYWHERE, limit: int = 100) -> list[CaseRow]:
    """The overdue-and-escalation board (超期督办): open cases overdue at ``now``, under 督办, or with a yellow or
    red light; the highest 督办 level first, then red before yellow, then the soonest deadline, then case id."""
    where = [f"status IN {_OPEN_SQL}", f"({_OVERDUE_SQL} OR escalation_level > 0 OR light IN ('yellow', 'red'))"]
    params: dict[str, Any] = {"now": iso(now), "limit": limit}
    with store.reading() as cursor:
        scoped = _scoped(scope_filter(cursor, scope), where, params)
        cursor.execute(
            f"SELECT * FROM board {scoped}"  # noqa: S608 - constants and placeholders
            "ORDER BY escalation_level DESC, CASE light WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 ELSE 2 END, "
            "deadline IS NULL, deadline, case_id LIMIT :limit",
            params,
        )
        return _cases(cursor.fetchall())


def in_scope(store: Views, case_id: UUID, scope: Scope) -> bool:
    """Whether the board holds the case and ``scope`` lets its reader see it."""
    with store.reading() as cursor:
        found = scope_filter(cursor, scope)
        cursor.execute(
            f"SELECT 1 FROM board_case WHERE case_id = :case_id AND {found.sql}",  # noqa: S608 - constants
            {"case_id": str(case_id), **found.params},
        )
        return cursor.fetchone() is not None


def _scoped(found: ScopeFilter, where: list[str], params: dict[str, Any]) -> str:
    """The WHERE clause (with a trailing space; '' for none) of ``where`` and the scope's conditions."""
    params.update(found.params)
    conditions = [*where, *found.conditions]
    return f"WHERE {' AND '.join(conditions)} " if conditions else ""


def _values(value: str | Sequence[str]) -> Sequence[str]:
    return (value,) if isinstance(value, str) else value


def _any_of(column: str, values: Sequence[str], params: dict[str, Any]) -> str:
    if not values:
        return "FALSE"
    names = [f"{column}_{i}" for i in range(len(values))]
    params.update(zip(names, values, strict=True))
    return f"{column} IN ({', '.join(':' + name for name in names)})"


def _categories(values: Sequence[str], params: dict[str, Any]) -> str:
    """Categories by code, 大类 or kind: a full code matches itself, a shorter one every code it begins."""
    tests: list[str] = []
    for i, value in enumerate(values):
        if not _CATEGORY.fullmatch(value):
            raise InvalidCommand(
                "category", f"{value!r} is not a category code", "a code (E0101), a 大类 (E01) or a kind letter (E)"
            )
        name = f"category_{i}"
        if len(value) == _FULL_CODE:
            tests.append(f"category = :{name}")
            params[name] = value
        else:
            tests.append(starts_with("category", name, value, params))
    return f"({' OR '.join(tests)})" if tests else "FALSE"


def _status(text: str) -> Status:
    try:
        return Status(text)
    except ValueError:
        raise InvalidCommand("status", f"{text!r} is not a case status", ", ".join(s.value for s in Status)) from None


def find_case(store: Views, id_or_prefix: str) -> CaseRow:
    """The case with this id, or the one case whose id starts with this prefix (e.g. its short id)."""
    digits = id_or_prefix.strip().lower().replace("-", "")
    if not _HEX.fullmatch(digits):
        raise InvalidCommand("case", f"{id_or_prefix!r} is not a case id", "a case id or the start of one, in hex")
    text = _dashed(digits)
    with store.reading() as cursor:
        params: dict[str, Any] = {}
        found = starts_with("case_id", "case", text, params)
        cursor.execute(f"SELECT * FROM board WHERE {found} ORDER BY case_id LIMIT 11", params)  # noqa: S608
        rows = cursor.fetchall()
    if not rows:
        raise UnknownReference("case", id_or_prefix)
    if len(rows) > 1:
        shown = ", ".join(row["short_id"] for row in rows[:10])
        more = " …" if len(rows) > 10 else ""
        raise InvalidCommand("case", f"{id_or_prefix!r} matches more than one case: {shown}{more}", "a longer prefix")
    return _cases(rows[:1])[0]


def timeline(store: Views, case_id: UUID) -> list[TimelineRow]:
    """Every event of one case, oldest first (empty for a case the view does not know)."""
    with store.reading() as cursor:
        cursor.execute("SELECT * FROM timeline_event WHERE case_id = ? ORDER BY version", (str(case_id),))
        rows = cursor.fetchall()
    return [_timeline_row(row) for row in rows]


def queue(store: Views, worker: str, scope: Scope = EVERYWHERE) -> list[QueueRow]:
    """The cases ``worker`` is accountable for (dispatched, accepted, extension requested, or suspended
    from one of those) that ``scope`` lets the reader see, soonest deadline first."""
    with store.reading() as cursor:
        found = scope_filter(cursor, scope, places=False)
        cursor.execute(
            f"SELECT * FROM queue_case WHERE worker = :worker AND {QUEUED_SQL} AND {found.sql} "  # noqa: S608
            "ORDER BY deadline NULLS FIRST, case_id",  # SQLite's order, made explicit for PostgreSQL
            {"worker": worker, **found.params},
        )
        rows = cursor.fetchall()
    return [_queue_row(row) for row in rows]


def summary(store: Views, now: datetime, top: int = 10, scope: Scope = EVERYWHERE) -> BoardSummary:
    """The board in numbers at ``now``, over the cases ``scope`` lets the reader see; escalated counts open
    cases under supervision (督办)."""
    params: dict[str, Any] = {"now": iso(now), "top": top}
    with store.reading() as cursor:
        found = scope_filter(cursor, scope)
        params.update(found.params)
        cursor.execute(
            f"SELECT status, COUNT(*) AS cases, {count_if(_OVERDUE_SQL)} AS overdue, "  # noqa: S608 - constants
            f"{count_if('escalation_level > 0')} AS escalated FROM board_case WHERE {found.sql} GROUP BY status",
            params,
        )
        by_status = cursor.fetchall()
        cursor.execute(
            f"SELECT grid, community, COUNT(*) AS open, {count_if(_OVERDUE_SQL)} AS overdue "  # noqa: S608
            f"FROM board_case WHERE status IN {_OPEN_SQL} AND {found.sql} GROUP BY grid, community "
            "ORDER BY open DESC, grid LIMIT :top",
            params,
        )
        grids = cursor.fetchall()
    open_rows = [row for row in by_status if row["status"] in OPEN]
    return BoardSummary(
        by_status={row["status"]: row["cases"] for row in by_status},
        open=sum(row["cases"] for row in open_rows),
        overdue=sum(row["overdue"] for row in open_rows),
        closed=sum(row["cases"] for row in by_status if row["status"] in _CLOSED),
        escalated=sum(row["escalated"] for row in open_rows),
        top_grids=tuple(GridLoad(row["grid"], row["community"], row["open"], row["overdue"]) for row in grids),
    )


def grid_loads(store: Views, now: datetime, scope: Scope = EVERYWHERE) -> tuple[GridLoad, ...]:
    """Every grid holding open cases that ``scope`` lets the reader see, with its open and overdue counts at
    ``now`` (the console's map), by grid code."""
    params: dict[str, Any] = {"now": iso(now)}
    with store.reading() as cursor:
        found = scope_filter(cursor, scope)
        params.update(found.params)
        cursor.execute(
            f"SELECT grid, community, COUNT(*) AS open, {count_if(_OVERDUE_SQL)} AS overdue "  # noqa: S608
            f"FROM board_case WHERE status IN {_OPEN_SQL} AND {found.sql} GROUP BY grid, community ORDER BY grid",
            params,
        )
        rows = cursor.fetchall()
    return tuple(GridLoad(row["grid"], row["community"], row["open"], row["overdue"]) for row in rows)
