"""The what-if model (推演): a period's requests replayed through a dispatch policy, with modelled assignees."""

from __future__ import annotations

import heapq
import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar
from uuid import UUID

from engine import commands as c
from engine.application import CommandResult, Gridloop
from engine.clock import ManualClock
from engine.errors import GridloopError
from engine.lifecycle import HAND_OVER_PROCESSING
from engine.policies import managers
from engine.process import Processes, ProcessManager
from ops.whatif.source import Period, Request

# Stated assumptions of the model (docs/whatif.md).
UNIT_CAPACITY = 4
"""Cases a unit (a department or a division) works at once; a worker works one at a time."""
ANSWER_DELAY = timedelta(minutes=5)
"""Calendar time from a dispatch to the assignee's answer (签收 or 退单): inside every sign-for limit."""
VERIFY_DELAY = timedelta(minutes=20)
"""Working time from the handling report to the desk's verification (核查): a third of the shortest limit."""
TICK = timedelta(minutes=15)
"""How often the process managers are asked what the time calls for (the supervisor's round)."""
DRAIN = timedelta(days=30)
"""How long after the period the model runs on so that the period's cases can close."""
DEFAULT_HANDLING_MINUTES = 240.0
"""Handling time when the source recorded none for the case, its category or any case of the period."""

DESK = "whatif:desk"

Action = Callable[[datetime], None]


@dataclass
class _Case:
    """A replayed case and where the model stands with it."""

    request: Request
    id: UUID
    emergency: bool
    returns_left: int
    failures_left: int
    median: float
    assignment: int = 0  # counts (re)assignments, so actions scheduled for an earlier one are dropped
    assignee: str = ""  # "worker:<code>" or "unit:<code>"
    actor: str = ""  # who signs for and reports: the worker, else the unit
    slot: str = ""  # "queued" or "busy" at the assignee, else ""
    rounds: int = 0
    commands: int = 0
    deadline: datetime | None = None
    closed_at: datetime | None = None

    def handling(self) -> timedelta:
        """This round's handling time: the source's for the same round (its last if fewer), else the median."""
        recorded = self.request.handling_minutes
        minutes = recorded[min(self.rounds, len(recorded) - 1)] if recorded else self.median
        return timedelta(minutes=minutes)

    def command_id(self) -> str:
        self.commands += 1
        return f"whatif:{self.request.case_id.hex}:{self.commands}"


@dataclass
class _Assignee:
    capacity: int
    queue: deque[_Case] = field(default_factory=deque)
    busy: set[UUID] = field(default_factory=set)


@dataclass(frozen=True)
class Closed:
    """One closed case: hours from its report to its closure (结案), and whether that was by its deadline."""

    hours: float
    on_time: bool


@dataclass(frozen=True)
class Outcome:
    """What one run of the model produced, before it is turned into KPIs."""

    policy: str
    cases: int
    closed: tuple[Closed, ...]
    open_at_end: int
    handled_by_worker: dict[str, int]
    unit_cases: int
    escalations: int
    warnings: dict[str, int]
    returns: int
    reworks: int
    refusals: tuple[str, ...]


def handling_medians(period: Period) -> tuple[dict[str, float], float]:
    """Median recorded handling minutes per category (first rounds), and over every category."""
    by_category: dict[str, list[float]] = {}
    for request in period.requests:
        if request.handling_minutes:
            by_category.setdefault(request.category, []).append(request.handling_minutes[0])
    everything = [m for values in by_category.values() for m in values]
    overall = statistics.median(everything) if everything else DEFAULT_HANDLING_MINUTES
    return {k: statistics.median(v) for k, v in by_category.items()}, overall


