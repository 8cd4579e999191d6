"""What-if (推演): a recorded period replayed through another dispatch policy, the same model for both sides."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from engine import commands as c
from engine.application import Gridloop
from engine.base import name_id
from engine.clock import ManualClock
from engine.errors import InvalidCommand, UnknownReference
from ops.config import load_settings
from ops.logs import configure_logging
from ops.presets import Preset, StaffSpec, load_preset
from ops.sample import COMMUNITY, GRID, district_commands
from ops.simulation.working_time import midnight
from ops.simulator import simulate
from ops.whatif import whatif, whatif_command

CST = ZoneInfo("Asia/Shanghai")
MONDAY = date(2026, 11, 23)
DAY_START = datetime(2026, 11, 23, tzinfo=CST)
DAY_END = DAY_START + timedelta(days=1)
GRID_WORK = "S0201"  # 独居老人探访: the grid's own staff, no skill needed, 24 working hours
BOX = '{{"type":"Polygon","coordinates":[[[111.{0},35.3],[111.{1},35.3],[111.{1},35.4],[111.{0},35.3]]]}}'
REQUESTS = 12


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=CST)


def overloaded_district(path: Path | str = ":memory:", *, policy: str = "") -> Gridloop:
    """Three grids of one community, one grid worker each; a Monday morning brings twelve requests to grid 1 only.

    The desk gave all twelve to grid 1's worker W1 (``policy`` names the policy it recorded, "" for by hand);
    each was handled an hour after it was signed for; the first failed verification once; a thirteenth
    request was rejected.
    """
    clock = ManualClock(_at(7))
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)
    timeline: list[tuple[datetime, c.Command]] = [(_at(7), command) for command in district_commands()]
    grids = {"W1": GRID, "W2": COMMUNITY + "002", "W3": COMMUNITY + "003"}
    for n, (worker, grid) in enumerate(grids.items()):
        if grid != GRID:
            box = BOX.format(7 + n, 8 + n)
            timeline.append(
                (_at(7), c.DrawGrid(command_id=f"g-{grid}", actor="admin", code=grid, grid_name=grid,
                                    community=COMMUNITY, households=400, boundary=box))
            )  # fmt: skip
        timeline += [
            (_at(7), c.EnrollWorker(command_id=f"e-{worker}", actor="admin", code=worker, worker_name=worker,
                                    role="grid_worker", unit=COMMUNITY, grid=grid)),
            (_at(7), c.AssignStaff(command_id=f"a-{worker}", actor="admin", grid=grid, role="grid_worker",
                                   worker=worker)),
            (_at(8, 15), c.SetDuty(command_id=f"on-{worker}", actor=worker, worker=worker, on_duty=True)),
            (_at(17, 35), c.SetDuty(command_id=f"off-{worker}", actor=worker, worker=worker, on_duty=False)),
        ]  # fmt: skip
    timeline += _requests(policy)
    for when, command in sorted(timeline, key=lambda item: item[0]):
        clock.set(max(clock.now(), when))
        app.execute(command)
    return app


def _requests(policy: str) -> list[tuple[datetime, c.Command]]:
    timeline: list[tuple[datetime, c.Command]] = []
    for n in range(REQUESTS + 1):
        reported = _at(9) + timedelta(minutes=10 * n)
        report = c.ReportCase(
            command_id=f"r-{n}", actor="resident:1", occurred_at=reported, source="resident", category=GRID_WORK,
            grid=GRID, description="独居老人需要探访",
        )  # fmt: skip
        case = name_id("case", report.command_id)  # the id the engine gives the case
        timeline.append((reported, report))
        ids = (f"r-{n}-{k}" for k in range(100))
        step = functools.partial(_step, ids, reported, case)
        if n == REQUESTS:
            timeline.append(step(5, c.RejectCase, reason_code="invalid", reason="信息不全, 无法核实"))
            continue
        dispatch = {"unit": COMMUNITY, "worker": "W1", "reason": "派本网格网格员", "policy": policy}
        dispatch["policy_version"] = "1" if policy else ""
        steps = [
            step(5, c.RegisterCase),
            step(10, c.DispatchCase, **dispatch),
            step(15, c.AcceptCase, actor="W1"),
            step(75, c.ReportHandling, actor="W1", result="已探访"),
        ]
        if n == 0:
            steps += [
                step(95, c.VerifyCase, passed=False, note="未见探访记录, 返工"),
                step(100, c.DispatchCase, **dispatch),
                step(105, c.AcceptCase, actor="W1"),
                step(135, c.ReportHandling, actor="W1", result="已补探访"),
                step(150, c.VerifyCase, passed=True, note="核查属实"),
            ]
        else:
            steps.append(step(95, c.VerifyCase, passed=True, note="核查属实"))
        timeline += steps
    return timeline


def _step(
    ids: Iterator[str],
    reported: datetime,
    case: UUID,
    minutes: int,
    command_class: type[c.CaseCommand],
    **fields: Any,
) -> tuple[datetime, c.Command]:
    """A command on a case, ``minutes`` after its report."""
    when = reported + timedelta(minutes=minutes)
    fields.setdefault("actor", "desk:01")
    return when, command_class(command_id=next(ids), occurred_at=when, case_id=case, **fields)


@pytest.fixture(scope="module")
def overloaded() -> Gridloop:
    return overloaded_district()


def _small_yuanqu() -> Preset:
    """Two of Yuanqu's communities (17 grids): a quick simulated district."""
    yuanqu = load_preset("yuanqu")
    return dataclasses.replace(
        yuanqu,
        name="yuanqu-small",
        communities=yuanqu.communities[:2],
        staff=StaffSpec(grid_leaders=3, grid_workers=17, grid_assistants=34, mediators=1),
    )


