"""Auto-dispatch (自动派遣): a process manager that routes and assigns registered cases, balancing open workload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from engine import commands as c
from engine.catalogue import GRID, Catalogue
from engine.errors import InvalidCommand
from engine.lifecycle import ASSIGNEE_STATES, HAND_OVER_PROCESSING, Status, status_after_event
from engine.process import ProcessManager
from engine.routing import Area, Route, RoutingTable
from engine.working_time import WorkingCalendar

HANDLING_ROLES = ("grid_worker", "grid_assistant")
"""Staff of a grid who take ordinary grid cases (网格员, 网格辅助员); skilled categories look at every role."""

SPILL_LOAD = 3
"""Open cases at which the balanced policy also looks at the community's other grid workers (assumption)."""

MAX_TIMEOUT_REASSIGNMENTS = 2
"""Sign-for timeouts (签收超时) that move a case on, per dispatch; after that the supervisor's warnings take over."""


@dataclass
class _Staff:
    code: str
    role: str
    unit: str
    grid: str
    skills: frozenset[str]
    on_duty: bool = False


@dataclass
class _Place:
    area: Area
    staff: list[str] = field(default_factory=list)


@dataclass
class _Case:
    id: UUID
    category: str
    grid: str
    service_item: str
    status: Status = Status.REPORTED
    suspended_from: Status | None = None
    unit: str = ""
    worker: str = ""
    excluded: set[str] = field(default_factory=set)
    last_worker: str = ""
    signfor_due: datetime | None = None
    dispatch_position: int = 0
    timeouts: int = 0


@dataclass(frozen=True)
class Choice:
    """An assignment and everything that decided it, for the log (policy, version, inputs, reason)."""

    unit: str
    worker: str
    reason: str
    inputs: dict[str, str]


