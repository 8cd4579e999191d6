"""The life of a simulated case after its report: the desk, the assignees, verification and call-back.

Dispatch (派遣, 改派) and supervision (督办) are the engine's policies (engine.dispatch, engine.supervisor),
run by the simulation's runner: the simulator registers a case, and learns from the case itself whom the
policy chose; it plays that assignee (accept, return, extension, handling) and the desk's other steps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import partial
from uuid import UUID

from engine import commands as c
from engine.catalogue import Catalogue, Category
from engine.lifecycle import Status, is_open
from engine.work_order import RESIDENT_SOURCES
from ops.presets import Rates
from ops.simulation.district import District, GridPlan
from ops.simulation.randomness import chance, hours, minutes, stream, weighted
from ops.simulation.report import Tally
from ops.simulation.runner import Runner
from ops.simulation.working_time import add_working, at, local_date, next_working

# Delays, in minutes of working time (08:30–17:30) unless said otherwise; stated assumptions.
REGISTER_DELAY = {"emergency": (2, 8), "normal": (5, 25)}  # report reaches the desk -> registered, rejected, merged
ACCEPT_DELAY = {"emergency": (2, 12), "normal": (5, 40)}  # dispatched -> signed for (some run past the limit)
RETURN_DELAY = (5, 30)  # dispatched to a party that says it is not theirs -> sent back (退单)
EXTENSION_REQUEST_DELAY = (30, 180)  # signed for -> extension asked
EXTENSION_DECISION_DELAY = (30, 120)  # asked -> granted or denied
EXTENSION_GRANT_SHARE = 0.7
EXTENSION_DAYS = 2  # an extension asks for two more days after the later of the deadline and now
SUSPEND_DELAY = (30, 180)  # signed for -> suspended
SUSPENSION_HOURS = (1, 8)  # working hours suspended before the desk resumes the case
EMERGENCY_HANDLING_MINUTES = (20, 120)  # calendar minutes: emergencies are handled day and night
NORMAL_HANDLING_HOURS = (2, 30)  # calendar hours, reported at the next working moment
VERIFY_DELAY = (15, 65)  # handled -> verified
URGE_DELAY = (60, 480)  # first dispatch -> a resident urges and the street escalates (群众催办), escalation_rate
CALL_BACK_HOURS = (time(9, 0), time(17, 0))  # the working day after closing
CALL_BACK_MISS_SHARE = 0.15  # of call-back attempts, the resident is not reached (回访未果); an assumption
CALL_BACK_MISSES = (("no_answer", 0.6), ("unreachable", 0.2), ("wrong_number", 0.05), ("refused", 0.15))
MAX_CALL_BACK_MISSES = 2  # after two misses the next attempt reaches the resident
MIN_MISS_ROOM_SECONDS = 600  # a call-back in the day's first ten minutes had no missed attempt before it
SATISFACTION = ((5, 0.55), (4, 0.30), (3, 0.10), (2, 0.04), (1, 0.01))  # of fixed cases, skewed high
MAX_REWORKS = 2  # after two failed verifications the third passes
MAX_NOT_FIXED = 1  # a resident says "not fixed" at most once per case
TOP_LEVEL = 5

CALLED_BACK_SOURCES = RESIDENT_SOURCES
"""Cases with a resident to call back (回访); the others end closed."""

REJECT_REASONS = (
    ("duplicate", "同一报告人重复上报"),
    ("not_admitted", "不在社区事务准入清单内"),
    ("out_of_scope", "不属于网格化服务管理范围"),
)
SUSPEND_REASONS = ("等待专项资金到位", "雨雪天气无法施工", "涉及司法程序, 等待裁决")
RETURN_REASONS = {
    "worker": "不属本人职责范围, 请重新派遣",
    "community": "需专业部门处置, 社区无执法权, 请重新派遣",
    "department": "非本单位职责, 请重新派遣",
}
"""Why a party sent a case back (退单): the policy then re-routes it without that party."""


@dataclass
class Case:
    """What the simulator knows of one case it reported; the assignment is read back from the case itself."""

    id: UUID
    source: str
    category: Category
    grid: GridPlan
    rng: random.Random
    duplicate_of: UUID | None = None
    status: Status = Status.REPORTED
    unit: str = ""
    worker: str = ""
    deadline: datetime | None = None
    dispatches: int = 0
    reworks: int = 0
    not_fixed: int = 0
    steps: list[str] = field(default_factory=list)

    @property
    def assignee(self) -> str:
        """The actor who signs for, returns and reports handling: the worker, else the unit."""
        return self.worker or self.unit


CaseStep = Callable[[Case, datetime], None]


class CaseFlow:
    """The desk (受理/立案/核查/回访/挂账), the assignees and residents acting on simulated cases."""

    def __init__(
        self, runner: Runner, district: District, catalogue: Catalogue, rates: Rates, seed: int, tally: Tally
    ) -> None:
        self.runner = runner
        self.catalogue = catalogue
        self.rates = rates
        self.seed = seed
        self.tally = tally
        self.cases: dict[UUID, Case] = {}
        self.open: dict[UUID, Case] = {}
        self._units = {g.community for g in district.grids}

    # -- reports --------------------------------------------------------------------------

    def report(
        self, command: c.ReportCase | c.ReportFinding, source: str, category: Category, grid: GridPlan,
        duplicate_of: UUID | None = None,
    ) -> bool:  # fmt: skip
        """Run a report; the desk takes it up within its working hours. False if it was refused."""
        result = self.runner.execute(command)
        if result is None:
            return False
        case = Case(
            result.aggregate_id, source, category, grid, stream(self.seed, "case", command.command_id), duplicate_of
        )
        self.cases[case.id] = case
        self.open[case.id] = case
        self.tally.sources[source] += 1
        delay = minutes(case.rng, *REGISTER_DELAY[category.tier])
        self._later(case, add_working(self.runner.now, delay), self._triage)
        return True

    # -- the desk -------------------------------------------------------------------------

    def _triage(self, case: Case, now: datetime) -> None:
        rng, desk = case.rng, _desk(case)
        if chance(rng, self.rates.reject_rate):
            code, reason = rng.choice(REJECT_REASONS)
            if self._run(
                c.RejectCase(command_id=self._id(), actor=desk, case_id=case.id, reason_code=code, reason=reason)
            ):
                self._move(case, Status.REJECTED, "rejections")
            return
        target = self.open.get(case.duplicate_of) if case.duplicate_of else None
        if target is not None:
            merge = c.MergeCase(
                command_id=self._id(),
                actor=desk,
                case_id=case.id,
                into_case=target.id,
                reason="同一问题多人反映, 并入在办案件",
            )
            if self._run(merge):
                self._move(case, Status.MERGED, "merges")
            return
        if self._run(c.RegisterCase(command_id=self._id(), actor=desk, case_id=case.id, note="信息核实, 予以立案")):
            self._follow(case, now)
            if case.dispatches == 1 and chance(rng, self.rates.escalation_rate):
                self._later(case, add_working(now, minutes(rng, *URGE_DELAY)), self._urge)

    def _follow(self, case: Case, now: datetime) -> None:
        """After a step that hands the case to the dispatch policy: learn whom it chose, and play them."""
        self._learn(case)
        if case.status is not Status.DISPATCHED:
            return  # left at the desk: the report shows it among the registered, returned or reopened
        case.dispatches += 1
        rng = case.rng
        if case.dispatches == 1 and chance(rng, self.rates.return_rate):
            self._later(case, add_working(now, minutes(rng, *RETURN_DELAY)), self._return)
        else:
            self._later(case, add_working(now, minutes(rng, *ACCEPT_DELAY[case.category.tier])), self._accept)

    # -- the assignee ---------------------------------------------------------------------

    def _return(self, case: Case, now: datetime) -> None:
        """退单: the party the policy chose says the case is not theirs; the policy re-routes it without them."""
        self._learn(case)
        kind = "worker" if case.worker else ("community" if case.unit in self._units else "department")
        command = c.ReturnCase(command_id=self._id(), actor=case.assignee, case_id=case.id, reason=RETURN_REASONS[kind])
        if self._run(command):
            self.tally.count("returns")
            self._follow(case, now)

    def _accept(self, case: Case, now: datetime) -> None:
        self._learn(case)  # a sign-for timeout or a worker going off duty may have moved it on
        if not self._run(c.AcceptCase(command_id=self._id(), actor=case.assignee, case_id=case.id)):
            return
        self._move(case, Status.ACCEPTED)
        case.steps = [
            *(["extension"] if chance(case.rng, self.rates.extension_rate) else []),
            *(["suspension"] if chance(case.rng, self.rates.suspend_rate) else []),
            "handling",
        ]
        self._next_step(case, now)

    def _next_step(self, case: Case, now: datetime) -> None:
        step, rng = case.steps.pop(0), case.rng
        if step == "extension":
            self._later(case, add_working(now, minutes(rng, *EXTENSION_REQUEST_DELAY)), self._request_extension)
        elif step == "suspension":
            self._later(case, add_working(now, minutes(rng, *SUSPEND_DELAY)), self._suspend)
        elif case.category.tier == "emergency":
            self._later(case, now + minutes(rng, *EMERGENCY_HANDLING_MINUTES), self._handle)
        else:
            self._later(case, next_working(now + hours(rng, *NORMAL_HANDLING_HOURS)), self._handle)

    def _request_extension(self, case: Case, now: datetime) -> None:
        self._learn(case)
        assert case.deadline is not None  # a signed-for case was dispatched with one
        until = self.runner.app.calendar.add_days(max(case.deadline, now), EXTENSION_DAYS)
        command = c.RequestExtension(
            command_id=self._id(), actor=case.assignee, case_id=case.id, until=until, reason="需协调相关单位, 申请延期"
        )
        if self._run(command):
            self._move(case, Status.EXTENSION_REQUESTED, "extensions_requested")
            decide = self._grant if chance(case.rng, EXTENSION_GRANT_SHARE) else self._deny
            self._later(case, add_working(now, minutes(case.rng, *EXTENSION_DECISION_DELAY)), decide)

    def _grant(self, case: Case, now: datetime) -> None:
        if self._run(c.GrantExtension(command_id=self._id(), actor=_desk(case), case_id=case.id, note="同意延期")):
            self._move(case, Status.ACCEPTED, "extensions_granted")
            self._next_step(case, now)

    def _deny(self, case: Case, now: datetime) -> None:
        command = c.DenyExtension(
            command_id=self._id(), actor=_desk(case), case_id=case.id, reason="理由不充分, 按原时限办理"
        )
        if self._run(command):
            self._move(case, Status.ACCEPTED, "extensions_denied")
            self._next_step(case, now)

    def _suspend(self, case: Case, now: datetime) -> None:
        reason = case.rng.choice(SUSPEND_REASONS)
        if self._run(c.SuspendCase(command_id=self._id(), actor=_desk(case), case_id=case.id, reason=reason)):
            self._move(case, Status.SUSPENDED, "suspensions")
            self._later(case, add_working(now, hours(case.rng, *SUSPENSION_HOURS)), self._resume)

    def _resume(self, case: Case, now: datetime) -> None:
        if self._run(
            c.ResumeCase(command_id=self._id(), actor=_desk(case), case_id=case.id, note="条件具备, 恢复办理")
        ):
            self._move(case, Status.ACCEPTED)
            self._next_step(case, now)

    def _handle(self, case: Case, now: datetime) -> None:
        command = c.ReportHandling(
            command_id=self._id(), actor=case.assignee, case_id=case.id, result=f"已处置: {case.category.name}",
            photos=[f"sim://{case.id}/{case.dispatches}-{n}.jpg" for n in (1, 2)],
        )  # fmt: skip
        if self._run(command):
            self._move(case, Status.HANDLED)
            self._later(case, add_working(now, minutes(case.rng, *VERIFY_DELAY)), self._verify)

    # -- verification and call-back ----------------------------------------------------------

    def _verify(self, case: Case, now: datetime) -> None:
        rng = case.rng
        if case.reworks < MAX_REWORKS and chance(rng, self.rates.rework_rate):
            note = "现场核查未整改到位, 返工"
            if self._run(
                c.VerifyCase(command_id=self._id(), actor=_desk(case), case_id=case.id, passed=False, note=note)
            ):
                case.reworks += 1
                self.tally.count("reworks")
                self._follow(case, now)
            return
        command = c.VerifyCase(
            command_id=self._id(), actor=_desk(case), case_id=case.id, passed=True, note="核查属实, 结案"
        )
        if not self._run(command):
            return
        self._move(case, Status.CLOSED)
        if case.source in CALLED_BACK_SOURCES:
            day = local_date(now) + timedelta(days=1)
            opens, closes = (at(day, t) for t in CALL_BACK_HOURS)
            when = opens + timedelta(seconds=rng.randint(0, int((closes - opens).total_seconds())))
            self._later(case, when, self._call_back)
            self._plan_misses(case, opens, when)

    def _plan_misses(self, case: Case, opens: datetime, when: datetime) -> None:
        """回访未果: attempts earlier that day that did not reach the resident (so 响应率 is not always 100 %).

        Drawn from a stream of their own, with the case's own command ids: the call-back itself, the case's
        draws and the day's command ids are what they would be without them.
        """
        misses = stream(self.seed, "call-back", case.id, case.not_fixed)
        count = 0
        while count < MAX_CALL_BACK_MISSES and chance(misses, CALL_BACK_MISS_SHARE):
            count += 1
        room = int((when - opens).total_seconds())
        if room < MIN_MISS_ROOM_SECONDS:
            return
        for attempt, offset in enumerate(sorted(misses.randint(0, room - 1) for _ in range(count))):
            reason = weighted(misses, CALL_BACK_MISSES)
            self._later(
                case, opens + timedelta(seconds=offset), partial(self._miss_call_back, attempt=attempt, reason=reason)
            )

    def _miss_call_back(self, case: Case, now: datetime, *, attempt: int, reason: str) -> None:
        command_id = f"sim:call-back-missed:{case.id}:{case.not_fixed}:{attempt}"
        if self._run(c.MissCallBack(command_id=command_id, actor=_desk(case), case_id=case.id, reason=reason)):
            self.tally.count("call_backs_missed")

    def _call_back(self, case: Case, now: datetime) -> None:
        rng = case.rng
        fixed = not (case.not_fixed < MAX_NOT_FIXED and chance(rng, self.rates.not_fixed_callback_rate))
        satisfaction = weighted(rng, SATISFACTION) if fixed else rng.randint(1, 2)
        note = "问题已解决" if fixed else "居民反映问题未解决"
        command = c.CallBack(
            command_id=self._id(), actor=_desk(case), case_id=case.id, satisfaction=satisfaction, fixed=fixed, note=note
        )
        if not self._run(command):
            return
        self.tally.count("call_backs")
        if fixed:
            self._move(case, Status.EVALUATED)
            return
        case.not_fixed += 1
        self.tally.count("not_fixed")
        self._follow(case, now)

    # -- a resident urges (群众催办) -----------------------------------------------------------

    def _urge(self, case: Case, now: datetime) -> None:
        """A resident chases the case and the street escalates it one level (the supervisor's own rounds are
        the engine's: ``Runner.tick``)."""
        order = self.runner.app.case(case.id)
        if not order.is_open or order.escalation_level >= TOP_LEVEL:
            return
        command = c.EscalateCase(
            command_id=self._id(), actor=f"supervisor:{case.grid.street}", case_id=case.id,
            level=order.escalation_level + 1, reason="群众催办, 督促加快办理",
        )  # fmt: skip
        self._run(command)

    # -- plumbing ---------------------------------------------------------------------------

    def _learn(self, case: Case) -> None:
        """Read the case's state, assignee and deadline back from the store (the policies may have moved it)."""
        order = self.runner.app.case(case.id)
        case.unit, case.worker, case.deadline = order.unit, order.worker, order.deadline
        self._move(case, order.status)

    def _later(self, case: Case, when: datetime, step: CaseStep) -> None:
        self.runner.at(when, lambda now: step(case, now))

    def _run(self, command: c.Command) -> bool:
        return self.runner.execute(command) is not None

    def _id(self) -> str:
        return self.runner.command_id()

    def _move(self, case: Case, status: Status, counted: str = "") -> None:
        case.status = status
        if is_open(status):
            self.open[case.id] = case
        else:
            self.open.pop(case.id, None)
        if counted:
            self.tally.count(counted)


def _desk(case: Case) -> str:
    """The dispatcher on duty at the case's district command centre (指挥中心)."""
    return f"op:{case.grid.district}-01"
