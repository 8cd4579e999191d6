"""The case board (案件总览): one row per case with its status, place, accountable party and clocks."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod

from engine.catalogue import Catalogue, default_catalogue
from engine.lifecycle import ASSIGNEE_STATES, DESK_STATES, Status
from engine.reference import Grid
from engine.work_order import WorkOrder
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, short_id


def _sql_set(states: frozenset[Status]) -> str:
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"


# The accountability rule of engine.lifecycle, as SQL over the row: a suspended case keeps the
# party of the state it was suspended from; desk states answer with the desk, assignee states with
# the worker, else the unit; a case that is no longer open has nobody. Built from the same sets
# the aggregate uses, so the board cannot disagree with WorkOrder.accountable.
_EFFECTIVE = f"(CASE WHEN status = '{Status.SUSPENDED.value}' THEN suspended_from ELSE status END)"
ACCOUNTABLE_SQL = (
    f"CASE WHEN {_EFFECTIVE} IN {_sql_set(DESK_STATES)} THEN 'desk:' || desk "
    f"WHEN {_EFFECTIVE} IN {_sql_set(ASSIGNEE_STATES)} THEN "
    "(CASE WHEN worker != '' THEN 'worker:' || worker ELSE 'unit:' || unit END) "
    "END"
)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS board_grid ("
    "code TEXT PRIMARY KEY, community TEXT NOT NULL, street TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS board_case ("
    "case_id TEXT PRIMARY KEY, "
    "short_id TEXT NOT NULL, "
    "status TEXT NOT NULL, "
    "suspended_from TEXT, "
    "category TEXT NOT NULL, "
    "category_name TEXT NOT NULL, "
    "source TEXT NOT NULL, "
    "grid TEXT NOT NULL, "
    "community TEXT NOT NULL, "
    "street TEXT NOT NULL, "
    "desk TEXT NOT NULL, "
    "unit TEXT NOT NULL DEFAULT '', "
    "worker TEXT NOT NULL DEFAULT '', "
    "deadline TEXT, "
    "escalation_level INTEGER NOT NULL DEFAULT 0, "
    "reported_at TEXT NOT NULL, "
    "last_occurred_at TEXT NOT NULL, "
    "closed_at TEXT, "
    "rework_count INTEGER NOT NULL DEFAULT 0, "
    "return_count INTEGER NOT NULL DEFAULT 0, "
    "duplicate_count INTEGER NOT NULL DEFAULT 0, "
    "merged_into TEXT, "
    "satisfaction INTEGER, "
    "version INTEGER NOT NULL, "
    "position INTEGER NOT NULL)",
    # Who is accountable is derived on reading, not stored: measured, a generated column (or a
    # WITHOUT ROWID table, for rows this wide) made every write to the board two to three times
    # dearer. Recreated on every open, so a changed rule in engine.lifecycle needs no rebuild.
    "DROP VIEW IF EXISTS board",
    f"CREATE VIEW board AS SELECT *, {ACCOUNTABLE_SQL} AS accountable FROM board_case",  # noqa: S608
    # Grid and community indexes leave status out on purpose: most events change only the status,
    # and an index that does not contain it costs such an event nothing.
    "CREATE INDEX IF NOT EXISTS board_case_by_status ON board_case (status, deadline)",
    "CREATE INDEX IF NOT EXISTS board_case_by_grid ON board_case (grid)",
    "CREATE INDEX IF NOT EXISTS board_case_by_community ON board_case (community)",
    "CREATE INDEX IF NOT EXISTS board_case_by_reported ON board_case (reported_at, case_id)",
)

_INSERT_CASE = (
    "INSERT INTO board_case (case_id, short_id, status, category, category_name, source, grid, "
    "community, street, desk, reported_at, last_occurred_at, version, position) "
    "VALUES (:case_id, :short_id, :status, :category, :category_name, :source, :grid, "
    "COALESCE((SELECT community FROM board_grid WHERE code = :grid), ''), "
    "COALESCE((SELECT street FROM board_grid WHERE code = :grid), ''), "
    ":desk, :occurred_at, :occurred_at, :version, :position)"
)


def _update(changes: str) -> str:
    """An UPDATE of one case: the event's own changes plus what every event moves."""
    head = f"{changes}, " if changes else ""
    return (
        f"UPDATE board_case SET {head}"  # noqa: S608 - the changes are constants of this module
        "last_occurred_at = MAX(last_occurred_at, :occurred_at), version = :version, position = :position "
        "WHERE case_id = :case_id"
    )


def _status(status: Status) -> str:
    return f"status = '{status.value}'"


