"""The case board (案件总览): one row per case with its status, place, accountable party and clocks."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod

from engine.lifecycle import ASSIGNEE_STATES, DESK_STATES, HAND_OVER_PROCESSING, Status
from engine.reference import Grid
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

# The accountability rule of engine.lifecycle, as SQL over the row: a suspended case keeps the
# party of the state it was suspended from; desk states answer with the desk, assignee states with
# the worker, else the unit; a case that is no longer open has nobody. Built from the same sets
# the aggregate uses, so the board cannot disagree with WorkOrder.accountable.
ACCOUNTABLE_SQL = (
    f"CASE WHEN {ANSWERS_AS_SQL} IN {sql_set(DESK_STATES)} THEN 'desk:' || desk "
    f"WHEN {ANSWERS_AS_SQL} IN {sql_set(ASSIGNEE_STATES)} THEN "
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
    "description TEXT NOT NULL, "
    "lon REAL, "
    "lat REAL, "
    "unit TEXT NOT NULL DEFAULT '', "
    "worker TEXT NOT NULL DEFAULT '', "
    "deadline TEXT, "
    "escalation_level INTEGER NOT NULL DEFAULT 0, "
    "escalation_due TEXT, "
    "light TEXT NOT NULL DEFAULT '', "
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
    # The place and assignee indexes leave status out on purpose: most events change only the status,
    # and an index that does not contain it costs such an event nothing. They end in the board's order,
    # so a page of one grid, community, street, worker or unit (a reader's scope) is read in order and
    # stops at its limit: measured on 200k cases, a community's page took 41 ms with its cases sorted,
    # a worker's 248 ms scanning every case in report order; under 1 ms each with these.
    "CREATE INDEX IF NOT EXISTS board_case_by_status ON board_case (status, deadline)",
    "CREATE INDEX IF NOT EXISTS board_case_by_grid ON board_case (grid, reported_at, case_id)",
    "CREATE INDEX IF NOT EXISTS board_case_by_community ON board_case (community, reported_at, case_id)",
    "CREATE INDEX IF NOT EXISTS board_case_by_street ON board_case (street, reported_at, case_id)",
    "CREATE INDEX IF NOT EXISTS board_case_by_worker ON board_case (worker, reported_at, case_id)",
    "CREATE INDEX IF NOT EXISTS board_case_by_unit ON board_case (unit, reported_at, case_id)",
    "CREATE INDEX IF NOT EXISTS board_case_by_reported ON board_case (reported_at, case_id)",
)

_INSERT_CASE = (
    "INSERT INTO board_case (case_id, short_id, status, category, category_name, source, grid, "
    "community, street, desk, description, lon, lat, reported_at, last_occurred_at, version, position) "
    "VALUES (:case_id, :short_id, :status, :category, :category_name, :source, :grid, "
    "COALESCE((SELECT community FROM board_grid WHERE code = :grid), ''), "
    "COALESCE((SELECT street FROM board_grid WHERE code = :grid), ''), "
    ":desk, :description, :lon, :lat, :occurred_at, :occurred_at, :version, :position)"
)

# Entering these states changes more than the status. A return and every reopening release the
# assignee and their deadline, as the aggregate does: the desk holds the case until it dispatches again.
# A new step starts a new clock: the deadline light (预警灯) of the last one goes out.
_RELEASE = "unit = '', worker = '', deadline = NULL, light = ''"
ON_ENTERING = {
    Status.RETURNED: f"{_RELEASE}, return_count = return_count + 1",
    Status.REOPENED: f"{_RELEASE}, rework_count = rework_count + 1, closed_at = NULL",
    Status.CLOSED: "closed_at = :occurred_at, light = ''",
    Status.DISPATCHED: "light = ''",
    Status.HANDLED: "light = ''",
}


class CaseBoard(CaseFold, Projection):
    """案件总览: every case, where it stands, who must act on it and by when."""

    name = "case_board"
    version = 2  # 2: description, lon, lat; place and assignee indexes in the board's order
    tables = (ViewTable("board_case", ("case_id",)), ViewTable("board_grid", ("code",)))
    schema = SCHEMA
    insert_case = _INSERT_CASE
    case_table = "board_case"
    every_event = "last_occurred_at = MAX(last_occurred_at, :occurred_at), version = :version, position = :position"
    on_entering = ON_ENTERING

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
        # Read from Kafka, grids and cases arrive on different topics in no agreed order: a case
        # reported before its grid's Drawn was applied gets the grid's place now, so the board is
        # the same whichever came first (on the embedded log the grid always comes first).
        cursor.execute(
            "UPDATE board_case SET community = ?, street = ? WHERE grid = ? AND community = ''",
            (event.community, event.street, event.code),
        )

    @process_event.register(event_class(WorkOrder, "Merged"))
    def _merged(self, event: Any, position: int, cursor: Cursor) -> None:
        self.move(event, position, cursor, "merged_into = :into_case", into_case=str(event.into_case))

    @process_event.register(event_class(WorkOrder, "DuplicateLinked"))
    def _duplicate_linked(self, event: Any, position: int, cursor: Cursor) -> None:
        self.move(event, position, cursor, "duplicate_count = duplicate_count + 1")

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _assigned(self, event: Any, position: int, cursor: Cursor) -> None:
        changes = "unit = :unit, worker = :worker, deadline = :deadline"
        self.move(event, position, cursor, changes, unit=event.unit, worker=event.worker, deadline=iso(event.deadline))

    @process_event.register(event_class(WorkOrder, "Escalated"))
    def _escalated(self, event: Any, position: int, cursor: Cursor) -> None:
        due = getattr(event, "due", None)
        changes = "escalation_level = :level, escalation_due = :due"
        self.move(event, position, cursor, changes, level=event.level, due=iso(due) if due else None)

    @process_event.register(event_class(WorkOrder, "DeadlineWarned"))
    def _deadline_warned(self, event: Any, position: int, cursor: Cursor) -> None:
        self.move(event, position, cursor, "light = :light", light=event.light)

    @process_event.register(event_class(WorkOrder, "HandedOver"))
    def _handed_over(self, event: Any, position: int, cursor: Cursor) -> None:
        if event.stage == HAND_OVER_PROCESSING:
            changes = "unit = :unit, worker = '', deadline = :deadline"
            self.move(event, position, cursor, changes, unit=event.to_unit, deadline=iso(event.deadline))
        else:
            self.move(event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Recategorised"))
    def _recategorised(self, event: Any, position: int, cursor: Cursor) -> None:
        changes = "category = :category, category_name = :category_name"
        name = self.category_name(event.category)
        self.move(event, position, cursor, changes, category=event.category, category_name=name)

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    def _called_back(self, event: Any, position: int, cursor: Cursor) -> None:
        self.move(event, position, cursor, "satisfaction = :satisfaction", satisfaction=event.satisfaction)

    follow_every_case_event(process_event)
