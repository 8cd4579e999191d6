"""Patrol coverage: visits per grid per period, counted by the day they happened; the grids nobody walked."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine import commands as c
from projections.evaluation.coverage import Coverage, GridCoverage, PatrolCoverage, coverage
from projections.kpi_queries import parse_period
from projections.rebuild import rebuild
from projections.store import ViewStore
from projections.views import default_projections
from tests.projections.conftest import EAST, G1, G2, G3, STREET, WEST, Story, follow
from tests.projections.kafka_order import same_in_any_order

MONDAY, TUESDAY = parse_period("2026-11-23"), parse_period("2026-11-24")


def _patrol(story: Story, worker: str, grid: str, checkpoints: int, findings: int = 0, **when: datetime) -> None:
    """A patrol: start, checkpoints, findings, end; each step five minutes after the one before (live)."""
    patrol = story.do(c.StartPatrol, actor=worker, worker=worker, grid=grid, **when).aggregate_id
    for n in range(checkpoints):
        story.do(c.VisitCheckpoint, actor=worker, patrol_id=patrol, lon=111.61, lat=35.31 + n / 1000, **when)
    for n in range(findings):
        story.do(c.ReportFinding, actor=worker, patrol_id=patrol, category="C0101", description=f"发现 {n}", **when)
    story.do(c.EndPatrol, actor=worker, patrol_id=patrol, **when)


def test_a_days_coverage_matches_the_patrols_walked_and_lists_the_grids_not_visited(
    story: Story, views: ViewStore
) -> None:
    _patrol(story, "W1", G1, checkpoints=2, findings=1)  # 20 minutes: 4 steps after the start
    _patrol(story, "W1", G1, checkpoints=1)  # 10 minutes
    _patrol(story, "W3", G1, checkpoints=0)  # standing in for W1; 5 minutes
    follow(story.app, views).run_until_caught_up()

    found = coverage(views, MONDAY)
    assert found.grids[0] == GridCoverage(
        G1, EAST, STREET, patrols=3, checkpoints=3, findings=1, minutes=35, patrol_days=1, workers=2
    )
    assert [g.grid for g in found.unvisited] == [G2, G3]
    assert (len(found.grids), found.visited_count, found.rate) == (3, 1, pytest.approx(1 / 3))
    assert all(g.patrols == g.checkpoints == g.patrol_days == 0 for g in found.unvisited)
    assert coverage(views, MONDAY, within=WEST).unvisited == [GridCoverage(G3, WEST, STREET, 0, 0, 0, 0, 0, 0)]
    assert coverage(views, TUESDAY).visited_count == 0 and len(coverage(views, TUESDAY).unvisited) == 3


def test_a_grid_counts_from_the_day_it_was_drawn_until_the_day_it_was_retired(story: Story, views: ViewStore) -> None:
    story.clock.advance(timedelta(days=1))  # Tuesday
    story.do(c.RetireGrid, code=G3, successors=[G1], reason="并入 001 网格", actor="admin")
    follow(story.app, views).run_until_caught_up()
    assert [g.grid for g in coverage(views, MONDAY).grids] == [G1, G2, G3]
    assert [g.grid for g in coverage(views, TUESDAY).grids] == [G1, G2, G3]  # retired that day
    assert [g.grid for g in coverage(views, parse_period("2026-11-25")).grids] == [G1, G2]
    assert coverage(views, parse_period("2026-11-22")) == Coverage("2026-11-22", None, [])  # before any was drawn
    assert coverage(views, parse_period("2026-11-22")).rate is None


def test_a_late_upload_counts_in_the_period_it_happened(story: Story, views: ViewStore) -> None:
    runner = follow(story.app, views)
    story.clock.advance(timedelta(days=1))  # Tuesday morning: W3's phone reconnects
    _patrol(story, "W3", G3, checkpoints=4, occurred_at=datetime.fromisoformat("2026-11-23T16:00:00+08:00"))
    runner.run_until_caught_up()
    [g3] = [g for g in coverage(views, MONDAY).grids if g.grid == G3]
    assert (g3.patrols, g3.checkpoints, g3.patrol_days, g3.minutes) == (1, 4, 1, 0)
    assert G3 in [g.grid for g in coverage(views, TUESDAY).unvisited]
    assert coverage(views, parse_period("2026-W48")).visited_count == 1


@pytest.mark.sqlite_only
def test_rebuilt_equals_live_and_any_kafka_order_gives_the_same_rows(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    """SQLite only: the blue/green rebuild (and an as-of replay) build SQLite files beside the live store."""
    runner = follow(story.app, views, batch_size=2)
    story.after_each = lambda _: runner.run_until_caught_up()
    _patrol(story, "W1", G1, checkpoints=3, findings=2)
    _patrol(story, "W2", G2, checkpoints=1)
    story.every_path()
    story.do(c.RetireGrid, code=G3, successors=[G1], reason="并入 001 网格", actor="admin")
    story.after_each = None
    live = coverage(views, parse_period("2026-11"))
    [result] = rebuild(
        story.app.recorder, story.app.mapper, views, [p for p in default_projections() if p.name == "patrol_coverage"]
    )
    assert result.equal and coverage(views, parse_period("2026-11")) == live
    rows = same_in_any_order(story, PatrolCoverage(), tmp_path)
    assert len(rows["coverage_patrol"]) == 3 and len(rows["coverage_grid"]) == 3


def test_a_bad_place_is_refused() -> None:
    from engine.errors import InvalidCommand
    from projections.evaluation.places import level_column, within_condition

    with pytest.raises(InvalidCommand, match="within"):
        within_condition("g", " ")
    with pytest.raises(InvalidCommand, match="grid, community, street, district"):
        level_column("city")
