"""Where a simulated day's work comes from: duty, patrols (巡查), residents, departments (部门交办) and sensors."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from uuid import UUID

from engine import commands as c
from engine.catalogue import GRID, Catalogue, Category
from ops.presets import Rates
from ops.simulation.cases import CaseFlow
from ops.simulation.district import District, GridPlan
from ops.simulation.randomness import chance, count_at_rate, minutes, poisson, stream, weighted
from ops.simulation.report import Tally
from ops.simulation.runner import Runner
from ops.simulation.working_time import WORK_END, WORK_START, at, midnight

# Stated assumptions (see docs/simulator.md).
SIGN_IN = (time(8, 15), time(8, 30))  # on duty before the desk opens at 08:30
SIGN_OUT = (time(17, 30), time(17, 45))  # off duty after it closes at 17:30
PATROL_WINDOW = (time(8, 40), time(16, 0))  # patrols start in this window
CHECKPOINT_GAP = (8, 20)  # minutes walked between checkpoints
FINDING_DELAY = (1, 5)  # minutes from a checkpoint to the finding's upload
PATROL_END_DELAY = (3, 10)  # minutes from the last checkpoint to ending the patrol
LATE_UPLOAD_SHARE = 0.10  # patrols whose phone goes offline part-way and uploads the rest later
RECONNECT_DELAY = (5, 30)  # minutes after the patrol's end the phone comes back online
MAX_LATENESS = timedelta(hours=2) - timedelta(minutes=1)  # an offline step is at most this late
RESIDENT_CHANNELS = (("resident", 0.30), ("hotline", 0.40), ("app", 0.30))  # in person, 12345, phone app
HOURLY_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 8, 12, 12, 12, 10, 8, 10, 12, 12, 10, 8, 8, 7, 6, 4, 3, 2)  # hotline/app
DEPARTMENT_SHARE = 0.10  # department hand-overs per resident request
SENSOR_SHARE = 0.05  # sensor alerts per resident request
SENSORS_PER_GRID = 20
TICK_EVERY = timedelta(minutes=15)  # how often the policies look at the time (sign-for timeouts, 督办), in working time
HOTLINE = "hotline:12345"


@dataclass(frozen=True)
class PatrolStep:
    """One upload of a patrol: start, checkpoint, finding or end, at the time it happened."""

    when: datetime
    kind: str
    lon: float = 0.0
    lat: float = 0.0
    category: Category | None = None


class DaySchedule:
    """Schedules one day's actions on the runner."""

    def __init__(
        self, runner: Runner, flow: CaseFlow, district: District, catalogue: Catalogue, rates: Rates, seed: int,
        tally: Tally,
    ) -> None:  # fmt: skip
        self.runner = runner
        self.flow = flow
        self.district = district
        self.rates = rates
        self.seed = seed
        self.tally = tally
        categories = sorted(catalogue.categories.values(), key=lambda k: k.code)
        self.asked = [k for k in categories if k.kind in ("service", "event")]  # what residents ask about
        self.seen = [k for k in categories if k.kind in ("component", "event")]  # what a patrol sees
        self.handed_over = [k for k in categories if k.department != GRID]  # what departments pass on
        self.sensed = [k for k in categories if k.kind == "component"]  # what a sensor notices
        self.departments = sorted(catalogue.departments)
        self.by_community: dict[str, list[GridPlan]] = {}
        for grid in district.grids:
            self.by_community.setdefault(grid.community, []).append(grid)

    def schedule(self, day: date) -> None:
        """Everything that starts on ``day``; each source draws from its own named stream."""
        self._duty(day)
        self._patrols(day)
        self._requests(day)
        self._reports(day, "department", DEPARTMENT_SHARE, self.handed_over)
        self._reports(day, "sensor", SENSOR_SHARE, self.sensed)
        self._ticks(day)

    def _ticks(self, day: date) -> None:
        """The policies' clock: every quarter hour in which the engine's working time ran (its limits count only that),
        up to the first quarter hour after work ends."""
        calendar = self.runner.app.calendar
        start = midnight(day)
        for n in range(timedelta(days=1) // TICK_EVERY):
            when = start + n * TICK_EVERY
            if calendar.is_working(when) or calendar.is_working(when - TICK_EVERY):
                self.runner.at(when, self.runner.tick)

    # -- duty (上岗/下岗) ----------------------------------------------------------------------

    def _duty(self, day: date) -> None:
        rng = stream(self.seed, day, "duty")
        for worker in self.district.on_duty_roster():
            self.runner.at(_between(rng, day, *SIGN_IN), self._sign(worker.code, on_duty=True))
            self.runner.at(_between(rng, day, *SIGN_OUT), self._sign(worker.code, on_duty=False))

    def _sign(self, worker: str, *, on_duty: bool) -> Callable[[datetime], None]:
        def act(_: datetime) -> None:
            self.runner.execute(
                c.SetDuty(command_id=self.runner.command_id(), actor=worker, worker=worker, on_duty=on_duty)
            )

        return act

    # -- patrols (巡查) ------------------------------------------------------------------------

    def _patrols(self, day: date) -> None:
        opens, closes = at(day, PATROL_WINDOW[0]), at(day, PATROL_WINDOW[1])
        for grid in self.district.grids:
            rng = stream(self.seed, day, "patrol", grid.worker)
            count = count_at_rate(rng, self.rates.patrols_per_worker_per_day)
            slot = (closes - opens) / max(count, 1)
            earliest = opens
            for n in range(count):
                start = max(
                    earliest, opens + slot * n + timedelta(seconds=rng.randint(0, int(slot.total_seconds() / 3)))
                )
                steps = self._walk(rng, grid, start)
                if steps[-1].when >= at(day, WORK_END):
                    break  # no time left for another round today
                self._plan_uploads(rng, grid, steps)
                earliest = steps[-1].when + timedelta(minutes=15)

    def _walk(self, rng: random.Random, grid: GridPlan, start: datetime) -> list[PatrolStep]:
        steps = [PatrolStep(start, "start")]
        when = start
        for _ in range(self.rates.checkpoints_per_patrol):
            when += minutes(rng, *CHECKPOINT_GAP)
            lon, lat = grid.box.point(rng)
            steps.append(PatrolStep(when, "checkpoint", lon, lat))
            if chance(rng, self.rates.finding_probability_per_checkpoint):
                when += minutes(rng, *FINDING_DELAY)
                steps.append(PatrolStep(when, "finding", lon, lat, rng.choice(self.seen)))
        steps.append(PatrolStep(when + minutes(rng, *PATROL_END_DELAY), "end"))
        return steps

    def _plan_uploads(self, rng: random.Random, grid: GridPlan, steps: list[PatrolStep]) -> None:
        """Live steps upload when they happen; an offline tail uploads in one burst on reconnecting."""
        patrol = _PatrolRun(self, grid)
        offline_from = len(steps)
        if chance(rng, LATE_UPLOAD_SHARE):
            reconnect = steps[-1].when + minutes(rng, *RECONNECT_DELAY)
            dropped = rng.randint(1, len(steps) - 1)  # the phone drops after the start, at a random step
            offline_from = next(i for i, s in enumerate(steps) if i >= dropped and s.when >= reconnect - MAX_LATENESS)
            self.runner.at(reconnect, patrol.uploads(steps[offline_from:], late=True))
        for step in steps[:offline_from]:
            self.runner.at(step.when, patrol.uploads([step], late=False))

    # -- residents, departments, sensors ----------------------------------------------------------

    def _requests(self, day: date) -> None:
        rng = stream(self.seed, day, "residents")
        rate = self.rates.resident_requests_per_1000_households_per_day
        for community in self.district.preset.communities:
            grids = self.by_community[community.code]
            for k in range(poisson(rng, community.households / 1000 * rate)):
                channel = weighted(rng, RESIDENT_CHANNELS)
                if channel == "resident":
                    when = _between(rng, day, WORK_START, WORK_END)
                else:
                    hour = weighted(rng, tuple(enumerate(HOURLY_WEIGHTS)))
                    when = midnight(day) + timedelta(hours=hour, seconds=rng.randint(0, 3599))
                grid = rng.choice(grids)
                resident = f"resident:{rng.randint(1, max(1, community.households))}"
                label = f"{day}:{community.code}:{k}"
                self.runner.at(when, self._resident_request(label, channel, grid, resident))

    def _resident_request(self, label: str, channel: str, grid: GridPlan, resident: str) -> Callable[[datetime], None]:
        def act(_: datetime) -> None:
            rng = stream(self.seed, "request", label)
            duplicate_of: UUID | None = None
            category = rng.choice(self.asked)
            if chance(rng, self.rates.merge_rate) and self.flow.open:
                # A second resident reports a problem already open: same grid, same category.
                target = self.flow.open[rng.choice(list(self.flow.open))]
                duplicate_of, grid_, category = target.id, target.grid, target.category
            else:
                grid_ = grid
            lon, lat = grid_.box.point(rng) if channel != "hotline" else (None, None)
            command = c.ReportCase(
                command_id=self.runner.command_id(), actor=HOTLINE if channel == "hotline" else resident,
                source=channel, category=category.code, grid=grid_.code, description=f"居民反映: {category.name}",
                reporter=resident, lon=lon, lat=lat,
            )  # fmt: skip
            self.flow.report(command, channel, category, grid_, duplicate_of)

        return act

    def _reports(self, day: date, source: str, share: float, categories: Sequence[Category]) -> None:
        rng = stream(self.seed, day, source)
        rate = self.rates.resident_requests_per_1000_households_per_day * share
        for community in self.district.preset.communities:
            for _ in range(poisson(rng, community.households / 1000 * rate)):
                grid = rng.choice(self.by_community[community.code])
                category = rng.choice(categories)
                if source == "department":
                    when = _between(rng, day, WORK_START, WORK_END)
                    actor = rng.choice(self.departments)
                    text = f"部门交办: {category.name}"
                else:
                    when = midnight(day) + timedelta(seconds=rng.randint(0, 86399))
                    actor = f"sensor:{grid.code}-{rng.randint(1, SENSORS_PER_GRID):02d}"
                    text = f"智能感知告警: {category.name}"
                lon, lat = grid.box.point(rng)
                self.runner.at(when, self._report(source, actor, grid, category, text, lon, lat))

    def _report(
        self, source: str, actor: str, grid: GridPlan, category: Category, text: str, lon: float, lat: float
    ) -> Callable[[datetime], None]:
        def act(_: datetime) -> None:
            command = c.ReportCase(
                command_id=self.runner.command_id(), actor=actor, source=source, category=category.code,
                grid=grid.code, description=text, reporter=actor, lon=lon, lat=lat,
            )  # fmt: skip
            self.flow.report(command, source, category, grid)

        return act


class _PatrolRun:
    """One patrol as its uploads arrive; the patrol id comes from the start's result."""

    def __init__(self, day: DaySchedule, grid: GridPlan) -> None:
        self.day, self.grid = day, grid
        self.patrol_id: UUID | None = None
        self.failed = False

    def uploads(self, steps: Sequence[PatrolStep], *, late: bool) -> Callable[[datetime], None]:
        """The action that uploads ``steps``: one at a time when live, as a burst on reconnecting."""
        return lambda _: self.upload(steps, late=late)

    def upload(self, steps: Sequence[PatrolStep], *, late: bool) -> None:
        for step in steps:
            if self.failed or not self._upload(step, step.when if late else None):
                self.failed = True  # a refusal is a simulator bug: the rest of this patrol is not sent
                return
            self.day.tally.count("late_uploads", int(late))

    def _upload(self, step: PatrolStep, occurred_at: datetime | None) -> bool:
        runner, worker, grid = self.day.runner, self.grid.worker, self.grid.code
        if step.kind == "start":
            start = c.StartPatrol(
                command_id=runner.command_id(), actor=worker, worker=worker, grid=grid, occurred_at=occurred_at
            )
            result = runner.execute(start)
            if result is not None:
                self.patrol_id = result.aggregate_id
                self.day.tally.count("patrols")
            return result is not None
        assert self.patrol_id is not None  # the start is always uploaded live, first
        if step.kind == "finding":
            assert step.category is not None
            finding = c.ReportFinding(
                command_id=runner.command_id(), actor=worker, patrol_id=self.patrol_id, category=step.category.code,
                description=f"巡查发现: {step.category.name}", lon=step.lon, lat=step.lat, occurred_at=occurred_at,
            )  # fmt: skip
            return self.day.flow.report(finding, "patrol", step.category, self.grid)
        command: c.Command
        if step.kind == "checkpoint":
            command = c.VisitCheckpoint(
                command_id=runner.command_id(), actor=worker, patrol_id=self.patrol_id, lon=step.lon, lat=step.lat,
                note="巡查打卡", occurred_at=occurred_at,
            )  # fmt: skip
        else:
            command = c.EndPatrol(
                command_id=runner.command_id(), actor=worker, patrol_id=self.patrol_id, occurred_at=occurred_at
            )
        return runner.execute(command) is not None


def _between(rng: random.Random, day: date, low: time, high: time) -> datetime:
    """A uniform time on ``day`` in [low, high)."""
    start = at(day, low)
    span = int((at(day, high) - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, max(0, span - 1)))
