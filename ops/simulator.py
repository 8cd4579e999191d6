"""The deterministic district simulator (模拟): a preset's district set up, then run day by day via commands."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

from engine.application import Gridloop
from engine.clock import ManualClock
from ops.presets import Preset
from ops.simulation.cases import CaseFlow
from ops.simulation.district import plan_district, setup_commands
from ops.simulation.report import SimulationReport, Tally
from ops.simulation.runner import Runner
from ops.simulation.sources import DaySchedule
from ops.simulation.working_time import local_date, midnight, next_midnight

__all__ = ["SimulationReport", "simulate"]


def simulate(
    app: Gridloop,
    clock: ManualClock,
    preset: Preset,
    *,
    days: int = 1,
    start: date | None = None,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Set up ``preset``'s district (a no-op if it is set up) and simulate ``days`` days from ``start``.

    ``start`` defaults to the next local (Asia/Shanghai) midnight at or after the clock's time; the
    clock must not be past the start, because it never goes back. ``seed`` defaults to the preset's.
    ``progress`` is called with the number of days done after each day. The same inputs on a fresh
    store record the same events; on a store that already holds them they record nothing new.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    run_seed = preset.seed if seed is None else seed
    first = start if start is not None else local_date(next_midnight(clock.now()))
    begin, end = midnight(first), midnight(first + timedelta(days=days))
    if clock.now() > begin:
        raise ValueError(
            f"the clock is at {clock.now().isoformat()}, after the start of the simulation {begin.isoformat()}; "
            "a clock does not go back: start later or use a clock at or before the start"
        )
    district = plan_district(preset)
    before = app.recorder.max_notification_id() or 0
    tally = Tally()
    runner = Runner(app, clock, f"sim:{preset.name}:{run_seed}", tally, begin)
    for command in setup_commands(district):
        runner.execute(command)
    flow = CaseFlow(runner, district, app.catalogue, preset.rates, run_seed, tally)
    schedule = DaySchedule(runner, flow, district, app.catalogue, preset.rates, run_seed, tally)
    for done in range(1, days + 1):
        day = first + timedelta(days=done - 1)
        schedule.schedule(day)
        runner.run_until(midnight(day + timedelta(days=1)))
        if progress is not None:
            progress(done)
    clock.set(max(end, clock.now()))
    after = app.recorder.max_notification_id() or 0
    statuses = Counter(case.status.value for case in flow.cases.values())
    return tally.report(
        preset=preset.name, seed=run_seed, days=days, start=begin, end=end, positions=(before, after), statuses=statuses
    )
