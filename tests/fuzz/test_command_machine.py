"""The command API under random interleavings: a hypothesis state machine over ``Gridloop.execute``.

Random sequences of case commands, legal and illegal in the state they meet, are checked against a model of the
lifecycle built from ``engine.lifecycle.TRANSITIONS``; command ids are replayed (same body: the first result again)
and reused (another body: refused); two writers on the same SQLite file race on one case. After every step the
store agrees with the model; at the end every acknowledged command has its receipt and the hash chain is intact.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine import commands as c
from engine.application import CommandResult, Gridloop
from engine.clock import ManualClock
from engine.errors import DuplicateCommand, GridloopError, IllegalTransition, InvalidCommand
from engine.lifecycle import RESUME_PREVIOUS, TRANSITIONS, UNCHANGED, Status, allowed_actions
from engine.work_order import CALL_BACK_MISSES
from projections.audit.verify import verify_store
from tests.fuzz.conftest import fuzz_settings
from tests.projections.conftest import DESK, T0, WORKERS, Story, event_store

ACTIONS = (
    "register", "reject", "merge", "dispatch", "accept", "return", "reassign", "request_extension",
    "grant_extension", "deny_extension", "suspend", "resume", "report_handling", "verify", "escalate",
    "warn_deadline", "recategorise", "call_back", "miss_call_back", "reopen",
)  # fmt: skip
"""Every case action the state machine tries, each in whatever state the case happens to be in."""

ONE_CASE = tuple(a for a in ACTIONS if a != "merge")
"""The actions that touch one case only (a merge changes two): what two writers race with."""

STALE: dict[tuple[str, str], bool] = {
    ("reassign", "accept"): True,  # signed by the worker it was assigned to before
    ("reassign", "reassign"): True,  # to the assignee it now has
    ("recategorise", "recategorise"): True,  # to the category it now has
    ("grant_extension", "request_extension"): True,  # until the deadline it now has
    ("resume", "request_extension"): False,  # until a time the moved deadline may have passed
}
"""Racing pairs (earlier, later) where the later command, built before the earlier one was taken, is malformed
once it has been (True), or may be (False): its writer gets InvalidCommand after its retry, a clear refusal."""

ENDINGS = frozenset({Status.REJECTED, Status.MERGED})
"""States no action leaves."""

FORWARD = ("register", "dispatch", "accept", "report_handling", "verify", "call_back")
"""The closed loop's main line: half of the allowed actions are taken from it, so runs get to its far end."""

MAX_CASES = 3
"""Few cases, so actions keep meeting the same case in many states (and merges find a partner)."""


@cache
def seeded_world() -> tuple[Path, datetime]:
    """A district with three on-duty grid workers (the projection tests' Story world), recorded once per session."""
    folder = Path(tempfile.mkdtemp(prefix="gridloop-fuzz-world-"))
    atexit.register(shutil.rmtree, folder, True)
    clock = ManualClock(T0)
    app = event_store(folder / "events.sqlite", clock)
    Story(app, clock).world()
    app.close()
    return folder / "events.sqlite", clock.now()


@dataclass
class CaseModel:
    """What the model expects of one case: where it stands and what a valid command on it needs."""

    case_id: UUID
    status: Status = Status.REPORTED
    suspended_from: Status | None = None
    worker: str = ""
    category: str = "C0101"
    escalation: int = 0

    def move(self, action: str, outcome: Outcome) -> None:
        """Where an accepted ``action`` leaves the case; a suspension remembers the state it resumes to."""
        assert outcome.status is not None
        if action == "suspend":
            self.suspended_from = self.status
        elif action == "resume":
            self.suspended_from = None
        self.status = outcome.status


@dataclass(frozen=True)
class Outcome:
    """What the model predicts of one command: accepted (and where the case goes) or refused."""

    accepted: bool
    status: Status | None = None
    refusal: type[GridloopError] = IllegalTransition


STALE_REFUSAL = Outcome(False, refusal=InvalidCommand)
"""A racing command built against a state the other writer's command changed: refused as malformed."""


