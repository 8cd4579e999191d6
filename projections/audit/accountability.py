"""The accountability proof (事事有人办): who held each case when, and every moment the rule was broken."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod

from engine.lifecycle import DESK_STATES, HAND_OVER_PROCESSING, Status, accountable_party, is_open, status_after_event
from engine.work_order import WorkOrder, event_names
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key

UNOWNED, OVERLAP, GAP, UNKNOWN_CASE = "unowned", "overlap", "gap", "unknown_case"
KINDS = (UNOWNED, OVERLAP, GAP, UNKNOWN_CASE)
"""The kinds of violation, as docs/accountability.md defines them."""

HANDED_OVER, RELEASED, ENDED = "handed_over", "released", "ended"
"""How a holding ended: the next party took the case in the same event; nobody did (the case stayed open
with no party); the case left the open states."""

SCHEMA = (
    # One row per case: where the fold stands. ``reach_*`` is the latest instant any holding of the case
    # has begun or ended at, and whose holding it was: a holding that begins before it overlaps one.
    "CREATE TABLE IF NOT EXISTS accountability_case ("
    "case_id TEXT PRIMARY KEY, "
    "known INTEGER NOT NULL, "
    "status TEXT, "
    "suspended_from TEXT, "
    "desk TEXT NOT NULL, "
    "unit TEXT NOT NULL, "
    "worker TEXT NOT NULL, "
    "party TEXT, "
    "seq INTEGER NOT NULL, "
    "reach_at TEXT, "
    "reach_position INTEGER, "
    "reach_party TEXT, "
    "vacancy INTEGER, "
    "violations INTEGER NOT NULL, "
    "events INTEGER NOT NULL, "
    "last_at TEXT NOT NULL, "
    "position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS accountability_interval ("
    "case_id TEXT NOT NULL, "
    "seq INTEGER NOT NULL, "
    "party TEXT NOT NULL, "
    "start_at TEXT NOT NULL, "
    "end_at TEXT, "
    "start_position INTEGER NOT NULL, "
    "end_position INTEGER, "
    "start_event TEXT NOT NULL, "
    "end_event TEXT, "
    "outcome TEXT, "
    "PRIMARY KEY (case_id, seq))",
    "CREATE TABLE IF NOT EXISTS accountability_violation ("
    "case_id TEXT NOT NULL, "
    "n INTEGER NOT NULL, "
    "kind TEXT NOT NULL, "
    "from_at TEXT NOT NULL, "
    "to_at TEXT, "
    "from_position INTEGER NOT NULL, "
    "to_position INTEGER, "
    "from_event TEXT NOT NULL, "
    "to_event TEXT, "
    "from_party TEXT, "
    "to_party TEXT, "
    "message TEXT NOT NULL, "
    "PRIMARY KEY (case_id, n))",
    "CREATE INDEX IF NOT EXISTS accountability_violation_by_position ON accountability_violation (from_position)",
)

_UPDATE_CASE = (
    "UPDATE accountability_case SET status = :status, suspended_from = :suspended_from, unit = :unit, "
    "worker = :worker, party = :party, seq = :seq, reach_at = :reach_at, reach_position = :reach_position, "
    "reach_party = :reach_party, vacancy = :vacancy, violations = :violations, events = :events, "
    "last_at = :last_at, position = :position WHERE case_id = :case_id"
)
_INSERT_CASE = (
    "INSERT INTO accountability_case VALUES (:case_id, :known, :status, :suspended_from, :desk, :unit, :worker, "
    ":party, :seq, :reach_at, :reach_position, :reach_party, :vacancy, :violations, :events, :last_at, :position)"
)
_INSERT_VIOLATION = (
    "INSERT INTO accountability_violation VALUES (:case_id, :n, :kind, :from_at, :to_at, :from_position, "
    ":to_position, :from_event, :to_event, :from_party, :to_party, :message)"
)


@dataclass
class _Case:
    """One case's row of accountability_case, as the fold changes it (fields in the table's column order)."""

    case_id: str
    known: int
    status: Status | None
    suspended_from: Status | None
    desk: str
    unit: str
    worker: str
    party: str | None
    seq: int
    reach_at: str | None
    reach_position: int | None
    reach_party: str | None
    vacancy: int | None
    violations: int
    events: int
    last_at: str
    position: int

    @classmethod
    def of(cls, row: Any) -> _Case:
        case = cls(*tuple(row))
        case.status = Status(row["status"]) if row["status"] else None
        case.suspended_from = Status(row["suspended_from"]) if row["suspended_from"] else None
        return case

    def params(self) -> dict[str, Any]:
        return vars(self) | {
            "status": self.status.value if self.status else None,
            "suspended_from": self.suspended_from.value if self.suspended_from else None,
        }


@dataclass(frozen=True)
class _Step:
    """The event being folded: when it occurred, where it is in the log, what it is called."""

    at: str
    position: int
    event: str


class CaseAccountability(Projection):
    """事事有人办: each case's holdings (who was accountable, from when to when) and the breaks in the rule."""

    name = "accountability"
    tables = (
        ViewTable("accountability_case", ("case_id",)),
        ViewTable("accountability_interval", ("case_id", "seq")),
        ViewTable("accountability_violation", ("case_id", "n")),
    )
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the holdings and violations."""

    def _fold(self, event: Any, position: int, cursor: Cursor) -> None:
        step = _Step(iso(event.occurred_at), position, type(event).__name__)
        case_id = originator_key(event)
        if step.event == "Reported":
            self._reported(event, case_id, step, cursor)
            return
        memo = self.memo(cursor)
        case = memo.pop(case_id, None) if memo is not None else None
        if case is None:
            cursor.execute("SELECT * FROM accountability_case WHERE case_id = ?", (case_id,))
            row = cursor.fetchone()
            if row is None or not row["known"]:
                _orphan(case_id, row, step, cursor)
                return
            case = _Case.of(row)
        _move(case, event)
        _hand_over(case, accountable_party(*_rule_inputs(case)), step, cursor)
        case.events += 1
        case.last_at = max(case.last_at, step.at)
        case.position = position
        cursor.execute(_UPDATE_CASE, case.params())
        if memo is not None:
            memo[case_id] = case  # the row as just written: the case's next event in this batch need not read it

    def _reported(self, event: Any, case_id: str, step: _Step, cursor: Cursor) -> None:
        """上报: the case's row; the desk it was reported to holds it from the moment it was reported."""
        case = _Case(
            case_id, 1, Status.REPORTED, None, event.desk, "", "", None, 0, None, None, None, None, 0, 1, step.at,
            step.position,
        )  # fmt: skip
        # Only a tampered log holds a second Reported for a case: the case keeps its first.
        cursor.execute(f"{_INSERT_CASE} ON CONFLICT (case_id) DO NOTHING RETURNING seq", case.params())
        if cursor.fetchone() is not None:
            _hand_over(case, accountable_party(*_rule_inputs(case)), step, cursor)
            cursor.execute(_UPDATE_CASE, case.params())
            if (memo := self.memo(cursor)) is not None:
                memo[case_id] = case

    # Every work-order event can move the case or its assignee: one overload serves them all.
    for _name in event_names():
        process_event.register(event_class(WorkOrder, _name), _fold)
    del _name