class AutoDispatch(ProcessManager):
    """The desk's dispatch policy: route by category and area, then the least-loaded on-duty worker of the grid.

    Reacts to 立案 (Registered), 退单 (Returned: re-routed without the party that returned it),
    返工 (reopened: back to the last worker when on duty), 改类 (Recategorised: re-routed when the
    route changes) and 下岗 (WentOffDuty: unsigned cases move on); on time, reassigns a case whose
    sign-for (签收) limit passed. Never dispatches to an off-duty worker.
    """

    name: ClassVar[str] = "balanced"
    version: ClassVar[str] = "1"
    spill: ClassVar[bool] = True
    roles: ClassVar[tuple[str, ...]] = HANDLING_ROLES

    def __init__(self, catalogue: Catalogue, calendar: WorkingCalendar, routing: RoutingTable) -> None:
        self.catalogue = catalogue
        self.calendar = calendar
        self.routing = routing
        self.staff: dict[str, _Staff] = {}
        self.places: dict[str, _Place] = {}
        self.cases: dict[UUID, _Case] = {}
        self.load: dict[str, int] = {}
        self._grid_codes: dict[UUID, str] = {}
        self._worker_codes: dict[UUID, str] = {}
        self._folds: dict[str, Callable[[Any, int], None]] = {
            "Grid.Drawn": self._drawn,
            "Grid.StaffAssigned": self._staff_assigned,
            "Worker.Enrolled": self._enrolled,
            "Worker.WentOnDuty": self._duty,
            "Worker.WentOffDuty": self._duty,
            "WorkOrder.Reported": self._reported,
            "WorkOrder.Recategorised": self._recategorised,
        }

    @property
    def actor(self) -> str:
        return f"policy:dispatch/{self.name}"

    # -- the fold -----------------------------------------------------------------------

    def observe(self, event: Any, position: int) -> None:
        kind = type(event).__qualname__
        fold = self._folds.get(kind)
        if fold is not None:
            fold(event, position)
        elif kind.startswith(WORK_ORDER):
            self._moved(event, position)

    def _drawn(self, event: Any, position: int) -> None:
        self.places[event.code] = _Place(Area(event.code, event.community, event.street, event.district))
        self._grid_codes[event.originator_id] = event.code

    def _staff_assigned(self, event: Any, position: int) -> None:
        self.places[self._grid_codes[event.originator_id]].staff.append(event.worker)

    def _enrolled(self, event: Any, position: int) -> None:
        self.staff[event.code] = _Staff(event.code, event.role, event.unit, event.grid, frozenset(event.skills))
        self._worker_codes[event.originator_id] = event.code

    def _duty(self, event: Any, position: int) -> None:
        self.staff[self._worker_codes[event.originator_id]].on_duty = type(event).__qualname__ == "Worker.WentOnDuty"

    def _reported(self, event: Any, position: int) -> None:
        self.cases[event.originator_id] = _Case(
            event.originator_id, event.category, event.grid, getattr(event, "service_item", "")
        )

    def _recategorised(self, event: Any, position: int) -> None:
        case = self.cases.get(event.originator_id)
        if case is not None:
            case.category = event.category

    def _moved(self, event: Any, position: int) -> None:
        case = self.cases.get(event.originator_id)
        if case is None:
            return
        name = type(event).__name__
        before = _holding(case)
        status = status_after_event(event, case.status, case.suspended_from)
        case.suspended_from = (case.suspended_from or case.status) if status is Status.SUSPENDED else None
        case.status = status
        if name in ("Dispatched", "Reassigned") or (name == "HandedOver" and event.stage == HAND_OVER_PROCESSING):
            if name == "Reassigned" and event.inputs.get("trigger", "").startswith(SIGN_FOR_TIMEOUT):
                case.timeouts += 1
                case.excluded.add(case.worker)
            elif name != "Reassigned":
                case.timeouts = 0
            case.unit, case.worker = event.unit if name != "HandedOver" else event.to_unit, getattr(event, "worker", "")
            case.last_worker = case.worker or case.last_worker
            case.dispatch_position = position
            tier = self.catalogue.category(case.category).tier
            case.signfor_due = (
                self.calendar.add(event.occurred_at, self.catalogue.step_limit("accept", tier)) if case.worker else None
            )
        elif name == "Returned":
            case.excluded.update(p for p in (case.unit, case.worker, event.actor) if p)
        if status not in ASSIGNEE_STATES and status is not Status.SUSPENDED:
            case.unit = case.worker = ""
        if status is not Status.DISPATCHED:
            case.signfor_due = None
        after = _holding(case)
        if before != after:
            for party, delta in ((before, -1), (after, 1)):
                if party:
                    self.load[party] = self.load.get(party, 0) + delta
        if not (status in ASSIGNEE_STATES or status in _OPEN_AT_DESK or status is Status.SUSPENDED):
            self.cases.pop(case.id, None)

    # -- decisions ------------------------------------------------------------------------

    def react(self, event: Any, position: int) -> list[c.Command]:
        case = self.cases.get(getattr(event, "originator_id", None))  # type: ignore[arg-type]
        name = type(event).__name__
        if type(event).__qualname__ == "Worker.WentOffDuty":
            return self._off_duty(event, position)
        if case is None:
            return []
        trigger = {"trigger": f"{name}@{position}"}
        at = event.occurred_at
        if case.status in (Status.REGISTERED, Status.RETURNED, Status.REOPENED) and name in _DESK_TRIGGERS:
            if case.service_item:
                if case.status is Status.RETURNED:
                    return []  # a processing unit's return is for the desk's people to settle
                return [
                    c.HandOverCase(
                        command_id=self.command_id(case.id.hex, position), actor=self.actor, occurred_at=at,
                        case_id=case.id, reason=f"全县通办: 居住地受理, 转户籍地办理 ({self.name} v{self.version})",
                    )
                ]  # fmt: skip
            prefer = case.last_worker if case.status is Status.REOPENED else ""
            choice = self.choose(case, prefer=prefer)
            note = "" if name == "Registered" else "返工, 重新派遣: "
            if name == "Returned":
                note = f"退单 ({event.reason}) 后重新派遣: "
            return [self._dispatch(c.DispatchCase, case, choice, position, at, note, trigger)]
        if name == "Recategorised" and case.status in (Status.DISPATCHED, Status.ACCEPTED) and not case.service_item:
            choice = self.choose(case)
            if choice.unit != case.unit:
                note = f"改类 ({event.previous} → {event.category}) 后重新派遣: "
                return [self._dispatch(c.ReassignCase, case, choice, position, at, note, trigger)]
        return []

    def due(self, now: datetime) -> list[c.Command]:
        """签收超时: a case not signed for in time goes to the next candidate."""
        commands: list[c.Command] = []
        for case in self.cases.values():
            if case.status is not Status.DISPATCHED or case.signfor_due is None or case.signfor_due > now:
                continue
            if case.timeouts >= MAX_TIMEOUT_REASSIGNMENTS:
                continue
            late = case.worker
            choice = self.choose(case, exclude=frozenset({late}))
            if (choice.unit, choice.worker) == (case.unit, case.worker):
                continue
            note = f"{late} 签收超时 (时限 {case.signfor_due.isoformat(timespec='minutes')}), 改派: "
            inputs = {"trigger": f"{SIGN_FOR_TIMEOUT}@{case.dispatch_position}"}
            commands.append(
                self._dispatch(
                    c.ReassignCase, case, choice, f"signfor-{case.dispatch_position}", case.signfor_due, note, inputs
                )
            )
            case.signfor_due = None  # until the reassignment is folded
        return commands

    def _off_duty(self, event: Any, position: int) -> list[c.Command]:
        """下岗: a worker's cases not yet signed for go to someone on duty."""
        staff = self.staff.get(self._worker_codes.get(event.originator_id, ""))
        if staff is None:
            return []
        commands: list[c.Command] = []
        for case in self.cases.values():
            if case.status is Status.DISPATCHED and case.worker == staff.code:
                choice = self.choose(case)
                if (choice.unit, choice.worker) != (case.unit, case.worker):
                    note = f"{staff.code} 下岗, 未签收案件改派: "
                    trigger = {"trigger": f"WentOffDuty@{position}"}
                    commands.append(
                        self._dispatch(c.ReassignCase, case, choice, position, event.occurred_at, note, trigger)
                    )
        return commands

    def _dispatch(
        self,
        kind: type[c.DispatchCase],
        case: _Case,
        choice: Choice,
        key: object,
        at: datetime,
        note: str,
        inputs: dict[str, str],
    ) -> c.DispatchCase:
        return kind(
            command_id=self.command_id(case.id.hex, key), actor=self.actor, occurred_at=at, case_id=case.id,
            unit=choice.unit, worker=choice.worker, reason=note + choice.reason, policy=self.name,
            policy_version=self.version, inputs={**inputs, **choice.inputs},
        )  # fmt: skip

    def _route(self, case: _Case, excluded: frozenset[str]) -> Route:
        place = self.places.get(case.grid)
        area = place.area if place else Area(case.grid, "", "", "")
        excluded_units = frozenset(p for p in excluded if p not in self.staff)
        category = self.catalogue.category(case.category)
        try:
            return self.routing.route(category, area, exclude=excluded_units)
        except InvalidCommand:
            # Every candidate and the whole locality returned it: the district takes it (属地兜底), no one left out.
            unit = area.district or area.street or area.community
            reason = f"{category.code} {category.name}: 各责任单位均已退单, 由区县兜底"
            return Route(unit=unit, rule="fallback:returned-by-all", reason=reason, fallback=True)

    def choose(self, case: _Case, *, prefer: str = "", exclude: frozenset[str] = frozenset()) -> Choice:
        """Where a case should go now: the route's unit, or for grid work the least-loaded on-duty worker."""
        category = self.catalogue.category(case.category)
        excluded = frozenset(case.excluded | exclude)
        route = self._route(case, excluded)
        inputs = {"category": category.code, "grid": case.grid, "route": route.rule}
        if excluded:
            inputs["excluded"] = ",".join(sorted(excluded))
        if route.unit != GRID:
            return Choice(route.unit, "", route.reason, inputs)
        place = self.places.get(case.grid)
        community = place.area.community if place else ""
        candidates, off_duty = self._candidates(excluded, category.skills, place)
        inputs["off_duty"] = ",".join(off_duty)
        if prefer and prefer in candidates:
            candidates = [prefer]
            inputs["prefer"] = prefer
        if not candidates:
            reason = f"{route.reason}; 本网格无在岗可派人员, 派至所在社区 (属地兜底)"
            return Choice(community, "", reason, inputs)
        if self.spill and place is not None and min(self.load.get(w, 0) for w in candidates) >= SPILL_LOAD:
            more = self._community_workers(place, category.skills, excluded)
            candidates += [w for w in more if w not in candidates]
        chosen = min(candidates, key=self._preference(place))
        inputs["candidates"] = ",".join(f"{w}={self.load.get(w, 0)}" for w in sorted(candidates))
        staff = self.staff[chosen]
        reason = (
            f"{route.reason}; 派{chosen} (在岗, 在办 {self.load.get(chosen, 0)} 件, {len(candidates)} 名候选中最少)"
        )
        return Choice(staff.unit or community, chosen, reason, inputs)

    def _preference(self, place: _Place | None) -> Callable[[str], tuple[int, bool, str]]:
        """Order of candidates: least open work, then the grid's own staff, then code (deterministic)."""
        own = set(place.staff) if place else set()
        return lambda w: (self.load.get(w, 0), w not in own, w)

    def _candidates(
        self, excluded: frozenset[str], skills: tuple[str, ...], place: _Place | None
    ) -> tuple[list[str], list[str]]:
        if place is None:
            return [], []
        needed = frozenset(skills)
        staff = [self.staff[w] for w in place.staff if w in self.staff]
        fits = [s for s in staff if needed <= s.skills and (needed or s.role in self.roles)]
        fits = [s for s in fits if s.code not in excluded]
        return [s.code for s in fits if s.on_duty], sorted(s.code for s in fits if not s.on_duty)

    def _community_workers(self, place: _Place, skills: tuple[str, ...], excluded: frozenset[str]) -> list[str]:
        needed = frozenset(skills)
        found: list[str] = []
        for other in self.places.values():
            if other.area.community != place.area.community or other is place:
                continue
            for code in other.staff:
                staff = self.staff.get(code)
                if code in excluded or staff is None or not staff.on_duty:
                    continue
                if needed <= staff.skills and (needed or staff.role in self.roles):
                    found.append(code)
        return found


