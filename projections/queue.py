"""The worker queue (待办): the open cases each worker is accountable for, with their deadlines."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod

from engine.lifecycle import ASSIGNEE_STATES, HAND_OVER_PROCESSING, Status
from engine.work_order import WorkOrder
from projections.projection import (
    ANSWERS_AS_SQL,
    CaseFold,
    Cursor,
    Projection,
    ViewTable,
    event_class,
    follow_every_case_event,
    iso,
    sql_set,
)

# One row per case holding its status and current assignment. The queue itself is a query over
# the rows (QUEUED_SQL), so it follows the accountability rule (事事有人办) to the letter: a case is
# on a worker's queue while that worker is accountable for it. Keeping a row for every case, not
# only the queued ones, is what lets the view know where a case stands without reading another view.
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

QUEUED_SQL = f"({ANSWERS_AS_SQL} IN {sql_set(ASSIGNEE_STATES)})"
"""A row on its worker's queue: the case answers as an assignee state (dispatched, accepted, extension
requested), itself or as the state it was suspended from. Handled, returned and reopened cases are the
desk's; closed and evaluated ones nobody's."""

_INSERT = (
    "INSERT INTO queue_case (case_id, short_id, status, category, category_name, grid, position) "
    "VALUES (:case_id, :short_id, :status, :category, :category_name, :grid, :position)"
)

# A return and every reopening release the assignee, as the aggregate does, so a later dispatch
# starts a fresh assignment.
ON_ENTERING = {
    status: "unit = '', worker = '', deadline = NULL, assigned_at = NULL"
    for status in (Status.RETURNED, Status.REOPENED)
}


class WorkerQueue(CaseFold, Projection):
    """待办: what each worker is accountable for, soonest deadline first."""

    name = "worker_queue"
    tables = (ViewTable("queue_case", ("case_id",)),)
    schema = SCHEMA
    insert_case = _INSERT
    case_table = "queue_case"
    every_event = "position = :position"
    on_entering = ON_ENTERING

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the queues."""

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _assigned(self, event: Any, position: int, cursor: Cursor) -> None:
        changes = "unit = :unit, worker = :worker, deadline = :deadline, assigned_at = :occurred_at"
        self.move(event, position, cursor, changes, unit=event.unit, worker=event.worker, deadline=iso(event.deadline))

    @process_event.register(event_class(WorkOrder, "HandedOver"))
    def _handed_over(self, event: Any, position: int, cursor: Cursor) -> None:
        """全县通办: the processing unit takes the case; the hand-back leaves it with the desk."""
        if event.stage == HAND_OVER_PROCESSING:
            changes = "unit = :unit, worker = '', deadline = :deadline, assigned_at = :occurred_at"
            self.move(event, position, cursor, changes, unit=event.to_unit, deadline=iso(event.deadline))
        else:
            self.move(event, position, cursor)

    follow_every_case_event(process_event)
