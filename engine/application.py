"""The application service: the one command path every entry point uses (CLI now, HTTP later)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from engine import commands as c
from engine.base import name_id, recording_time
from engine.catalogue import Catalogue, default_catalogue
from engine.clock import Clock, SystemClock
from engine.errors import ConcurrencyConflict, DuplicateCommand, GridloopError, InvalidCommand, UnknownReference
from engine.patrol import Patrol
from engine.receipts import CommandReceipt
from engine.reference import LEVELS, ROLES, Division, Grid, Worker
from engine.work_order import SOURCES, WorkOrder

A = TypeVar("A", bound=Aggregate)

MAX_ATTEMPTS = 8
"""How often a command is retried when another writer changed the same aggregate first."""

FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of the clock an ``occurred_at`` may be (phones' clocks drift)."""


@dataclass(frozen=True)
class CommandResult:
    """What a command did: the aggregate it touched and the log position to wait for."""

    command_id: str
    aggregate_id: UUID
    position: int
    events: tuple[str, ...]
    duplicate: bool = False


Handler = Callable[[Any, datetime], tuple[UUID, list[Aggregate]]]


class Gridloop(Application[UUID]):
    """The gridloop write side on an event store (SQLite embedded, PostgreSQL distributed)."""

    name = "gridloop"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        super().__init__(env)
        self.clock: Clock = clock or SystemClock()
        self.catalogue = catalogue or default_catalogue()
        self._handlers: dict[type[c.Command], Handler] = {
            c.ReportCase: self._report,
            c.ReportFinding: self._report_finding,
            c.MergeCase: self._merge,
            c.DispatchCase: self._dispatch,
            c.ReassignCase: self._dispatch,
            c.AcceptCase: self._on_case(lambda o, m, t: o.accept(occurred_at=t, actor=m.actor)),
            c.RegisterCase: self._register,
            c.RejectCase: self._on_case(
                lambda o, m, t: o.reject(reason_code=m.reason_code, reason=m.reason, occurred_at=t, actor=m.actor)
            ),
            c.ReturnCase: self._on_case(lambda o, m, t: o.return_(reason=m.reason, occurred_at=t, actor=m.actor)),
            c.RequestExtension: self._on_case(
                lambda o, m, t: o.request_extension(until=m.until, reason=m.reason, occurred_at=t, actor=m.actor)
            ),
            c.GrantExtension: self._on_case(
                lambda o, m, t: o.grant_extension(note=m.note, occurred_at=t, actor=m.actor)
            ),
            c.DenyExtension: self._on_case(
                lambda o, m, t: o.deny_extension(reason=m.reason, occurred_at=t, actor=m.actor)
            ),
            c.SuspendCase: self._on_case(lambda o, m, t: o.suspend(reason=m.reason, occurred_at=t, actor=m.actor)),
            c.ResumeCase: self._on_case(lambda o, m, t: o.resume(note=m.note, occurred_at=t, actor=m.actor)),
            c.ReportHandling: self._on_case(
                lambda o, m, t: o.report_handling(result=m.result, photos=m.photos, occurred_at=t, actor=m.actor)
            ),
            c.VerifyCase: self._on_case(
                lambda o, m, t: o.verify(passed=m.passed, note=m.note, occurred_at=t, actor=m.actor)
            ),
            c.EscalateCase: self._on_case(
                lambda o, m, t: o.escalate(level=m.level, reason=m.reason, occurred_at=t, actor=m.actor)
            ),
            c.CallBack: self._on_case(
                lambda o, m, t: o.call_back(
                    satisfaction=m.satisfaction, fixed=m.fixed, note=m.note, occurred_at=t, actor=m.actor
                )
            ),
            c.ReopenCase: self._on_case(lambda o, m, t: o.reopen(reason=m.reason, occurred_at=t, actor=m.actor)),
            c.EstablishDivision: self._establish_division,
            c.DrawGrid: self._draw_grid,
            c.RedrawGrid: self._redraw_grid,
            c.RetireGrid: self._retire_grid,
            c.AssignStaff: self._assign_staff,
            c.EnrollWorker: self._enroll_worker,
            c.SetDuty: self._set_duty,
            c.StartPatrol: self._start_patrol,
            c.VisitCheckpoint: self._visit_checkpoint,
            c.EndPatrol: self._end_patrol,
        }

    # -- the command path -------------------------------------------------------------

    def execute(self, command: c.Command) -> CommandResult:
        """Run one command: validate, apply, record it with its receipt atomically; idempotent by command id."""
        if not command.command_id.strip():
            raise InvalidCommand("command_id", "is empty", "a client-chosen unique id")
        if not command.actor.strip():
            raise InvalidCommand("actor", "is empty", "the operator, worker or policy issuing the command")
        handler = self._handlers[type(command)]
        fingerprint = command.fingerprint()
        for attempt in range(MAX_ATTEMPTS):
            # The happy path does not look for a receipt first: the receipt's insert is the check.
            # Only when the command fails or collides do we ask whether it was recorded before.
            try:
                return self._apply_once(command, handler, fingerprint)
            except GridloopError:
                first = self._receipt(command.command_id)
                if first is None:
                    raise
                return self._repeat(command, first, fingerprint)
            except IntegrityError:
                first = self._receipt(command.command_id)
                if first is not None:
                    return self._repeat(command, first, fingerprint)
                # Another writer changed the aggregate first: back off a little (jittered), reload, retry.
                time.sleep(random.uniform(0, 0.002 * 2**attempt))  # timing only, not an event
        raise ConcurrencyConflict(f"the aggregate touched by {command.name}", MAX_ATTEMPTS)

    def _apply_once(self, command: c.Command, handler: Handler, fingerprint: str) -> CommandResult:
        occurred_at = self._occurred_at(command, self.clock.now())
        with recording_time(self.clock.now):
            aggregate_id, changed = handler(command, occurred_at)
            receipt = CommandReceipt(
                command_id=command.command_id,
                command=command.name,
                fingerprint=fingerprint,
                aggregate_id=aggregate_id,
                occurred_at=occurred_at,
            )
            recordings = self.save(*changed, receipt)
        events = tuple(type(r.domain_event).__name__ for r in recordings[:-1])
        return CommandResult(command.command_id, aggregate_id, recordings[-1].notification.id, events)

    def _receipt(self, command_id: str) -> CommandReceipt | None:
        try:
            receipt: CommandReceipt = self.repository.get(name_id("command", command_id))
        except AggregateNotFoundError:
            return None
        return receipt

    def _repeat(self, command: c.Command, first: CommandReceipt, fingerprint: str) -> CommandResult:
        if first.fingerprint != fingerprint:
            raise DuplicateCommand(command.command_id, first.command)
        return CommandResult(command.command_id, first.aggregate_id, self.position_of(first.id), (), duplicate=True)

    def position_of(self, aggregate_id: UUID, version: int = 1) -> int:
        """The notification-log position of one recorded event."""
        datastore = getattr(self.recorder, "datastore", None)
        table = getattr(self.recorder, "events_table_name", "stored_events")
        if datastore is None:  # pragma: no cover - only SQLite and PostgreSQL recorders are used
            return self.recorder.max_notification_id() or 0
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT rowid FROM {table} WHERE originator_id=? AND originator_version=?",  # noqa: S608
                (aggregate_id.hex, version),
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def _occurred_at(self, command: c.Command, now: datetime) -> datetime:
        if command.occurred_at is None:
            return now
        if command.occurred_at.tzinfo is None:
            raise InvalidCommand("occurred_at", "has no UTC offset", "a timezone-aware time")
        if command.occurred_at > now + FUTURE_SKEW:
            raise InvalidCommand(
                "occurred_at", f"{command.occurred_at.isoformat()} is in the future", f"at or before {now.isoformat()}"
            )
        return command.occurred_at

    # -- loading ------------------------------------------------------------------------

    def _get(self, kind: str, aggregate_id: UUID, label: str, cls: type[A]) -> A:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise UnknownReference(kind, label) from None
        if not isinstance(aggregate, cls):
            raise UnknownReference(kind, label)
        return aggregate

    def case(self, case_id: UUID) -> WorkOrder:
        """The current state of one case, from the event store."""
        return self._get("case", case_id, str(case_id), WorkOrder)

    def grid(self, code: str) -> Grid:
        return self._get("grid", name_id("grid", code), code, Grid)

    def worker(self, code: str) -> Worker:
        return self._get("worker", name_id("worker", code), code, Worker)

    def division(self, code: str) -> Division:
        return self._get("division", name_id("division", code), code, Division)

    def patrol(self, patrol_id: UUID) -> Patrol:
        return self._get("patrol", patrol_id, str(patrol_id), Patrol)

    # -- handlers: load, call one domain method, return what to save -------------------

    def _on_case(self, act: Callable[[WorkOrder, Any, datetime], None]) -> Handler:
        """A handler for a command on one case that calls one domain method."""

        def handle(command: c.CaseCommand, occurred_at: datetime) -> tuple[UUID, list[Aggregate]]:
            order = self.case(command.case_id)
            act(order, command, occurred_at)
            return order.id, [order]

        return handle

    def _new_case(
        self,
        command_id: str,
        source: str,
        category: str,
        grid_code: str,
        description: str,
        reporter: str,
        lon: float | None,
        lat: float | None,
        patrol_id: UUID | None,
        occurred_at: datetime,
        actor: str,
    ) -> WorkOrder:
        if source not in SOURCES:
            raise InvalidCommand("source", f"{source!r} is not a case source", ", ".join(SOURCES))
        self.catalogue.category(category)
        grid = self.grid(grid_code)
        if grid.retired:
            raise InvalidCommand("grid", f"{grid_code} was retired by a redraw", "one of " + ", ".join(grid.successors))
        _check_location(lon, lat)
        if not description.strip():
            raise InvalidCommand("description", "is empty", "what was seen or asked, in words")
        return WorkOrder(
            id=name_id("case", command_id),
            source=source,
            category=category,
            grid=grid.code,
            desk=grid.district,
            description=description,
            reporter=reporter,
            lon=lon,
            lat=lat,
            patrol_id=patrol_id,
            occurred_at=occurred_at,
            actor=actor,
        )

    def _report(self, m: c.ReportCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self._new_case(
            m.command_id, m.source, m.category, m.grid, m.description, m.reporter, m.lon, m.lat, None, t, m.actor
        )
        return order.id, [order]

    def _report_finding(self, m: c.ReportFinding, t: datetime) -> tuple[UUID, list[Aggregate]]:
        patrol = self.patrol(m.patrol_id)
        patrol._require_active("report_finding")
        order = self._new_case(
            m.command_id,
            "patrol",
            m.category,
            patrol.grid,
            m.description,
            patrol.worker,
            m.lon,
            m.lat,
            patrol.id,
            t,
            m.actor,
        )
        patrol.report_finding(case_id=order.id, category=m.category, occurred_at=t)
        return order.id, [order, patrol]

    def _register(self, m: c.RegisterCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self.case(m.case_id)
        category = m.category or order.category
        self.catalogue.category(category)
        order.register(category=category, note=m.note, occurred_at=t, actor=m.actor)
        return order.id, [order]

    def _merge(self, m: c.MergeCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self.case(m.case_id)
        target = self.case(m.into_case)
        order.merge_into(target=target, reason=m.reason, occurred_at=t, actor=m.actor)
        return order.id, [order, target]

    def _dispatch(self, m: c.DispatchCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self.case(m.case_id)
        if m.unit and not (self.catalogue.is_unit(m.unit) or self._is_division(m.unit)):
            raise UnknownReference("unit", m.unit, sorted(self.catalogue.departments))
        if m.worker:
            worker = self.worker(m.worker)
            if not worker.on_duty:
                raise InvalidCommand("worker", f"{m.worker} is off duty", "an on-duty worker")
        deadline = m.deadline
        if deadline is None and isinstance(m, c.ReassignCase):
            deadline = order.deadline
        if deadline is None:
            hours = self.catalogue.category(order.category).time_limit_hours
            deadline = t + timedelta(hours=hours)
        act = order.reassign if isinstance(m, c.ReassignCase) else order.dispatch
        act(
            unit=m.unit,
            worker=m.worker,
            deadline=deadline,
            policy=m.policy,
            policy_version=m.policy_version,
            reason=m.reason,
            inputs=m.inputs,
            occurred_at=t,
            actor=m.actor,
        )
        return order.id, [order]

    def _is_division(self, code: str) -> bool:
        try:
            self.division(code)
        except UnknownReference:
            return False
        return True

    def _establish_division(self, m: c.EstablishDivision, t: datetime) -> tuple[UUID, list[Aggregate]]:
        if m.level not in LEVELS:
            raise InvalidCommand("level", f"{m.level!r} is not a division level", ", ".join(LEVELS))
        if m.parent:
            self.division(m.parent)
        division = Division(code=m.code, name=m.division_name, level=m.level, parent=m.parent, occurred_at=t)
        return division.id, [division]

    def _draw_grid(self, m: c.DrawGrid, t: datetime) -> tuple[UUID, list[Aggregate]]:
        community = self.division(m.community)
        if community.level != "community":
            raise InvalidCommand("community", f"{m.community} is a {community.level}", "a community code")
        street = self.division(community.parent)
        if m.households <= 0:
            raise InvalidCommand("households", f"{m.households} is not a household count", "a positive number")
        grid = Grid(
            code=m.code,
            name=m.grid_name,
            community=community.code,
            street=street.code,
            district=street.parent,
            households=m.households,
            boundary=m.boundary,
            occurred_at=t,
        )
        return grid.id, [grid]

    def _redraw_grid(self, m: c.RedrawGrid, t: datetime) -> tuple[UUID, list[Aggregate]]:
        grid = self.grid(m.code)
        grid.redraw(households=m.households, boundary=m.boundary, reason=m.reason, occurred_at=t)
        return grid.id, [grid]

    def _retire_grid(self, m: c.RetireGrid, t: datetime) -> tuple[UUID, list[Aggregate]]:
        grid = self.grid(m.code)
        for successor in m.successors:
            self.grid(successor)
        if not m.reason.strip():
            raise InvalidCommand("reason", "is empty", "why the grid is replaced (重新划分)")
        grid.retire(successors=m.successors, reason=m.reason, occurred_at=t)
        return grid.id, [grid]

    def _assign_staff(self, m: c.AssignStaff, t: datetime) -> tuple[UUID, list[Aggregate]]:
        grid = self.grid(m.grid)
        self.worker(m.worker)
        grid.assign_staff(role=m.role, worker=m.worker, occurred_at=t)
        return grid.id, [grid]

    def _enroll_worker(self, m: c.EnrollWorker, t: datetime) -> tuple[UUID, list[Aggregate]]:
        if m.role not in ROLES:
            raise InvalidCommand("role", f"{m.role!r} is not a staff role", ", ".join(ROLES))
        if m.grid:
            self.grid(m.grid)
        if not (self.catalogue.is_unit(m.unit) or self._is_division(m.unit)):
            raise UnknownReference("unit", m.unit, sorted(self.catalogue.departments))
        worker = Worker(
            code=m.code, name=m.worker_name, role=m.role, unit=m.unit, grid=m.grid, skills=m.skills, occurred_at=t
        )
        return worker.id, [worker]

    def _set_duty(self, m: c.SetDuty, t: datetime) -> tuple[UUID, list[Aggregate]]:
        worker = self.worker(m.worker)
        if m.on_duty:
            worker.go_on_duty(occurred_at=t)
        else:
            worker.go_off_duty(occurred_at=t)
        return worker.id, [worker]

    def _start_patrol(self, m: c.StartPatrol, t: datetime) -> tuple[UUID, list[Aggregate]]:
        worker = self.worker(m.worker)
        grid = self.grid(m.grid)
        patrol = Patrol(id=name_id("patrol", m.command_id), worker=worker.code, grid=grid.code, occurred_at=t)
        return patrol.id, [patrol]

    def _visit_checkpoint(self, m: c.VisitCheckpoint, t: datetime) -> tuple[UUID, list[Aggregate]]:
        patrol = self.patrol(m.patrol_id)
        _check_location(m.lon, m.lat)
        patrol.visit(lon=m.lon, lat=m.lat, note=m.note, occurred_at=t)
        return patrol.id, [patrol]

    def _end_patrol(self, m: c.EndPatrol, t: datetime) -> tuple[UUID, list[Aggregate]]:
        patrol = self.patrol(m.patrol_id)
        patrol.end(occurred_at=t)
        return patrol.id, [patrol]


def _check_location(lon: float | None, lat: float | None) -> None:
    if (lon is None) != (lat is None):
        raise InvalidCommand("location", "has only one coordinate", "both lon and lat (WGS84), or neither")
    if lon is None or lat is None:
        return
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise InvalidCommand("lon", f"{lon} is not a longitude", "-180 to 180 (WGS84 degrees)")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise InvalidCommand("lat", f"{lat} is not a latitude", "-90 to 90 (WGS84 degrees)")
