"""The simulated working day: 08:30–17:30 Asia/Shanghai, every day of the run."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Asia/Shanghai")
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


def is_working(when: datetime) -> bool:
    """Within the desk's working hours (start inclusive, end exclusive)."""
    local = when.astimezone(ZONE).timetz().replace(tzinfo=None)
    return WORK_START <= local < WORK_END


def next_working(when: datetime) -> datetime:
    """``when`` if it falls in working hours, else the start of the next working period."""
    local = when.astimezone(ZONE)
    day = local.date()
    if local < at(day, WORK_START):
        return at(day, WORK_START)
    if local >= at(day, WORK_END):
        return at(day + timedelta(days=1), WORK_START)
    return local


def add_working(when: datetime, delay: timedelta) -> datetime:
    """``delay`` of working time after ``when``: the clock of a desk that stops at night."""
    moment = next_working(when)
    remaining = delay
    while True:
        room = at(moment.date(), WORK_END) - moment
        if remaining < room:
            return moment + remaining
        remaining -= room
        moment = at(moment.date() + timedelta(days=1), WORK_START)
