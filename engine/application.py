"""The application service: the one command path every entry point uses (CLI now, HTTP later)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, ProcessRecorder, Recording, Tracking

from engine import commands as c
from engine.admission import AdmissionCatalogue
from engine.base import name_id, recording_time
from engine.catalogue import Catalogue, default_catalogue
from engine.clock import Clock, SystemClock
from engine.errors import ConcurrencyConflict, DuplicateCommand, GridloopError, InvalidCommand, UnknownReference
from engine.geo import check_boundary, check_location
from engine.intake import Intake, Report
from engine.lifecycle import HAND_OVER_COMPLETING, HAND_OVER_PROCESSING
from engine.patrol import Patrol
from engine.receipts import CommandReceipt
from engine.reference import LEVELS, ROLES, Division, Grid, Worker
from engine.sealing import Sealing, SealingMapper, open_recorder
from engine.tongban import ServiceItems
from engine.work_order import WorkOrder
from engine.working_time import WorkingCalendar, china_calendar

A = TypeVar("A", bound=Aggregate)

CASE_METHODS: dict[type[c.CaseCommand], str] = {
    c.AcceptCase: "accept",
    c.RejectCase: "reject",
    c.WarnDeadline: "warn_deadline",
    c.ReturnCase: "return_",
    c.RequestExtension: "request_extension",
    c.GrantExtension: "grant_extension",
    c.DenyExtension: "deny_extension",
    c.SuspendCase: "suspend",
    c.VerifyCase: "verify",
    c.EscalateCase: "escalate",
    c.CallBack: "call_back",
    c.MissCallBack: "miss_call_back",
    c.ReopenCase: "reopen",
}
"""Case commands that are one WorkOrder method each; the command's fields are the method's arguments."""

_ENVELOPE = frozenset({"command_id", "actor", "occurred_at", "case_id"})

_command_reads: ContextVar[dict[UUID, int] | None] = ContextVar("gridloop_command_reads", default=None)
"""While a command runs: the references it read from the cache, by id and version (checked when it is recorded)."""

MAX_ATTEMPTS = 8
"""How often a command is retried when another writer changed the same aggregate first."""

EARLIEST_YEAR, LATEST_YEAR = 1900, 3000
"""Times a command may name (the HTTP API refuses the same range before the command is built)."""

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
        calendar: WorkingCalendar | None = None,
        admission: AdmissionCatalogue | None = None,
        services: ServiceItems | None = None,
    ) -> None:
        super().__init__(env)
        self.clock: Clock = clock or SystemClock()
        self.catalogue = catalogue or default_catalogue()
        self.calendar = calendar or china_calendar()
        self.intake = Intake(self, admission or AdmissionCatalogue.load(), services or ServiceItems.load())
        self._grids: dict[str, Grid] = {}
        """Grids as commands last read them, by code: shared, never changed in place (see ``grid``)."""
        self._handlers: dict[type[c.Command], Handler] = {
            c.ReportCase: self._report,
            c.ReportFinding: self._report_finding,
            c.MergeCase: self._merge,
            c.DispatchCase: self._dispatch,
            c.ReassignCase: self._dispatch,
            c.RegisterCase: self._register,
            c.RecategoriseCase: self._recategorise,
            c.HandOverCase: self._hand_over,
            c.ResumeCase: self._resume,
            c.ReportHandling: self._report_handling,
            **{command: self._on_case(method) for command, method in CASE_METHODS.items()},
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

    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper, whose stored events carry their content hash for the seal."""
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=SealingMapper)

    def construct_recorder(self) -> ProcessRecorder:
        """A recorder that seals every event (hash chain, checkpoints) and keeps process managers' tracking
        records with their commands' events."""
        return open_recorder(self.factory, self.mapper)

    def save(self, *objs: Any, tracking: Tracking | None = None, **kwargs: Any) -> list[Recording[UUID]]:
        """Record the aggregates' new events, with a process manager's ``tracking`` in the same transaction.

        ``unchanged`` (id, version) pairs are aggregates the events were decided on: the store refuses the
        batch (StaleRead) if any has moved on. Aggregates are collected directly: the library's
        ``collect_events`` asks runtime-checkable Protocols, two slow ``isinstance`` checks per object.
        """
        processing = ProcessingEvent[UUID](tracking)
        for obj in objs:
            if isinstance(obj, Aggregate):
                processing.events.extend(obj.collect_events())
                processing.aggregates[obj.id] = obj
            else:
                processing.collect_events(obj)
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def execute(self, command: c.Command, *, tracking: Tracking | None = None) -> CommandResult:
        """Run one command: validate, apply, record it with its receipt atomically; idempotent by command id.

        ``tracking`` (a process manager's progress) is recorded in the same transaction.
        """
        if not command.command_id.strip():
            raise InvalidCommand("command_id", "is empty", "a client-chosen unique id")
        if not command.actor.strip():
            raise InvalidCommand("actor", "is empty", "the operator, worker or policy issuing the command")
        for name in c.field_names(type(command)):
            value = getattr(command, name)
            if isinstance(value, datetime) and value.tzinfo is None:
                raise InvalidCommand(name, "has no UTC offset", "a timezone-aware time, e.g. 2026-11-23T09:30+08:00")
            if isinstance(value, datetime) and not EARLIEST_YEAR <= value.year < LATEST_YEAR:
                # Far-off times overflow when turned to UTC or moved by working time: refuse them here.
                raise InvalidCommand(name, f"{value.isoformat()} is out of range",
                                     f"a time in the years {EARLIEST_YEAR} to {LATEST_YEAR - 1}")  # fmt: skip
        handler = self._handlers[type(command)]
        fingerprint = command.fingerprint()
        for attempt in range(MAX_ATTEMPTS):
            # The happy path does not look for a receipt first: the receipt's insert is the check.
            # Only when the command fails or collides do we ask whether it was recorded before.
            try:
                return self._apply_once(command, handler, fingerprint, tracking)
            except GridloopError:
                first = self._receipt(command.command_id)
                if first is None:
                    raise
                return self._repeat(command, first, fingerprint)
            except IntegrityError:
                self._grids.clear()  # a reference it read may have moved on (StaleRead): read them again
                first = self._receipt(command.command_id)
                if first is not None:
                    return self._repeat(command, first, fingerprint)
                # Another writer changed the aggregate first: back off a little (jittered), reload, retry.
                time.sleep(random.uniform(0, 0.002 * 2**attempt))  # timing only, not an event
        raise ConcurrencyConflict(f"the aggregate touched by {command.name}", MAX_ATTEMPTS)

    def _apply_once(
        self, command: c.Command, handler: Handler, fingerprint: str, tracking: Tracking | None
    ) -> CommandResult:
        occurred_at = self._occurred_at(command, self.clock.now())
        reads: dict[UUID, int] = {}
        token = _command_reads.set(reads)
        try:
            with recording_time(self.clock.now):
                aggregate_id, changed = handler(command, occurred_at)
                receipt = CommandReceipt(
                    command_id=command.command_id,
                    command=command.name,
                    fingerprint=fingerprint,
                    aggregate_id=aggregate_id,
                    occurred_at=occurred_at,
                )
                for aggregate in changed:  # what it changes is checked by its own version already
                    reads.pop(aggregate.id, None)
                recordings = self.save(*changed, receipt, tracking=tracking, unchanged=tuple(reads.items()))
        finally:
            _command_reads.reset(token)
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
        """The notification-log position of one recorded event (0 if there is none)."""
        if not isinstance(self.recorder, Sealing):
            raise RuntimeError(
                f"position lookup is written for gridloop's sealed stores, not {type(self.recorder).__name__}"
            )
        return self.recorder.position_of(aggregate_id, version)

    def last_position_of(self, aggregate_id: UUID, at_most: int) -> int:
        """The position of the aggregate's last event at or before log position ``at_most`` (0 if none).

        A command's answer names its receipt's position, an event only the receipt's aggregate has; a view that
        follows one aggregate (a case's row) holds the command once it holds the aggregate's own last event.
        """
        try:
            version: int = self.repository.get(aggregate_id).version
        except AggregateNotFoundError:
            return 0
        for earlier in range(version, 0, -1):  # the newest first: usually the first one looked at
            position = self.position_of(aggregate_id, earlier)
            if 0 < position <= at_most:
                return position
        return 0

    def _occurred_at(self, command: c.Command, now: datetime) -> datetime:
        if command.occurred_at is None:
            return now
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

    def _case_at(self, case_id: UUID, occurred_at: datetime) -> WorkOrder:
        """A case to act on at ``occurred_at``, which cannot be before the case was reported."""
        order = self.case(case_id)
        if occurred_at < order.reported_at:
            raise InvalidCommand(
                "occurred_at",
                f"{occurred_at.isoformat()} is before the case was reported",
                f"at or after {order.reported_at.isoformat()}",
            )
        return order

    def grid_code(self, grid_id: UUID) -> str:
        """The code of the grid with this id."""
        return self._get("grid", grid_id, str(grid_id), Grid).code

    def grid(self, code: str) -> Grid:
        """A grid to read. Within a command, from a cache: the command is recorded only if the grid has no
        newer event by then (checked under the store's write lock), else it is run again on a fresh read.
        A command that changes a grid loads it with ``_grid_to_change``."""
        reads = _command_reads.get()
        if reads is None:
            return self._grid_to_change(code)
        grid = self._grids.get(code)
        if grid is None:
            grid = self._grids[code] = self._grid_to_change(code)
        reads[grid.id] = grid.version
        return grid

    def _grid_to_change(self, code: str) -> Grid:
        """The grid loaded from the store, not shared with the cache."""
        self._grids.pop(code, None)
        return self._get("grid", name_id("grid", code), code, Grid)

    def worker(self, code: str) -> Worker:
        return self._get("worker", name_id("worker", code), code, Worker)

    def division(self, code: str) -> Division:
        return self._get("division", name_id("division", code), code, Division)

    def patrol(self, patrol_id: UUID) -> Patrol:
        return self._get("patrol", patrol_id, str(patrol_id), Patrol)

    # -- handlers: load, call one domain method, return what to save -------------------

    def _on_case(self, method: str) -> Handler:
        """A handler that loads the case and calls one domain method with the command's own fields."""

        def handle(command: c.CaseCommand, occurred_at: datetime) -> tuple[UUID, list[Aggregate]]:
            order = self._case_at(command.case_id, occurred_at)
            fields = {name: getattr(command, name) for name in c.field_names(type(command)) if name not in _ENVELOPE}
            getattr(order, method)(**fields, occurred_at=occurred_at, actor=command.actor)
            return order.id, [order]

        return handle

    def _report(self, m: c.ReportCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        report = Report(
            m.command_id, m.source, m.category, m.grid, m.description, m.reporter, m.lon, m.lat, None, m.actor,
            m.service_item, m.registered_in, m.admission_item, m.certificate,
        )  # fmt: skip
        order = self.intake.new_case(report, t)
        return order.id, [order]

    def _report_finding(self, m: c.ReportFinding, t: datetime) -> tuple[UUID, list[Aggregate]]:
        patrol = self.patrol(m.patrol_id)
        patrol._require_active("report_finding")
        report = Report(
            m.command_id, "patrol", m.category, patrol.grid, m.description, patrol.worker, m.lon, m.lat, patrol.id,
            m.actor,
        )  # fmt: skip
        order = self.intake.new_case(report, t)
        patrol.report_finding(case_id=order.id, category=m.category, occurred_at=t)
        return order.id, [order, patrol]

    def _register(self, m: c.RegisterCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self._case_at(m.case_id, t)
        category = m.category or order.category
        self.catalogue.category(category)
        order.register(category=category, note=m.note, occurred_at=t, actor=m.actor)
        return order.id, [order]

    def _recategorise(self, m: c.RecategoriseCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self._case_at(m.case_id, t)
        self.catalogue.category(m.category)
        order.recategorise(category=m.category, reason=m.reason, occurred_at=t, actor=m.actor)
        return order.id, [order]

    def _hand_over(self, m: c.HandOverCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self._case_at(m.case_id, t)
        deadline = m.deadline
        if deadline is None and order.service_item:
            days = self.intake.services.item(order.service_item).time_limit_days
            deadline = self.calendar.add_days(t, days)
        order.hand_over(
            stage=HAND_OVER_PROCESSING, to_unit=order.processing_unit, deadline=deadline, reason=m.reason,
            occurred_at=t, actor=m.actor,
        )  # fmt: skip
        return order.id, [order]

    def _resume(self, m: c.ResumeCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        """恢复: the deadline moves on by the working time the case was parked (挂账 pauses the clock)."""
        order = self._case_at(m.case_id, t)
        deadline = None
        if order.deadline is not None and order.suspended_at is not None and order.suspended_at < order.deadline:
            remaining = self.calendar.between(order.suspended_at, order.deadline)
            deadline = max(order.deadline, self.calendar.add(t, remaining))
        order.resume(note=m.note, deadline=deadline, occurred_at=t, actor=m.actor)
        return order.id, [order]

    def _report_handling(self, m: c.ReportHandling, t: datetime) -> tuple[UUID, list[Aggregate]]:
        """处置反馈; for a 全县通办 request the processing unit hands the result back to the completing unit."""
        order = self._case_at(m.case_id, t)
        order.report_handling(result=m.result, photos=m.photos, occurred_at=t, actor=m.actor)
        if order.service_item:
            order.hand_over(
                stage=HAND_OVER_COMPLETING, to_unit=order.desk, deadline=None, reason="办理结果转回受理地办结",
                occurred_at=t, actor=m.actor,
            )  # fmt: skip
        return order.id, [order]

    def _merge(self, m: c.MergeCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self._case_at(m.case_id, t)
        target = self._case_at(m.into_case, t)
        order.merge_into(target=target, reason=m.reason, occurred_at=t, actor=m.actor)
        return order.id, [order, target]

    def _dispatch(self, m: c.DispatchCase, t: datetime) -> tuple[UUID, list[Aggregate]]:
        order = self._case_at(m.case_id, t)
        if m.unit and not (self.catalogue.is_unit(m.unit) or self._is_division(m.unit)):
            raise UnknownReference("unit", m.unit, sorted(self.catalogue.departments))
        if m.worker:
            worker = self.worker(m.worker)
            if not worker.on_duty:
                raise InvalidCommand("worker", f"{m.worker} is off duty", "an on-duty worker")
        deadline = m.deadline
        if deadline is None and isinstance(m, c.ReassignCase):
            deadline = order.deadline
        if deadline is None:  # the category's time limit, in working hours or working days
            deadline = self.catalogue.deadline(order.category, t, self.calendar)
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

    def _new_code(self, kind: str, code: str) -> None:
        """Codes name one thing each: a second division, grid or worker under a used code is refused.

        Divisions and grids share one tree, so neither may take a code the other has: a jurisdiction or a
        place given by its code must name one node.
        """
        if not code.strip():
            raise InvalidCommand("code", "is empty", f"the {kind}'s code")
        kinds = ("division", "grid") if kind in ("division", "grid") else (kind,)
        for used in kinds:
            if name_id(used, code) in self.repository:
                raise InvalidCommand("code", f"{used} {code} already exists", f"a code no {' or '.join(kinds)} has")

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
        self._new_code("division", m.code)
        division = Division(code=m.code, name=m.division_name, level=m.level, parent=m.parent, occurred_at=t)
        return division.id, [division]

    def _draw_grid(self, m: c.DrawGrid, t: datetime) -> tuple[UUID, list[Aggregate]]:
        community = self.division(m.community)
        if community.level != "community":
            raise InvalidCommand("community", f"{m.community} is a {community.level}", "a community code")
        street = self.division(community.parent)
        if m.households <= 0:
            raise InvalidCommand("households", f"{m.households} is not a household count", "a positive number")
        check_boundary(m.boundary)
        self._new_code("grid", m.code)
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
        grid = self._grid_to_change(m.code)
        check_boundary(m.boundary)
        grid.redraw(households=m.households, boundary=m.boundary, reason=m.reason, occurred_at=t)
        return grid.id, [grid]

    def _retire_grid(self, m: c.RetireGrid, t: datetime) -> tuple[UUID, list[Aggregate]]:
        grid = self._grid_to_change(m.code)
        for successor in m.successors:
            self.grid(successor)
        if not m.reason.strip():
            raise InvalidCommand("reason", "is empty", "why the grid is replaced (重新划分)")
        grid.retire(successors=m.successors, reason=m.reason, occurred_at=t)
        return grid.id, [grid]

    def _assign_staff(self, m: c.AssignStaff, t: datetime) -> tuple[UUID, list[Aggregate]]:
        grid = self._grid_to_change(m.grid)
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
        self._new_code("worker", m.code)
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
        check_location(m.lon, m.lat)
        patrol.visit(lon=m.lon, lat=m.lat, note=m.note, occurred_at=t)
        return patrol.id, [patrol]

    def _end_patrol(self, m: c.EndPatrol, t: datetime) -> tuple[UUID, list[Aggregate]]:
        patrol = self.patrol(m.patrol_id)
        patrol.end(occurred_at=t)
        return patrol.id, [patrol]
