"""The KPI facts (考核指标): per case, per assignment and per call-back, what the KPI queries aggregate."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from eventsourcing.dispatch import singledispatchmethod

from engine.catalogue import Catalogue, default_catalogue
from engine.lifecycle import HAND_OVER_PROCESSING
from engine.reference import Division, Grid, Worker
from engine.work_order import WorkOrder
from engine.working_time import WorkingCalendar, china_calendar
from projections.flow import local_day
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key

CASE_DUE_DAY = (
    "(CASE WHEN closed_at IS NOT NULL AND (deadline IS NULL OR closed_at <= deadline) THEN closed_day "
    "ELSE deadline_day END)"
)
"""The day a case is due to close (应结案): the day it closed if it closed by its deadline, else its deadline's day."""
HANDLING_DUE_DAY = (
    "(CASE WHEN handled_at IS NOT NULL AND handled_at <= deadline THEN handled_day ELSE deadline_day END)"
)
"""The day an assignment is due to be handled (应处置): as CASE_DUE_DAY, with the handling report."""

# Every fact keeps occurred times (ISO UTC text, comparable as text) and the Asia/Shanghai day of
# each (YYYY-MM-DD), so the queries bucket by the day a thing happened, not the day it was uploaded.
# Cases name their grid only: the grid's community, street and district come from kpi_grid at
# query time, so the rows do not depend on whether a grid's events came before its cases' (Kafka).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kpi_grid ("
    "code TEXT PRIMARY KEY, community TEXT NOT NULL, street TEXT NOT NULL, district TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS kpi_name ("
    "level TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (level, code)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS kpi_case ("
    "case_id TEXT PRIMARY KEY, grid TEXT NOT NULL, category TEXT NOT NULL, source TEXT NOT NULL, "
    "reporter TEXT NOT NULL, reported_at TEXT NOT NULL, reported_day TEXT NOT NULL, "
    "decided TEXT, "  # registered | rejected | merged: what became of the report (有效上报)
    "registered_day TEXT, "
    "dispatch_due TEXT, "  # 立案+派遣 step limit from the report
    "first_dispatch_at TEXT, first_dispatch_day TEXT, first_seq INTEGER, first_returned INTEGER NOT NULL DEFAULT 0, "
    "current_seq INTEGER, "  # the assignment that holds (or last held) the case
    "unit TEXT NOT NULL DEFAULT '', worker TEXT NOT NULL DEFAULT '', "  # the last assignee, kept after a return
    "deadline TEXT, deadline_day TEXT, "  # the last deadline given (kept after a return or a reopening)
    "closed_at TEXT, closed_day TEXT, "  # set on 结案, cleared when the case is reopened
    "closures INTEGER NOT NULL DEFAULT 0, "
    "suspended INTEGER NOT NULL DEFAULT 0, "  # 挂账 / 缓办 now
    "rework_count INTEGER NOT NULL DEFAULT 0, return_count INTEGER NOT NULL DEFAULT 0, "
    "extension_count INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS kpi_case_by_reported ON kpi_case (reported_day)",
    "CREATE INDEX IF NOT EXISTS kpi_case_by_registered ON kpi_case (registered_day)",
    "CREATE INDEX IF NOT EXISTS kpi_case_by_first_dispatch ON kpi_case (first_dispatch_day)",
    # The queries bucket by these very expressions, so a period's cases are read from the index alone.
    f"CREATE INDEX IF NOT EXISTS kpi_case_by_due ON kpi_case ({CASE_DUE_DAY})",
    # One row per assignment (派遣, 改派, 通办 hand-over to the processing unit): what a unit or worker did with it.
    "CREATE TABLE IF NOT EXISTS kpi_assignment ("
    "case_id TEXT NOT NULL, seq INTEGER NOT NULL, grid TEXT NOT NULL, unit TEXT NOT NULL, worker TEXT NOT NULL, "
    "dispatched_at TEXT NOT NULL, dispatched_day TEXT NOT NULL, accept_due TEXT NOT NULL, accepted_at TEXT, "
    "deadline TEXT NOT NULL, deadline_day TEXT NOT NULL, "
    "outcome TEXT, "  # NULL while held | handled | returned | reassigned
    "handled_at TEXT, handled_day TEXT, verify_due TEXT, verified_at TEXT, verified_day TEXT, "
    "suspended INTEGER NOT NULL DEFAULT 0, extended INTEGER NOT NULL DEFAULT 0, reworked INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (case_id, seq)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kpi_assignment_by_dispatched ON kpi_assignment (dispatched_day)",
    "CREATE INDEX IF NOT EXISTS kpi_assignment_by_verified ON kpi_assignment (verified_day)",
    f"CREATE INDEX IF NOT EXISTS kpi_assignment_by_due ON kpi_assignment ({HANDLING_DUE_DAY})",
    # One row per call-back task (回访): the attempts after one closure of a case, missed or reaching the resident.
    "CREATE TABLE IF NOT EXISTS kpi_callback ("
    "case_id TEXT NOT NULL, round INTEGER NOT NULL, grid TEXT NOT NULL, unit TEXT NOT NULL, worker TEXT NOT NULL, "
    "day TEXT NOT NULL, attempts INTEGER NOT NULL, contacted INTEGER NOT NULL DEFAULT 0, satisfaction INTEGER, "
    "fixed INTEGER, PRIMARY KEY (case_id, round)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kpi_callback_by_day ON kpi_callback (day)",
)

