"""The command path on a real SQLite event store: idempotency, bad input, concurrency."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.errors import (
    ConcurrencyConflict,
    DuplicateCommand,
    GridloopError,
    IllegalTransition,
    InvalidCommand,
    UnknownReference,
)
from engine.lifecycle import Status
from engine.parsing import parse_command
from ops.sample import BOX, GRID, district_commands

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def make_app(path: Path, clock: ManualClock) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Gridloop]:
    app = make_app(tmp_path / "events.sqlite", clock)
    setup: list[c.Command] = [
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
        c.EnrollWorker(
            command_id="w2",
            actor="admin",
            code="W2",
            worker_name="李四",
            role="grid_worker",
            unit="140827100001",
            grid=GRID,
        ),
        c.SetDuty(command_id="w1on", actor="admin", worker="W1", on_duty=True),
    ]
    for command in setup:
        app.execute(command)
    yield app
    app.close()


def report(command_id: str = "r1", **overrides: Any) -> c.ReportCase:
    fields: dict[str, Any] = dict(
        command_id=command_id,
        actor="resident:1",
        source="resident",
        category="C0101",
        grid=GRID,
        description="井盖缺失",
        lon=111.67,
        lat=35.30,
    )
    fields.update(overrides)
    return c.ReportCase(**fields)


def log_length(app: Gridloop) -> int:
    return app.recorder.max_notification_id() or 0


def test_a_repeated_command_id_returns_the_first_result_and_records_nothing(app: Gridloop) -> None:
    first = app.execute(report())
    before = log_length(app)
    again = app.execute(report())
    assert again.duplicate and not first.duplicate
    assert (again.aggregate_id, again.position) == (first.aggregate_id, first.position)
    assert log_length(app) == before


def test_a_command_id_reused_for_a_different_command_is_refused(app: Gridloop) -> None:
    app.execute(report())
    before = log_length(app)
    with pytest.raises(DuplicateCommand, match="already used for a different command"):
        app.execute(report(description="路灯不亮"))
    assert log_length(app) == before


def test_the_same_command_id_always_makes_the_same_case(tmp_path: Path, clock: ManualClock) -> None:
    assert c.ReportCase(**vars(report())).fingerprint() == report().fingerprint()


BAD_INPUT: list[tuple[str, Any, type[GridloopError], str]] = [
    ("unknown category", report(category="Z9999"), UnknownReference, "unknown category 'Z9999'; known: C0101"),
    ("unknown grid", report(grid="nowhere"), UnknownReference, "unknown grid 'nowhere'"),
    ("half a location", report(lat=None), InvalidCommand, "location: has only one coordinate"),
    ("latitude out of range", report(lat=123.0), InvalidCommand, "lat: 123.0 is not a latitude"),
    ("unknown source", report(source="pigeon"), InvalidCommand, "source: 'pigeon' is not a case source"),
    ("empty description", report(description="  "), InvalidCommand, "description: is empty"),
    ("empty command id", report(command_id=""), InvalidCommand, "command_id: is empty"),
    ("no actor", report(actor=""), InvalidCommand, "actor: is empty"),
    ("future time", report(occurred_at=T0 + timedelta(hours=3)), InvalidCommand, "is in the future"),
    ("unknown case", c.AcceptCase(command_id="x", actor="W1", case_id=UUID(int=7)), UnknownReference, "unknown case"),
    (
        "time without offset",
        report(occurred_at=datetime(2026, 11, 23, 9, 0)),
        InvalidCommand,
        "occurred_at: has no UTC",
    ),
    (
        "grid code taken",
        c.DrawGrid(
            command_id="g-again",
            actor="admin",
            code=GRID,
            grid_name="x",
            community="140827100001",
            households=10,
            boundary=BOX,
        ),
        InvalidCommand,
        f"code: grid {GRID} already exists",
    ),
    (
        "grid code of a division",
        c.DrawGrid(
            command_id="g-division",
            actor="admin",
            code="140827100001",
            grid_name="x",
            community="140827100001",
            households=10,
            boundary=BOX,
        ),
        InvalidCommand,
        "code: division 140827100001 already exists",
    ),
    (
        "division code of a grid",
        c.EstablishDivision(
            command_id="d-grid", actor="admin", code=GRID, division_name="x", level="community", parent="140827100"
        ),
        InvalidCommand,
        f"code: grid {GRID} already exists",
    ),
    (
        "boundary not GeoJSON",
        c.DrawGrid(
            command_id="g-bad",
            actor="admin",
            code="g-bad",
            grid_name="x",
            community="140827100001",
            households=10,
            boundary="not geojson at all",
        ),
        InvalidCommand,
        "boundary: is not JSON",
    ),
    (
        "boundary ring open",
        c.DrawGrid(
            command_id="g-open",
            actor="admin",
            code="g-open",
            grid_name="x",
            community="140827100001",
            households=10,
            boundary='{"type":"Polygon","coordinates":[[[1,1],[2,1],[2,2],[1,2]]]}',
        ),
        InvalidCommand,
        "boundary: has a ring that is not closed",
    ),
    (
        "worker code taken",
        c.EnrollWorker(
            command_id="w-again", actor="admin", code="W1", worker_name="x", role="grid_worker", unit="140827100001"
        ),
        InvalidCommand,
        "code: worker W1 already exists",
    ),
]


@pytest.mark.parametrize(("what", "command", "error", "words"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    app: Gridloop, what: str, command: c.Command, error: type[GridloopError], words: str
) -> None:
    before = log_length(app)
    with pytest.raises(error) as refused:
        app.execute(command)
    assert words in str(refused.value)
    assert log_length(app) == before


def test_a_step_dated_before_the_case_was_reported_is_refused(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    with pytest.raises(InvalidCommand, match="is before the case was reported"):
        app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id, occurred_at=T0 - timedelta(days=30)))


def test_the_same_instant_with_another_offset_is_the_same_command(app: Gridloop) -> None:
    first = app.execute(report(occurred_at=T0 - timedelta(hours=1)))
    shanghai = (T0 - timedelta(hours=1)).astimezone(ZoneInfo("Asia/Shanghai"))
    assert app.execute(report(occurred_at=shanghai)).duplicate
    assert app.execute(report(occurred_at=shanghai)).aggregate_id == first.aggregate_id


def test_the_default_deadline_counts_working_hours_only(app: Gridloop, clock: ManualClock) -> None:
    """C0101 (2 working hours) dispatched on Friday 17:00 Beijing time is due on Monday at 10:00."""
    friday_five = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 17:00 +08:00
    clock.set(friday_five)
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    app.execute(c.DispatchCase(command_id="dis", actor="op1", case_id=case_id, unit="chengguan", reason="r"))
    assert app.catalogue.category("C0101").time_limit_hours == 2
    assert app.case(case_id).deadline == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # Monday 10:00 +08:00


def test_a_wrong_state_is_refused_with_the_allowed_actions_and_changes_nothing(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    before = log_length(app)
    with pytest.raises(IllegalTransition, match="cannot accept a case that is reported; allowed from reported: "):
        app.execute(c.AcceptCase(command_id="a1", actor="W1", case_id=case_id))
    assert log_length(app) == before
    # The refused command id is still free: the refusal recorded nothing.
    app.execute(c.RegisterCase(command_id="a1", actor="op1", case_id=case_id))


def test_nothing_is_dispatched_to_an_off_duty_worker(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    with pytest.raises(InvalidCommand, match="W2 is off duty"):
        app.execute(c.DispatchCase(command_id="d", actor="op1", case_id=case_id, worker="W2", reason="r"))


def test_the_closed_loop_end_to_end_records_every_step(app: Gridloop, clock: ManualClock) -> None:
    case_id = app.execute(report(occurred_at=T0 - timedelta(hours=2))).aggregate_id
    steps: list[c.Command] = [
        c.RegisterCase(command_id="s1", actor="op1", case_id=case_id),
        c.DispatchCase(command_id="s2", actor="op1", case_id=case_id, worker="W1", reason="owner of the grid"),
        c.AcceptCase(command_id="s3", actor="W1", case_id=case_id),
        c.ReportHandling(command_id="s4", actor="W1", case_id=case_id, result="cover replaced", photos=["p.jpg"]),
        c.VerifyCase(command_id="s5", actor="inspector", case_id=case_id, passed=True),
        c.CallBack(command_id="s6", actor="op1", case_id=case_id, satisfaction=5, fixed=True),
    ]
    positions = []
    for step in steps:
        clock.advance(timedelta(minutes=30))
        positions.append(app.execute(step).position)
    assert positions == sorted(positions)
    order = app.case(case_id)
    assert order.status is Status.EVALUATED and order.accountable is None
    # Occurred time comes from the source (two hours before it was recorded); recorded time from the clock.
    reported = app.repository.event_store.get(case_id)
    first: Any = next(iter(reported))
    assert first.occurred_at == T0 - timedelta(hours=2)
    assert first.timestamp == T0
    # The default deadline comes from the category's time limit.
    limit = app.catalogue.category("C0101").time_limit_hours
    assert limit is not None
    assert order.deadline == T0 + timedelta(minutes=60) + timedelta(hours=limit)


def test_a_patrol_finding_becomes_a_case_in_the_same_transaction(app: Gridloop) -> None:
    patrol_id = app.execute(c.StartPatrol(command_id="p1", actor="W1", worker="W1", grid=GRID)).aggregate_id
    app.execute(c.VisitCheckpoint(command_id="p2", actor="W1", patrol_id=patrol_id, lon=111.67, lat=35.3))
    result = app.execute(
        c.ReportFinding(command_id="p3", actor="W1", patrol_id=patrol_id, category="C0101", description="cover gone")
    )
    assert result.events == ("Reported", "FindingReported")
    assert app.case(result.aggregate_id).patrol_id == patrol_id
    app.execute(c.EndPatrol(command_id="p4", actor="W1", patrol_id=patrol_id))
    with pytest.raises(IllegalTransition, match="ended"):
        app.execute(c.VisitCheckpoint(command_id="p5", actor="W1", patrol_id=patrol_id, lon=111.6, lat=35.3))


def test_concurrent_writers_on_one_case_each_succeed_once_or_are_told_why(tmp_path: Path, app: Gridloop) -> None:
    """Two processes' worth of writers: optimistic concurrency retries, nothing is lost or doubled."""
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    app.execute(c.DispatchCase(command_id="dis", actor="op1", case_id=case_id, worker="W1", reason="r"))
    app.execute(c.AcceptCase(command_id="acc", actor="W1", case_id=case_id))
    second = make_app(Path(app.env["SQLITE_DBNAME"]), app.clock)  # type: ignore[arg-type]
    errors: list[Exception] = []
    recorded: list[int] = []

    def escalate(writer: Gridloop, n: int) -> None:
        for i in range(10):
            try:
                writer.execute(
                    c.EscalateCase(command_id=f"e{n}-{i}", actor="sup", case_id=case_id, level=1, reason="x")
                )
                recorded.append(1)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=escalate, args=(w, n)) for n, w in enumerate((app, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Under contention a writer retries; if it still loses it is told so, and nothing half-done remains.
    assert all(isinstance(e, ConcurrencyConflict) for e in errors)
    assert len(recorded) + len(errors) == 20
    escalations = [e for e in app.repository.event_store.get(case_id) if type(e).__name__ == "Escalated"]
    assert len(escalations) == len(recorded)
    versions = [e.originator_version for e in app.repository.event_store.get(case_id)]
    assert versions == list(range(1, len(versions) + 1))
    second.close()


def test_parse_command_turns_text_into_typed_fields_or_says_what_is_wrong() -> None:
    case_id = uuid4()
    command = parse_command(
        "escalate", {"command_id": "x", "actor": "sup", "case_id": str(case_id), "level": "2", "reason": "late"}
    )
    assert command == c.EscalateCase(command_id="x", actor="sup", case_id=case_id, level=2, reason="late")
    with pytest.raises(InvalidCommand, match="level: 'two' is malformed"):
        parse_command(
            "escalate", {"command_id": "x", "actor": "s", "case_id": str(case_id), "level": "two", "reason": "r"}
        )
    with pytest.raises(InvalidCommand, match="reason: is missing"):
        parse_command("escalate", {"command_id": "x", "actor": "s", "case_id": str(case_id), "level": "2"})
    with pytest.raises(InvalidCommand, match="colour: is not a field of escalate"):
        parse_command("escalate", {"command_id": "x", "actor": "s", "colour": "red"})
    with pytest.raises(UnknownReference, match="unknown command 'fly'"):
        parse_command("fly", {})
    with pytest.raises(InvalidCommand, match="UTC offset"):
        parse_command(
            "request_extension",
            {"command_id": "x", "actor": "s", "case_id": str(case_id), "until": "2026-11-24T10:00", "reason": "r"},
        )


def test_a_case_reported_before_a_redraw_stays_attributed_to_its_grid(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    app.execute(
        c.DrawGrid(
            command_id="g2",
            actor="admin",
            code=GRID[:-1] + "2",
            grid_name="东峰山2",
            community="140827100001",
            households=260,
            boundary=BOX,
        )
    )
    app.execute(
        c.RedrawGrid(
            command_id="rd",
            actor="admin",
            code=GRID,
            households=260,
            boundary=BOX,
            reason="split: 520 households into two grids",
        )
    )
    assert app.grid(GRID).households == 260
    app.execute(c.RetireGrid(command_id="rt", actor="admin", code=GRID, successors=[GRID[:-1] + "2"], reason="merged"))
    assert app.case(case_id).grid == GRID
    with pytest.raises(InvalidCommand, match=r"was retired by a redraw \(expected one of 140827100001002"):
        app.execute(report(command_id="r-after"))
    with pytest.raises(IllegalTransition, match="retired"):
        app.execute(c.RedrawGrid(command_id="rd2", actor="admin", code=GRID, households=1, boundary=BOX, reason="x"))
    with pytest.raises(UnknownReference, match="unknown grid 'nowhere'"):
        app.execute(
            c.RetireGrid(command_id="rt2", actor="admin", code=GRID[:-1] + "2", successors=["nowhere"], reason="x")
        )


def test_a_repeated_command_that_could_not_run_again_still_returns_its_first_result(app: Gridloop) -> None:
    """The second "accept" would be an illegal transition; being a repeat, it is answered from the receipt."""
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    app.execute(c.DispatchCase(command_id="dis", actor="op1", case_id=case_id, worker="W1", reason="owner"))
    first = app.execute(c.AcceptCase(command_id="acc", actor="W1", case_id=case_id))
    before = log_length(app)
    again = app.execute(c.AcceptCase(command_id="acc", actor="W1", case_id=case_id))
    assert again.duplicate and again.position == first.position and log_length(app) == before
    with pytest.raises(DuplicateCommand):
        app.execute(c.AcceptCase(command_id="acc", actor="W2", case_id=case_id))
    with pytest.raises(IllegalTransition):
        app.execute(c.AcceptCase(command_id="acc-2", actor="W1", case_id=case_id))


# -- 挂账 pauses the clock ------------------------------------------------------------------------


def dispatched_case(app: Gridloop, clock: ManualClock, at: datetime) -> UUID:
    """A C0101 case (2 working hours) reported, registered and dispatched to the water company at ``at``."""
    clock.set(at)
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    app.execute(c.DispatchCase(command_id="dis", actor="op1", case_id=case_id, unit="water", reason="r"))
    return case_id


def test_a_resumed_case_has_its_deadline_moved_by_exactly_the_working_time_it_was_suspended(
    app: Gridloop, clock: ManualClock
) -> None:
    """Dispatched Friday 15:00 (due 17:00), parked Friday 16:00, taken up Monday 09:30: 2.5 working hours parked."""
    case_id = dispatched_case(app, clock, datetime(2026, 11, 27, 7, 0, tzinfo=UTC))  # Friday 15:00 +08:00
    due = app.case(case_id).deadline
    assert due == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    suspended_at, resumed_at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC), datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    clock.set(suspended_at)
    app.execute(c.SuspendCase(command_id="sus", actor="op1", case_id=case_id, reason="电力施工"))
    clock.set(resumed_at)
    result = app.execute(c.ResumeCase(command_id="res", actor="op1", case_id=case_id, note="施工结束"))
    order = app.case(case_id)
    assert order.deadline is not None
    parked = app.calendar.between(suspended_at, resumed_at)
    assert parked == timedelta(hours=2, minutes=30)
    assert app.calendar.between(due, order.deadline) == parked
    assert order.deadline == datetime(2026, 11, 30, 2, 30, tzinfo=UTC)  # Monday 10:30 +08:00
    assert result.events == ("Resumed",)
    resumed: Any = list(app.repository.event_store.get(case_id))[-1]
    assert resumed.deadline == order.deadline


def test_a_case_suspended_after_its_deadline_stays_overdue_when_resumed(app: Gridloop, clock: ManualClock) -> None:
    case_id = dispatched_case(app, clock, datetime(2026, 11, 27, 7, 0, tzinfo=UTC))
    due = app.case(case_id).deadline
    clock.set(datetime(2026, 11, 27, 9, 15, tzinfo=UTC))  # a quarter of an hour late
    app.execute(c.SuspendCase(command_id="sus", actor="op1", case_id=case_id, reason="电力施工"))
    clock.set(datetime(2026, 11, 30, 1, 30, tzinfo=UTC))
    app.execute(c.ResumeCase(command_id="res", actor="op1", case_id=case_id))
    assert app.case(case_id).deadline == due


# -- 全县通办 through the command path --------------------------------------------------------------


def test_a_tongban_request_goes_to_its_processing_unit_and_comes_back_to_be_closed(
    app: Gridloop, clock: ManualClock
) -> None:
    case_id = app.execute(
        report(category="S0303", description="申请低保", service_item="TB01", registered_in=GRID)
    ).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="desk", case_id=case_id))
    handed = app.execute(c.HandOverCase(command_id="ho", actor="desk", case_id=case_id, reason="户籍地办理"))
    order = app.case(case_id)
    days = app.intake.services.item("TB01").time_limit_days
    assert (handed.events, order.status, order.unit) == (("HandedOver",), Status.DISPATCHED, "140827100")
    assert order.deadline == app.calendar.add_days(T0, days)
    clock.advance(timedelta(hours=1))
    app.execute(c.AcceptCase(command_id="acc", actor="street:140827100", case_id=case_id))
    handled = app.execute(
        c.ReportHandling(command_id="done", actor="street:140827100", case_id=case_id, result="已审批")
    )
    assert handled.events == ("HandlingReported", "HandedOver")
    order = app.case(case_id)
    assert (order.status, order.handed_back, order.accountable) == (Status.HANDLED, True, "desk:140827100")
    app.execute(c.VerifyCase(command_id="ver", actor="desk", case_id=case_id, passed=True))
    assert app.case(case_id).status is Status.CLOSED