@dataclass
class Attempt:
    """One command as a writer ran it: the result, or the error it got."""

    command: c.Command
    result: CommandResult | None = None
    error: Exception | None = None


def predict(case: CaseModel, action: str, target: CaseModel | None, passed_or_fixed: bool) -> Outcome:
    """The lifecycle table's answer to ``action`` on ``case`` (the transitions as data, nothing re-coded)."""
    transition = TRANSITIONS[action]
    if case.status not in transition.sources:
        return Outcome(False)
    if action == "merge":
        # The surviving case must take the duplicate in: its own transition, link_duplicate.
        if target is None or target.status not in TRANSITIONS["link_duplicate"].sources:
            return Outcome(False)
        return Outcome(True, Status.MERGED)
    if action in ("verify", "call_back"):
        # The two-way actions: the table lists (pass/fixed target, fail target).
        return Outcome(True, Status(transition.targets[0 if passed_or_fixed else 1]))
    (goes,) = transition.targets
    if goes == RESUME_PREVIOUS:
        assert case.suspended_from is not None
        return Outcome(True, case.suspended_from)
    if goes == UNCHANGED:
        return Outcome(True, case.status)
    return Outcome(True, Status(goes))


def answers(attempt: Attempt, outcome: Outcome) -> bool:
    """Whether a command's result is the one predicted: taken, or refused with the predicted kind of error."""
    if outcome.accepted:
        return attempt.result is not None
    return attempt.result is None and isinstance(attempt.error, outcome.refusal)


