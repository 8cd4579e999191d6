"""SLA clocks (时限): working time counted toward a limit, paused while suspended, moved by extensions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction

from engine.working_time import WorkingCalendar

THRESHOLDS: tuple[int, ...] = (50, 75, 100)
"""Percent of the limit: 50 催办 reminder, 75 临期 warning, 100 超期 overdue."""
LIGHTS: dict[int, str] = {50: "green", 75: "yellow", 100: "red"}
"""The board's light for each threshold (light green, light yellow, light red)."""

_NONE = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Timer:
    """An SLA clock (时限): counts working time to a limit; pauses while suspended (挂账); moves on extension (延期).

    ``used`` is the working time counted before ``anchor``, the moment the current running segment began; while
    ``paused`` nothing is counted and ``anchor`` is where the pause began. Every method returns a new timer.
    """

    started_at: datetime
    limit: timedelta
    anchor: datetime
    used: timedelta
    paused: bool = False

    @classmethod
    def start(cls, calendar: WorkingCalendar, at: datetime, limit: timedelta) -> Timer:
        """A running timer of ``limit`` working time from ``at``, counted from the next working moment."""
        if limit < _NONE:
            raise ValueError(f"an SLA limit cannot be negative: {limit}")
        return cls(started_at=at, limit=limit, anchor=calendar.next_working(at), used=_NONE)

    @classmethod
    def until(cls, calendar: WorkingCalendar, at: datetime, due: datetime) -> Timer:
        """A running timer from ``at`` due at ``due``; a ``due`` at or before ``at`` gives a zero limit (due at once).

        A ``due`` outside working hours is read as the end of the working time before it.
        """
        return cls.start(calendar, at, calendar.between(at, due))

    def pause(self, calendar: WorkingCalendar, at: datetime) -> Timer:
        """挂账 / 缓办: stop counting at ``at``."""
        if self.paused:
            raise ValueError(f"the timer is already paused (since {self.anchor.isoformat()})")
        return replace(self, anchor=at, used=self.used + calendar.between(self.anchor, at), paused=True)

    def resume(self, at: datetime) -> Timer:
        """Count again from ``at``."""
        if not self.paused:
            raise ValueError("the timer is running; only a paused timer resumes")
        return replace(self, anchor=at, paused=False)

    def extend_to(self, calendar: WorkingCalendar, due: datetime, at: datetime) -> Timer:
        """延期 granted at ``at``: a new limit so that ``due(calendar) == due``.

        A running timer measures from its anchor, so a ``due`` already past is kept too (the timer is then
        overdue). On a paused timer the new due holds if it resumes at ``at``; a pause that goes on moves it
        further, as any pause does.
        """
        origin = at if self.paused else self.anchor
        if due >= origin:
            return replace(self, limit=self.used + calendar.between(origin, due))
        return replace(self, limit=max(_NONE, self.used - calendar.between(due, origin)))

    def due(self, calendar: WorkingCalendar) -> datetime | None:
        """When the limit is reached; None while paused (see ``moment_of``)."""
        return self.moment_of(calendar, 1.0)

    def elapsed(self, calendar: WorkingCalendar, now: datetime) -> timedelta:
        """Working time counted by ``now``."""
        if self.paused:
            return self.used
        return self.used + calendar.between(self.anchor, now)

    def fraction(self, calendar: WorkingCalendar, now: datetime) -> float:
        """Elapsed over limit: 1.0 and more once due; a zero limit reads 1.0 (due at once)."""
        if self.limit == _NONE:
            return 1.0
        return self.elapsed(calendar, now) / self.limit

    def moment_of(self, calendar: WorkingCalendar, fraction: float) -> datetime | None:
        """When elapsed reaches ``fraction`` of the limit; None while paused.

        The moment is found in the current running segment. If it was reached before that segment began (before
        the last resume) it cannot be recomputed, since the pauses are not kept: the answer is then ``anchor``.
        The target is rounded up to the microsecond, so ``crossed`` reports the threshold at the moment returned.
        """
        if self.paused:
            return None
        target = timedelta(microseconds=math.ceil(Fraction(fraction) * (self.limit // _MICROSECOND)))
        remaining = target - self.used
        if remaining <= _NONE:
            return self.anchor
        return calendar.add(self.anchor, remaining)


def crossed(timer: Timer, calendar: WorkingCalendar, now: datetime) -> tuple[int, ...]:
    """The thresholds reached by ``now``, in order; a paused timer reports what it had reached when paused."""
    elapsed = timer.elapsed(calendar, now)
    return tuple(percent for percent in THRESHOLDS if elapsed * 100 >= timer.limit * percent)
