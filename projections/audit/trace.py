"""A case's trace (痕迹): every step with who, when, what, why, the state it left, the time spent and the deadline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from engine.lifecycle import (
    EVENT_STATUS,
    HAND_OVER_PROCESSING,
    TRANSITIONS,
    Status,
    accountable_party,
    is_open,
    status_after,
)
from engine.sla import LIGHTS, Timer
from engine.working_time import WorkingCalendar
from projections import queries
from projections.store import Views

LATE_UPLOAD = timedelta(minutes=15)
"""A step recorded this long after it occurred is a late upload (补报: a phone out of coverage, a paper form)."""

STATE_NAMES: dict[Status, str] = {
    Status.REPORTED: "上报",
    Status.REGISTERED: "立案",
    Status.REJECTED: "不予立案",
    Status.MERGED: "合并",
    Status.DISPATCHED: "派遣",
    Status.ACCEPTED: "签收",
    Status.RETURNED: "退单",
    Status.EXTENSION_REQUESTED: "延期申请",
    Status.SUSPENDED: "挂账",
    Status.HANDLED: "处置反馈",
    Status.REOPENED: "返工",
    Status.CLOSED: "结案",
    Status.EVALUATED: "回访考评",
}
"""Each state's Chinese name, as engine.lifecycle.Status names it."""

ACTIONS: dict[str, str] = {
    "Reported": "report",
    "Registered": "register",
    "Rejected": "reject",
    "Merged": "merge",
    "DuplicateLinked": "link_duplicate",
    "Dispatched": "dispatch",
    "Reassigned": "reassign",
    "Accepted": "accept",
    "Returned": "return",
    "ExtensionRequested": "request_extension",
    "ExtensionGranted": "grant_extension",
    "ExtensionDenied": "deny_extension",
    "Suspended": "suspend",
    "Resumed": "resume",
    "HandlingReported": "report_handling",
    "Verified": "verify",
    "Escalated": "escalate",
    "DeadlineWarned": "warn_deadline",
    "Recategorised": "recategorise",
    "HandedOver": "hand_over",
    "CalledBack": "call_back",
    "CallBackMissed": "miss_call_back",
    "Reopened": "reopen",
}
"""The lifecycle action (engine.lifecycle.TRANSITIONS) each work-order event records; a report is no transition."""

REPORT_NAME = "上报"

ON_TIME, YELLOW, OVERDUE, NO_DEADLINE = "on_time", "yellow", "overdue", ""
"""Deadline status of a step: on time (按时), in the yellow warning window (临期), overdue (超期), or no deadline."""
DEADLINE_NAMES = {ON_TIME: "按时", YELLOW: "临期", OVERDUE: "超期", NO_DEADLINE: ""}

_YELLOW_SHARE = next(percent for percent, light in LIGHTS.items() if light == "yellow") / 100
_WHY_FIELDS = ("reason_code", "reason", "note", "result")
_DECISION_FIELDS = frozenset({*_WHY_FIELDS, "policy", "policy_version", "inputs"})
_NONE = timedelta(0)


@dataclass(frozen=True)
class Actor:
    """Who took a step: the log's actor, what kind of party it is, and the policy (with version) that decided."""

    id: str
    kind: str
    """policy, desk, worker, unit, or the actor's own prefix (op, resident, hotline …); person when it has none."""
    policy: str = ""
    policy_version: str = ""


@dataclass(frozen=True)
class Step:
    """One event of the case, judged: the state it left the case in, who held it then, for how long, by when."""

    version: int
    position: int
    event_type: str
    action: str
    action_name: str
    actor: Actor
    occurred_at: datetime
    recorded_at: datetime
    late_upload: bool
    """Recorded at least LATE_UPLOAD after it occurred."""
    why: str
    """The reason, note or result the step gave (and a rejection's reason code), in the log's words."""
    details: Mapping[str, Any]
    """Every field of the event as recorded (reason, deadline, unit, worker, policy, inputs …)."""
    state_before: Status | None
    state_after: Status
    accountable: str | None
    """The party accountable after the step, until the next one (desk:…, worker:… or unit:…); None once closed."""
    deadline: datetime | None
    """The deadline in force when the step happened: the one it is judged against."""
    deadline_after: datetime | None
    deadline_status: str
    """ON_TIME, YELLOW or OVERDUE against ``deadline`` (working time used of its limit), NO_DEADLINE without one."""
    limit_used: float | None
    """The share of the deadline's working-time limit used when the step happened (None without a deadline)."""
    clock_paused: bool
    """The deadline's clock was paused (挂账) when the step happened."""
    elapsed: timedelta | None
    """Time from this step to the next (to ``as_of`` for the last step of an open case; None if unknown)."""
    working: timedelta | None
    """The working time within ``elapsed`` (the working calendar's hours and days)."""


@dataclass(frozen=True)
class StateTotal:
    """The time a case spent in one state over its whole history, and the parties accountable for it there."""

    state: Status
    entries: int
    elapsed: timedelta
    working: timedelta
    accountable: tuple[str, ...]
    ongoing: bool
    """The case is still in this state (its last stretch counted up to ``as_of``)."""


