"""The simulated working day: 08:30–17:30 Asia/Shanghai, every day of the run."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from engine.working_time import CHINA, EVERY_DAY, WorkingCalendar

ZONE = CHINA
"""Local time of every simulated district (mainland China keeps one zone, no daylight saving)."""

WORK_START = time(8, 30)
WORK_END = time(17, 30)


def at(day: date, clock_time: time) -> datetime:
    """An aware local time on ``day``."""
    return datetime.combine(day, clock_time, tzinfo=ZONE)


def midnight(day: date) -> datetime:
    """The local midnight that starts ``day``."""
    return at(day, time(0, 0))


def local_date(when: datetime) -> date:
    """The local calendar date of an aware time."""
    return when.astimezone(ZONE).date()


def next_midnight(when: datetime) -> datetime:
    """``when`` itself if it is a local midnight, else the next one."""
    local = when.astimezone(ZONE)
    start = midnight(local.date())
    return start if local == start else midnight(local.date() + timedelta(days=1))


DESK = WorkingCalendar(zone=ZONE, start=WORK_START, end=WORK_END, workdays=EVERY_DAY)
"""The command centre's desk works every day of the week, 08:30–17:30 (a stated assumption)."""

is_working = DESK.is_working
next_working = DESK.next_working
add_working = DESK.add