def _rule_inputs(case: _Case) -> tuple[Status, Status | None, str, str, str]:
    assert case.status is not None, "only a known case has a status"
    return case.status, case.suspended_from, case.desk, case.unit, case.worker


def _move(case: _Case, event: Any) -> None:
    """The case's state and assignee after ``event``, by engine.lifecycle (as the aggregate moves)."""
    current = case.status
    assert current is not None
    name = type(event).__name__
    if name == "Resumed" and case.suspended_from is None:
        status = current  # its Suspended is missing from the log: it stays where it stands
    else:
        status = status_after_event(event, current, case.suspended_from)
    if name in ("Dispatched", "Reassigned"):
        case.unit, case.worker = event.unit, event.worker
    elif name == "HandedOver" and event.stage == HAND_OVER_PROCESSING:
        case.unit, case.worker = event.to_unit, ""
    if status in (Status.RETURNED, Status.REOPENED) and status is not current and current is not Status.SUSPENDED:
        case.unit = case.worker = ""  # released: the desk holds it until it dispatches again
    if status is Status.SUSPENDED:
        case.suspended_from = current if current is not Status.SUSPENDED else case.suspended_from
    else:
        case.suspended_from = None
    case.status = status


def _hand_over(case: _Case, taker: str | None, step: _Step, cursor: Cursor) -> None:
    """Close and open holdings as the accountable party becomes ``taker``; record what breaks the rule."""
    giver = case.party
    still_open = case.status is not None and is_open(case.status)
    if taker is None and giver is None:
        if still_open and case.vacancy is None:
            _begin_vacancy(case, None, step, cursor)
        elif not still_open and case.vacancy is not None:
            _end_vacancy(case, None, step, cursor)
        return
    if taker == giver:
        return
    if giver is not None:
        outcome = HANDED_OVER if taker is not None else RELEASED if still_open else ENDED
        cursor.execute(
            "UPDATE accountability_interval SET end_at = ?, end_position = ?, end_event = ?, outcome = ? "
            "WHERE case_id = ? AND seq = ?",
            (step.at, step.position, step.event, outcome, case.case_id, case.seq),
        )
        _reach(case, step, giver)
    elif case.vacancy is not None:
        _end_vacancy(case, taker, step, cursor)
    if taker is not None:
        if case.reach_at is not None and step.at < case.reach_at:
            _overlap(case, taker, step, cursor)
        case.seq += 1
        cursor.execute(
            "INSERT INTO accountability_interval VALUES (?, ?, ?, ?, NULL, ?, NULL, ?, NULL, NULL)",
            (case.case_id, case.seq, taker, step.at, step.position, step.event),
        )
        _reach(case, step, taker)
    elif still_open:
        _begin_vacancy(case, giver, step, cursor)
    case.party = taker


