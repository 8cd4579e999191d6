"""The supervisor (督办): a process manager that times every step, warns before deadlines and escalates when late."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from engine import commands as c
from engine.catalogue import Catalogue
from engine.dispatch import WORK_ORDER
from engine.lifecycle import HAND_OVER_PROCESSING, Status, is_open, status_after_event
from engine.process import ProcessManager
from engine.sla import Timer, crossed
from engine.working_time import WorkingCalendar

LADDER_TOP = 4
"""The supervisor escalates up to the district (4); the city (5) is a person's decision."""

RUNG_HOURS = {1: 4.0, 2: 9.0, 3: 18.0}
"""Working hours each rung has before the next level takes over: grid leader half a day, community a working day,
street two (assumptions, after 12345 practice: a notice the day after, a 通报 some days later)."""

KEY_FACTOR = 0.5
"""Key cases (重点案件: flagged in the catalogue, or an emergency tier) have rungs half as long."""

EARLY_THRESHOLD = 75
"""Key cases are escalated when the limit is three quarters used, not when it has run out."""

STEP_NAMES = {"dispatch": "立案派遣", "handle": "处置", "verify": "核查"}
LEVEL_NAMES = {1: "网格长", 2: "社区", 3: "街道", 4: "区/县", 5: "市"}


@dataclass
class _Step:
    """One running step clock of a case, and what the supervisor already did about it."""

    name: str
    timer: Timer
    started: int  # the log position that started it: names this clock in command ids
    warned: set[int] = field(default_factory=set)
    escalated_due: datetime | None = None  # the current rung's deadline, once this clock caused an escalation


@dataclass
class _Case:
    id: UUID
    category: str
    key: bool
    reported_at: datetime
    status: Status = Status.REPORTED
    suspended_from: Status | None = None
    level: int = 0
    steps: dict[str, _Step] = field(default_factory=dict)


