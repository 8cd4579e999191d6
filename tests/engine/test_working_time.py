"""Deadlines in working hours: nights, weekends, holidays and adjusted working days do not count."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.working_time import CHINA, WorkingCalendar

CAL = WorkingCalendar()


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CHINA)


def test_two_working_hours_inside_a_working_day() -> None:
    assert CAL.add(local(2026, 11, 23, 9, 0), timedelta(hours=2)) == local(2026, 11, 23, 11, 0)


def test_a_friday_evening_case_runs_on_monday_morning() -> None:
    # Friday 2026-11-20 17:00 + 2 working hours: 30 min on Friday, 90 min on Monday.
    assert CAL.add(local(2026, 11, 20, 17, 0), timedelta(hours=2)) == local(2026, 11, 23, 10, 0)


def test_a_night_report_starts_counting_at_the_next_working_morning() -> None:
    assert CAL.add(local(2026, 11, 24, 22, 0), timedelta(hours=1)) == local(2026, 11, 25, 9, 30)


def test_five_working_days_are_forty_five_working_hours_of_this_calendar_later() -> None:
    start = local(2026, 11, 23, 8, 30)  # Monday
    assert CAL.add(start, timedelta(hours=9 * 5)) == local(2026, 11, 27, 17, 30)


def test_holidays_are_skipped_and_an_adjusted_saturday_is_worked() -> None:
    calendar = WorkingCalendar.of(holidays=[date(2026, 10, 1), date(2026, 10, 2)], adjusted=[date(2026, 10, 10)])
    assert calendar.next_working(local(2026, 9, 30, 18, 0)) == local(2026, 10, 5, 8, 30)
    assert calendar.is_working(local(2026, 10, 10, 10, 0))
    assert not CAL.is_working(local(2026, 10, 10, 10, 0))


def test_a_calendar_needs_hours_that_start_before_they_end() -> None:
    with pytest.raises(ValueError, match="start before they end"):
        WorkingCalendar(start=time(18), end=time(9))


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(CHINA)),
    st.integers(min_value=0, max_value=60 * 24 * 10),
    st.integers(min_value=0, max_value=60 * 24 * 10),
)
def test_working_time_adds_up_and_never_lands_outside_working_hours(start: datetime, a: int, b: int) -> None:
    first = CAL.add(start, timedelta(minutes=a))
    both = CAL.add(first, timedelta(minutes=b))
    assert both == CAL.add(start, timedelta(minutes=a + b)) or not CAL.is_working(first)
    assert both >= start
    landed = both.astimezone(CHINA)
    assert CAL.is_workday(landed.date()) and CAL.start <= landed.time() <= CAL.end
