"""A case's trace (痕迹): every step judged — who, when, what, why, state, accountable party, time, deadline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from engine import commands as c
from engine.clock import ManualClock
from engine.errors import InvalidCommand, UnknownReference
from engine.lifecycle import EVENT_STATUS, Status
from projections.audit.trace import ACTIONS, LATE_UPLOAD, CaseTrace, Step, action_of, case_trace
from projections.queries import find_case
from projections.store import ViewStore
from tests.projections.conftest import DISTRICT, T0, Played, Story, event_store, follow

LOCAL = ZoneInfo("Asia/Shanghai")
DESK = f"desk:{DISTRICT}"
HOUR = timedelta(hours=1)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November or December 2026, local time (2026-11-23 is a Monday)."""
    month, day = (11, day) if day >= 23 else (12, day)
    return datetime(2026, month, day, hour, minute, tzinfo=LOCAL)


DEADLINE = local(24, 12)  # Tuesday noon: 9 working hours after the dispatch on Monday at noon
EXTENDED = local(27, 12)  # Friday noon
RESUMED_DEADLINE = local(3, 12)  # the 25 working hours left at the suspension, counted from the resumption


@dataclass
class Traced:
    """A week of one case, and the views that followed it."""

    story: Story
    store: ViewStore
    case_id: UUID

    def trace(self, now: datetime | None = None) -> CaseTrace:
        return case_trace(self.store, str(self.case_id), self.story.app.calendar, now=now)


def at(story: Story, when: datetime) -> None:
    """The next command happens at ``when`` (Story.do moves the clock five minutes on first)."""
    story.clock.set(when.astimezone(T0.tzinfo) - timedelta(minutes=5))


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """Reported on Monday, dispatched by a policy, warned, extended, suspended over a weekend, handled late (and
    uploaded two hours after that), closed the next Friday."""
    path = tmp_path_factory.mktemp("trace")
    clock = ManualClock(T0)
    app = event_store(path / "events.sqlite", clock)
    store = ViewStore.open(path / "views.sqlite")
    story = Story(app, clock).world()
    at(story, local(23, 11))
    case = story.report("week", description="路灯不亮")
    at(story, local(23, 11, 30))
    story.on("week", c.RegisterCase, actor=DESK, note="核实属实")
    at(story, local(23, 12))
    story.on(
        "week", c.DispatchCase, actor="policy:balanced", worker="W1", deadline=DEADLINE, reason="网格员负载最低",
        policy="balanced", policy_version="2", inputs={"open_cases": "3", "distance_m": "250"},
    )  # fmt: skip
    at(story, local(23, 13))
    story.on("week", c.AcceptCase, actor="W1")
    at(story, local(24, 10))
    story.on(
        "week", c.WarnDeadline, actor="policy:supervisor", step="handle", threshold=75, due=DEADLINE,
        policy="supervisor", policy_version="1",
    )  # fmt: skip
    at(story, local(24, 11))
    story.on("week", c.RequestExtension, actor="W1", until=EXTENDED, reason="等待配件")
    at(story, local(24, 11, 30))
    story.on("week", c.GrantExtension, actor=DESK, note="同意延期")
    at(story, local(24, 14))
    story.on("week", c.SuspendCase, reason="等待资金")  # the test desk's operator, op:desk1
    at(story, local(30, 14))
    story.on("week", c.ResumeCase, actor=DESK, note="资金到位")
    at(story, local(4, 12))  # seen at ten, uploaded at noon
    story.on("week", c.ReportHandling, actor="W1", result="已更换灯泡", photos=["after.jpg"], occurred_at=local(4, 10))
    at(story, local(4, 13))
    story.on("week", c.VerifyCase, actor=DESK, passed=True, note="核查通过")
    follow(app, store).run_until_caught_up()
    yield Traced(story, store, case)
    store.close()
    app.close()


def steps_by_type(trace: CaseTrace) -> dict[str, Step]:
    return {step.event_type: step for step in trace.steps}


