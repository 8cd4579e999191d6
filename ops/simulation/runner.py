"""The discrete-event loop: a heap of (time, sequence, action) that moves the manual clock and runs commands.

The engine's process managers (dispatch policy, supervisor) run alongside: they catch up after every
command, as they do behind the command line, and act on the time when the runner ticks.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime

from engine.application import CommandResult, Gridloop
from engine.clock import ManualClock
from engine.commands import Command
from engine.errors import GridloopError
from engine.process import Processes
from ops.simulation.report import Tally
from ops.simulation.working_time import local_date

Action = Callable[[datetime], None]
"""Something that happens at a time: it may run commands and schedule later actions."""


class Runner:
    """Runs scheduled actions in time order; every command goes through ``app.execute`` at the clock's time."""

    def __init__(
        self, app: Gridloop, clock: ManualClock, prefix: str, tally: Tally, now: datetime, processes: Processes
    ) -> None:
        self.app = app
        self.clock = clock
        self.tally = tally
        self.now = now
        self.processes = processes
        self._prefix = prefix
        self._heap: list[tuple[datetime, int, Action]] = []
        self._sequence = 0
        self._day = ""
        self._numbered = 0

    def at(self, when: datetime, action: Action) -> None:
        """Schedule ``action`` at ``when``; ties run in the order they were scheduled."""
        if when < self.now:
            raise ValueError(f"cannot schedule at {when.isoformat()}, before the simulated now {self.now.isoformat()}")
        self._sequence += 1
        heapq.heappush(self._heap, (when, self._sequence, action))

    def run_until(self, end: datetime) -> None:
        """Run every action scheduled before ``end``; later ones stay pending (open work at midnight stays open)."""
        while self._heap and self._heap[0][0] < end:
            when, _, action = heapq.heappop(self._heap)
            self.now = when
            action(when)

    def command_id(self) -> str:
        """The next command id: ``sim:<preset>:<seed>:<local date>:<n>``, n counting from 1 each day."""
        day = local_date(self.now).isoformat()
        if day != self._day:
            self._day, self._numbered = day, 0
        self._numbered += 1
        return f"{self._prefix}:{day}:{self._numbered}"

    def execute(self, command: Command) -> CommandResult | None:
        """Run one command at the simulated now, then let the policies answer it; a refusal is counted and
        returns None (a simulator bug)."""
        self._advance_clock()
        try:
            result = self.app.execute(command)
        except GridloopError as exc:
            self.tally.refused(command, exc)
            return None
        self.tally.executed(result)
        self.processes.catch_up()
        return result

    def tick(self, now: datetime) -> None:
        """Let the policies act on the time (sign-for timeouts, warnings, escalations): an action the day schedules."""
        self._advance_clock()
        self.processes.tick(now)

    def _advance_clock(self) -> None:
        if self.now > self.clock.now():
            self.clock.set(self.now)
