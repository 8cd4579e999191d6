"""Deadlines in working hours: nights, weekends, holidays and adjusted working days do not count."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import chinese_calendar  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.working_time import CHINA, WorkingCalendar, china_calendar

CAL = WorkingCalendar()
CN = china_calendar()

MOMENTS_2026 = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(CHINA))
WORKING_TIME = st.integers(min_value=0, max_value=60 * 9 * 15).map(lambda m: timedelta(minutes=m))


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


def test_a_calendar_needs_at_least_one_weekday_to_work() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WorkingCalendar(workdays=frozenset())


def test_working_time_between_a_friday_afternoon_and_a_monday_morning_leaves_out_the_weekend() -> None:
    assert CAL.between(local(2026, 11, 20, 16, 30), local(2026, 11, 23, 9, 30)) == timedelta(hours=2)
    assert CAL.between(local(2026, 11, 21, 10), local(2026, 11, 22, 10)) == timedelta(0)
    assert CAL.between(local(2026, 11, 23, 9, 30), local(2026, 11, 20, 16, 30)) == timedelta(0)


def test_two_working_hours_before_a_monday_morning_is_the_friday_afternoon() -> None:
    assert CAL.subtract(local(2026, 11, 23, 9, 30), timedelta(hours=2)) == local(2026, 11, 20, 16, 30)
    assert CAL.subtract(local(2026, 11, 22, 12), timedelta(hours=1)) == local(2026, 11, 20, 16, 30)
    with pytest.raises(ValueError, match="negative"):
        CAL.subtract(local(2026, 11, 23, 9, 30), timedelta(hours=-1))


def test_five_working_days_from_a_monday_morning_is_the_next_monday_at_the_same_time() -> None:
    assert CAL.add_days(local(2026, 11, 23, 10, 15), 5) == local(2026, 11, 30, 10, 15)
    assert CAL.add_days(local(2026, 11, 23, 10, 15), 0) == local(2026, 11, 23, 10, 15)


def test_working_days_from_a_friday_evening_count_from_monday_morning() -> None:
    assert CAL.add_days(local(2026, 11, 20, 20, 0), 1) == local(2026, 11, 24, 8, 30)
    with pytest.raises(ValueError, match="negative"):
        CAL.add_days(local(2026, 11, 20, 20, 0), -1)


def _named(days: dict[date, str], year: int, holiday: chinese_calendar.Holiday) -> list[date]:
    return sorted(day for day, name in days.items() if day.year == year and name == holiday.value)


def test_the_china_calendar_holds_the_packages_holidays_and_adjusted_days_for_the_years_it_covers() -> None:
    assert CN.holidays == frozenset(chinese_calendar.holidays)
    assert CN.adjusted_workdays == frozenset(chinese_calendar.workdays)
    assert CN.covered_years == {day.year for day in chinese_calendar.holidays}
    assert {2025, 2026} <= CN.covered_years
    assert china_calendar().holidays is CN.holidays  # loaded once


def test_spring_festival_2026_is_off_and_counting_resumes_the_working_day_after() -> None:
    festival = _named(chinese_calendar.holidays, 2026, chinese_calendar.Holiday.spring_festival)
    assert festival == [festival[0] + timedelta(days=n) for n in range(len(festival))]  # one unbroken break
    assert len(festival) >= 7
    assert not any(CN.is_workday(day) for day in festival)
    eve, after = festival[0] - timedelta(days=1), festival[-1] + timedelta(days=1)
    assert CN.is_workday(eve) and CN.is_workday(after)
    # Two working hours from 16:30 on the last working day before the break: one before it, one after.
    start = datetime.combine(eve, time(16, 30), tzinfo=CHINA)
    assert CN.add(start, timedelta(hours=2)) == datetime.combine(after, time(9, 30), tzinfo=CHINA)
    assert CN.between(start, datetime.combine(after, time(9, 30), tzinfo=CHINA)) == timedelta(hours=2)


def test_an_adjusted_saturday_is_a_working_day_in_the_china_calendar() -> None:
    adjusted = _named(chinese_calendar.workdays, 2026, chinese_calendar.Holiday.spring_festival)
    assert adjusted and all(day.weekday() >= 5 for day in adjusted)
    saturday = adjusted[0]
    assert CN.is_working(datetime.combine(saturday, time(10), tzinfo=CHINA))
    assert not CAL.is_working(datetime.combine(saturday, time(10), tzinfo=CHINA))
    friday_evening = datetime.combine(saturday - timedelta(days=1), time(17, 0), tzinfo=CHINA)
    assert CN.add(friday_evening, timedelta(hours=1)) == datetime.combine(saturday, time(9), tzinfo=CHINA)


def test_a_deadline_crossing_the_national_day_holiday_moves_past_it() -> None:
    national_day = _named(chinese_calendar.holidays, 2026, chinese_calendar.Holiday.national_day)
    eve, after = national_day[0] - timedelta(days=1), national_day[-1] + timedelta(days=1)
    assert CN.is_workday(eve) and CN.is_workday(after) and len(national_day) >= 7
    start = datetime.combine(eve, time(16, 30), tzinfo=CHINA)
    assert CN.add(start, timedelta(hours=2)) == datetime.combine(after, time(9, 30), tzinfo=CHINA)
    assert CN.add_days(start, 1) == datetime.combine(after, time(16, 30), tzinfo=CHINA)
    assert CN.subtract(datetime.combine(after, time(9, 30), tzinfo=CHINA), timedelta(hours=2)) == start


def test_a_date_outside_the_covered_years_is_an_ordinary_week() -> None:
    year = max(CN.covered_years) + 4
    assert year not in CN.covered_years
    new_year = date(year, 1, 1)
    monday = new_year + timedelta(days=-new_year.weekday() + 7)
    assert [CN.is_workday(monday + timedelta(days=n)) for n in range(7)] == [True] * 5 + [False] * 2
    assert CN.add(datetime.combine(monday, time(17), tzinfo=CHINA), timedelta(hours=1)) == datetime.combine(
        monday + timedelta(days=1), time(9), tzinfo=CHINA
    )


def test_the_china_calendar_keeps_the_hours_it_is_given() -> None:
    late = china_calendar(start=time(9), end=time(18))
    assert (late.start, late.end, late.holidays) == (time(9), time(18), CN.holidays)


@given(MOMENTS_2026, WORKING_TIME)
def test_the_working_time_between_a_moment_and_its_deadline_is_the_time_added(start: datetime, d: timedelta) -> None:
    assert CN.between(start, CN.add(start, d)) == d


@given(MOMENTS_2026, WORKING_TIME)
def test_subtracting_the_time_added_comes_back_to_the_first_working_moment(start: datetime, d: timedelta) -> None:
    assert CN.subtract(CN.add(start, d), d) == CN.next_working(start)


@given(MOMENTS_2026, MOMENTS_2026, MOMENTS_2026)
def test_working_time_between_adds_up_over_a_middle_moment(a: datetime, b: datetime, c: datetime) -> None:
    first, middle, last = sorted((a, b, c))
    assert CN.between(first, last) == CN.between(first, middle) + CN.between(middle, last)


@given(MOMENTS_2026, st.integers(min_value=0, max_value=30))
def test_n_working_days_later_is_a_working_moment_n_working_days_on(start: datetime, days: int) -> None:
    due = CN.add_days(start, days)
    begin = CN.next_working(start)
    assert due.time() == begin.time() and CN.is_working(due)
    assert (
        sum(CN.is_workday(begin.date() + timedelta(n)) for n in range(1, (due.date() - begin.date()).days + 1)) == days
    )
