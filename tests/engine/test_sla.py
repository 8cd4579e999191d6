"""SLA clocks (时限): working time toward a limit, paused by suspension (挂账), moved by extension (延期)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.sla import LIGHTS, THRESHOLDS, Timer, crossed
from engine.working_time import CHINA, WorkingCalendar, china_calendar

CAL = WorkingCalendar()
CN = china_calendar()


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CHINA)


MONDAY_9 = local(2026, 11, 23, 9)


def test_a_new_timer_is_due_after_its_limit_in_working_time() -> None:
    timer = Timer.start(CAL, local(2026, 11, 20, 16, 30), timedelta(hours=2))  # Friday afternoon
    assert timer.due(CAL) == local(2026, 11, 23, 9, 30)
    assert timer.elapsed(CAL, local(2026, 11, 22, 12)) == timedelta(hours=1)
    assert Timer.until(CAL, MONDAY_9, local(2026, 11, 24, 9)).limit == timedelta(hours=9)
    assert Timer.until(CAL, MONDAY_9, local(2026, 11, 24, 9)).due(CAL) == local(2026, 11, 24, 9)


def test_a_suspension_moves_the_due_by_exactly_the_suspended_working_time() -> None:
    timer = Timer.start(CAL, MONDAY_9, timedelta(hours=4))
    before = timer.due(CAL)
    suspended = timer.pause(CAL, local(2026, 11, 23, 10))
    assert suspended.due(CAL) is None
    assert suspended.elapsed(CAL, local(2026, 11, 24, 16)) == timedelta(hours=1)
    resumed = suspended.resume(local(2026, 11, 24, 11))
    after = resumed.due(CAL)
    assert before is not None and after is not None
    assert (before, after) == (local(2026, 11, 23, 13), local(2026, 11, 24, 14))
    assert CAL.between(before, after) == CAL.between(local(2026, 11, 23, 10), local(2026, 11, 24, 11))


def test_a_timer_paused_across_the_national_day_holiday_counts_none_of_it() -> None:
    # 2026-09-30 is the last working day before the National Day break (10-01 to 10-07 in chinese_calendar).
    timer = Timer.start(CN, local(2026, 9, 30, 14), timedelta(hours=8))
    assert timer.due(CN) == local(2026, 10, 8, 13)
    suspended = timer.pause(CN, local(2026, 9, 30, 16))
    assert suspended.elapsed(CN, local(2026, 10, 4, 12)) == timedelta(hours=2)
    assert crossed(suspended, CN, local(2026, 10, 9, 12)) == ()
    resumed = suspended.resume(local(2026, 10, 8, 10))
    assert resumed.due(CN) == local(2026, 10, 8, 16)  # 3 suspended working hours: 16:00-17:30 and 08:30-10:00


def test_a_timer_paused_over_a_weekend_keeps_its_count() -> None:
    timer = Timer.start(CAL, local(2026, 11, 20, 9), timedelta(hours=9)).pause(CAL, local(2026, 11, 20, 13))
    resumed = timer.resume(local(2026, 11, 23, 8, 30))
    assert resumed.elapsed(CAL, local(2026, 11, 23, 8, 30)) == timedelta(hours=4)
    assert resumed.due(CAL) == local(2026, 11, 23, 13, 30)


def test_an_extension_moves_the_due_to_the_moment_granted() -> None:
    timer = Timer.start(CAL, MONDAY_9, timedelta(hours=4))
    extended = timer.extend_to(CAL, local(2026, 11, 25, 12), at=local(2026, 11, 23, 12))
    assert extended.due(CAL) == local(2026, 11, 25, 12)
    assert crossed(extended, CAL, local(2026, 11, 23, 13)) == ()
    assert extended.started_at == MONDAY_9


def test_an_extension_granted_while_suspended_holds_if_the_case_resumes_then() -> None:
    paused = Timer.start(CAL, MONDAY_9, timedelta(hours=4)).pause(CAL, local(2026, 11, 23, 10))
    extended = paused.extend_to(CAL, local(2026, 11, 25, 12), at=local(2026, 11, 24, 9))
    assert extended.resume(local(2026, 11, 24, 9)).due(CAL) == local(2026, 11, 25, 12)
    assert extended.resume(local(2026, 11, 24, 10)).due(CAL) == local(2026, 11, 25, 13)


def test_a_due_moved_to_a_moment_already_past_leaves_the_timer_overdue() -> None:
    timer = Timer.start(CAL, MONDAY_9, timedelta(hours=4))
    moved = timer.extend_to(CAL, local(2026, 11, 23, 11), at=local(2026, 11, 23, 12))
    assert moved.due(CAL) == local(2026, 11, 23, 11)
    assert crossed(moved, CAL, local(2026, 11, 23, 12)) == THRESHOLDS
    resumed = timer.pause(CAL, local(2026, 11, 23, 12)).resume(local(2026, 11, 24, 9))
    before_resume = resumed.extend_to(CAL, local(2026, 11, 23, 16), at=local(2026, 11, 24, 10))
    assert before_resume.due(CAL) == local(2026, 11, 24, 9)  # before the running segment: read as its start
    assert crossed(before_resume, CAL, local(2026, 11, 24, 9)) == THRESHOLDS


def test_the_thresholds_are_crossed_in_order_reminder_warning_then_overdue() -> None:
    timer = Timer.start(CAL, MONDAY_9, timedelta(hours=4))
    assert crossed(timer, CAL, local(2026, 11, 23, 10, 59)) == ()
    assert crossed(timer, CAL, local(2026, 11, 23, 11)) == (50,)
    assert crossed(timer, CAL, local(2026, 11, 23, 12)) == (50, 75)
    assert crossed(timer, CAL, local(2026, 11, 23, 13)) == (50, 75, 100)
    assert [timer.moment_of(CAL, percent / 100) for percent in THRESHOLDS] == [
        local(2026, 11, 23, 11),
        local(2026, 11, 23, 12),
        local(2026, 11, 23, 13),
    ]
    assert [LIGHTS[percent] for percent in THRESHOLDS] == ["green", "yellow", "red"]
    assert timer.fraction(CAL, local(2026, 11, 23, 15)) == 1.5


def test_a_paused_timer_reports_the_thresholds_it_had_reached() -> None:
    paused = Timer.start(CAL, MONDAY_9, timedelta(hours=4)).pause(CAL, local(2026, 11, 23, 11, 30))
    assert crossed(paused, CAL, local(2026, 12, 31, 12)) == (50,)
    assert paused.moment_of(CAL, 0.5) is None


def test_a_moment_reached_before_the_last_resume_reads_as_the_resume() -> None:
    timer = Timer.start(CAL, MONDAY_9, timedelta(hours=4)).pause(CAL, local(2026, 11, 23, 11, 30))
    resumed = timer.resume(local(2026, 11, 24, 9))
    assert resumed.moment_of(CAL, 0.5) == local(2026, 11, 24, 9)
    assert resumed.moment_of(CAL, 0.75) == local(2026, 11, 24, 9, 30)


def test_a_due_at_or_before_the_start_is_a_zero_limit_overdue_at_once() -> None:
    timer = Timer.until(CAL, MONDAY_9, local(2026, 11, 20, 12))
    assert timer.limit == timedelta(0)
    assert timer.due(CAL) == MONDAY_9
    assert timer.fraction(CAL, MONDAY_9) == 1.0
    assert crossed(timer, CAL, MONDAY_9) == THRESHOLDS


def test_a_timer_refuses_a_negative_limit_a_second_pause_and_a_resume_while_running() -> None:
    with pytest.raises(ValueError, match="negative"):
        Timer.start(CAL, MONDAY_9, timedelta(hours=-1))
    timer = Timer.start(CAL, MONDAY_9, timedelta(hours=4))
    with pytest.raises(ValueError, match="running"):
        timer.resume(MONDAY_9)
    with pytest.raises(ValueError, match="already paused"):
        timer.pause(CAL, MONDAY_9).pause(CAL, MONDAY_9)


MOMENTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 1), timezones=st.just(CHINA))
LIMITS = st.integers(min_value=1, max_value=9 * 60 * 10).map(lambda m: timedelta(minutes=m))


@given(MOMENTS, LIMITS, st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=9 * 60 * 20))
def test_any_suspension_before_the_due_moves_it_by_the_suspended_working_time(
    start: datetime, limit: timedelta, percent: int, minutes: int
) -> None:
    timer = Timer.start(CN, start, limit)
    before = timer.due(CN)
    assert before is not None
    pause_at = CN.add(start, limit * percent / 100)
    resume_at = CN.add(pause_at, timedelta(minutes=minutes))
    after = timer.pause(CN, pause_at).resume(resume_at).due(CN)
    assert after is not None
    assert CN.between(before, after) == CN.between(pause_at, resume_at)


@given(MOMENTS, LIMITS, st.sampled_from(THRESHOLDS))
def test_a_threshold_is_crossed_at_the_moment_it_is_due_and_not_a_microsecond_before(
    start: datetime, limit: timedelta, percent: int
) -> None:
    timer = Timer.start(CN, start, limit)
    moment = timer.moment_of(CN, percent / 100)
    assert moment is not None
    assert percent in crossed(timer, CN, moment)
    assert percent not in crossed(timer, CN, moment - timedelta(microseconds=1))
    assert crossed(timer, CN, moment) == THRESHOLDS[: THRESHOLDS.index(percent) + 1]


def test_the_china_calendar_and_the_timer_agree_on_a_worked_saturday() -> None:
    saturday = date(2026, 2, 28)  # 调休上班 in chinese_calendar's 2026 schedule
    assert CN.is_workday(saturday)
    friday_evening = datetime.combine(saturday - timedelta(days=1), time(17), tzinfo=CHINA)
    assert Timer.start(CN, friday_evening, timedelta(hours=1)).due(CN) == local(2026, 2, 28, 9)