_CURRENT = "(SELECT current_seq FROM kpi_case WHERE case_id = :case_id)"
_REOPEN_CASE = "closed_at = NULL, closed_day = NULL, rework_count = rework_count + 1"


class KpiFacts(Projection):
    """考核指标的事实: each case, assignment and call-back with the times and flags the KPIs are counted from.

    The step limits a fact is judged against (立案+派遣 from the report, 签收 from the dispatch, 核查
    from the handling report) are counted in working time on ``calendar`` from the catalogue's step
    limits, as the dispatch policy and the supervisor count them; the handling deadline is the one the
    events carry (Dispatched, ExtensionGranted, Resumed).
    """

    name = "kpi"
    tables = (
        ViewTable("kpi_case", ("case_id",)),
        ViewTable("kpi_assignment", ("case_id", "seq")),
        ViewTable("kpi_callback", ("case_id", "round")),
        ViewTable("kpi_grid", ("code",)),
        ViewTable("kpi_name", ("level", "code")),
    )
    schema = SCHEMA

    def __init__(self, catalogue: Catalogue | None = None, calendar: WorkingCalendar | None = None) -> None:
        self._catalogue = catalogue or default_catalogue()
        self._calendar = calendar or china_calendar()

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the KPI facts."""

    # -- places and names ---------------------------------------------------------------

    @process_event.register(event_class(Division, "Established"))
    def _established(self, event: Any, position: int, cursor: Cursor) -> None:
        self._name(cursor, event.level, event.code, event.name)

    @process_event.register(event_class(Grid, "Drawn"))
    def _drawn(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "INSERT INTO kpi_grid (code, community, street, district) VALUES (?, ?, ?, ?)",
            (event.code, event.community, event.street, event.district),
        )
        self._name(cursor, "grid", event.code, event.name)

    @process_event.register(event_class(Worker, "Enrolled"))
    def _enrolled(self, event: Any, position: int, cursor: Cursor) -> None:
        self._name(cursor, "worker", event.code, event.name)

    @staticmethod
    def _name(cursor: Cursor, level: str, code: str, name: str) -> None:
        cursor.execute("INSERT INTO kpi_name (level, code, name) VALUES (?, ?, ?)", (level, code, name))

    # -- the report and its decision ------------------------------------------------------

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        limit = self._catalogue.step_limit("dispatch", self._tier(event.category))
        case_id = originator_key(event)
        cursor.execute(
            "INSERT INTO kpi_case (case_id, grid, category, source, reporter, reported_at, reported_day, dispatch_due) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case_id, event.grid, event.category, event.source, event.reporter or event.actor,
                iso(event.occurred_at), local_day(event.occurred_at),
                iso(self._calendar.add(event.occurred_at, limit)),
            ),
        )  # fmt: skip
        if (memo := self.memo(cursor)) is not None:
            memo[case_id] = (event.grid, event.category)

    @process_event.register(event_class(WorkOrder, "Registered"))
    def _registered(self, event: Any, position: int, cursor: Cursor) -> None:
        self._case(
            event, cursor, "decided = 'registered', registered_day = :day, category = :category",
            category=event.category,
        )  # fmt: skip
        self._category_changed(event, cursor)

    @process_event.register(event_class(WorkOrder, "Recategorised"))
    def _recategorised(self, event: Any, position: int, cursor: Cursor) -> None:
        self._case(event, cursor, "category = :category", category=event.category)
        self._category_changed(event, cursor)

    @process_event.register(event_class(WorkOrder, "Rejected"))
    def _rejected(self, event: Any, position: int, cursor: Cursor) -> None:
        self._case(event, cursor, "decided = 'rejected'")

    @process_event.register(event_class(WorkOrder, "Merged"))
    def _merged(self, event: Any, position: int, cursor: Cursor) -> None:
        """合并: a duplicate report; a case merged after 立案 stays registered."""
        self._case(event, cursor, "decided = COALESCE(decided, 'merged')")

    # -- assignments ----------------------------------------------------------------------

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    def _dispatched(self, event: Any, position: int, cursor: Cursor) -> None:
        self._assign(event, cursor, event.unit, event.worker, event.deadline)

    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _reassigned(self, event: Any, position: int, cursor: Cursor) -> None:
        """改派: the assignment ends (neither handled nor returned) and a new one begins."""
        self._assignment(event, cursor, "outcome = 'reassigned'", held=True)
        self._assign(event, cursor, event.unit, event.worker, event.deadline)

    @process_event.register(event_class(WorkOrder, "HandedOver"))
    def _handed_over(self, event: Any, position: int, cursor: Cursor) -> None:
        """全县通办: the hand-over to the processing unit is its assignment; the hand-back changes no fact."""
        if event.stage == HAND_OVER_PROCESSING:
            self._assign(event, cursor, event.to_unit, "", event.deadline)

    def _assign(self, event: Any, cursor: Cursor, unit: str, worker: str, deadline: datetime) -> None:
        case_id, seq, at = originator_key(event), event.originator_version, event.occurred_at
        row = self._grid_and_category(case_id, cursor)
        if row is None:
            raise LookupError(f"kpi_case has no case {case_id}: its Reported event was never applied")
        accept_due = self._calendar.add(at, self._catalogue.step_limit("accept", self._tier(row[1])))
        cursor.execute(
            "INSERT INTO kpi_assignment (case_id, seq, grid, unit, worker, dispatched_at, dispatched_day, accept_due, "
            "deadline, deadline_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (case_id, seq, row[0], unit, worker, iso(at), local_day(at), iso(accept_due), iso(deadline),
             local_day(deadline)),
        )  # fmt: skip
        self._case(
            event, cursor,
            "current_seq = :seq, unit = :unit, worker = :worker, deadline = :deadline, deadline_day = :deadline_day, "
            "first_seq = COALESCE(first_seq, :seq), first_dispatch_at = COALESCE(first_dispatch_at, :at), "
            "first_dispatch_day = COALESCE(first_dispatch_day, :day)",
            seq=seq, unit=unit, worker=worker, deadline=iso(deadline), deadline_day=local_day(deadline),
        )  # fmt: skip

    @process_event.register(event_class(WorkOrder, "Accepted"))
    def _accepted(self, event: Any, position: int, cursor: Cursor) -> None:
        self._assignment(event, cursor, "accepted_at = COALESCE(accepted_at, :at)", held=True)

    @process_event.register(event_class(WorkOrder, "Returned"))
    def _returned(self, event: Any, position: int, cursor: Cursor) -> None:
        """退单: the assignment ends, returned; the desk holds the case until it dispatches again."""
        self._assignment(event, cursor, "outcome = 'returned'", held=True)
        self._case(
            event, cursor,
            "return_count = return_count + 1, "
            "first_returned = MAX(first_returned, CASE WHEN current_seq = first_seq THEN 1 ELSE 0 END)",
        )  # fmt: skip

    @process_event.register(event_class(WorkOrder, "ExtensionGranted"))
    def _extension_granted(self, event: Any, position: int, cursor: Cursor) -> None:
        """批准延期: the deadline moves; the assignment counts as extended (延期)."""
        deadline = {"deadline": iso(event.new_deadline), "deadline_day": local_day(event.new_deadline)}
        changes = "deadline = :deadline, deadline_day = :deadline_day"
        self._assignment(event, cursor, f"{changes}, extended = 1", held=True, **deadline)
        self._case(event, cursor, f"{changes}, extension_count = extension_count + 1", **deadline)

    @process_event.register(event_class(WorkOrder, "Suspended"))
    def _suspended(self, event: Any, position: int, cursor: Cursor) -> None:
        """挂账 / 缓办: out of the denominators while it lasts."""
        self._assignment(event, cursor, "suspended = 1", held=True)
        self._case(event, cursor, "suspended = 1")

    @process_event.register(event_class(WorkOrder, "Resumed"))
    def _resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        """恢复: back in the denominators; the deadline moves by the time the case was parked."""
        deadline = getattr(event, "deadline", None)
        fields = {
            "deadline": iso(deadline) if deadline else None,
            "deadline_day": local_day(deadline) if deadline else None,
        }
        changes = "deadline = COALESCE(:deadline, deadline), deadline_day = COALESCE(:deadline_day, deadline_day)"
        self._assignment(event, cursor, f"suspended = 0, {changes}", held=True, **fields)
        self._case(event, cursor, f"suspended = 0, {changes}", **fields)

    @process_event.register(event_class(WorkOrder, "HandlingReported"))
    def _handling_reported(self, event: Any, position: int, cursor: Cursor) -> None:
        row = self._grid_and_category(originator_key(event), cursor)
        tier = self._tier(row[1] if row else "")
        verify_due = self._calendar.add(event.occurred_at, self._catalogue.step_limit("verify", tier))
        changes = "outcome = 'handled', handled_at = :at, handled_day = :day, verify_due = :verify_due"
        self._assignment(event, cursor, changes, held=True, verify_due=iso(verify_due))

    # -- verification, closure, call-back, rework ------------------------------------------

    @process_event.register(event_class(WorkOrder, "Verified"))
    def _verified(self, event: Any, position: int, cursor: Cursor) -> None:
        """核查: passed closes the case (结案); failed is rework (返工) of the assignment that handled it."""
        rework = "" if event.passed else ", reworked = 1"
        self._assignment(event, cursor, f"verified_at = :at, verified_day = :day{rework}", held=False)
        if event.passed:
            self._case(event, cursor, "closed_at = :at, closed_day = :day, closures = closures + 1")
        else:
            self._case(event, cursor, _REOPEN_CASE)

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    def _called_back(self, event: Any, position: int, cursor: Cursor) -> None:
        """回访: the resident reached; "not fixed" reopens the case (rework of the last assignment)."""
        self._call_back(event, cursor, contacted=True)
        if not event.fixed:
            self._rework(event, cursor)

    @process_event.register(event_class(WorkOrder, "CallBackMissed"))
    def _call_back_missed(self, event: Any, position: int, cursor: Cursor) -> None:
        """回访未果: an attempt that did not reach the resident; the call-back task stays valid, not contacted."""
        self._call_back(event, cursor, contacted=False)

    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _reopened(self, event: Any, position: int, cursor: Cursor) -> None:
        self._rework(event, cursor)

    def _rework(self, event: Any, cursor: Cursor) -> None:
        self._assignment(event, cursor, "reworked = 1", held=False)
        self._case(event, cursor, _REOPEN_CASE)

    def _call_back(self, event: Any, cursor: Cursor, *, contacted: bool) -> None:
        # The first attempt after a closure opens the task (its day is the task's day); the one that reaches
        # the resident records the verdict.
        cursor.execute(
            "INSERT INTO kpi_callback (case_id, round, grid, unit, worker, day, attempts, contacted, satisfaction, "
            "fixed) SELECT case_id, closures, grid, unit, worker, :day, 1, :contacted, :satisfaction, :fixed "
            "FROM kpi_case WHERE case_id = :case_id "
            "ON CONFLICT (case_id, round) DO UPDATE SET attempts = kpi_callback.attempts + 1, "
            "contacted = MAX(kpi_callback.contacted, excluded.contacted), "
            "satisfaction = COALESCE(excluded.satisfaction, kpi_callback.satisfaction), "
            "fixed = COALESCE(excluded.fixed, kpi_callback.fixed)",
            {
                "case_id": originator_key(event), "day": local_day(event.occurred_at), "contacted": int(contacted),
                "satisfaction": event.satisfaction if contacted else None,
                "fixed": int(event.fixed) if contacted else None,
            },
        )  # fmt: skip
        self._found(event, cursor, "kpi_case")

    # -- writing --------------------------------------------------------------------------

    def _grid_and_category(self, case_id: str, cursor: Cursor) -> tuple[str, str] | None:
        """The case's grid and category (None for a case never reported), from the batch's memo if it has them.

        Only the case's Reported, Registered and Recategorised write either, and each keeps the memo (if the
        batch has one, TransactionMemo) as it writes them: what it holds is what the row holds.
        """
        memo = self.memo(cursor)
        if memo is not None and case_id in memo:
            return cast(tuple[str, str], memo[case_id])
        cursor.execute("SELECT grid, category FROM kpi_case WHERE case_id = ?", (case_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        if memo is not None:
            memo[case_id] = (row[0], row[1])
        return row[0], row[1]

    def _category_changed(self, event: Any, cursor: Cursor) -> None:
        memo = self.memo(cursor)
        case_id = originator_key(event)
        if memo is not None and case_id in memo:
            memo[case_id] = (memo[case_id][0], event.category)

    def _tier(self, category: str) -> str:
        known = self._catalogue.categories.get(category)
        return known.tier if known is not None else "normal"

    def _case(self, event: Any, cursor: Cursor, changes: str, **fields: Any) -> None:
        cursor.execute(f"UPDATE kpi_case SET {changes} WHERE case_id = :case_id", _when(event) | fields)  # noqa: S608
        self._found(event, cursor, "kpi_case")

    @staticmethod
    def _assignment(event: Any, cursor: Cursor, changes: str, *, held: bool, **fields: Any) -> None:
        """Change the case's current assignment; ``held``: only while it holds the case (no outcome yet).

        Otherwise only an assignment that handled the case (verification and rework concern its handling).
        """
        still = "outcome IS NULL" if held else "outcome = 'handled'"
        cursor.execute(
            f"UPDATE kpi_assignment SET {changes} WHERE case_id = :case_id AND seq = {_CURRENT} AND {still}",  # noqa: S608
            _when(event) | fields,
        )

    @staticmethod
    def _found(event: Any, cursor: Cursor, table: str) -> None:
        if cursor.rowcount == 0:
            raise LookupError(f"{table} has no case {event.originator_id}: its Reported event was never applied")


def _when(event: Any) -> dict[str, Any]:
    """The parameters every fact update names: the case, and the event's occurred time and local day."""
    return {"case_id": originator_key(event), "at": iso(event.occurred_at), "day": local_day(event.occurred_at)}
