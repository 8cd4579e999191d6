"""The daily flow (每日案件流量): per local day, grid and category, how many cases were reported, closed …"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from eventsourcing.dispatch import singledispatchmethod

from engine.lifecycle import HAND_OVER_PROCESSING, Status, status_after_event
from engine.work_order import WorkOrder
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key

if TYPE_CHECKING:
    from projections.store import Views

LOCAL = ZoneInfo("Asia/Shanghai")
"""The zone whose calendar days the flow is counted in (mainland China: one zone, no daylight saving)."""

COUNTS = (
    "reported", "registered", "rejected", "dispatched", "returned", "handled",
    "closed", "closed_on_time", "closed_overdue", "reopened", "escalated",
)  # fmt: skip
"""The columns of a day's row, in the order a dispatcher's daily report lists them."""

ENTERED: dict[Status, str] = {
    Status.REPORTED: "reported",
    Status.REGISTERED: "registered",
    Status.REJECTED: "rejected",
    Status.DISPATCHED: "dispatched",
    Status.RETURNED: "returned",
    Status.HANDLED: "handled",
    Status.REOPENED: "reopened",
}
"""What an event that leads to each state counts as (closing counts as closed and as on time or overdue)."""

SCHEMA = (
    # What the view needs of each case to bucket its later events: events after Reported carry no
    # grid or category, and closing on time is judged against the deadline the case had then.
    "CREATE TABLE IF NOT EXISTS flow_case ("
    "case_id TEXT PRIMARY KEY, grid TEXT NOT NULL, category TEXT NOT NULL, deadline TEXT) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS daily_flow ("
    "day TEXT NOT NULL, grid TEXT NOT NULL, category TEXT NOT NULL, "
    + ", ".join(f"{column} INTEGER NOT NULL DEFAULT 0" for column in COUNTS)
    + ", PRIMARY KEY (day, grid, category)) WITHOUT ROWID",
)

# Columns named with their table: PostgreSQL, unlike SQLite, refuses a bare name that excluded also has.
_ADD = ", ".join(f"{column} = daily_flow.{column} + excluded.{column}" for column in COUNTS)


def _count_statement(column: str) -> str:
    """Add one to ``column`` of the case's row of the event's day (created with zeros if new), in one statement.

    The case's grid and category, and for a closing its deadline, are read from flow_case by the
    statement itself. A closing counts as closed and as on time (no deadline, or by it) or overdue.
    """
    values = dict.fromkeys(COUNTS, "0") | {column: "1"}
    if column == "closed":
        values["closed_on_time"] = "CASE WHEN deadline IS NULL OR :at <= deadline THEN 1 ELSE 0 END"
        values["closed_overdue"] = "CASE WHEN deadline IS NOT NULL AND :at > deadline THEN 1 ELSE 0 END"
    return (
        f"INSERT INTO daily_flow (day, grid, category, {', '.join(COUNTS)}) "  # noqa: S608 - constants only
        f"SELECT :day, grid, category, {', '.join(values.values())} FROM flow_case WHERE case_id = :case_id "
        f"ON CONFLICT (day, grid, category) DO UPDATE SET {_ADD}"
    )


_STATEMENTS = {column: _count_statement(column) for column in (*ENTERED.values(), "closed", "escalated")}


@functools.lru_cache(maxsize=8192)
def local_day(moment: datetime) -> str:
    """The Asia/Shanghai calendar day of a time, as YYYY-MM-DD (cached: many events share a time)."""
    return moment.astimezone(LOCAL).date().isoformat()


class DailyFlow(Projection):
    """每日案件流量: what happened to cases each day, by the day it happened (occurred time), not the day recorded.

    An event is counted in the local day of its ``occurred_at``, so a phone that uploads a day late
    adds to yesterday's row. A row counts events, not cases: a case dispatched twice in a day (after a
    return) counts twice. Dispatched counts every event that leads to 派遣 (dispatch, 改派 reassignment,
    全县通办 hand-over to the processing unit); closed is split into on time (no deadline, or closed by
    it) and overdue.
    """

    name = "daily_flow"
    tables = (ViewTable("daily_flow", ("day", "grid", "category")), ViewTable("flow_case", ("case_id",)))
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the daily flow."""

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            "INSERT INTO flow_case (case_id, grid, category) VALUES (?, ?, ?)",
            (originator_key(event), event.grid, event.category),
        )
        self._count(event, cursor, "reported")

    @process_event.register(event_class(WorkOrder, "Registered"))
    def _registered(self, event: Any, position: int, cursor: Cursor) -> None:
        """立案 may correct the category: the case's later events count under the new one."""
        self._recategorised(event, position, cursor)
        self._count(event, cursor, "registered")

    @process_event.register(event_class(WorkOrder, "Recategorised"))
    def _recategorised(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute("UPDATE flow_case SET category = ? WHERE case_id = ?", (event.category, originator_key(event)))

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    @process_event.register(event_class(WorkOrder, "Reassigned"))
    def _dispatched(self, event: Any, position: int, cursor: Cursor) -> None:
        self._set_deadline(event, cursor, event.deadline)
        self._count(event, cursor, "dispatched")

    @process_event.register(event_class(WorkOrder, "HandedOver"))
    def _handed_over(self, event: Any, position: int, cursor: Cursor) -> None:
        """全县通办: the processing unit takes the case (a dispatch); the hand-back leaves the deadline as it is."""
        if event.stage == HAND_OVER_PROCESSING:
            self._dispatched(event, position, cursor)

    @process_event.register(event_class(WorkOrder, "ExtensionGranted"))
    def _extension_granted(self, event: Any, position: int, cursor: Cursor) -> None:
        self._set_deadline(event, cursor, event.new_deadline)

    @process_event.register(event_class(WorkOrder, "Resumed"))
    def _resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        deadline = getattr(event, "deadline", None)  # none: the old deadline stands (and older events lack it)
        if deadline is not None:
            self._set_deadline(event, cursor, deadline)

    @process_event.register(event_class(WorkOrder, "Rejected"))
    @process_event.register(event_class(WorkOrder, "Returned"))
    @process_event.register(event_class(WorkOrder, "HandlingReported"))
    @process_event.register(event_class(WorkOrder, "Verified"))
    @process_event.register(event_class(WorkOrder, "CalledBack"))
    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _moved(self, event: Any, position: int, cursor: Cursor) -> None:
        # Where these lead does not depend on where the case stood (engine.lifecycle decides from the event).
        status = status_after_event(event, None)
        if status is Status.CLOSED:
            self._count(event, cursor, "closed")
            return
        column = ENTERED.get(status)
        if column is None:
            return  # a call-back that found the case fixed: evaluated, not counted here
        if status in (Status.RETURNED, Status.REOPENED):
            # The desk holds the case again: the next dispatch sets a new deadline (as on the board).
            cursor.execute("UPDATE flow_case SET deadline = NULL WHERE case_id = ?", (originator_key(event),))
        self._count(event, cursor, column)

    @process_event.register(event_class(WorkOrder, "Escalated"))
    def _escalated(self, event: Any, position: int, cursor: Cursor) -> None:
        self._count(event, cursor, "escalated")

    @staticmethod
    def _set_deadline(event: Any, cursor: Cursor, deadline: datetime) -> None:
        cursor.execute("UPDATE flow_case SET deadline = ? WHERE case_id = ?", (iso(deadline), originator_key(event)))

    def _count(self, event: Any, cursor: Cursor, column: str) -> None:
        parameters = {"day": local_day(event.occurred_at), "case_id": originator_key(event)}
        if column == "closed":
            parameters["at"] = iso(event.occurred_at)
        cursor.execute(_STATEMENTS[column], parameters)
        if cursor.rowcount == 0:  # the statement found no flow_case row to count under
            raise LookupError(f"flow_case has no case {event.originator_id}: its Reported event was never applied")


@dataclass(frozen=True)
class FlowRow:
    """One day of one grid and category: the events of each kind that occurred that day."""

    day: date
    grid: str
    category: str
    counts: dict[str, int]
    """By column of COUNTS."""


def daily_flow(store: Views, first: date, last: date, grid: str | None = None) -> list[FlowRow]:
    """The rows of the days ``first`` to ``last`` (local days, both included), of one grid or all, in order."""
    where = "day BETWEEN ? AND ?" + (" AND grid = ?" if grid is not None else "")
    params = [first.isoformat(), last.isoformat(), *([grid] if grid is not None else [])]
    with store.reading() as cursor:
        cursor.execute(f"SELECT * FROM daily_flow WHERE {where} ORDER BY day, grid, category", params)  # noqa: S608
        return [
            FlowRow(date.fromisoformat(row["day"]), row["grid"], row["category"], {c: row[c] for c in COUNTS})
            for row in cursor.fetchall()
        ]
