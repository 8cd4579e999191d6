"""The call-back queue (回访任务): residents' closed cases awaiting a call-back, its due time and attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod

from engine.catalogue import Catalogue, default_catalogue
from engine.work_order import RESIDENT_SOURCES, WorkOrder
from engine.working_time import WorkingCalendar, china_calendar
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key, short_id
from projections.scope import EVERYWHERE, Scope, scope_filter

if TYPE_CHECKING:
    from projections.store import Views

# Two tables: the resident cases the view has seen reported (who to call, where, what), and the
# tasks: one row per closed case awaiting its call-back. A row enters when verification closes
# the case and leaves when the call-back is made (CalledBack, fixed or not) or the case is
# reopened otherwise; a closing after rework makes a new task. Every event here is a work order's,
# and one case's events come in order from either source, so the fold is order-safe across cases.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS callback_case ("
    "case_id TEXT PRIMARY KEY, short_id TEXT NOT NULL, source TEXT NOT NULL, reporter TEXT NOT NULL, "
    "grid TEXT NOT NULL, category TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS callback_task ("
    "case_id TEXT PRIMARY KEY, "
    "short_id TEXT NOT NULL, "
    "source TEXT NOT NULL, "
    "reporter TEXT NOT NULL, "
    "grid TEXT NOT NULL, "
    "category TEXT NOT NULL, "
    "closed_at TEXT NOT NULL, "
    "due_at TEXT NOT NULL, "
    "attempts INTEGER NOT NULL DEFAULT 0, "
    "last_attempt_at TEXT, "
    "last_reason TEXT NOT NULL DEFAULT '', "
    "position INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS callback_task_by_due ON callback_task (due_at, case_id)",
)


class CallbackQueue(Projection):
    """回访任务: each resident's closed case awaits a call-back by a due time (the catalogue's working days)."""

    name = "callback_queue"
    tables = (ViewTable("callback_case", ("case_id",)), ViewTable("callback_task", ("case_id",)))
    schema = SCHEMA

    def __init__(self, catalogue: Catalogue | None = None, calendar: WorkingCalendar | None = None) -> None:
        self._catalogue = catalogue or default_catalogue()
        self._calendar = calendar or china_calendar()

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the call-back queue."""

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        if event.source not in RESIDENT_SOURCES:
            return  # a patrol finding, a department's task, a sensor: nobody to call back
        cursor.execute(
            "INSERT INTO callback_case (case_id, short_id, source, reporter, grid, category) VALUES (?, ?, ?, ?, ?, ?)",
            (
                originator_key(event), short_id(event.originator_id), event.source,
                event.reporter or event.actor, event.grid, event.category,
            ),
        )  # fmt: skip

    @process_event.register(event_class(WorkOrder, "Registered"))
    @process_event.register(event_class(WorkOrder, "Recategorised"))
    def _category(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute("UPDATE callback_case SET category = ? WHERE case_id = ?", (event.category, case_of(event)))

    @process_event.register(event_class(WorkOrder, "Verified"))
    def _verified(self, event: Any, position: int, cursor: Cursor) -> None:
        if not event.passed:
            return
        due = self._catalogue.call_back_by(event.occurred_at, self._calendar)
        cursor.execute(
            "INSERT INTO callback_task (case_id, short_id, source, reporter, grid, category, closed_at, due_at, "
            "position) SELECT case_id, short_id, source, reporter, grid, category, ?, ?, ? FROM callback_case "
            "WHERE case_id = ?",
            (iso(event.occurred_at), iso(due), position, case_of(event)),
        )

    @process_event.register(event_class(WorkOrder, "CallBackMissed"))
    def _missed(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "UPDATE callback_task SET attempts = attempts + 1, last_attempt_at = ?, last_reason = ?, position = ? "
            "WHERE case_id = ?",
            (iso(event.occurred_at), event.reason, position, case_of(event)),
        )

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _answered(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute("DELETE FROM callback_task WHERE case_id = ?", (case_of(event),))


def case_of(event: Any) -> str:
    return originator_key(event)


# -- the query ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackTask:
    """One closed case awaiting its call-back (回访): whom to call, by when, and the attempts that missed."""

    case_id: UUID
    short_id: str
    source: str
    reporter: str
    grid: str
    category: str
    closed_at: datetime
    due_at: datetime
    attempts: int
    """Call-back attempts that did not reach the resident (回访未果) since the case closed."""
    last_attempt_at: datetime | None
    last_reason: str
    overdue: bool
    """The due time has passed at the moment the queue was read."""
    position: int


def callback_queue(
    store: Views,
    *,
    now: datetime,
    due_before: datetime | None = None,
    overdue: bool = False,
    scope: Scope = EVERYWHERE,
    limit: int = 100,
) -> list[CallbackTask]:
    """Closed cases awaiting a call-back, soonest due first; ``overdue`` (judged at ``now``) keeps those past due,
    ``due_before`` those due before that time; ``scope`` keeps the cases a reader may see (by grid)."""
    if scope.worker is not None or scope.unit is not None:
        return []  # call-backs are the desk's work: a worker's or a unit's scope holds none
    where: list[str] = []
    params: dict[str, Any] = {"now": iso(now), "limit": limit}
    if overdue:
        where.append("due_at < :now")
    if due_before is not None:
        where.append("due_at < :due_before")
        params["due_before"] = iso(due_before)
    with store.reading() as cursor:
        scoped = scope_filter(cursor, scope, places=False)
        where.extend(scoped.conditions)
        params.update(scoped.params)
        cursor.execute(
            f"SELECT *, due_at < :now AS overdue FROM callback_task WHERE {' AND '.join(where) or 'TRUE'} "  # noqa: S608
            "ORDER BY due_at, case_id LIMIT :limit",
            params,
        )
        return [_task(row) for row in cursor.fetchall()]


def _task(row: Any) -> CallbackTask:
    last = row["last_attempt_at"]
    return CallbackTask(
        case_id=UUID(row["case_id"]), short_id=row["short_id"], source=row["source"], reporter=row["reporter"],
        grid=row["grid"], category=row["category"], closed_at=datetime.fromisoformat(row["closed_at"]),
        due_at=datetime.fromisoformat(row["due_at"]), attempts=row["attempts"],
        last_attempt_at=datetime.fromisoformat(last) if last else None, last_reason=row["last_reason"],
        overdue=bool(row["overdue"]), position=row["position"],
    )  # fmt: skip
