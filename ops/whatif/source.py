"""What a source store recorded for a what-if period: its reference model and each request with its outcome."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from engine import commands as c
from engine.application import Gridloop
from engine.reference import Division, Grid, Worker
from engine.work_order import WorkOrder

PAGE = 1000
"""Notifications read from the source per query."""

CASE_EVENTS = (
    "Reported", "Registered", "Rejected", "Merged", "Dispatched", "Accepted", "Returned", "HandlingReported",
    "Verified", "HandedOver",
)  # fmt: skip
"""The work-order events that tell what happened to a request."""

REGISTERED, REJECTED, MERGED, UNREGISTERED, SERVICE_ITEM = (
    "registered", "rejected", "merged", "never registered", "service item",
)  # fmt: skip
"""A request's outcome in the source; only registered ones are replayed (全县通办 service items are not)."""

_REFERENCE = {
    Division: ("Established",),
    Grid: ("Drawn", "Redrawn", "Retired", "StaffAssigned"),
    Worker: ("Enrolled", "WentOnDuty", "WentOffDuty"),
}
_TOPICS = tuple(get_topic(vars(kind)[name]) for kind, names in _REFERENCE.items() for name in names) + tuple(
    get_topic(vars(WorkOrder)[name]) for name in CASE_EVENTS
)
_REPORTED = get_topic(vars(WorkOrder)["Reported"])


@dataclass(frozen=True)
class Recorded:
    """A reference command rebuilt from the source's event, at the time the source says it happened."""

    at: datetime
    position: int
    command: c.Command


@dataclass
class Request:
    """One request of the period (上报) and what the source recorded of it."""

    case_id: UUID
    position: int
    reported_at: datetime
    report: dict[str, Any]
    category: str
    outcome: str = UNREGISTERED
    registered_at: datetime | None = None
    handling_minutes: list[float] = field(default_factory=list)
    failed_verifications: int = 0
    returns: int = 0
    policy: str | None = None  # the first dispatch's policy ("" = a person at the desk); None: never dispatched
    accepted_at: datetime | None = None


@dataclass(frozen=True)
class Period:
    """The source's reference model and the requests reported in ``[start, end)``."""

    start: datetime
    end: datetime
    setup: tuple[Recorded, ...]
    """Reference commands up to the start, and SetDuty for everyone on duty at the start."""
    later: tuple[Recorded, ...]
    """Reference commands (mostly duty changes) after the start."""
    requests: tuple[Request, ...]
    on_duty: frozenset[str]
    """Workers on duty at some moment of the period: the staff the workload spread is measured over."""
    dispatch_policies: Counter[str]
    """How many of the period's first dispatches each policy made ("" = a person at the desk)."""
    first_reported: datetime | None
    last_reported: datetime | None
    """The store's earliest and latest report times (to say where its cases are when the period is empty)."""

    @property
    def replayed(self) -> tuple[Request, ...]:
        return tuple(r for r in self.requests if r.outcome == REGISTERED)

    def skipped(self) -> dict[str, int]:
        """Requests left out of the replay, by outcome."""
        counts = Counter(r.outcome for r in self.requests if r.outcome != REGISTERED)
        return {k: counts[k] for k in (REJECTED, MERGED, UNREGISTERED, SERVICE_ITEM)}


def read_period(source: Gridloop, start: datetime, end: datetime) -> Period:
    """Read ``source``'s log once: the reference model and every request reported in ``[start, end)``."""
    reader = _Reader(source, start, end)
    for notification in _notifications(source):
        case_event = notification.topic != _REPORTED and notification.topic.startswith("engine.work_order:")
        if case_event and notification.originator_id not in reader.requests:
            continue  # another period's case: not worth decoding
        reader.fold(source.mapper.to_domain_event(notification), notification.id)
    return reader.period()


def _notifications(source: Gridloop) -> Iterator[Any]:
    position = 0
    while page := source.recorder.select_notifications(position + 1, PAGE, topics=_TOPICS):
        yield from page
        position = page[-1].id


