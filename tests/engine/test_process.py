"""Process managers over a real store: resumable after SIGKILL, and the 事事有人办 invariant under any sequence."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine import commands as c
from engine.lifecycle import DESK_STATES, Status
from engine.policies import processes
from engine.process import tracking_name
from tests.engine.policy_district import DEPARTMENT_WORK, GRID, GRID2, GRID_WORK, MEDIATION, District, build

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    from engine.application import Gridloop
    from engine.clock import ManualClock
    from engine.policies import processes
    from engine.working_time import WorkingCalendar
    from datetime import datetime
    from zoneinfo import ZoneInfo
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": sys.argv[1]}, clock=clock,
                   calendar=WorkingCalendar())
    runner = processes(app, supervise=False)
    runner.batch = 5
    runner.catch_up()
    print("done", runner.issued, flush=True)
    """
)


def dispatched_count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(
            db.execute("SELECT COUNT(*) FROM stored_events WHERE topic LIKE '%WorkOrder.Dispatched'").fetchone()[0]
        )


def test_a_policy_killed_mid_way_resumes_without_losing_or_repeating_a_decision(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    district = build(path, dispatch="none", supervise=False)  # the desk registers; nobody dispatches yet
    cases = [district.report_and_register(GRID_WORK if i % 3 else DEPARTMENT_WORK) for i in range(150)]
    district.app.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while dispatched_count(path) < 20 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = dispatched_count(path)
    assert 0 < killed_at < len(cases), "the kill must land mid-way for this test to mean anything"
    finished = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    again = build(tmp_path / "unused.sqlite", dispatch="none", supervise=False)  # a clock and an app type
    app = type(again.app)({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=again.clock)
    for case in cases:
        kinds = [type(e).__name__ for e in app.events.get(case)]
        assert kinds.count("Dispatched") == 1, kinds
    assert dispatched_count(path) == len(cases)
    tracked = app.recorder.max_tracking_id(tracking_name(processes(app, supervise=False).managers[0]))
    assert tracked is not None and tracked > 0


class AccountabilityMachine(RuleBasedStateMachine):
    """Any sequence of reports, returns, timeouts, roster changes and handling leaves every open case owned."""

    district: District

    @initialize()
    def set_up(self) -> None:
        import tempfile

        self.tmp = tempfile.mkdtemp()
        self.district = build(Path(self.tmp) / "events.sqlite")
        self.cases: list[object] = []

    @rule(category=st.sampled_from([GRID_WORK, MEDIATION, DEPARTMENT_WORK]), grid=st.sampled_from([GRID, GRID2]))
    def report(self, category: str, grid: str) -> None:
        self.cases.append(self.district.report_and_register(category, grid))

    @rule(index=st.integers(0, 50))
    def assignee_returns(self, index: int) -> None:
        order = self._case(index, Status.DISPATCHED, Status.ACCEPTED)
        if order is not None:
            self.district.run(c.ReturnCase, case_id=order.id, reason="不属本人", actor=order.worker or order.unit)

    @rule(index=st.integers(0, 50))
    def assignee_signs_for(self, index: int) -> None:
        order = self._case(index, Status.DISPATCHED)
        if order is not None:
            self.district.run(c.AcceptCase, case_id=order.id, actor=order.worker or order.unit)

    @rule(index=st.integers(0, 50), passed=st.booleans())
    def handled_and_verified(self, index: int, passed: bool) -> None:
        order = self._case(index, Status.ACCEPTED)
        if order is not None:
            self.district.run(c.ReportHandling, case_id=order.id, result="已处置", actor=order.worker or order.unit)
            self.district.run(c.VerifyCase, case_id=order.id, passed=passed, note="" if passed else "未整改到位")

    @rule(worker=st.sampled_from(["W1", "W2", "A1", "M1", "W3"]))
    def roster_change(self, worker: str) -> None:
        self.district.duty(worker, not self.district.app.worker(worker).on_duty)

    @rule(minutes=st.integers(5, 600))
    def time_passes(self, minutes: int) -> None:
        self.district.later(minutes=minutes)

    def _case(self, index: int, *states: Status) -> object | None:
        if not self.cases:
            return None
        order = self.district.app.case(self.cases[index % len(self.cases)])  # type: ignore[arg-type]
        return order if order.status in states else None

    @invariant()
    def every_open_case_has_exactly_one_accountable_party(self) -> None:
        if not hasattr(self, "district"):
            return
        app = self.district.app
        for case_id in self.cases:
            order = app.case(case_id)  # type: ignore[arg-type]
            if not order.is_open:
                assert order.accountable is None
                continue
            kind, _, who = (order.accountable or "").partition(":")
            assert kind in ("desk", "unit", "worker") and who, (order.status, order.accountable)
            # The policy leaves nothing waiting at the desk that it could dispatch.
            if order.status in DESK_STATES:
                assert order.status is Status.HANDLED, order.status
            if order.status is Status.DISPATCHED and order.worker:
                assert app.worker(order.worker).on_duty, f"{order.worker} is off duty but holds an unsigned case"

    def teardown(self) -> None:
        if hasattr(self, "district"):
            self.district.app.close()


AccountabilityMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_no_open_case_is_ever_without_an_accountable_party = AccountabilityMachine.TestCase
