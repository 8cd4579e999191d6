"""`gridloop evaluate` on a simulated Yuanqu day: 四度, coverage and burden whose figures hold together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.ops.test_cli import gridloop

DAY = "2026-11-02"  # a Monday


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("var")
    done = gridloop(data_dir, "simulate", "--preset", "yuanqu", "--days", "1", "--start", DAY, "--fresh")
    assert done.returncode == 0, done.stderr
    return data_dir


def _json(data_dir: Path, *args: str) -> Any:
    done = gridloop(data_dir, "evaluate", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_coverage_of_the_day_counts_every_grid_once_visited_or_not(simulated: Path) -> None:
    found = _json(simulated, "coverage", "--period", DAY)
    assert found["grids_in_force"] == 99  # Yuanqu's grids (ops/presets/yuanqu.toml)
    assert 0 < found["visited"] <= found["grids_in_force"]
    assert len(found["unvisited"]) == found["grids_in_force"] - found["visited"]
    assert found["rate"] == pytest.approx(found["visited"] / 99)
    grids = found["grids"]
    assert len({g["grid"] for g in grids}) == 99
    assert all(g["patrol_days"] <= 1 and g["findings"] <= g["checkpoints"] for g in grids)
    only = _json(simulated, "coverage", "--period", DAY, "--unvisited")
    assert [g["grid"] for g in only["grids"]] == found["unvisited"]
    assert _json(simulated, "coverage", "--period", "2026-10")["grids_in_force"] == 0  # not drawn yet


def test_four_degrees_of_the_day_are_scores_from_consistent_inputs(simulated: Path) -> None:
    coverage = _json(simulated, "coverage", "--period", DAY)
    found = _json(simulated, "workers", "--period", DAY, "--now", f"{DAY}T20:00+08:00")
    assert len(found) == 99  # one grid worker per grid
    for worker in found:
        degrees = [worker[name] for name in ("familiarity", "trust", "delivery", "satisfaction")]
        assert all(d["score"] is None or 0 <= d["score"] <= 100 for d in degrees)
        assert worker["score"] is None or 0 <= worker["score"] <= 100
        familiarity, delivery = worker["familiarity"]["inputs"], worker["delivery"]["inputs"]
        assert familiarity["workdays"] == 1 and familiarity["patrol_days"] <= 1
        assert (
            delivery["handled_on_time"] <= delivery["handled"] and delivery["verified_passed"] <= delivery["verified"]
        )
    scores = [w["score"] for w in found if w["score"] is not None]
    assert scores == sorted(scores, reverse=True) and scores  # best first
    patrols = sum(w["familiarity"]["inputs"]["patrols"] for w in found)
    assert 0 < patrols <= sum(g["patrols"] for g in coverage["grids"])
    community = found[0]["grids"][0][:12]
    inside = _json(simulated, "workers", "--period", DAY, "--community", community)
    assert inside and all(g.startswith(community) for w in inside for g in w["grids"])


def test_burden_of_the_day_never_refuses_more_than_was_pushed(simulated: Path) -> None:
    rows = _json(simulated, "burden", "--period", DAY)
    assert 0 < len(rows) <= 15  # Yuanqu's communities
    for row in rows:
        assert 0 <= row["refused"] <= row["pushed"] and row["borne"] <= row["pushed"]
        assert row["pushed"] == sum(k["pushed"] for k in row["kinds"].values())
    by_street = _json(simulated, "burden", "--period", DAY, "--level", "street")
    assert sum(r["pushed"] for r in by_street) == sum(r["pushed"] for r in rows)


def test_the_tables_print_and_bad_input_is_refused_with_what_is_allowed(simulated: Path) -> None:
    done = gridloop(simulated, "evaluate", "workers", "--period", DAY)
    assert done.returncode == 0 and "熟悉度" in done.stdout and "满意度" in done.stdout
    done = gridloop(simulated, "evaluate", "coverage", "--period", DAY)
    assert done.returncode == 0 and "of 99 grid(s) visited" in done.stdout
    assert gridloop(simulated, "evaluate", "burden", "--period", DAY).returncode == 0
    bad = gridloop(simulated, "evaluate", "workers", "--period", "2026-13")
    assert bad.returncode == 2 and "2026-W47" in bad.stderr
    both = gridloop(simulated, "evaluate", "workers", "--period", DAY, "--grid", "x", "--community", "y")
    assert both.returncode == 2 and "one of them" in both.stderr
    now = gridloop(simulated, "evaluate", "workers", "--period", DAY, "--now", "yesterday")
    assert now.returncode == 2 and "ISO 8601" in now.stderr
    level = gridloop(simulated, "evaluate", "burden", "--period", DAY, "--level", "city")
    assert level.returncode == 2 and "community" in level.stderr