def _reach(case: _Case, step: _Step, party_: str) -> None:
    if case.reach_at is None or step.at > case.reach_at:
        case.reach_at, case.reach_position, case.reach_party = step.at, step.position, party_


def _begin_vacancy(case: _Case, giver: str | None, step: _Step, cursor: Cursor) -> None:
    """The open case has nobody from this event on: an ``unowned`` violation, open-ended until somebody takes it."""
    assert case.status is not None
    answers = case.suspended_from if case.status is Status.SUSPENDED else case.status
    why = "no desk" if answers in DESK_STATES else "neither a unit nor a worker"
    released = f", released by {giver}" if giver else ""
    message = (
        f"open ({case.status.value}) with no accountable party from {_when(step.at)}: the case has {why} after "
        f"{step.event} at position {step.position}{released}"
    )
    case.vacancy = _violation(case, cursor, UNOWNED, step, from_party=giver, message=message)


def _end_vacancy(case: _Case, taker: str | None, step: _Step, cursor: Cursor) -> None:
    """Somebody takes the unowned case over (a ``gap`` if a party released it before) or it stops being open."""
    assert case.status is not None
    cursor.execute(
        "SELECT from_at, from_position, from_event, from_party FROM accountability_violation "
        "WHERE case_id = ? AND n = ?",
        (case.case_id, case.vacancy),
    )
    began = cursor.fetchone()
    how = f"{taker} took it over" if taker else f"it left the open states ({case.status.value})"
    cursor.execute(
        "UPDATE accountability_violation SET to_at = ?, to_position = ?, to_event = ?, to_party = ?, "
        "message = message || ? WHERE case_id = ? AND n = ?",
        (
            step.at, step.position, step.event, taker, f"; {how} at {_when(step.at)} ({step.event} at position "
            f"{step.position})", case.case_id, case.vacancy,
        ),
    )  # fmt: skip
    case.vacancy = None
    giver = began["from_party"]
    if taker is not None and giver is not None and step.at > began["from_at"]:
        message = (
            f"{giver} released the case at {_when(began['from_at'])} ({began['from_event']} at position "
            f"{began['from_position']}) and {taker} took it over at {_when(step.at)} ({step.event} at position "
            f"{step.position}): nobody held it for {_span(began['from_at'], step.at)}"
        )
        start = _Step(began["from_at"], began["from_position"], began["from_event"])
        _violation(case, cursor, GAP, start, step, from_party=giver, to_party=taker, message=message)