def test_an_ordinary_case_cannot_be_handed_over_and_nothing_is_recorded(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    before = log_length(app)
    with pytest.raises(InvalidCommand, match="is not a 全县通办 service request"):
        app.execute(c.HandOverCase(command_id="ho", actor="op1", case_id=case_id, reason="x"))
    assert log_length(app) == before


# -- 改类, 预警, 督办 by a policy -------------------------------------------------------------------


def test_a_case_is_recategorised_only_to_a_known_category(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    before = log_length(app)
    with pytest.raises(UnknownReference, match="unknown category 'Z9999'"):
        app.execute(c.RecategoriseCase(command_id="rc0", actor="op1", case_id=case_id, category="Z9999", reason="x"))
    assert log_length(app) == before
    app.execute(c.RecategoriseCase(command_id="rc1", actor="op1", case_id=case_id, category="C0102", reason="雨水篦子"))
    assert app.case(case_id).category == "C0102"


def test_a_supervisors_warning_and_escalation_name_their_policy(app: Gridloop) -> None:
    case_id = app.execute(report()).aggregate_id
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=case_id))
    app.execute(c.DispatchCase(command_id="dis", actor="op1", case_id=case_id, unit="water", reason="r"))
    due = app.case(case_id).deadline
    assert due is not None
    warning = c.WarnDeadline(
        command_id="warn-1", actor="policy:sla", case_id=case_id, step="accept", threshold=100, due=due, policy="sla",
        policy_version="1",
    )  # fmt: skip
    assert app.execute(warning).events == ("DeadlineWarned",)
    escalation = c.EscalateCase(
        command_id="escalate-1", actor="policy:ladder", case_id=case_id, level=2, reason="超期", policy="ladder",
        policy_version="1", inputs={"overdue_hours": "1"}, due=due + timedelta(hours=4),
    )  # fmt: skip
    app.execute(escalation)
    warned, escalated = list[Any](app.repository.event_store.get(case_id))[-2:]
    assert (warned.light, warned.policy) == ("red", "sla")
    assert (escalated.policy, escalated.inputs) == ("ladder", {"overdue_hours": "1"})
    with pytest.raises(InvalidCommand, match="threshold: 90 is not a warning threshold"):
        app.execute(dataclasses.replace(warning, command_id="warn-2", threshold=90))


@pytest.mark.parametrize(
    "when",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
    ],
    ids=["year 1", "year 9999"],
)
def test_a_time_out_of_any_calendar_the_engine_counts_is_refused_not_overflowed(app: Gridloop, when: datetime) -> None:
    before = log_length(app)
    with pytest.raises(InvalidCommand, match="is out of range"):
        app.execute(report(occurred_at=when))
    assert log_length(app) == before
