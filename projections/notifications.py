"""The resident notification outbox (办理进度告知): one message per status change of a resident's case, from the log.

The outbox is a fold: a rebuild gives the same rows with the same ids. Whether a message has been sent is
not part of the view; ops.notify keeps that in its own table, so a rebuild never sends anything twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod

from engine.lifecycle import HAND_OVER_PROCESSING, Status
from engine.work_order import RESIDENT_SOURCES, WorkOrder
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key, short_id

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notification_case ("
    "case_id TEXT PRIMARY KEY, short_id TEXT NOT NULL, recipient TEXT NOT NULL, source TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS notification_outbox ("
    "notification_id TEXT PRIMARY KEY, "
    "case_id TEXT NOT NULL, "
    "version INTEGER NOT NULL, "
    "position INTEGER NOT NULL, "
    "event_type TEXT NOT NULL, "
    "status TEXT NOT NULL, "
    "recipient TEXT NOT NULL, "
    "source TEXT NOT NULL, "
    "message TEXT NOT NULL, "
    "occurred_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS notification_outbox_by_position ON notification_outbox (position)",
)

MESSAGES: Mapping[str, str] = {
    Status.REGISTERED: "您反映的问题已受理立案（编号 {short}），我们将尽快安排处置。",
    Status.REJECTED: "您反映的问题（编号 {short}）未予立案：{reason}。",
    Status.MERGED: "您反映的问题（编号 {short}）与已受理的同一问题合并办理。",
    Status.DISPATCHED: "您反映的问题（编号 {short}）已派单处置，处置人员将与您联系。",
    "handed_over": "您申请的事项（编号 {short}）已转户籍地办理，办结后由受理地告知您。",
    Status.SUSPENDED: "您反映的问题（编号 {short}）暂缓办理：{reason}。条件具备后将恢复办理。",
    "resumed": "您反映的问题（编号 {short}）已恢复办理。",
    Status.HANDLED: "您反映的问题（编号 {short}）已处置完毕，正在核查。",
    Status.CLOSED: "您反映的问题（编号 {short}）已办结，近日将回访听取您的意见。",
    Status.EVALUATED: "感谢您对问题（编号 {short}）办理情况的评价。",
    Status.REOPENED: "您反映的问题（编号 {short}）将重新办理，我们会再次安排处置。",
}
"""The message of each status change a resident is told of (keyed by the state entered, or the step's name)."""


@dataclass(frozen=True)
class Notification:
    """One message to a resident: its stable id (the idempotency key for a sender), whom, what, and where in the log."""

    id: str
    """``<case id>:<event version>``: the same whenever the outbox is rebuilt."""
    case_id: UUID
    version: int
    position: int
    event_type: str
    status: str
    recipient: str
    source: str
    message: str
    occurred_at: datetime


class NotificationOutbox(Projection):
    """办理进度告知: what each resident who reported a case is to be told, in log order."""

    name = "notification_outbox"
    tables = (ViewTable("notification_case", ("case_id",)), ViewTable("notification_outbox", ("notification_id",)))
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the outbox."""

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        if event.source not in RESIDENT_SOURCES:
            return  # no resident behind a patrol finding, a department's task or a sensor alarm
        case_id = originator_key(event)
        case = (short_id(event.originator_id), event.reporter or event.actor, event.source)
        cursor.execute(
            "INSERT INTO notification_case (case_id, short_id, recipient, source) VALUES (?, ?, ?, ?)", (case_id, *case)
        )
        if (memo := self.memo(cursor)) is not None:
            memo[case_id] = case

    @process_event.register(event_class(WorkOrder, "Registered"))
    def _registered(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.REGISTERED)

    @process_event.register(event_class(WorkOrder, "Rejected"))
    def _rejected(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.REJECTED, reason=event.reason)

    @process_event.register(event_class(WorkOrder, "Merged"))
    def _merged(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.MERGED)

    @process_event.register(event_class(WorkOrder, "Dispatched"))
    def _dispatched(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.DISPATCHED)

    @process_event.register(event_class(WorkOrder, "HandedOver"))
    def _handed_over(self, event: Any, position: int, cursor: Cursor) -> None:
        if event.stage == HAND_OVER_PROCESSING:  # the hand-back is the offices' business, not news to the resident
            self._notify(event, position, cursor, Status.DISPATCHED, key="handed_over")

    @process_event.register(event_class(WorkOrder, "Suspended"))
    def _suspended(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.SUSPENDED, reason=event.reason)

    @process_event.register(event_class(WorkOrder, "Resumed"))
    def _resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, "resumed")

    @process_event.register(event_class(WorkOrder, "HandlingReported"))
    def _handled(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.HANDLED)

    @process_event.register(event_class(WorkOrder, "Verified"))
    def _verified(self, event: Any, position: int, cursor: Cursor) -> None:
        if event.passed:  # a failed verification is the desk's rework, told when it is handled again
            self._notify(event, position, cursor, Status.CLOSED)

    @process_event.register(event_class(WorkOrder, "CalledBack"))
    def _called_back(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.EVALUATED if event.fixed else Status.REOPENED)

    @process_event.register(event_class(WorkOrder, "Reopened"))
    def _reopened(self, event: Any, position: int, cursor: Cursor) -> None:
        self._notify(event, position, cursor, Status.REOPENED)

    def _notify(
        self, event: Any, position: int, cursor: Cursor, status: str, *, key: str = "", reason: str = ""
    ) -> None:
        """One outbox row for a resident's case (nothing for the others): the message of ``key`` (default: status)."""
        case_id = originator_key(event)
        case = self._case(case_id, cursor)
        if case is None:
            return
        message = MESSAGES[key or status].format(short=case[0], reason=reason.strip().rstrip("。.") or "—")
        cursor.execute(
            "INSERT INTO notification_outbox (notification_id, case_id, version, position, event_type, status, "
            "recipient, source, message, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"{case_id}:{event.originator_version}", case_id, event.originator_version, position,
                type(event).__name__, str(status), case[1], case[2], message, iso(event.occurred_at),
            ),
        )  # fmt: skip

    def _case(self, case_id: str, cursor: Cursor) -> tuple[str, str, str] | None:
        """The resident's case (short id, recipient, source); None for a case with no resident behind it.

        A notification_case row never changes once written: what this batch read or wrote of it, absent rows
        too, is kept in its memo (TransactionMemo), and the case's later events in the batch read nothing.
        """
        memo = self.memo(cursor)
        if memo is not None and case_id in memo:
            return cast(tuple[str, str, str] | None, memo[case_id])
        cursor.execute("SELECT short_id, recipient, source FROM notification_case WHERE case_id = ?", (case_id,))
        row = cursor.fetchone()
        case = (row[0], row[1], row[2]) if row is not None else None
        if memo is not None:
            memo[case_id] = case
        return case


def notification(row: Any) -> Notification:
    """An outbox row as a Notification."""
    return Notification(
        id=row["notification_id"], case_id=UUID(row["case_id"]), version=row["version"], position=row["position"],
        event_type=row["event_type"], status=row["status"], recipient=row["recipient"], source=row["source"],
        message=row["message"], occurred_at=datetime.fromisoformat(row["occurred_at"]),
    )  # fmt: skip
