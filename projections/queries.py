"""Queries over the views (read-only): the board, one case, its timeline, a worker's queue, a summary."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.errors import InvalidCommand, UnknownReference
from engine.lifecycle import ASSIGNEE_STATES, OPEN, Status
from projections.projection import iso, sql_set
from projections.queue import QUEUED_SQL
from projections.store import ViewStore
from projections.views import VIEW_NAMES


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
    unit: str
    worker: str
    accountable: str | None
    deadline: datetime | None
    escalation_level: int
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


def _case(row: Any) -> CaseRow:
    return CaseRow(
        case_id=UUID(row["case_id"]), short_id=row["short_id"], status=Status(row["status"]),
        suspended_from=_state(row["suspended_from"]), category=row["category"], category_name=row["category_name"],
        source=row["source"], grid=row["grid"],
        community=row["community"], street=row["street"], desk=row["desk"], unit=row["unit"],
        worker=row["worker"], accountable=row["accountable"], deadline=_time(row["deadline"]),
        escalation_level=row["escalation_level"], reported_at=datetime.fromisoformat(row["reported_at"]),
        last_occurred_at=datetime.fromisoformat(row["last_occurred_at"]), closed_at=_time(row["closed_at"]),
        rework_count=row["rework_count"], return_count=row["return_count"], duplicate_count=row["duplicate_count"],
        merged_into=UUID(row["merged_into"]) if row["merged_into"] else None, satisfaction=row["satisfaction"],
        version=row["version"], position=row["position"],
    )  # fmt: skip


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


def board(
    store: ViewStore,
    *,
    status: str | None = None,
    grid: str | None = None,
    community: str | None = None,
    overdue: bool | None = None,
    now: datetime,
    limit: int = 100,
    after: UUID | None = None,
) -> list[CaseRow]:
    """Cases in report order, filtered; ``after`` is the last case of the previous page."""
    where: list[str] = []
    params: dict[str, Any] = {"now": iso(now), "limit": limit}
    if status is not None:
        where.append("status = :status")
        params["status"] = _status(status).value
    if grid is not None:
        where.append("grid = :grid")
        params["grid"] = grid
    if community is not None:
        where.append("community = :community")
        params["community"] = community
    if overdue is not None:
        where.append(_OVERDUE_SQL if overdue else f"NOT {_OVERDUE_SQL}")
    if after is not None:
        where.append("(reported_at, case_id) > (SELECT reported_at, case_id FROM board_case WHERE case_id = :after)")
        params["after"] = str(after)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    with store.reading() as cursor:
        cursor.execute(
            f"SELECT * FROM board {clause}ORDER BY reported_at, case_id LIMIT :limit",  # noqa: S608
            params,
        )
        return [_case(row) for row in cursor.fetchall()]


def _status(text: str) -> Status:
    try:
        return Status(text)
    except ValueError:
        raise InvalidCommand("status", f"{text!r} is not a case status", ", ".join(s.value for s in Status)) from None


def find_case(store: ViewStore, id_or_prefix: str) -> CaseRow:
    """The case with this id, or the one case whose id starts with this prefix (e.g. its short id)."""
    digits = id_or_prefix.strip().lower().replace("-", "")
    if not _HEX.fullmatch(digits):
        raise InvalidCommand("case", f"{id_or_prefix!r} is not a case id", "a case id or the start of one, in hex")
    text = _dashed(digits)
    with store.reading() as cursor:
        # GLOB (unlike LIKE) is case-sensitive, so it can walk the primary-key index.
        cursor.execute("SELECT * FROM board WHERE case_id GLOB ? ORDER BY case_id LIMIT 11", (text + "*",))
        rows = cursor.fetchall()
    if not rows:
        raise UnknownReference("case", id_or_prefix)
    if len(rows) > 1:
        shown = ", ".join(row["short_id"] for row in rows[:10])
        more = " …" if len(rows) > 10 else ""
        raise InvalidCommand("case", f"{id_or_prefix!r} matches more than one case: {shown}{more}", "a longer prefix")
    return _case(rows[0])


def timeline(store: ViewStore, case_id: UUID) -> list[TimelineRow]:
    """Every event of one case, oldest first (empty for a case the view does not know)."""
    with store.reading() as cursor:
        cursor.execute("SELECT * FROM timeline_event WHERE case_id = ? ORDER BY version", (str(case_id),))
        rows = cursor.fetchall()
    return [_timeline_row(row) for row in rows]


def queue(store: ViewStore, worker: str) -> list[QueueRow]:
    """The cases ``worker`` is accountable for (dispatched, accepted, extension requested, or suspended
    from one of those), soonest deadline first."""
    with store.reading() as cursor:
        cursor.execute(
            f"SELECT * FROM queue_case WHERE worker = ? AND {QUEUED_SQL} "  # noqa: S608 - constants
            "ORDER BY deadline, case_id",
            (worker,),
        )
        rows = cursor.fetchall()
    return [_queue_row(row) for row in rows]


def summary(store: ViewStore, now: datetime, top: int = 10) -> BoardSummary:
    """The board in numbers at ``now``; escalated counts open cases under supervision (督办)."""
    params = {"now": iso(now), "top": top}
    with store.reading() as cursor:
        cursor.execute(
            f"SELECT status, COUNT(*) AS cases, SUM({_OVERDUE_SQL}) AS overdue, "  # noqa: S608 - constants
            "SUM(escalation_level > 0) AS escalated FROM board_case GROUP BY status",
            params,
        )
        by_status = cursor.fetchall()
        cursor.execute(
            f"SELECT grid, community, COUNT(*) AS open, SUM({_OVERDUE_SQL}) AS overdue "  # noqa: S608 - constants
            f"FROM board_case WHERE status IN {_OPEN_SQL} GROUP BY grid, community "
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


def wait_for(store: ViewStore, position: int, timeout: float, names: Sequence[str] = VIEW_NAMES) -> bool:
    """Read-your-writes: wait (at most ``timeout`` seconds) until every named view has read ``position``.

    Returns False on timeout instead of raising: the caller may still answer, marked as stale.
    """
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        if min(store.positions(names).values()) >= position:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # Short first pauses: the embedded runner usually catches up within a poll interval.
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)


def view_rows(store: ViewStore, name: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of one view, table by table, in canonical order (the key columns of each table)."""
    if name not in store.views:
        raise UnknownReference("view", name, sorted(store.views))
    rows: dict[str, list[dict[str, Any]]] = {}
    with store.reading() as cursor:
        for table in sorted(store.views[name].tables, key=lambda t: t.name):
            cursor.execute(f"SELECT * FROM {table.name} ORDER BY {', '.join(table.key)}")  # noqa: S608
            rows[table.name] = [dict(zip(row.keys(), tuple(row), strict=True)) for row in cursor.fetchall()]
    return rows


def view_checksum(store: ViewStore, name: str) -> str:
    """A sha256 over every row and column of one view in canonical order: equal views, equal checksums."""
    digest = hashlib.sha256()
    for table, rows in view_rows(store, name).items():
        digest.update(f"table {table}\n".encode())
        for row in rows:
            digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def held_aggregates(store: ViewStore) -> list[dict[str, Any]]:
    """Aggregates the Kafka runner holds back (an earlier record of theirs is dead-lettered), oldest first."""
    with store.reading() as cursor:
        cursor.execute("SELECT topic, partition, key, first_offset, error FROM held_aggregate ORDER BY 1, 2, 4")
        return [dict(zip(row.keys(), tuple(row), strict=True)) for row in cursor.fetchall()]
