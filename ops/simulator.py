"""The deterministic district simulator (模拟): a preset's district set up, then run day by day via commands."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

from engine.application import Gridloop
from engine.base import name_id
from engine.clock import ManualClock
from engine.dispatch import POLICIES
from engine.errors import UnknownReference
from engine.policies import managers
from engine.process import Processes
from ops.presets import Preset
from ops.simulation.cases import CaseFlow
from ops.simulation.district import plan_district, setup_commands
from ops.simulation.report import LogTally, SimulationReport, Tally
from ops.simulation.runner import Runner
from ops.simulation.sources import DaySchedule
from ops.simulation.working_time import local_date, midnight, next_midnight

__all__ = ["DEFAULT_DISPATCH", "SimulationRefused", "SimulationReport", "simulate"]

DEFAULT_DISPATCH = "balanced"
"""The dispatch policy of a simulated desk unless told otherwise (engine.dispatch.POLICIES)."""


class SimulationRefused(ValueError):
    """A simulation that cannot run on this store and clock; the message says why and what to do instead."""


def simulate(
    app: Gridloop,
    clock: ManualClock,
    preset: Preset,
    *,
    days: int = 1,
    start: date | None = None,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
    dispatch: str = DEFAULT_DISPATCH,
) -> SimulationReport:
    """Set up ``preset``'s district (a no-op if it is set up) and simulate ``days`` days from ``start``.

    ``start`` defaults to the next local (Asia/Shanghai) midnight at or after the clock's time; the
    clock must not be past the start, because it never goes back. ``seed`` defaults to the preset's.
    ``progress`` is called with the number of days done after each day. ``dispatch`` names the
    dispatch policy that routes and assigns the cases; the supervisor (督办) always runs. The same
    inputs on a fresh store record the same events; a day the store already holds for this preset and
    seed is refused (the simulator reads the cases' state back from the store, so it cannot replay one).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if dispatch not in POLICIES:
        raise UnknownReference("dispatch policy", dispatch, sorted(POLICIES))
    run_seed = preset.seed if seed is None else seed
    first = start if start is not None else local_date(next_midnight(clock.now()))
    begin, end = midnight(first), midnight(first + timedelta(days=days))
    if clock.now() > begin:
        raise SimulationRefused(
            f"the clock is at {clock.now().isoformat()}, after the start of the simulation {begin.isoformat()}; "
            "a clock does not go back: start later or use a clock at or before the start"
        )
    prefix = f"sim:{preset.name}:{run_seed}"
    for n in range(days):
        day = first + timedelta(days=n)
        if name_id("command", f"{prefix}:{day.isoformat()}:1") in app.repository:
            raise SimulationRefused(
                f"the store already holds {day.isoformat()} of preset {preset.name} with seed {run_seed}: "
                "simulate into a fresh store (--fresh), or another day or seed"
            )
    district = plan_district(preset)
    before = app.recorder.max_notification_id() or 0
    tally, log = Tally(), LogTally(before)
    processes = Processes(app, [*managers(app, dispatch=dispatch), log])
    runner = Runner(app, clock, prefix, tally, begin, processes)
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
        preset=preset.name, seed=run_seed, days=days, start=begin, end=end, positions=(before, after),
        statuses=statuses, dispatch=dispatch, processes=processes, log=log,
    )  # fmt: skip
