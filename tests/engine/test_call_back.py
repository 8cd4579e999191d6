"""回访: a closed case is called back; missed attempts keep it closed, "not fixed" reopens it for rework."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.errors import IllegalTransition, InvalidCommand
from engine.lifecycle import Status, status_after
from engine.parsing import parse_command
from engine.work_order import CALL_BACK_MISSES
from ops.sample import GRID, district_commands

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Gridloop]:
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "e.db")}, clock=clock)
    for command in (
        *district_commands(),
        c.EnrollWorker(
            command_id="w1",
            actor="admin",
            code="W1",
            worker_name="张三",
            role="grid_worker",
            unit="140827100001",
            grid=GRID,
        ),
        c.SetDuty(command_id="w1on", actor="admin", worker="W1", on_duty=True),
    ):
        app.execute(command)
    yield app
    app.close()


class Desk:
    """The dispatch desk's day on one app: each command five minutes after the last."""

    def __init__(self, app: Gridloop, clock: ManualClock) -> None:
        self.app, self.clock, self.n = app, clock, 0

    def do(self, command_class: type[c.Command], **fields: object) -> c.Command:
        self.clock.advance(timedelta(minutes=5))
        self.n += 1
        command = command_class(command_id=f"c{self.n}", **{"actor": "op1", **fields})  # type: ignore[arg-type]
        self.app.execute(command)
        return command

    def closed_case(self) -> UUID:
        case_id = self.app.execute(
            c.ReportCase(
                command_id="report",
                actor="hotline:12345",
                source="hotline",
                category="C0101",
                grid=GRID,
                description="井盖缺失",
                reporter="13800000000",
            )
        ).aggregate_id
        self.do(c.RegisterCase, case_id=case_id)
        self.do(c.DispatchCase, case_id=case_id, worker="W1", reason="网格员")
        self.do(c.AcceptCase, case_id=case_id, actor="W1")
        self.do(c.ReportHandling, case_id=case_id, actor="W1", result="已更换井盖")
        self.do(c.VerifyCase, case_id=case_id, passed=True)
        return case_id


@pytest.fixture
def desk(app: Gridloop, clock: ManualClock) -> Desk:
    return Desk(app, clock)


def event_names(app: Gridloop, case_id: UUID) -> list[str]:
    return [type(e).__name__ for e in app.repository.event_store.get(case_id)]


def test_a_missed_call_back_is_recorded_and_the_case_stays_closed(app: Gridloop, desk: Desk) -> None:
    case_id = desk.closed_case()
    desk.do(c.MissCallBack, case_id=case_id, reason="no_answer")
    desk.do(c.MissCallBack, case_id=case_id, reason="unreachable")
    order = app.case(case_id)
    assert order.status is Status.CLOSED and order.accountable is None
    assert event_names(app, case_id)[-2:] == ["CallBackMissed", "CallBackMissed"]
    assert status_after("CallBackMissed", Status.CLOSED) is Status.CLOSED
    desk.do(c.CallBack, case_id=case_id, satisfaction=4, fixed=True)
    assert app.case(case_id).status is Status.EVALUATED


def test_a_call_back_saying_not_fixed_reopens_the_case_and_the_rework_closes_it_again(
    app: Gridloop, desk: Desk
) -> None:
    case_id = desk.closed_case()
    desk.do(c.MissCallBack, case_id=case_id, reason="no_answer")
    desk.do(c.CallBack, case_id=case_id, satisfaction=2, fixed=False, note="井盖还是松的")
    order = app.case(case_id)
    assert order.status is Status.REOPENED and order.accountable == f"desk:{order.desk}"
    assert order.rework_count == 1 and order.worker == ""
    desk.do(c.DispatchCase, case_id=case_id, worker="W1", reason="返工")
    desk.do(c.AcceptCase, case_id=case_id, actor="W1")
    desk.do(c.ReportHandling, case_id=case_id, actor="W1", result="重新固定")
    desk.do(c.VerifyCase, case_id=case_id, passed=True)
    desk.do(c.CallBack, case_id=case_id, satisfaction=5, fixed=True)
    assert app.case(case_id).status is Status.EVALUATED
    names = event_names(app, case_id)
    assert names.count("CalledBack") == 2 and names.count("Verified") == 2


@pytest.mark.parametrize("status", [Status.REGISTERED, Status.EVALUATED])
def test_only_a_closed_case_can_miss_a_call_back(app: Gridloop, desk: Desk, status: Status) -> None:
    case_id = desk.closed_case()
    if status is Status.EVALUATED:
        desk.do(c.CallBack, case_id=case_id, satisfaction=5, fixed=True)
    else:
        case_id = app.execute(
            c.ReportCase(command_id="r2", actor="op1", source="hotline", category="C0101", grid=GRID, description="x")
        ).aggregate_id
        desk.do(c.RegisterCase, case_id=case_id)
    before = app.case(case_id).version
    with pytest.raises(IllegalTransition, match=f"cannot miss_call_back a case that is {status.value}"):
        desk.do(c.MissCallBack, case_id=case_id, reason="no_answer")
    assert app.case(case_id).version == before


def test_a_miss_needs_a_known_reason_and_the_error_lists_them(app: Gridloop, desk: Desk) -> None:
    case_id = desk.closed_case()
    before = app.case(case_id).version
    with pytest.raises(InvalidCommand) as refused:
        desk.do(c.MissCallBack, case_id=case_id, reason="dog ate the phone")
    assert refused.value.field == "reason"
    assert all(code in str(refused.value) for code in CALL_BACK_MISSES)
    assert app.case(case_id).version == before


def test_the_cli_and_the_api_build_the_command_from_loose_input() -> None:
    command = parse_command(
        "miss_call_back",
        {"command_id": "m1", "actor": "op1", "case_id": "8b0c5f1e-0000-4000-8000-000000000001", "reason": "refused"},
    )
    assert isinstance(command, c.MissCallBack) and command.reason == "refused"
    with pytest.raises(InvalidCommand, match="reason: is missing"):
        parse_command("miss_call_back", {"command_id": "m1", "actor": "op1", "case_id": str(UUID(int=1))})