class _Reader:
    """Folds the source's events into a Period."""

    def __init__(self, source: Gridloop, start: datetime, end: datetime) -> None:
        self.source = source
        self.start, self.end = start, end
        self.setup: list[Recorded] = []
        self.later: list[Recorded] = []
        self.requests: dict[UUID, Request] = {}
        self.grids: dict[UUID, str] = {}
        self.workers: dict[UUID, str] = {}
        self.duty_at_start: dict[str, Recorded] = {}
        self.on_duty: set[str] = set()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def fold(self, event: Any, position: int) -> None:
        if type(event).__qualname__.startswith("WorkOrder."):
            self._case(event, position)
        else:
            self._reference(event, position)

    def _reference(self, event: Any, position: int) -> None:
        at: datetime = event.occurred_at
        actor = "whatif:reference"
        command_id = f"whatif:reference:{position}"
        command: c.Command
        kind = type(event).__qualname__
        if kind == "Division.Established":
            command = c.EstablishDivision(
                command_id=command_id, actor=actor, occurred_at=at, code=event.code, division_name=event.name,
                level=event.level, parent=event.parent,
            )  # fmt: skip
        elif kind == "Grid.Drawn":
            self.grids[event.originator_id] = event.code
            command = c.DrawGrid(
                command_id=command_id, actor=actor, occurred_at=at, code=event.code, grid_name=event.name,
                community=event.community, households=event.households, boundary=event.boundary,
            )  # fmt: skip
        elif kind == "Grid.Redrawn":
            command = c.RedrawGrid(
                command_id=command_id, actor=actor, occurred_at=at, code=self.grids[event.originator_id],
                households=event.households, boundary=event.boundary, reason=event.reason,
            )  # fmt: skip
        elif kind == "Grid.Retired":
            command = c.RetireGrid(
                command_id=command_id, actor=actor, occurred_at=at, code=self.grids[event.originator_id],
                successors=list(event.successors), reason=event.reason,
            )  # fmt: skip
        elif kind == "Grid.StaffAssigned":
            command = c.AssignStaff(
                command_id=command_id, actor=actor, occurred_at=at, grid=self.grids[event.originator_id],
                role=event.role, worker=event.worker,
            )  # fmt: skip
        elif kind == "Worker.Enrolled":
            self.workers[event.originator_id] = event.code
            command = c.EnrollWorker(
                command_id=command_id, actor=actor, occurred_at=at, code=event.code, worker_name=event.name,
                role=event.role, unit=event.unit, grid=event.grid, skills=list(event.skills),
            )  # fmt: skip
        else:
            self._duty(event, position, kind == "Worker.WentOnDuty")
            return
        (self.setup if at <= self.start else self.later).append(Recorded(at, position, command))

    def _duty(self, event: Any, position: int, on_duty: bool) -> None:
        worker = self.workers[event.originator_id]
        at: datetime = event.occurred_at
        command = c.SetDuty(
            command_id=f"whatif:reference:{position}", actor="whatif:reference", occurred_at=at, worker=worker,
            on_duty=on_duty,
        )  # fmt: skip
        recorded = Recorded(at, position, command)
        if at <= self.start:
            # Only who is on duty at the start matters, not the shifts of the days before.
            if on_duty:
                self.duty_at_start[worker] = recorded
            else:
                self.duty_at_start.pop(worker, None)
            return
        self.later.append(recorded)
        if on_duty and at < self.end:
            self.on_duty.add(worker)

    def _case(self, event: Any, position: int) -> None:
        name = type(event).__name__
        at: datetime = event.occurred_at
        if name == "Reported":
            self.first = min(self.first or at, at)
            self.last = max(self.last or at, at)
            if self.start <= at < self.end:
                self.requests[event.originator_id] = _request(event, position)
            return
        request = self.requests[event.originator_id]
        if name == "Registered":
            if request.registered_at is None:
                request.registered_at, request.category = at, event.category
            if request.outcome == UNREGISTERED:
                request.outcome = REGISTERED
        elif name in ("Rejected", "Merged"):
            request.outcome = REJECTED if name == "Rejected" else MERGED
        elif name == "Dispatched":
            if request.policy is None:
                request.policy = event.policy
        elif name == "Accepted":
            request.accepted_at = at
        elif name == "Returned":
            request.returns += 1
        elif name == "HandlingReported" and request.accepted_at is not None:
            request.handling_minutes.append(self._minutes(request.category, request.accepted_at, at))
            request.accepted_at = None
        elif name == "Verified" and not event.passed:
            request.failed_verifications += 1

    def _minutes(self, category: str, accepted: datetime, handled: datetime) -> float:
        """Handling time: calendar minutes for emergencies (handled day and night), else working minutes."""
        if self.source.catalogue.category(category).tier == "emergency":
            span = handled - accepted
        else:
            span = self.source.calendar.between(accepted, handled)
        return max(span, timedelta(0)) / timedelta(minutes=1)

    def period(self) -> Period:
        setup = sorted(self.setup + list(self.duty_at_start.values()), key=lambda r: r.position)
        policies = Counter(r.policy for r in self.requests.values() if r.policy is not None)
        return Period(
            start=self.start, end=self.end, setup=tuple(setup),
            later=tuple(sorted(self.later, key=lambda r: (r.at, r.position))),
            requests=tuple(sorted(self.requests.values(), key=lambda r: (r.reported_at, r.position))),
            on_duty=frozenset(self.on_duty | set(self.duty_at_start)), dispatch_policies=policies,
            first_reported=self.first, last_reported=self.last,
        )  # fmt: skip


def _request(event: Any, position: int) -> Request:
    """A request as reported; the same intake rules decide it again in the replay."""
    report = {
        "source": event.source, "category": event.category, "grid": event.grid, "description": event.description,
        "reporter": event.reporter, "lon": event.lon, "lat": event.lat,
        "admission_item": getattr(event, "admission_item", ""), "certificate": getattr(event, "certificate", ""),
        "actor": event.actor,
    }  # fmt: skip
    request = Request(event.originator_id, position, event.occurred_at, report, event.category)
    if getattr(event, "service_item", ""):
        request.outcome = SERVICE_ITEM
    return request