class CommandMachine(RuleBasedStateMachine):
    """Gridloop's command path against the lifecycle model, one step at a time."""

    def __init__(self) -> None:
        super().__init__()
        template, now = seeded_world()
        self.folder = Path(tempfile.mkdtemp(prefix="gridloop-fuzz-"))
        shutil.copyfile(template, self.folder / "events.sqlite")
        self.clock = ManualClock(now)
        self.app = event_store(self.folder / "events.sqlite", self.clock)
        self.other: Gridloop | None = None  # a second writer on the same file, opened by the first race
        self.cases: list[CaseModel] = []
        self.acknowledged: dict[str, tuple[c.Command, CommandResult]] = {}
        self.log_length = self._log_length()
        self.serial = 0

    # -- helpers ------------------------------------------------------------------------------

    def _log_length(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def _id(self) -> str:
        self.serial += 1
        return f"fuzz-{self.serial}"

    def _case(self, index: int) -> CaseModel:
        return self.cases[index % len(self.cases)]

    def _command(self, case: CaseModel, action: str, other: CaseModel | None, flag: bool) -> c.Command:
        """A command for ``action`` whose fields are valid, so only the case's state decides whether it is taken."""
        now = self.clock.now()
        base: dict[str, Any] = {"command_id": self._id(), "actor": DESK, "case_id": case.case_id}
        spare = next(w for w in WORKERS if w != case.worker)
        deadline = self.app.case(case.case_id).deadline
        builders: dict[str, Callable[[], c.Command]] = {
            "register": lambda: c.RegisterCase(**base),
            "reject": lambda: c.RejectCase(**base, reason_code="out_of_scope", reason="不属于受理范围"),
            "merge": lambda: c.MergeCase(**base, into_case=(other or case).case_id),
            "dispatch": lambda: c.DispatchCase(**base, worker=spare, deadline=now + timedelta(hours=72), reason="派遣"),
            "accept": lambda: c.AcceptCase(**{**base, "actor": case.worker or DESK}),
            "return": lambda: c.ReturnCase(**base, reason="不属于本单位职责"),
            "reassign": lambda: c.ReassignCase(**base, worker=spare, reason="改派"),
            "request_extension": lambda: c.RequestExtension(
                **base, until=(deadline or now) + timedelta(days=1), reason="等待配件"
            ),
            "grant_extension": lambda: c.GrantExtension(**base, note="同意"),
            "deny_extension": lambda: c.DenyExtension(**base, reason="不再延期"),
            "suspend": lambda: c.SuspendCase(**base, reason="等待资金"),
            "resume": lambda: c.ResumeCase(**base, note="资金到位"),
            "report_handling": lambda: c.ReportHandling(**base, result="处置完毕", photos=["after.jpg"]),
            "verify": lambda: c.VerifyCase(**base, passed=flag, note="核查"),
            "escalate": lambda: c.EscalateCase(**base, level=max(1, case.escalation), reason="超期督办"),
            "warn_deadline": lambda: c.WarnDeadline(
                **base, step="handle", threshold=50, due=now, policy="supervisor", policy_version="1"
            ),
            "recategorise": lambda: c.RecategoriseCase(
                **base, category="C0102" if case.category == "C0101" else "C0101", reason="改类"
            ),
            "call_back": lambda: c.CallBack(**base, satisfaction=4 if flag else 2, fixed=flag),
            "miss_call_back": lambda: c.MissCallBack(**base, reason=sorted(CALL_BACK_MISSES)[0]),
            "reopen": lambda: c.ReopenCase(**base, reason="居民投诉"),
        }
        return builders[action]()

    def _adopt(self, case: CaseModel, action: str, command: c.Command, outcome: Outcome, result: CommandResult) -> None:
        """The model after an accepted command: the case moves, and what its next commands need is noted."""
        case.move(action, outcome)
        if isinstance(command, c.DispatchCase):  # and ReassignCase
            case.worker = command.worker
        if isinstance(command, c.RecategoriseCase):
            case.category = command.category
        if isinstance(command, c.EscalateCase):
            case.escalation = command.level
        self.acknowledged[command.command_id] = (command, result)

    def _expect(self, attempt: Attempt, outcome: Outcome, before: int) -> int:
        """Check one command's result against the prediction; returns how many events it recorded."""
        if not outcome.accepted:
            assert attempt.result is None, f"{attempt.command.name} was taken: {attempt.result}"
            assert isinstance(attempt.error, outcome.refusal), f"{attempt.command.name}: {attempt.error!r}"
            return 0
        assert attempt.error is None, f"{attempt.command.name} refused: {attempt.error!r}"
        assert attempt.result is not None and not attempt.result.duplicate
        assert attempt.result.events, "an accepted command records at least one event"
        assert attempt.result.position > before
        return len(attempt.result.events) + 1  # and its receipt

    @staticmethod
    def _run(app: Gridloop, command: c.Command) -> Attempt:
        try:
            return Attempt(command, result=app.execute(command))
        except GridloopError as exc:
            return Attempt(command, error=exc)

    # -- rules --------------------------------------------------------------------------------

    @precondition(lambda self: len(self.cases) < MAX_CASES)
    @rule(grid=st.sampled_from(sorted(WORKERS.values())))
    def report(self, grid: str) -> None:
        self.clock.advance(timedelta(minutes=5))
        command = c.ReportCase(
            command_id=self._id(), actor="resident:1", source="resident", category="C0101", grid=grid,
            description="井盖缺失",
        )  # fmt: skip
        result = self.app.execute(command)
        assert result.events == ("Reported",)
        self.cases.append(CaseModel(result.aggregate_id))
        self.acknowledged[command.command_id] = (command, result)
        self.log_length += 2

    @precondition(lambda self: bool(self.cases))
    @rule(action=st.sampled_from(ACTIONS), index=st.integers(0, 7), other=st.integers(0, 7), flag=st.booleans())
    def act(self, action: str, index: int, other: int, flag: bool) -> None:
        """One case action, legal or not where the case stands: taken exactly when the lifecycle table allows it."""
        self.clock.advance(timedelta(minutes=5))
        case, partner = self._case(index), self._case(index + 1 + other % max(1, len(self.cases) - 1))
        partner_or_none = partner if partner is not case else None
        outcome = predict(case, action, partner_or_none, flag)
        if action == "merge" and partner_or_none is None:
            outcome = Outcome(False)  # into itself: refused as malformed, checked below
        command = self._command(case, action, partner_or_none, flag)
        attempt = self._run(self.app, command)
        if action == "merge" and partner_or_none is None and case.status in TRANSITIONS["merge"].sources:
            assert isinstance(attempt.error, InvalidCommand), attempt
        else:
            self.log_length += self._expect(attempt, outcome, self.log_length)
        if attempt.result is not None:
            self._adopt(case, action, command, outcome, attempt.result)
        event(f"{action} {'taken' if attempt.result else 'refused'}")

    @precondition(lambda self: any(c.status not in ENDINGS for c in self.cases))
    @rule(index=st.integers(0, 7), choice=st.integers(0, 31), other=st.integers(0, 7), flag=st.booleans())
    def advance(self, index: int, choice: int, other: int, flag: bool) -> None:
        """An action the table allows where the case stands (random ones are mostly refused, and would leave the
        deep states unvisited); rejecting and merging end a case, so they are left to ``act``."""
        live = [n for n, case in enumerate(self.cases) if case.status not in ENDINGS]
        case = self.cases[live[index % len(live)]]
        allowed = [a for a in allowed_actions(case.status) if a in ACTIONS and a not in ("reject", "merge")]
        # Mostly an action that moves the case, so runs reach handling, closing, call-backs and reopening.
        forward = [a for a in FORWARD if a in allowed] if choice % 2 else []
        moving = [a for a in allowed if TRANSITIONS[a].targets != (UNCHANGED,)] if choice % 4 else []
        pool = forward or moving or allowed
        self.act(pool[choice // 4 % len(pool)], self.cases.index(case), other, flag)

    @precondition(lambda self: bool(self.acknowledged))
    @rule(pick=st.integers(0, 10_000))
    def repeat(self, pick: int) -> None:
        """The same command id with the same body: the first result again, and nothing recorded."""
        command, first = list(self.acknowledged.values())[pick % len(self.acknowledged)]
        again = self.app.execute(command)
        assert again.duplicate
        assert (again.aggregate_id, again.position) == (first.aggregate_id, first.position)

    @precondition(lambda self: bool(self.acknowledged))
    @rule(pick=st.integers(0, 10_000))
    def reuse(self, pick: int) -> None:
        """The same command id with another body: refused, naming the first command, and nothing recorded."""
        command, _ = list(self.acknowledged.values())[pick % len(self.acknowledged)]
        changed = dataclasses.replace(command, actor=command.actor + ":other")
        try:
            self.app.execute(changed)
        except DuplicateCommand as exc:
            assert command.command_id in str(exc) and command.name in str(exc)
        else:
            raise AssertionError(f"a reused command id {command.command_id!r} was taken")

    @precondition(lambda self: bool(self.cases))
    @rule(index=st.integers(0, 7), bad=st.sampled_from(["level", "satisfaction", "reason", "time"]))
    def malformed(self, index: int, bad: str) -> None:
        """A command with a malformed field: refused as invalid (whatever state the case is in), nothing recorded."""
        case = self._case(index)
        base: dict[str, Any] = {"command_id": self._id(), "actor": DESK, "case_id": case.case_id}
        malformed: dict[str, Callable[[], c.Command]] = {
            "level": lambda: c.EscalateCase(**base, level=9, reason="督办"),
            "satisfaction": lambda: c.CallBack(**base, satisfaction=0, fixed=True),
            "reason": lambda: c.SuspendCase(**base, reason="  "),
            "time": lambda: c.SuspendCase(**base, reason="挂账", occurred_at=datetime(2026, 1, 1)),
        }
        command = malformed[bad]()
        attempt = self._run(self.app, command)
        assert isinstance(attempt.error, (InvalidCommand, IllegalTransition)), attempt
        if bad == "time":  # checked before the case is even loaded
            assert isinstance(attempt.error, InvalidCommand) and "UTC offset" in str(attempt.error)

    @precondition(lambda self: bool(self.cases))
    @rule(first=st.sampled_from(ONE_CASE), second=st.sampled_from(ONE_CASE), index=st.integers(0, 7))
    def race(self, first: str, second: str, index: int) -> None:
        """Two writers (two Gridloop instances on one SQLite file, two threads) act on one case at once.

        The result must be one of the two serial orders: each command taken or refused as the table says in that
        order, the loser of a conflict refused clearly or retried into a success, never an event lost or doubled.
        """
        self.clock.advance(timedelta(minutes=5))
        case = self._case(index)
        if self.other is None:
            self.other = event_store(self.folder / "events.sqlite", self.clock)
        commands = [self._command(case, first, None, True), self._command(case, second, None, False)]
        attempts: list[Attempt | None] = [None, None]
        barrier = threading.Barrier(2)

        def write(slot: int, app: Gridloop) -> None:
            barrier.wait()
            attempts[slot] = self._run(app, commands[slot])

        threads = [threading.Thread(target=write, args=(n, app)) for n, app in enumerate((self.app, self.other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = [a for a in attempts if a is not None]
        assert len(done) == 2, "a writer died without an answer"
        for attempt in done:
            assert attempt.result is not None or isinstance(attempt.error, GridloopError), attempt
        self._settle_race(case, (first, second), (True, False), done)
        event(f"race: {sum(a.result is not None for a in done)} of 2 taken")

    def _settle_race(
        self, case: CaseModel, actions: tuple[str, str], flags: tuple[bool, bool], attempts: list[Attempt]
    ) -> None:
        """Find the serial order the race's results agree with, check it, and move the model along it."""
        for order in ((0, 1), (1, 0)):
            for outcomes in self._serial_outcomes(case, actions, flags, order):
                if not all(answers(attempts[slot], outcomes[slot]) for slot in order):
                    continue
                if all(a.result is not None for a in attempts):
                    earlier, later = (attempts[slot].result for slot in order)
                    assert earlier is not None and later is not None
                    if earlier.position > later.position:
                        continue
                for slot in order:
                    self.log_length += self._expect(attempts[slot], outcomes[slot], self.log_length)
                    result = attempts[slot].result
                    if result is not None:
                        self._adopt(case, actions[slot], attempts[slot].command, outcomes[slot], result)
                return
        raise AssertionError(f"{actions} raced on a {case.status} case and ended in no serial order: {attempts}")

    @staticmethod
    def _serial_outcomes(
        case: CaseModel, actions: tuple[str, str], flags: tuple[bool, bool], order: tuple[int, int]
    ) -> list[dict[int, Outcome]]:
        """What the table predicts of the two commands run one after the other in ``order``: one prediction, or
        two when the later command was built against a state the earlier one changed (see STALE)."""
        trial = dataclasses.replace(case)
        first, second = order
        head = predict(trial, actions[first], None, flags[first])
        if head.accepted:
            trial.move(actions[first], head)
        tail = predict(trial, actions[second], None, flags[second])
        stale = STALE.get((actions[first], actions[second])) if head.accepted and tail.accepted else None
        tails = [tail] if stale is None else [STALE_REFUSAL] if stale else [tail, STALE_REFUSAL]
        return [{first: head, second: t} for t in tails]

    # -- what must always hold ----------------------------------------------------------------

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        assert self._log_length() == self.log_length, "an event was lost or invented"
        for case in self.cases:
            assert self.app.case(case.case_id).status is case.status

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is not None:
                return  # a step failed: that is the failure to report (and shrink), not what it left behind
            for command_id, (command, result) in self.acknowledged.items():
                receipt = self.app._receipt(command_id)
                assert receipt is not None, f"no receipt for acknowledged command {command_id}"
                assert receipt.fingerprint == command.fingerprint()
                assert receipt.aggregate_id == result.aggregate_id
            verdict = verify_store(self.app)
            assert verdict.intact, verdict.problems
            assert verdict.last_position == self.log_length
        finally:
            self.app.close()
            if self.other is not None:
                self.other.close()
            shutil.rmtree(self.folder, ignore_errors=True)


CommandMachine.TestCase.settings = fuzz_settings()
test_commands_in_any_order_keep_the_store_and_the_lifecycle_model_in_step = CommandMachine.TestCase
