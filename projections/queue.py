"""The worker queue (待办): the open cases assigned to each worker, with their deadlines."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod

from engine.catalogue import Catalogue, default_catalogue
from engine.lifecycle import Status
from engine.work_order import WorkOrder
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, short_id

# One row per case holding its current assignment. A case is in a worker's queue while it is
# open and assigned to that worker: it enters on Dispatched/Reassigned, leaves on Returned, on a
# reassignment elsewhere and when it stops being open (closed, evaluated), and comes back if a
# closed case is reopened while still assigned (the aggregate keeps the worker). Keeping the row
# instead of deleting it is what lets a reopened case find its worker again without reading
# another view.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queue_case ("
    "case_id TEXT PRIMARY KEY, "
    "short_id TEXT NOT NULL, "
    "status TEXT NOT NULL, "
    "suspended_from TEXT, "
    "category TEXT NOT NULL, "
    "category_name TEXT NOT NULL, "
    "grid TEXT NOT NULL, "
    "unit TEXT NOT NULL DEFAULT '', "
    "worker TEXT NOT NULL DEFAULT '', "
    "deadline TEXT, "
    "assigned_at TEXT, "
    "position INTEGER NOT NULL"
    ")",
    "CREATE INDEX IF NOT EXISTS queue_case_by_worker ON queue_case (worker, deadline)",
)

_INSERT = (
    "INSERT INTO queue_case (case_id, short_id, status, category, category_name, grid, position) "
    "VALUES (:case_id, :short_id, :status, :category, :category_name, :grid, :position)"
)


def _update(changes: str) -> str:
    return f"UPDATE queue_case SET {changes}, position = :position WHERE case_id = :case_id"  # noqa: S608


def _status(status: Status) -> str:
    return f"status = '{status.value}'"


_REGISTERED = _update(f"{_status(Status.REGISTERED)}, category = :category, category_name = :category_name")
_ASSIGNED = _update(
    f"{_status(Status.DISPATCHED)}, unit = :unit, worker = :worker, deadline = :deadline, assigned_at = :occurred_at"
)
_RETURNED = _update(f"{_status(Status.RETURNED)}, unit = '', worker = ''")
_EXTENSION_GRANTED = _update(f"{_status(Status.ACCEPTED)}, deadline = :new_deadline")
_SUSPENDED = _update(f"suspended_from = status, {_status(Status.SUSPENDED)}")
_RESUMED = _update("status = suspended_from, suspended_from = NULL")
_MOVED = {status: _update(_status(status)) for status in Status}


def _params(event: Any, position: int, **fields: Any) -> dict[str, Any]:
    return {"case_id": str(event.originator_id), "position": position, **fields}


class WorkerQueue(Projection):
    """待办: what each worker has on hand, soonest deadline first."""

    name = "worker_queue"
    tables = (ViewTable("queue_case", ("case_id",)),)
    schema = SCHEMA

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self._catalogue = catalogue or default_catalogue()

    def _category_name(self, code: str) -> str:
        category = self._catalogue.categories.get(code)
        return category.name if category is not None else ""

    def _move(self, status: Status, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_MOVED[status], _params(event, position))

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the queues."""

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            _INSERT,
            _params(
                event, position, short_id=short_id(event.originator_id), status=Status.REPORTED.value,
                category=event.category, category_name=self._category_name(event.category), grid=event.grid,
            ),
        )  # fmt: skip

    @process_event.register(event_class(WorkOrder, "Registered"))
    def _registered(self, event: Any, position: int, cursor: Cursor) -> None:
        category_name = self._category_name(event.category)
        cursor.execute(_REGISTERED, _params(event, position, category=event.category, category_name=category_name))

    @process_event.register(event_class(WorkOrder, "Rejected"))
    def _rejected(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.REJECTED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Merged"))
    def _merged(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.MERGED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _assigned(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            _ASSIGNED,
            _params(
                event, position, unit=event.unit, worker=event.worker, deadline=iso(event.deadline),
                occurred_at=iso(event.occurred_at),
            ),
        )  # fmt: skip

    @process_event.register(event_class(WorkOrder, "Accepted"))
    @process_event.register(event_class(WorkOrder, "ExtensionDenied"))
    def _accepted(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.ACCEPTED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Returned"))
    def _returned(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_RETURNED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "ExtensionRequested"))
    def _extension_requested(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.EXTENSION_REQUESTED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "ExtensionGranted"))
    def _extension_granted(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_EXTENSION_GRANTED, _params(event, position, new_deadline=iso(event.new_deadline)))

    @process_event.register(event_class(WorkOrder, "Suspended"))
    def _suspended(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_SUSPENDED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "Resumed"))
    def _resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(_RESUMED, _params(event, position))

    @process_event.register(event_class(WorkOrder, "HandlingReported"))
    def _handling_reported(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.HANDLED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Verified"))
    def _verified(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.CLOSED if event.passed else Status.REOPENED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    def _called_back(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.EVALUATED if event.fixed else Status.REOPENED, event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _reopened(self, event: Any, position: int, cursor: Cursor) -> None:
        self._move(Status.REOPENED, event, position, cursor)