def _overlap(case: _Case, taker: str, step: _Step, cursor: Cursor) -> None:
    """The new holding begins before an earlier one ended (or began): both hold the case from then until the reach."""
    assert case.reach_at is not None and case.reach_position is not None
    message = (
        f"{taker} holds the case from {_when(step.at)} ({step.event} at position {step.position}), earlier than "
        f"{case.reach_party}'s holding reached ({_when(case.reach_at)}, position {case.reach_position}): two "
        f"holdings at once for {_span(step.at, case.reach_at)}"
    )
    reach = _Step(case.reach_at, case.reach_position, "")
    _violation(case, cursor, OVERLAP, step, reach, from_party=case.reach_party, to_party=taker, message=message)


def _orphan(case_id: str, row: Any, step: _Step, cursor: Cursor) -> None:
    """An event of a case whose Reported the log lacks: one ``unknown_case`` violation, widened by each such event."""
    if row is None:
        case = _Case(case_id, 0, None, None, "", "", "", None, 0, None, None, None, None, 0, 0, step.at, step.position)
        _violation(case, cursor, UNKNOWN_CASE, step, step, message="")
        cursor.execute(_INSERT_CASE, case.params())
    events = (row["events"] if row else 0) + 1
    cursor.execute(
        "UPDATE accountability_case SET events = ?, last_at = MAX(last_at, ?), position = ? WHERE case_id = ?",
        (events, step.at, step.position, case_id),
    )
    cursor.execute(
        "UPDATE accountability_violation SET from_at = MIN(from_at, :at), to_at = MAX(to_at, :at), "
        "to_position = :position, to_event = :event, message = 'no Reported event for this case: ' || :events || "
        "' event(s), ' || from_event || ' at position ' || from_position || ' to ' || :event || ' at position ' || "
        ":position || ', have no case to apply to, so nobody can be named accountable for it' "
        "WHERE case_id = :case_id AND n = 1",
        {"at": step.at, "position": step.position, "event": step.event, "events": events, "case_id": case_id},
    )


def _violation(
    case: _Case,
    cursor: Cursor,
    kind: str,
    start: _Step,
    end: _Step | None = None,
    *,
    from_party: str | None = None,
    to_party: str | None = None,
    message: str,
) -> int:
    case.violations += 1
    cursor.execute(
        _INSERT_VIOLATION,
        {
            "case_id": case.case_id, "n": case.violations, "kind": kind, "from_at": start.at,
            "to_at": end.at if end else None, "from_position": start.position,
            "to_position": end.position if end else None, "from_event": start.event,
            "to_event": (end.event or None) if end else None, "from_party": from_party, "to_party": to_party,
            "message": message,
        },
    )  # fmt: skip
    return case.violations


def _when(text: str) -> str:
    """A stored time as a reader writes it (UTC, to the second)."""
    return f"{text[:10]} {text[11:19]} UTC"


def _span(start: str, end: str) -> str:
    seconds = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m{seconds:02d}s"
    return f"{days}d {text}" if days else text
