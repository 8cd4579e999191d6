"""The 四度 inputs (熟悉度, 信任度, 落实度, 满意度): per grid worker and local day, what the log says they did."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod

from engine.lifecycle import HAND_OVER_PROCESSING, Status, status_after_event
from engine.patrol import Patrol
from engine.reference import Grid, Worker
from engine.work_order import WorkOrder
from projections.evaluation.places import GridMap, local_day
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key

GRID_WORKER = "grid_worker"
"""The role evaluated by 四度 (网格员): a grid worker owns the grids they are posted to."""

WORKER_COUNTS = (
    "dispatched", "returned", "handled", "handled_on_time", "verified", "verified_passed",
    "called_back", "fixed", "satisfied", "basically_satisfied",
)  # fmt: skip
"""A worker's day: cases dispatched to them and returned by them (退单), handled (on time: by the deadline),
verifications of what they handled (passed first time or sent back), call-backs (回访) of what they handled:
fixed, satisfied (5 or 4), basically satisfied (3)."""

GRIDS = GridMap("fd_grid")

SCHEMA = (
    GRIDS.schema,
    # Which grids each grid worker owns: Worker.Enrolled's grid and Grid.StaffAssigned, whichever comes first.
    "CREATE TABLE IF NOT EXISTS fd_post (worker TEXT NOT NULL, grid TEXT NOT NULL, "
    "PRIMARY KEY (worker, grid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fd_worker (code TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, "
    "unit TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fd_patrol (patrol_id TEXT PRIMARY KEY, worker TEXT NOT NULL, grid TEXT NOT NULL) "
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fd_patrol_day (day TEXT NOT NULL, worker TEXT NOT NULL, grid TEXT NOT NULL, "
    "patrols INTEGER NOT NULL DEFAULT 0, checkpoints INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (day, worker, grid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fd_grid_day (day TEXT NOT NULL, grid TEXT NOT NULL, source TEXT NOT NULL, "
    "cases INTEGER NOT NULL, PRIMARY KEY (day, grid, source)) WITHOUT ROWID",
    # Each case's current assignee and deadline, and who handled it last (verifications and call-backs are theirs).
    "CREATE TABLE IF NOT EXISTS fd_case (case_id TEXT PRIMARY KEY, grid TEXT NOT NULL, worker TEXT NOT NULL, "
    "deadline TEXT, handler TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fd_worker_day (day TEXT NOT NULL, worker TEXT NOT NULL, "
    + ", ".join(f"{column} INTEGER NOT NULL DEFAULT 0" for column in WORKER_COUNTS)
    + ", PRIMARY KEY (day, worker)) WITHOUT ROWID",
)

_UNASSIGN = "UPDATE fd_case SET worker = '', deadline = NULL WHERE case_id = ?"


def satisfaction_band(score: int) -> str:
    """满意 (5, 4), 基本满意 (3) or 不满意 (2, 1): the call-back's score as 三率 counts it (as docs/kpis.md)."""
    return "satisfied" if score >= 4 else "basically_satisfied" if score == 3 else "dissatisfied"