@dataclass(frozen=True)
class CaseTrace:
    """痕迹: a case as the board shows it, every step of its history, and the time it spent in each state."""

    case_id: UUID
    short_id: str
    status: Status
    category: str
    category_name: str
    source: str
    grid: str
    community: str
    street: str
    desk: str
    description: str
    reported_at: datetime
    closed_at: datetime | None
    accountable: str | None
    deadline: datetime | None
    deadline_status: str
    """The deadline's status at ``as_of`` (NO_DEADLINE without either)."""
    position: int
    """The log position of the case's last event: the trace shows the history up to it."""
    as_of: datetime | None
    zone: str
    working_hours: str
    steps: tuple[Step, ...]
    totals: tuple[StateTotal, ...]


def case_trace(store: Views, case_ref: str, calendar: WorkingCalendar, *, now: datetime | None = None) -> CaseTrace:
    """The trace of the case with this id or unique id prefix; ``now`` counts the open case's last state up to it.

    Unknown case: UnknownReference; a prefix of several cases: InvalidCommand naming them. Read from the board
    row and the timeline rows (both by primary key); the steps are cut at the board row's version, so a runner
    committing between the two reads cannot make the header and the steps disagree.
    """
    row = queries.find_case(store, case_ref)
    events = [e for e in queries.timeline(store, row.case_id) if e.version <= row.version]
    steps, deadline = _fold(events, row.desk, calendar, now)
    last = steps[-1] if steps else None
    return CaseTrace(
        case_id=row.case_id, short_id=row.short_id, status=last.state_after if last else row.status,
        category=row.category, category_name=row.category_name, source=row.source, grid=row.grid,
        community=row.community, street=row.street, desk=row.desk, description=row.description,
        reported_at=row.reported_at, closed_at=row.closed_at, accountable=last.accountable if last else None,
        deadline=last.deadline_after if last else None,
        deadline_status=deadline.status_at(now)[0] if now is not None else NO_DEADLINE,
        position=row.position, as_of=now, zone=calendar.zone.key,
        working_hours=f"{calendar.start:%H:%M}–{calendar.end:%H:%M}", steps=tuple(steps), totals=totals(steps),
    )  # fmt: skip


def action_of(event_type: str) -> tuple[str, str]:
    """The lifecycle action an event records and its Chinese name (('', '') for an event type not known here)."""
    action = ACTIONS.get(event_type, "")
    if event_type == "Reported":
        return action, REPORT_NAME
    transition = TRANSITIONS.get(action)
    return action, transition.chinese if transition else ""


def totals(steps: Sequence[Step]) -> tuple[StateTotal, ...]:
    """Time in each state summed over the steps (first entered first), with the parties accountable there."""
    by_state: dict[Status, list[Step]] = {}
    for step in steps:
        by_state.setdefault(step.state_after, []).append(step)
    last = steps[-1] if steps else None
    return tuple(
        StateTotal(
            state=state,
            entries=sum(1 for s in stretch if s.state_after is not s.state_before),
            elapsed=sum((s.elapsed or _NONE for s in stretch), _NONE),
            working=sum((s.working or _NONE for s in stretch), _NONE),
            accountable=tuple(dict.fromkeys(s.accountable for s in stretch if s.accountable)),
            ongoing=last is not None and last.state_after is state and last.elapsed is not None,
        )
        for state, stretch in by_state.items()
    )


class _Deadline:
    """The deadline in force and its SLA clock (engine.sla.Timer), as the supervisor keeps the handling step's.

    Set by a dispatch, a reassignment or a hand-over to the processing unit; moved by a granted extension and
    by a resumption; paused while suspended; gone once the case is handled, returned or reopened.
    """

    def __init__(self, calendar: WorkingCalendar) -> None:
        self.calendar = calendar
        self.deadline: datetime | None = None
        self.timer: Timer | None = None

    def status_at(self, at: datetime) -> tuple[str, float | None]:
        """The deadline's status at ``at`` and the share of its limit used by then."""
        if self.timer is None or self.deadline is None:
            return NO_DEADLINE, None
        used = self.timer.fraction(self.calendar, at)
        # Working time decides the share used; the wall-clock deadline decides "past" (as the board's overdue):
        # a deadline on a Saturday is not yet passed on Friday evening, when the working time has all gone.
        if used >= 1 and (self.timer.paused or at > self.deadline):
            return OVERDUE, used
        return (YELLOW if used >= _YELLOW_SHARE else ON_TIME), used

    def move(self, name: str, details: Mapping[str, Any], at: datetime, after: Status) -> None:
        """Follow one event: ``name`` and its fields, when it occurred, the state it left the case in."""
        if name == "Dispatched" or (name == "HandedOver" and details.get("stage") == HAND_OVER_PROCESSING):
            self._set(_time(details.get("deadline")), at, fresh=True)
        elif name == "Suspended" and self.timer is not None and not self.timer.paused:
            self.timer = self.timer.pause(self.calendar, at)
        elif name in ("Reassigned", "ExtensionGranted", "Resumed"):
            if name == "Resumed" and self.timer is not None and self.timer.paused:
                self.timer = self.timer.resume(at)
            self._set(_time(details.get("new_deadline" if name == "ExtensionGranted" else "deadline")), at, fresh=False)
        if name == "HandlingReported" or after in (Status.RETURNED, Status.REOPENED) or not is_open(after):
            self.deadline = self.timer = None

    def _set(self, deadline: datetime | None, at: datetime, *, fresh: bool) -> None:
        if deadline is None:
            return
        if fresh or self.timer is None:
            self.timer = Timer.until(self.calendar, at, deadline)
        elif deadline != self.deadline:
            self.timer = self.timer.extend_to(self.calendar, deadline, at)
        self.deadline = deadline


