"""Commands read grids from a cache: a grid changed by another writer is read again, never decided on stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.errors import InvalidCommand
from ops.sample import BOX, COMMUNITY, GRID, set_up_district
from tests.conftest import pg_env
from tests.engine.test_application import T0


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """An empty event store on SQLite or on PostgreSQL (a fresh schema of the session's server)."""
    if request.param == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.sqlite")}
    return pg_env(request.getfixturevalue("postgres"), request.getfixturevalue("pg_schema"))


def report(command_id: str) -> c.ReportCase:
    return c.ReportCase(
        command_id=command_id, actor="resident:1", source="resident", category="C0101", grid=GRID, description="x"
    )


def test_a_grid_retired_by_another_writer_refuses_the_next_report(store_env: dict[str, str]) -> None:
    clock = ManualClock(T0)
    ours, theirs = Gridloop(store_env, clock=clock), Gridloop(store_env, clock=clock)
    set_up_district(ours)
    ours.execute(report("r1"))  # the grid is cached now
    successor = GRID[:-1] + "2"
    theirs.execute(
        c.DrawGrid(command_id="g2", actor="admin", code=successor, grid_name="2", community=COMMUNITY,
                   households=1, boundary=BOX)
    )  # fmt: skip
    theirs.execute(c.RetireGrid(command_id="rt", actor="admin", code=GRID, successors=[successor], reason="merged"))
    before = ours.recorder.max_notification_id()
    with pytest.raises(InvalidCommand, match="was retired by a redraw"):
        ours.execute(report("r2"))
    assert ours.recorder.max_notification_id() == before
    ours.close()
    theirs.close()


def test_a_grid_changed_by_another_writer_is_read_again_and_the_report_recorded(store_env: dict[str, str]) -> None:
    clock = ManualClock(T0)
    ours, theirs = Gridloop(store_env, clock=clock), Gridloop(store_env, clock=clock)
    set_up_district(ours)
    ours.execute(report("r1"))
    theirs.execute(c.RedrawGrid(command_id="rd", actor="admin", code=GRID, households=7, boundary=BOX, reason="x"))
    assert ours._grids[GRID].households == 520  # stale, until a command is recorded against it
    result = ours.execute(report("r2"))
    assert ours.case(result.aggregate_id).grid == GRID
    assert ours._grids[GRID].households == 7
    ours.close()
    theirs.close()