class Replay:
    """One run: a fresh in-memory store, the reference model, the requests, the policy and the modelled assignees."""

    def __init__(self, source: Gridloop, period: Period, policy: str) -> None:
        self.period = period
        self.policy = policy
        origin = min([r.at for r in period.setup] + [period.start])
        self.clock = ManualClock(origin)
        self.app = Gridloop(
            {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}, clock=self.clock,
            catalogue=source.catalogue, calendar=source.calendar, admission=source.intake.admission,
            services=source.intake.services,
        )  # fmt: skip
        self.processes = Processes(self.app, [*managers(self.app, dispatch=policy), _Follower(self)])
        self.medians, self.overall = handling_medians(period)
        self._heap: list[tuple[datetime, int, Action]] = []
        self._sequence = 0
        self.cases: dict[UUID, _Case] = {}
        self.open: set[UUID] = set()
        self.pending = 0  # requests still to be reported or registered
        self.assignees: dict[str, _Assignee] = {}
        self.handled: dict[str, set[UUID]] = {}
        self.unit_cases: set[UUID] = set()
        self.escalations = 0
        self.warnings: Counter[str] = Counter()
        self.returns = self.reworks = 0
        self.refusals: list[str] = []

    # -- the run --------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Play the period to the end (every case closed, or the drain time used up) and tally it."""
        try:
            for recorded in self.period.setup:  # no case yet: the managers can fold it all at the end
                self._advance(recorded.at)
                self._record(recorded.command)
            self.processes.catch_up()
            for recorded in self.period.later:
                self._at(recorded.at, partial(self._reference, recorded.command))
            for request in self.period.replayed:
                self.pending += 1
                self._at(request.reported_at, partial(self._report, request))
            self._at(self.period.start, self._tick)
            horizon = self.period.end + DRAIN
            while self._heap and (self.pending or self.open):
                when, _, action = heapq.heappop(self._heap)
                if when >= horizon:
                    break
                self._advance(when)
                action(when)
            return self._outcome()
        finally:
            self.app.close()

    def _at(self, when: datetime, action: Action) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (when, self._sequence, action))

    def _advance(self, when: datetime) -> None:
        if when > self.clock.now():
            self.clock.set(when)

    def _execute(self, command: c.Command) -> CommandResult | None:
        """Run a command and let the managers (the policy, the supervisor, this model's follower) answer it."""
        result = self._record(command)
        if result is not None:
            self.processes.catch_up()
        return result

    def _record(self, command: c.Command) -> CommandResult | None:
        try:
            return self.app.execute(command)
        except GridloopError as exc:
            self.refusals.append(f"{command.name}: {exc}")
            return None

    def _tick(self, now: datetime) -> None:
        """The managers' round; outside working time only the first, as no working-time limit runs on there."""
        self.processes.tick(now)
        following, calendar = now + TICK, self.app.calendar
        if not calendar.is_working(now) and not calendar.is_working(following):
            following = calendar.next_working(following)
        self._at(following, self._tick)

    def _reference(self, command: c.Command, now: datetime) -> None:
        self._execute(command)

    # -- the desk: the source's reports and registrations, at their recorded times -----------

    def _report(self, request: Request, now: datetime) -> None:
        command = c.ReportCase(
            command_id=f"whatif:{request.case_id.hex}:report", occurred_at=request.reported_at, **request.report
        )
        result = self._execute(command)
        if result is None or "Rejected" in result.events or request.registered_at is None:
            self.pending -= 1  # the intake refused it here, although the source registered it
            return
        category = self.app.catalogue.category(request.category)
        case = _Case(
            request, result.aggregate_id, category.tier == "emergency", request.returns,
            request.failed_verifications, self.medians.get(request.category, self.overall),
        )  # fmt: skip
        self.cases[case.id] = case
        self._at(max(now, request.registered_at), partial(self._register, case))

    def _register(self, case: _Case, now: datetime) -> None:
        self.pending -= 1
        self.open.add(case.id)
        command = c.RegisterCase(
            command_id=case.command_id(), actor=DESK, occurred_at=now, case_id=case.id, category=case.request.category
        )
        if self._execute(command) is None:
            self.open.discard(case.id)

    # -- the assignees --------------------------------------------------------------------

    def _answer(self, case: _Case, assignment: int, now: datetime) -> None:
        """签收, or 退单 as often as the source's case was returned."""
        if assignment != case.assignment:
            return
        if case.returns_left:
            case.returns_left -= 1
            self.returns += 1
            reason = "退单 (推演: 源记录中此案曾被退回)"
            self._execute(c.ReturnCase(command_id=case.command_id(), actor=case.actor, case_id=case.id, reason=reason))
            return
        if self._execute(c.AcceptCase(command_id=case.command_id(), actor=case.actor, case_id=case.id)) is None:
            return
        if assignment != case.assignment:
            return
        capacity = 1 if case.assignee.startswith("worker:") else UNIT_CAPACITY
        self.assignees.setdefault(case.assignee, _Assignee(capacity)).queue.append(case)
        case.slot = "queued"
        self._work(case.assignee, now)

    def _work(self, key: str, now: datetime) -> None:
        """Start the next queued cases while the assignee has room; emergencies are worked day and night."""
        assignee = self.assignees[key]
        while len(assignee.busy) < assignee.capacity and assignee.queue:
            case = assignee.queue.popleft()
            assignee.busy.add(case.id)
            case.slot = "busy"
            span = case.handling()
            done = now + span if case.emergency else self.app.calendar.add(now, span)
            self._at(done, partial(self._handled, case, case.assignment))

    def _handled(self, case: _Case, assignment: int, now: datetime) -> None:
        if assignment != case.assignment:
            return
        self._withdraw(case)
        command = c.ReportHandling(
            command_id=case.command_id(), actor=case.actor, case_id=case.id, result="处置完毕 (推演)"
        )
        if self._execute(command) is not None:
            case.rounds += 1
            if case.assignee.startswith("worker:"):
                self.handled.setdefault(case.actor, set()).add(case.id)
            else:
                self.unit_cases.add(case.id)
            self._at(self.app.calendar.add(now, VERIFY_DELAY), partial(self._verify, case, case.assignment))
        self._work(case.assignee, now)

    def _verify(self, case: _Case, assignment: int, now: datetime) -> None:
        """核查: fails as often as the source's case failed it (返工), then passes."""
        if assignment != case.assignment:
            return
        passed = case.failures_left == 0
        if not passed:
            case.failures_left -= 1
            self.reworks += 1
        note = "核查通过, 结案" if passed else "核查未通过, 返工 (推演: 源记录中此案曾返工)"
        self._execute(c.VerifyCase(command_id=case.command_id(), actor=DESK, case_id=case.id, passed=passed, note=note))

    def _withdraw(self, case: _Case) -> None:
        """Take a case off its assignee's queue or hands (it was handled, or moved elsewhere)."""
        assignee = self.assignees.get(case.assignee)
        if assignee is None or not case.slot:
            return
        if case.slot == "queued":
            assignee.queue.remove(case)
        else:
            assignee.busy.discard(case.id)
        case.slot = ""

    # -- following the replay's log ----------------------------------------------------------

    def fold(self, event: Any) -> None:
        """What a new event of the replay means for the model: an assignment to answer, a deadline, a closure."""
        case = self.cases.get(getattr(event, "originator_id", None))  # type: ignore[arg-type]
        if case is None:
            return
        name, now = type(event).__name__, self.clock.now()
        if name in ("Dispatched", "Reassigned") or (name == "HandedOver" and event.stage == HAND_OVER_PROCESSING):
            moved_from = case.assignee if case.slot else ""
            self._withdraw(case)
            case.assignment += 1
            worker = getattr(event, "worker", "")
            unit = event.to_unit if name == "HandedOver" else event.unit
            case.actor = worker or unit
            case.assignee = f"worker:{worker}" if worker else f"unit:{unit}"
            case.deadline = event.deadline
            self._at(max(now, event.occurred_at + ANSWER_DELAY), partial(self._answer, case, case.assignment))
            if moved_from:
                self._work(moved_from, now)
        elif name == "ExtensionGranted":
            case.deadline = event.new_deadline
        elif name == "Resumed" and event.deadline is not None:
            case.deadline = event.deadline
        elif name == "Escalated":
            self.escalations += 1
        elif name == "DeadlineWarned":
            self.warnings[event.light] += 1
        elif name == "Verified" and event.passed:
            case.closed_at = event.occurred_at
            self.open.discard(case.id)

    def _outcome(self) -> Outcome:
        closed = tuple(
            Closed(
                (case.closed_at - case.request.reported_at) / timedelta(hours=1),
                case.deadline is None or case.closed_at <= case.deadline,
            )
            for case in self.cases.values()
            if case.closed_at is not None
        )
        return Outcome(
            policy=self.policy, cases=len(self.cases), closed=closed, open_at_end=len(self.open) + self.pending,
            handled_by_worker={w: len(cases) for w, cases in sorted(self.handled.items())},
            unit_cases=len(self.unit_cases), escalations=self.escalations, warnings=dict(sorted(self.warnings.items())),
            returns=self.returns, reworks=self.reworks,
            refusals=tuple(self.refusals) + tuple(f"{r.manager}: {r.error}" for r in self.processes.refusals),
        )  # fmt: skip


class _Follower(ProcessManager):
    """The model's eyes on the replay's log: it folds every event into the model and never issues a command."""

    name: ClassVar[str] = "whatif-model"
    version: ClassVar[str] = "1"

    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    def observe(self, event: Any, position: int) -> None:
        self.replay.fold(event)