class Supervisor(ProcessManager):
    """督办: warns at 50 % (催办), 75 % (yellow) and 100 % (red) of each step's limit; escalates up the ladder.

    Steps timed: 立案+派遣 from the report to the dispatch, 处置 from the dispatch to the handling
    report (its deadline; paused while suspended, moved by an extension), 核查 from the handling
    report to the verification. A late step escalates one level (grid leader first); each rung has
    its own deadline, after which the next level takes over, up to the district. Key cases start
    at 75 % and climb twice as fast. Decisions depend on the log and the clock only.
    """

    name: ClassVar[str] = "supervisor"
    version: ClassVar[str] = "1"

    def __init__(self, catalogue: Catalogue, calendar: WorkingCalendar) -> None:
        self.catalogue = catalogue
        self.calendar = calendar
        self.cases: dict[UUID, _Case] = {}

    # -- the fold -----------------------------------------------------------------------

    def observe(self, event: Any, position: int) -> None:
        if not type(event).__qualname__.startswith(WORK_ORDER):
            return
        name = type(event).__name__
        if name == "Reported":
            category = self.catalogue.category(event.category)
            new = _Case(event.originator_id, category.code, self._is_key(category.code), event.occurred_at)
            self.cases[new.id] = new
            self._start(new, "dispatch", event.occurred_at, position)
            return
        case = self.cases.get(event.originator_id)
        if case is None:
            return
        at = event.occurred_at
        status = status_after_event(event, case.status, case.suspended_from)
        case.suspended_from = (case.suspended_from or case.status) if status is Status.SUSPENDED else None
        case.status = status
        if name == "Recategorised":
            case.category, case.key = event.category, self._is_key(event.category)
        elif name in ("Dispatched",) or (name == "HandedOver" and event.stage == HAND_OVER_PROCESSING):
            case.steps.pop("dispatch", None)
            case.steps["handle"] = _Step("handle", Timer.until(self.calendar, at, event.deadline), position)
        elif name == "Reassigned" and "handle" in case.steps:
            self._extend(case.steps["handle"], event.deadline, at)
        elif name == "ExtensionGranted" and "handle" in case.steps:
            self._extend(case.steps["handle"], event.new_deadline, at)
        elif name == "Suspended":
            for step in case.steps.values():
                step.timer = step.timer.pause(self.calendar, at)
        elif name == "Resumed":
            for step in case.steps.values():
                step.timer = step.timer.resume(at)
        elif name == "HandlingReported":
            case.steps.pop("handle", None)
            self._start(case, "verify", at, position)
        elif name == "Escalated":
            case.level = max(case.level, event.level)
            mine = getattr(event, "policy", "") == self.name
            step_name = getattr(event, "inputs", {}).get("step", "") if mine else ""
            if step_name in case.steps:
                case.steps[step_name].escalated_due = event.due
        elif name == "DeadlineWarned" and event.step in case.steps:
            case.steps[event.step].warned.add(event.threshold)
        if status in (Status.RETURNED, Status.REOPENED):
            case.steps.clear()
            self._start(case, "dispatch", at, position)
        if not is_open(status):
            del self.cases[case.id]

    def _start(self, case: _Case, step: str, at: datetime, position: int) -> None:
        tier = self.catalogue.category(case.category).tier
        limit = self.catalogue.step_limit(step, tier)
        case.steps[step] = _Step(step, Timer.start(self.calendar, at, limit), position)

    def _extend(self, step: _Step, due: datetime, at: datetime) -> None:
        if due != step.timer.due(self.calendar):
            step.timer = step.timer.extend_to(self.calendar, due, at)
            step.warned = {t for t in step.warned if t in crossed(step.timer, self.calendar, at)}
            step.escalated_due = None

    def _is_key(self, code: str) -> bool:
        category = self.catalogue.category(code)
        return category.key or category.tier == "emergency"

    # -- decisions on time ------------------------------------------------------------------

    def due(self, now: datetime) -> list[c.Command]:
        commands: list[c.Command] = []
        for case in self.cases.values():
            for step in list(case.steps.values()):
                commands += self._warnings(case, step, now)
                commands += self._escalation(case, step, now)
        return commands

    def _warnings(self, case: _Case, step: _Step, now: datetime) -> list[c.Command]:
        due = step.timer.due(self.calendar)
        if due is None:
            return []
        found: list[c.Command] = []
        for threshold in crossed(step.timer, self.calendar, now):
            if threshold in step.warned:
                continue
            step.warned.add(threshold)
            at = self._moment(case, step, threshold, now)
            found.append(
                c.WarnDeadline(
                    command_id=self.command_id(case.id.hex, step.name, step.started, threshold),
                    actor=self.actor, occurred_at=at, case_id=case.id, step=step.name, threshold=threshold, due=due,
                    policy=self.name, policy_version=self.version,
                )
            )  # fmt: skip
        return found

    def _escalation(self, case: _Case, step: _Step, now: datetime) -> list[c.Command]:
        due = step.timer.due(self.calendar)
        if due is None or case.level >= LADDER_TOP:
            return []
        trigger = EARLY_THRESHOLD if case.key else 100
        if step.escalated_due is None:
            if trigger not in crossed(step.timer, self.calendar, now):
                return []
            at = self._moment(case, step, trigger, now)
            why = f"{STEP_NAMES[step.name]}{'临期 (重点案件)' if trigger < 100 else '超期'}"
        elif now >= step.escalated_due:
            at = step.escalated_due
            why = f"{LEVEL_NAMES[case.level]}督办时限已过, {STEP_NAMES[step.name]}仍未完成"
        else:
            return []
        level = case.level + 1
        rung = self._rung_due(level, case.key, at)
        inputs = {
            "step": step.name, "due": due.isoformat(), "threshold": str(trigger), "key": str(case.key).lower(),
            "previous_level": str(case.level), "category": case.category,
        }  # fmt: skip
        step.escalated_due = rung
        case.level = level
        reason = f"{why} (时限 {due.isoformat(timespec='minutes')}), 督办至{LEVEL_NAMES[level]}"
        return [
            c.EscalateCase(
                command_id=self.command_id(case.id.hex, "escalate", level), actor=self.actor, occurred_at=at,
                case_id=case.id, level=level, reason=reason, policy=self.name, policy_version=self.version,
                inputs=inputs, due=rung,
            )
        ]  # fmt: skip

    def _rung_due(self, level: int, key: bool, at: datetime) -> datetime | None:
        hours = RUNG_HOURS.get(level)
        if hours is None:
            return None
        return self.calendar.add(at, timedelta(hours=hours * (KEY_FACTOR if key else 1.0)))

    def _moment(self, case: _Case, step: _Step, threshold: int, now: datetime) -> datetime:
        """When a threshold was reached: the decision is dated then (never in the future, never before the case)."""
        moment = step.timer.moment_of(self.calendar, threshold / 100) or now
        return max(case.reported_at, min(moment, now))