_REGISTERED = _update(f"{_status(Status.REGISTERED)}, category = :category, category_name = :category_name")
_REJECTED = _update(_status(Status.REJECTED))
_MERGED = _update(f"{_status(Status.MERGED)}, merged_into = :into_case")
_DUPLICATE_LINKED = _update("duplicate_count = duplicate_count + 1")
_ASSIGNED = _update(f"{_status(Status.DISPATCHED)}, unit = :unit, worker = :worker, deadline = :deadline")
_ACCEPTED = _update(_status(Status.ACCEPTED))
_RETURNED = _update(f"{_status(Status.RETURNED)}, unit = '', worker = '', return_count = return_count + 1")
_EXTENSION_REQUESTED = _update(_status(Status.EXTENSION_REQUESTED))
_EXTENSION_GRANTED = _update(f"{_status(Status.ACCEPTED)}, deadline = :new_deadline")
_SUSPENDED = _update(f"suspended_from = status, {_status(Status.SUSPENDED)}")
_RESUMED = _update("status = suspended_from, suspended_from = NULL")
_HANDLED = _update(_status(Status.HANDLED))
_CLOSED = _update(f"{_status(Status.CLOSED)}, closed_at = :occurred_at")
_REWORK = _update(f"{_status(Status.REOPENED)}, rework_count = rework_count + 1, closed_at = NULL")
_ESCALATED = _update("escalation_level = :level")
_EVALUATED = _update(f"{_status(Status.EVALUATED)}, satisfaction = :satisfaction")
_NOT_FIXED = _update(
    f"{_status(Status.REOPENED)}, satisfaction = :satisfaction, rework_count = rework_count + 1, closed_at = NULL"
)


def _params(event: Any, position: int, **fields: Any) -> dict[str, Any]:
    return {
        "case_id": str(event.originator_id),
        "occurred_at": iso(event.occurred_at),
        "version": event.originator_version,
        "position": position,
        **fields,
    }


class CaseBoard(Projection):
    """案件总览: every case, where it stands, who must act on it and by when."""

    name = "case_board"
    tables = (ViewTable("board_case", ("case_id",)), ViewTable("board_grid", ("code",)))
    schema = SCHEMA

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self._catalogue = catalogue or default_catalogue()

    def _category_name(self, code: str) -> str:
        category = self._catalogue.categories.get(code)
        return category.name if category is not None else ""

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the board."""

    @process_event.register(event_class(Grid, "Drawn"))
    def _grid_drawn(self, event: Any, position: int, cursor: Cursor) -> None:
        # The board keeps its own grid → community/street map: it may not read another view.
        cursor.execute(
            "INSERT INTO board_grid (code, community, street) VALUES (?, ?, ?)",
            (event.code, event.community, event.street),
        )

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            _INSERT_CASE,
            _params(
                event, position, short_id=short_id(event.originator_id), status=Status.REPORTED.value,
                category=event.category, category_name=self._category_name(event.category),
                source=event.source, grid=event.grid, desk=event.desk,
            ),
        )  # fmt: skip

    @process_event.register(event_class(WorkOrder, "Registered"))
    def _registered(self, event: Any, position: int, cursor: Cursor) -> None:
        category_name = self._category_name(event.category)
        cursor.execute(_REGISTERED, _params(event, position, category=event.category, category_name=category_name))

    @process_event.register(event_class(WorkOrder, "Rejected"))
    def _rejected(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_REJECTED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Merged"))
    def _merged(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_MERGED, _params(event, position, into_case=str(event.into_case)))

    @process_event.register(event_class(WorkOrder, "DuplicateLinked"))
    def _duplicate_linked(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_DUPLICATE_LINKED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _assigned(self, event: Any, position: int, cursor: Cursor) -> None:
        deadline = iso(event.deadline)
        cursor.execute(_ASSIGNED, _params(event, position, unit=event.unit, worker=event.worker, deadline=deadline))

    @process_event.register(event_class(WorkOrder, "Accepted"))
    def _accepted(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_ACCEPTED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Returned"))
    def _returned(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_RETURNED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "ExtensionRequested"))
    def _extension_requested(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_EXTENSION_REQUESTED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "ExtensionGranted"))
    def _extension_granted(self, event: Any, position: int, cursor: Cursor) -> None:
        new_deadline = iso(event.new_deadline)
        cursor.execute(_EXTENSION_GRANTED, _params(event, position, new_deadline=new_deadline))

    @process_event.register(event_class(WorkOrder, "ExtensionDenied"))
    def _extension_denied(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_ACCEPTED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Suspended"))
    def _suspended(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_SUSPENDED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Resumed"))
    def _resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_RESUMED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "HandlingReported"))
    def _handling_reported(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_HANDLED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Verified"))
    def _verified(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_CLOSED if event.passed else _REWORK, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Escalated"))
    def _escalated(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_ESCALATED, _params(event, position, level=event.level))

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    def _called_back(self, event: Any, position: int, cursor: Cursor) -> None:
        statement = _EVALUATED if event.fixed else _NOT_FIXED
        cursor.execute(statement, _params(event, position, satisfaction=event.satisfaction))

    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _reopened(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_REWORK, _params(event, position))