class FourDegrees(Projection):
    """四度考核: the facts each grid worker's familiarity, trust, delivery and satisfaction are scored from.

    Counts are kept per local day of occurred time (a late upload counts on the day it happened) and
    by grid code; which grids a worker owns is joined only when queried, so the rows are the same
    whatever order the grid, worker, patrol and case topics arrive in.
    """

    name = "four_degrees"
    tables = (
        ViewTable("fd_grid", ("code",)),
        ViewTable("fd_post", ("worker", "grid")),
        ViewTable("fd_worker", ("code",)),
        ViewTable("fd_patrol", ("patrol_id",)),
        ViewTable("fd_patrol_day", ("day", "worker", "grid")),
        ViewTable("fd_grid_day", ("day", "grid", "source")),
        ViewTable("fd_case", ("case_id",)),
        ViewTable("fd_worker_day", ("day", "worker")),
    )
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the 四度 inputs."""

    # -- grids, workers, posts ------------------------------------------------------------------

    @process_event.register(event_class(Grid, "Drawn"))
    def _drawn(self, event: Any, position: int, cursor: Cursor) -> None:
        GRIDS.drawn(event, cursor)

    @process_event.register(event_class(Grid, "StaffAssigned"))
    def _staff_assigned(self, event: Any, position: int, cursor: Cursor) -> None:
        if event.role == GRID_WORKER:
            self._post(cursor, event.worker, GRIDS.code_of(event, cursor))

    @process_event.register(event_class(Worker, "Enrolled"))
    def _enrolled(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "INSERT INTO fd_worker (code, name, role, unit) VALUES (?, ?, ?, ?)",
            (event.code, event.name, event.role, event.unit),
        )
        if event.role == GRID_WORKER and event.grid:
            self._post(cursor, event.code, event.grid)

    @staticmethod
    def _post(cursor: Cursor, worker: str, grid: str) -> None:
        cursor.execute("INSERT OR IGNORE INTO fd_post (worker, grid) VALUES (?, ?)", (worker, grid))

    # -- patrols (巡查) -------------------------------------------------------------------------

    @process_event.register(event_class(Patrol, "Started"))
    def _started(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "INSERT INTO fd_patrol (patrol_id, worker, grid) VALUES (?, ?, ?)",
            (originator_key(event), event.worker, event.grid),
        )
        self._patrol_day(cursor, event, "patrols")

    @process_event.register(event_class(Patrol, "CheckpointVisited"))
    def _visited(self, event: Any, position: int, cursor: Cursor) -> None:
        self._patrol_day(cursor, event, "checkpoints")

    @staticmethod
    def _patrol_day(cursor: Cursor, event: Any, column: str) -> None:
        other = "checkpoints" if column == "patrols" else "patrols"
        cursor.execute(
            f"INSERT INTO fd_patrol_day (day, worker, grid, {column}, {other}) "  # noqa: S608 - constants only
            "SELECT ?, worker, grid, 1, 0 FROM fd_patrol WHERE patrol_id = ? "
            f"ON CONFLICT (day, worker, grid) DO UPDATE SET {column} = fd_patrol_day.{column} + 1",
            (local_day(event.occurred_at), originator_key(event)),
        )
        if cursor.rowcount == 0:
            raise LookupError(f"fd_patrol has no patrol {event.originator_id}: its Started was never applied")

    # -- cases ----------------------------------------------------------------------------------

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "INSERT INTO fd_case (case_id, grid, worker, handler) VALUES (?, ?, '', '')",
            (originator_key(event), event.grid),
        )
        cursor.execute(
            "INSERT INTO fd_grid_day (day, grid, source, cases) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (day, grid, source) DO UPDATE SET cases = fd_grid_day.cases + 1",
            (local_day(event.occurred_at), event.grid, event.source),
        )

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _dispatched(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "UPDATE fd_case SET worker = ?, deadline = ? WHERE case_id = ?",
            (event.worker, iso(event.deadline), originator_key(event)),
        )
        self._add(cursor, event, event.worker, dispatched=1)

    @process_event.register(event_class(WorkOrder, "HandedOver"))
    def _handed_over(self, event: Any, position: int, cursor: Cursor) -> None:
        """全县通办: the processing unit takes the case, no worker (the hand-back changes nothing here)."""
        if event.stage == HAND_OVER_PROCESSING:
            cursor.execute(
                "UPDATE fd_case SET worker = '', deadline = ? WHERE case_id = ?",
                (iso(event.deadline), originator_key(event)),
            )

    @process_event.register(event_class(WorkOrder, "ExtensionGranted"))
    def _extension_granted(self, event: Any, position: int, cursor: Cursor) -> None:
        self._set_deadline(cursor, event, event.new_deadline)

    @process_event.register(event_class(WorkOrder, "Resumed"))
    def _resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        deadline = getattr(event, "deadline", None)  # none: the old deadline stands
        if deadline is not None:
            self._set_deadline(cursor, event, deadline)

    @process_event.register(event_class(WorkOrder, "Returned"))
    def _returned(self, event: Any, position: int, cursor: Cursor) -> None:
        worker, _, _ = self._case(cursor, event)
        self._add(cursor, event, worker, returned=1)
        cursor.execute(_UNASSIGN, (originator_key(event),))

    @process_event.register(event_class(WorkOrder, "HandlingReported"))
    def _handled(self, event: Any, position: int, cursor: Cursor) -> None:
        worker, deadline, _ = self._case(cursor, event)
        on_time = deadline is None or iso(event.occurred_at) <= deadline
        cursor.execute("UPDATE fd_case SET handler = ? WHERE case_id = ?", (worker, originator_key(event)))
        self._add(cursor, event, worker, handled=1, handled_on_time=int(on_time))

    @process_event.register(event_class(WorkOrder, "Verified"))
    def _verified(self, event: Any, position: int, cursor: Cursor) -> None:
        _, _, handler = self._case(cursor, event)
        self._add(cursor, event, handler, verified=1, verified_passed=int(event.passed))
        self._reopened(event, position, cursor)

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    def _called_back(self, event: Any, position: int, cursor: Cursor) -> None:
        _, _, handler = self._case(cursor, event)
        band = satisfaction_band(event.satisfaction)
        counts = {"called_back": 1, "fixed": int(event.fixed)} | ({band: 1} if band != "dissatisfied" else {})
        self._add(cursor, event, handler, **counts)
        self._reopened(event, position, cursor)

    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _reopened(self, event: Any, position: int, cursor: Cursor) -> None:
        """返工: the desk holds the case again; the rework's dispatch names the worker and the deadline."""
        if status_after_event(event, None) is Status.REOPENED:
            cursor.execute(_UNASSIGN, (originator_key(event),))

    @staticmethod
    def _set_deadline(cursor: Cursor, event: Any, deadline: Any) -> None:
        cursor.execute("UPDATE fd_case SET deadline = ? WHERE case_id = ?", (iso(deadline), originator_key(event)))

    @staticmethod
    def _case(cursor: Cursor, event: Any) -> tuple[str, str | None, str]:
        """The case's assignee, deadline and last handler."""
        cursor.execute("SELECT worker, deadline, handler FROM fd_case WHERE case_id = ?", (originator_key(event),))
        row = cursor.fetchone()
        if row is None:
            raise LookupError(f"fd_case has no case {event.originator_id}: its Reported event was never applied")
        return row[0], row[1], row[2]

    @staticmethod
    def _add(cursor: Cursor, event: Any, worker: str, **counts: int) -> None:
        """Add ``counts`` to the worker's row of the event's local day (nothing when no worker holds the case)."""
        if not worker:
            return
        columns = ", ".join(counts)
        adds = ", ".join(f"{c} = fd_worker_day.{c} + excluded.{c}" for c in counts)
        cursor.execute(
            f"INSERT INTO fd_worker_day (day, worker, {columns}) "  # noqa: S608 - column names are constants
            f"VALUES (?, ?, {', '.join('?' * len(counts))}) "
            f"ON CONFLICT (day, worker) DO UPDATE SET {adds}",
            (local_day(event.occurred_at), worker, *counts.values()),
        )