def test_every_step_says_what_it_did_and_the_state_before_and_after(traced: Traced) -> None:
    steps = traced.trace().steps
    assert [(s.action, s.action_name, s.state_before, s.state_after) for s in steps] == [
        ("report", "上报", None, Status.REPORTED),
        ("register", "立案", Status.REPORTED, Status.REGISTERED),
        ("dispatch", "派遣", Status.REGISTERED, Status.DISPATCHED),
        ("accept", "签收", Status.DISPATCHED, Status.ACCEPTED),
        ("warn_deadline", "预警催办", Status.ACCEPTED, Status.ACCEPTED),
        ("request_extension", "申请延期", Status.ACCEPTED, Status.EXTENSION_REQUESTED),
        ("grant_extension", "批准延期", Status.EXTENSION_REQUESTED, Status.ACCEPTED),
        ("suspend", "挂账", Status.ACCEPTED, Status.SUSPENDED),
        ("resume", "恢复", Status.SUSPENDED, Status.ACCEPTED),
        ("report_handling", "处置反馈", Status.ACCEPTED, Status.HANDLED),
        ("verify", "核查", Status.HANDLED, Status.CLOSED),
    ]
    assert [s.version for s in steps] == list(range(1, 12))


def test_each_step_names_who_took_it_and_of_what_kind(traced: Traced) -> None:
    steps = traced.trace().steps
    assert [(s.actor.id, s.actor.kind) for s in steps] == [
        ("resident:13800000000", "resident"),
        (DESK, "desk"),
        ("policy:balanced", "policy"),
        ("W1", "worker"),
        ("policy:supervisor", "policy"),
        ("W1", "worker"),
        (DESK, "desk"),
        ("op:desk1", "op"),
        (DESK, "desk"),
        ("W1", "worker"),
        (DESK, "desk"),
    ]


def test_a_policy_decision_names_the_policy_its_version_its_reason_and_its_inputs(traced: Traced) -> None:
    steps = steps_by_type(traced.trace())
    dispatched, warned = steps["Dispatched"], steps["DeadlineWarned"]
    assert (dispatched.actor.policy, dispatched.actor.policy_version) == ("balanced", "2")
    assert dispatched.why == "网格员负载最低"
    assert dispatched.details["inputs"] == {"open_cases": "3", "distance_m": "250"}
    assert (warned.actor.policy, warned.actor.policy_version) == ("supervisor", "1")
    assert steps["Accepted"].actor.policy == ""


def test_each_step_says_why_in_the_logs_words(traced: Traced) -> None:
    steps = steps_by_type(traced.trace())
    assert steps["Registered"].why == "核实属实"
    assert steps["ExtensionRequested"].why == "等待配件"
    assert steps["Suspended"].why == "等待资金"
    assert steps["HandlingReported"].why == "已更换灯泡"
    assert steps["HandlingReported"].details["photos"] == ["after.jpg"]
    assert steps["Verified"].why == "核查通过" and steps["Verified"].details["passed"] is True


def test_who_was_accountable_after_each_step_follows_the_lifecycle_rule(traced: Traced) -> None:
    steps = traced.trace().steps
    desk, worker = f"desk:{DISTRICT}", "worker:W1"
    assert [s.accountable for s in steps] == [
        desk,
        desk,
        worker,
        worker,
        worker,
        worker,
        worker,
        worker,
        worker,
        desk,
        None,
    ]
    suspended = steps_by_type(traced.trace())["Suspended"]
    assert suspended.state_after is Status.SUSPENDED and suspended.accountable == worker  # the party stays


def test_a_late_upload_shows_both_times_and_is_flagged(traced: Traced) -> None:
    steps = traced.trace().steps
    handled = steps_by_type(traced.trace())["HandlingReported"]
    assert handled.occurred_at == local(4, 10) and handled.recorded_at == local(4, 12)
    assert handled.late_upload and handled.recorded_at - handled.occurred_at >= LATE_UPLOAD
    assert [s.event_type for s in steps if s.late_upload] == ["HandlingReported"]