def _fold(
    events: Sequence[queries.TimelineRow], desk: str, calendar: WorkingCalendar, now: datetime | None
) -> tuple[list[Step], _Deadline]:
    """The timeline folded: each event's step, and the deadline in force after the last.

    A step's time in state runs to the next step's occurred time; the last step's, if the case is still open, to
    ``now`` (when given). The steps are in the aggregate's order: a late upload can make the next step's occurred
    time earlier than this one's, and that stretch counts as none.
    """
    workers, units = _assignees(e.details for e in events)
    ends = [e.occurred_at for e in events[1:]]
    deadline = _Deadline(calendar)
    state: Status | None = None
    suspended_from: Status | None = None
    unit = worker = ""
    steps: list[Step] = []
    for i, event in enumerate(events):
        d, at = event.details, event.occurred_at
        after = _state_after(event.event_type, state, suspended_from, d)
        if event.event_type in ("Dispatched", "Reassigned"):
            unit, worker = str(d.get("unit", "")), str(d.get("worker", ""))
        elif event.event_type == "HandedOver" and d.get("stage") == HAND_OVER_PROCESSING:
            unit, worker = str(d.get("to_unit", "")), ""
        if after in (Status.RETURNED, Status.REOPENED) and after is not state:
            unit = worker = ""  # the assignee is released: the desk holds the case until it dispatches again
        if after is Status.SUSPENDED:
            suspended_from = state if state is not Status.SUSPENDED else suspended_from
        else:
            suspended_from = None
        before_deadline = deadline.deadline
        status, used = deadline.status_at(at)
        paused = deadline.timer is not None and deadline.timer.paused
        deadline.move(event.event_type, d, at, after)
        action, action_name = action_of(event.event_type)
        end = ends[i] if i < len(ends) else now if is_open(after) else None
        steps.append(
            Step(
                version=event.version, position=event.position, event_type=event.event_type, action=action,
                action_name=action_name, actor=_actor(event.actor, d, desk, workers, units), occurred_at=at,
                recorded_at=event.recorded_at, late_upload=event.recorded_at - at >= LATE_UPLOAD, why=_why(d),
                details=d, state_before=state, state_after=after,
                accountable=accountable_party(after, suspended_from, desk, unit, worker), deadline=before_deadline,
                deadline_after=deadline.deadline, deadline_status=status, limit_used=used, clock_paused=paused,
                elapsed=None if end is None else max(_NONE, end - at),
                working=None if end is None else calendar.between(at, end),
            )
        )  # fmt: skip
        state = after
    return steps, deadline


def _state_after(event_type: str, state: Status | None, suspended_from: Status | None, d: Mapping[str, Any]) -> Status:
    if event_type not in EVENT_STATUS:  # an event type newer than this module: it moves nothing we know of
        return state or Status.REPORTED
    return status_after(
        event_type, state, suspended_from, passed=d.get("passed"), fixed=d.get("fixed"), stage=d.get("stage")
    )


def _assignees(details: Iterable[Mapping[str, Any]]) -> tuple[frozenset[str], frozenset[str]]:
    """Every worker and unit the case was ever assigned to: an actor named like one of them acted as one."""
    workers: set[str] = set()
    units: set[str] = set()
    for d in details:
        workers.add(str(d.get("worker") or ""))
        units.update(str(d.get(key) or "") for key in ("unit", "to_unit", "from_unit"))
    return frozenset(workers - {""}), frozenset(units - {""})


def _actor(actor: str, d: Mapping[str, Any], desk: str, workers: frozenset[str], units: frozenset[str]) -> Actor:
    policy, version = str(d.get("policy") or ""), str(d.get("policy_version") or "")
    prefix, _, rest = actor.partition(":")
    if rest:
        kind = prefix
        if prefix == "policy" and not policy:
            policy = rest
    elif actor in workers:
        kind = "worker"
    elif actor in units:
        kind = "unit"
    elif actor == desk:
        kind = "desk"
    else:
        kind = "person"
    return Actor(actor, kind, policy, version)


def _why(d: Mapping[str, Any]) -> str:
    return " — ".join(str(d[key]) for key in _WHY_FIELDS if d.get(key))


def facts(d: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The step's fields other than its reason and the decision's policy and inputs, by name."""
    return [(key, value) for key, value in d.items() if key not in _DECISION_FIELDS and value not in ("", None, [])]


def _time(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None