@pytest.fixture(scope="module")
def simulated() -> Gridloop:
    """A simulated day of two Yuanqu communities, in memory."""
    clock = ManualClock(midnight(MONDAY))
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}, clock=clock)
    simulate(app, clock, _small_yuanqu(), days=1, start=MONDAY)
    return app


# -- the comparison -----------------------------------------------------------------------------


def test_balanced_dispatch_spreads_an_overloaded_grids_work_over_the_community(overloaded: Gridloop) -> None:
    report = whatif(overloaded, "balanced", DAY_START, DAY_END)
    owner, balanced = report.baseline, report.policy
    assert (owner.policy, balanced.policy) == ("grid-owner", "balanced")
    assert owner.cases == balanced.cases == owner.closed == balanced.closed == REQUESTS
    assert owner.workers == balanced.workers == 3
    assert owner.workload_max == REQUESTS  # everything stayed with W1
    assert balanced.workload_max < owner.workload_max
    assert balanced.workload_cv is not None and owner.workload_cv is not None
    assert balanced.workload_cv < owner.workload_cv
    assert balanced.mean_hours_to_close is not None and owner.mean_hours_to_close is not None
    assert balanced.mean_hours_to_close < owner.mean_hours_to_close
    delta = report.delta()
    assert delta["workload_max"] == balanced.workload_max - owner.workload_max < 0
    assert delta["workload_cv"] < 0


def test_rejected_requests_are_left_out_and_reworks_are_played_in_both_runs(overloaded: Gridloop) -> None:
    report = whatif(overloaded, "balanced", DAY_START, DAY_END)
    assert report.requests == REQUESTS + 1
    assert report.skipped["rejected"] == 1
    assert report.baseline.reworks == report.policy.reworks == 1
    assert report.baseline.refusals == report.policy.refusals == 0


def test_the_baseline_is_the_policy_the_source_recorded(tmp_path: Path) -> None:
    source = overloaded_district(tmp_path / "events.sqlite", policy="balanced")
    report = whatif(source, "grid-owner", DAY_START, DAY_END)
    assert (report.baseline.policy, report.policy.policy) == ("balanced", "grid-owner")
    assert report.delta()["workload_max"] > 0