def test_time_in_state_counts_elapsed_and_working_time_across_a_weekend(traced: Traced) -> None:
    steps = steps_by_type(traced.trace())
    assert (steps["Dispatched"].elapsed, steps["Dispatched"].working) == (HOUR, HOUR)
    # Monday 13:00 to Tuesday 10:00: 21 hours, of which 4.5 on Monday and 1.5 on Tuesday are working hours.
    assert (steps["Accepted"].elapsed, steps["Accepted"].working) == (21 * HOUR, 6 * HOUR)
    # Tuesday 14:00 to the next Monday 14:00: six days; Tue 3.5 + Wed, Thu, Fri 9 each + Mon 5.5 working hours.
    suspended = steps["Suspended"]
    assert (suspended.elapsed, suspended.working) == (timedelta(days=6), 36 * HOUR)
    # Reported late: from when the handling happened (Friday 10:00) to the verification at 13:00.
    assert steps["HandlingReported"].elapsed == 3 * HOUR
    assert steps["Verified"].elapsed is None  # closed: no time is counted after the last step


def test_each_step_is_judged_on_time_yellow_or_overdue_against_the_deadline_in_force(traced: Traced) -> None:
    steps = traced.trace().steps
    assert [(s.event_type, s.deadline_status) for s in steps] == [
        ("Reported", ""),
        ("Registered", ""),
        ("Dispatched", ""),  # no deadline before it: it sets one
        ("Accepted", "on_time"),  # 1 of 9 working hours used
        ("DeadlineWarned", "yellow"),  # 7 of 9: past three quarters
        ("ExtensionRequested", "yellow"),  # 8 of 9
        ("ExtensionGranted", "yellow"),  # judged against the deadline it moves
        ("Suspended", "on_time"),  # 11 of the 36 the extension allows
        ("Resumed", "on_time"),  # Friday's deadline passed meanwhile, but the clock was paused
        ("HandlingReported", "overdue"),  # Friday 10:00, after the resumed deadline (Thursday noon)
        ("Verified", ""),
    ]
    by_type = steps_by_type(traced.trace())
    assert by_type["Accepted"].limit_used == pytest.approx(1 / 9)
    assert by_type["DeadlineWarned"].limit_used == pytest.approx(7 / 9)
    assert by_type["Suspended"].limit_used == pytest.approx(11 / 36)
    assert by_type["Resumed"].clock_paused and not by_type["Suspended"].clock_paused
    assert (by_type["HandlingReported"].limit_used or 0) > 1


def test_the_deadline_is_set_by_the_dispatch_and_moved_by_the_extension_and_the_resumption(traced: Traced) -> None:
    steps = traced.trace().steps
    assert [(s.event_type, s.deadline, s.deadline_after) for s in steps[2:]] == [
        ("Dispatched", None, DEADLINE),
        ("Accepted", DEADLINE, DEADLINE),
        ("DeadlineWarned", DEADLINE, DEADLINE),
        ("ExtensionRequested", DEADLINE, DEADLINE),
        ("ExtensionGranted", DEADLINE, EXTENDED),
        ("Suspended", EXTENDED, EXTENDED),
        ("Resumed", EXTENDED, RESUMED_DEADLINE),
        ("HandlingReported", RESUMED_DEADLINE, None),  # handled: the assignee's deadline no longer runs
        ("Verified", None, None),
    ]
    assert traced.story.app.case(traced.case_id).deadline == RESUMED_DEADLINE  # as the aggregate moved it


def test_the_totals_sum_the_time_in_each_state_with_its_accountable_parties(traced: Traced) -> None:
    trace = traced.trace()
    totals = {t.state: t for t in trace.totals}
    assert list(totals) == [
        Status.REPORTED, Status.REGISTERED, Status.DISPATCHED, Status.ACCEPTED, Status.EXTENSION_REQUESTED,
        Status.SUSPENDED, Status.HANDLED, Status.CLOSED,
    ]  # fmt: skip
    accepted = totals[Status.ACCEPTED]
    assert accepted.entries == 3  # signed for, extension granted, resumed; the warning stays in the same stretch
    stretches = [s for s in trace.steps if s.state_after is Status.ACCEPTED]
    assert accepted.elapsed == sum((s.elapsed or timedelta(0) for s in stretches), timedelta(0))
    assert accepted.working == sum((s.working or timedelta(0) for s in stretches), timedelta(0))
    assert (totals[Status.SUSPENDED].elapsed, totals[Status.SUSPENDED].accountable) == (
        timedelta(days=6),
        ("worker:W1",),
    )
    assert totals[Status.REGISTERED].accountable == (f"desk:{DISTRICT}",)
    assert totals[Status.CLOSED].accountable == () and not any(t.ongoing for t in trace.totals)


