"""Working time (工作时间): deadlines counted in working hours on a working calendar."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped]

CHINA = ZoneInfo("Asia/Shanghai")
"""Mainland China keeps one zone and no daylight saving."""

MONDAY_TO_FRIDAY = frozenset(range(5))
EVERY_DAY = frozenset(range(7))

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class WorkingCalendar:
    """Which days are working days and which hours of them count; public holidays and adjusted days as data.

    ``holidays`` and ``adjusted_workdays`` are empty unless given (``china_calendar()`` gives mainland China's).
    ``covered_years`` are the years whose holidays are known; a date outside them is an ordinary week of
    ``workdays`` (no public holiday, no adjusted working day).
    """

    zone: ZoneInfo = CHINA
    start: time = time(8, 30)
    end: time = time(17, 30)
    workdays: frozenset[int] = MONDAY_TO_FRIDAY  # date.weekday(): Monday is 0
    holidays: frozenset[date] = field(default_factory=frozenset)
    adjusted_workdays: frozenset[date] = field(default_factory=frozenset)  # 调休: a weekend day worked
    covered_years: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"working hours must start before they end: {self.start}–{self.end}")
        if not self.workdays or not self.workdays <= EVERY_DAY:
            raise ValueError(
                f"workdays must be weekday numbers 0 (Monday) to 6 (Sunday), at least one: {self.workdays}"
            )

    @classmethod
    def of(
        cls, *, every_day: bool = False, holidays: Iterable[date] = (), adjusted: Iterable[date] = ()
    ) -> WorkingCalendar:
        return cls(
            workdays=EVERY_DAY if every_day else MONDAY_TO_FRIDAY,
            holidays=frozenset(holidays),
            adjusted_workdays=frozenset(adjusted),
        )

    def is_workday(self, day: date) -> bool:
        if day in self.adjusted_workdays:
            return True
        return day.weekday() in self.workdays and day not in self.holidays

    def is_working(self, when: datetime) -> bool:
        """Within working hours of a working day (start inclusive, end exclusive)."""
        local = when.astimezone(self.zone)
        return self.is_workday(local.date()) and self.start <= local.time() < self.end

    def next_working(self, when: datetime) -> datetime:
        """``when`` if it is working time, else the start of the next working period (local time)."""
        local = when.astimezone(self.zone)
        day = local.date()
        if self.is_workday(day) and local.time() < self.end:
            return max(local, self._at(day, self.start))
        return self._at(self._workday_after(day), self.start)

    def add(self, when: datetime, working: timedelta) -> datetime:
        """The moment ``working`` time after ``when``, counting only working hours (a deadline)."""
        if working < timedelta(0):
            raise ValueError(f"cannot add negative working time {working}")
        moment = self.next_working(when)
        remaining = working
        while True:
            room = self._at(moment.date(), self.end) - moment
            if remaining <= room:
                return moment + remaining
            remaining -= room
            moment = self.next_working(self._at(moment.date(), self.end))

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The working time from ``start`` to ``end``; none when ``end`` is not after ``start``."""
        if end <= start:
            return timedelta(0)
        first, last = start.astimezone(self.zone), end.astimezone(self.zone)
        total = timedelta(0)
        day = first.date()
        while day <= last.date():
            if self.is_workday(day):
                opens = max(first, self._at(day, self.start))
                closes = min(last, self._at(day, self.end))
                if closes > opens:
                    total += closes - opens
            day += _DAY
        return total

    def subtract(self, when: datetime, working: timedelta) -> datetime:
        """The latest moment ``working`` time before ``when``: ``subtract(add(t, d), d) == next_working(t)``."""
        if working < timedelta(0):
            raise ValueError(f"cannot subtract negative working time {working}")
        moment = self._last_working(when)
        remaining = working
        while True:
            room = moment - self._at(moment.date(), self.start)
            if remaining <= room:
                return moment - remaining
            remaining -= room
            moment = self._at(self._workday_before(moment.date()), self.end)

    def add_days(self, when: datetime, days: int) -> datetime:
        """``days`` working days after ``when``: the same local time of day on the ``days``-th next working day.

        A ``when`` outside working hours counts from the next working moment: a report on Friday evening plus
        one working day is due on Tuesday at the start of work (counted from Monday's start), not on Monday.
        Zero days is ``next_working(when)``.
        """
        if days < 0:
            raise ValueError(f"cannot add a negative number of working days: {days}")
        moment = self.next_working(when)
        day = moment.date()
        for _ in range(days):
            day = self._workday_after(day)
        return self._at(day, moment.time())

    def _last_working(self, when: datetime) -> datetime:
        """``when`` if it lies within a working day's hours (both ends included), else the end of the last one."""
        local = when.astimezone(self.zone)
        day = local.date()
        if self.is_workday(day) and local.time() >= self.start:
            return min(local, self._at(day, self.end))
        return self._at(self._workday_before(day), self.end)

    def _workday_after(self, day: date) -> date:
        day += _DAY
        while not self.is_workday(day):
            day += _DAY
        return day

    def _workday_before(self, day: date) -> date:
        day -= _DAY
        while not self.is_workday(day):
            day -= _DAY
        return day

    def _at(self, day: date, clock_time: time) -> datetime:
        return datetime.combine(day, clock_time, tzinfo=self.zone)


@functools.cache
def _china_days() -> tuple[frozenset[date], frozenset[date], frozenset[int]]:
    """Public holidays, adjusted working days and the years they cover, as the chinese_calendar package has them."""
    holidays = frozenset(chinese_calendar.holidays)
    adjusted = frozenset(chinese_calendar.workdays)
    return holidays, adjusted, frozenset(day.year for day in holidays | adjusted)


def china_calendar(*, start: time = time(8, 30), end: time = time(17, 30)) -> WorkingCalendar:
    """Mainland China's working calendar: Monday to Friday, less 法定节假日 and 调休 days off, plus 调休上班 days.

    The days come from the maintained ``chinese_calendar`` package, which knows the State Council's schedule
    for ``covered_years`` (each year is published in the previous November). A date outside those years is
    treated as an ordinary Monday-to-Friday week: upgrade the package when the next year's schedule is out.
    """
    holidays, adjusted, years = _china_days()
    return WorkingCalendar(start=start, end=end, holidays=holidays, adjusted_workdays=adjusted, covered_years=years)
