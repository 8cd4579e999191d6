"""Working time (工作时间): deadlines counted in working hours on a working calendar."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")
"""Mainland China keeps one zone and no daylight saving."""

MONDAY_TO_FRIDAY = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


@dataclass(frozen=True)
class WorkingCalendar:
    """Which days are working days and which hours of them count; public holidays and adjusted days as data.

    Until the holiday calendar lands, ``holidays`` and ``adjusted_workdays`` are empty unless given.
    """

    zone: ZoneInfo = CHINA
    start: time = time(8, 30)
    end: time = time(17, 30)
    workdays: frozenset[int] = MONDAY_TO_FRIDAY  # date.weekday(): Monday is 0
    holidays: frozenset[date] = field(default_factory=frozenset)
    adjusted_workdays: frozenset[date] = field(default_factory=frozenset)  # 调休: a weekend day worked

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"working hours must start before they end: {self.start}–{self.end}")

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
        day += timedelta(days=1)
        while not self.is_workday(day):
            day += timedelta(days=1)
        return self._at(day, self.start)

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

    def _at(self, day: date, clock_time: time) -> datetime:
        return datetime.combine(day, clock_time, tzinfo=self.zone)