def test_the_trace_agrees_with_the_board(traced: Traced) -> None:
    trace = traced.trace()
    row = find_case(traced.store, str(traced.case_id))
    assert (trace.status, trace.accountable, trace.closed_at) == (row.status, row.accountable, row.closed_at)
    assert trace.position == row.position == trace.steps[-1].position
    assert trace.description == "路灯不亮" and trace.short_id == row.short_id


def test_an_open_cases_last_state_is_counted_up_to_now(played: Played) -> None:
    story, store = played.story, played.store
    case_id = story.cases["escalated"]
    last_step_at = case_trace(store, str(case_id), story.app.calendar).steps[-1].occurred_at
    without = case_trace(store, str(case_id), story.app.calendar)
    assert without.steps[-1].elapsed is None and without.deadline_status == "" and without.as_of is None
    now = last_step_at + 2 * HOUR
    trace = case_trace(store, str(case_id), story.app.calendar, now=now)
    assert trace.steps[-1].elapsed == 2 * HOUR
    assert trace.totals[-1].state is Status.DISPATCHED and trace.totals[-1].ongoing
    assert trace.deadline_status == "overdue" and trace.as_of == now  # dispatched with an hour, escalated since


def test_a_return_hands_the_case_back_to_the_desk_until_the_next_dispatch(played: Played) -> None:
    story, store = played.story, played.store
    trace = case_trace(store, str(story.cases["returned"]), story.app.calendar)
    assert [(s.event_type, s.accountable, s.actor.kind) for s in trace.steps[2:]] == [
        ("Dispatched", "unit:chengguan", "op"),
        ("Returned", "desk:140827", "unit"),
        ("Dispatched", "worker:W2", "op"),  # both a unit and a worker: the worker is accountable
        ("Accepted", "worker:W2", "worker"),
    ]
    returned = trace.steps[3]
    assert returned.deadline is not None and returned.deadline_after is None


def test_a_case_is_found_by_its_short_id(traced: Traced) -> None:
    short = traced.case_id.hex[:8]
    assert case_trace(traced.store, short, traced.story.app.calendar).case_id == traced.case_id


def test_an_unknown_case_is_refused_as_an_unknown_reference(traced: Traced) -> None:
    with pytest.raises(UnknownReference, match="unknown case 'ffffffffffff'"):
        case_trace(traced.store, "ffffffffffff", traced.story.app.calendar)
    with pytest.raises(InvalidCommand, match="is not a case id"):
        case_trace(traced.store, "not-a-case", traced.story.app.calendar)


def test_a_prefix_of_several_cases_is_refused_naming_them(played: Played) -> None:
    story, store = played.story, played.store
    first_digits = [case_id.hex[0] for case_id in story.cases.values()]
    shared = next((d for d in first_digits if first_digits.count(d) > 1), None)
    if shared is None:  # the story's ids are name-based (fixed), so this never changes between runs
        pytest.fail("the story has no two cases whose ids begin alike")
    with pytest.raises(InvalidCommand, match="matches more than one case") as refused:
        case_trace(store, shared, story.app.calendar)
    named = [case_id.hex[:8] for case_id in story.cases.values() if case_id.hex[0] == shared]
    assert all(short in str(refused.value) for short in named)


def test_every_work_order_event_is_an_action_with_a_chinese_name() -> None:
    assert set(ACTIONS) == set(EVENT_STATUS)  # the lifecycle's table of where each event leads
    assert all(action_of(name)[1] for name in EVENT_STATUS)