def test_an_explicit_baseline_overrides_the_recorded_one(overloaded: Gridloop) -> None:
    report = whatif(overloaded, "grid-owner", DAY_START, DAY_END, baseline="balanced")
    assert (report.baseline.policy, report.policy.policy) == ("balanced", "grid-owner")


def test_the_same_store_and_period_give_the_same_numbers(simulated: Gridloop) -> None:
    first = whatif(simulated, "balanced", DAY_START, DAY_END)
    second = whatif(simulated, "balanced", DAY_START, DAY_END)
    assert first.as_dict() == second.as_dict()


def test_a_simulated_day_replays_with_only_legal_commands_and_leaves_the_source_alone(simulated: Gridloop) -> None:
    before = simulated.recorder.max_notification_id()
    report = whatif(simulated, "balanced", DAY_START, DAY_END)
    assert simulated.recorder.max_notification_id() == before
    assert report.policy.cases > 0
    for side in (report.baseline, report.policy):
        assert side.refusals == 0, report.refusals
        assert side.closed + side.open_at_end == side.cases
    assert report.requests == report.policy.cases + sum(report.skipped.values())


# -- what is refused, and how it is said ---------------------------------------------------------


def test_an_unknown_policy_is_refused_with_the_known_ones(overloaded: Gridloop) -> None:
    with pytest.raises(UnknownReference, match="unknown dispatch policy 'fifo'; known: balanced, grid-owner"):
        whatif(overloaded, "fifo", DAY_START, DAY_END)
    with pytest.raises(UnknownReference, match="known: balanced, grid-owner"):
        whatif(overloaded, "balanced", DAY_START, DAY_END, baseline="by-hand")


def test_an_empty_period_says_so_and_where_the_stores_cases_are(overloaded: Gridloop) -> None:
    with pytest.raises(InvalidCommand, match=r"no case was reported between 2026-11-24.*reported from 2026-11-23"):
        whatif(overloaded, "balanced", DAY_END, DAY_END + timedelta(days=1))


def test_a_period_must_end_after_it_starts_and_name_its_offset(overloaded: Gridloop) -> None:
    with pytest.raises(InvalidCommand, match="is not after the start"):
        whatif(overloaded, "balanced", DAY_END, DAY_START)
    with pytest.raises(InvalidCommand, match="has no UTC offset"):
        whatif(overloaded, "balanced", DAY_START.replace(tzinfo=None), DAY_END)


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def quiet_logs() -> None:
    """As `gridloop` does at start-up: logs go to stderr, here only warnings."""
    configure_logging("warning", "json")


@pytest.mark.usefixtures("quiet_logs")
def test_the_command_prints_both_policies_side_by_side_or_json(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path)
    overloaded_district(settings.event_store_path).close()
    period = ["--from", "2026-11-23", "--to", "2026-11-24T00:00+08:00"]
    done = CliRunner().invoke(whatif_command, ["--policy", "balanced", *period, "--json"], obj=settings)
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert (data["baseline"]["policy"], data["policy"]["policy"]) == ("grid-owner", "balanced")
    assert data["delta"]["workload_max"] < 0
    table = CliRunner().invoke(whatif_command, ["--policy", "balanced", *period], obj=settings)
    assert table.exit_code == 0, table.output
    assert "grid-owner (baseline)" in table.output and "按期结案率" in table.output


@pytest.mark.usefixtures("quiet_logs")
def test_the_command_fails_in_one_clear_line(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path)
    period = ["--from", "2026-11-23", "--to", "2026-11-24"]
    missing = CliRunner().invoke(whatif_command, ["--policy", "balanced", *period], obj=settings)
    assert missing.exit_code == 2 and "no event store at" in missing.stderr
    overloaded_district(settings.event_store_path).close()
    unknown = CliRunner().invoke(whatif_command, ["--policy", "fifo", *period], obj=settings)
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "error: unknown dispatch policy 'fifo'; known: balanced, grid-owner"
    bad = CliRunner().invoke(whatif_command, ["--policy", "balanced", "--from", "monday", "--to", "x"], obj=settings)
    assert bad.exit_code == 2 and "is not an ISO 8601 time" in bad.stderr