class GridOwner(AutoDispatch):
    """The traditional rule: the grid's own worker, whatever the load (the baseline for what-if comparisons)."""

    name: ClassVar[str] = "grid-owner"
    version: ClassVar[str] = "1"
    spill: ClassVar[bool] = False
    roles: ClassVar[tuple[str, ...]] = ("grid_worker",)

    def _preference(self, place: _Place | None) -> Callable[[str], tuple[int, bool, str]]:
        """The grid's own worker first, load ignored: the rule most desks follow by hand."""
        own = set(place.staff) if place else set()
        return lambda w: (0, w not in own, w)


POLICIES: dict[str, type[AutoDispatch]] = {p.name: p for p in (AutoDispatch, GridOwner)}
"""The dispatch policies by name: the live one is chosen in configuration; what-if compares them."""

_DESK_TRIGGERS = frozenset({"Registered", "Returned", "Verified", "CalledBack", "Reopened"})
_OPEN_AT_DESK = frozenset({Status.REPORTED, Status.REGISTERED, Status.RETURNED, Status.HANDLED, Status.REOPENED})


def _holding(case: _Case) -> str:
    """The party whose open workload the case counts in (worker, else unit), or '' at the desk."""
    status = case.suspended_from if case.status is Status.SUSPENDED else case.status
    if status in ASSIGNEE_STATES:
        return case.worker or case.unit
    return ""


WORK_ORDER = "WorkOrder."
"""Qualified names of work-order events start so (the library generates the classes at run time)."""

SIGN_FOR_TIMEOUT = "sign-for timeout"
"""The trigger a timeout reassignment names in its inputs, so a replay counts the timeouts from the log."""
