"""`gridloop audit verify` on a real store: what it prints, and its exit status (0 intact, 1 broken, 2 bad input)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from ops.audit.verify import verify_command
from ops.config import Settings, load_settings
from ops.postgres import Server
from ops.sample import GRID, set_up_district


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A data directory whose event store holds a district and three reported cases."""
    settings = load_settings({}, data_dir=tmp_path)
    app = Gridloop(settings.event_store_env(), clock=ManualClock(datetime(2026, 11, 23, 1, tzinfo=UTC)))
    set_up_district(app)
    for n in range(3):
        app.execute(c.ReportCase(command_id=f"r{n}", actor="resident:1", source="app", category="C0101", grid=GRID,
                                 description="井盖缺失"))  # fmt: skip
    app.close()
    return settings


def verify(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(verify_command, ["--no-kafka", *args], obj=settings)


def last_report(settings: Settings) -> int:
    with closing(sqlite3.connect(settings.event_store_path)) as db:
        position: int = db.execute(
            "SELECT MAX(rowid) FROM stored_events WHERE topic = 'engine.work_order:WorkOrder.Reported'"
        ).fetchone()[0]
    return position


def test_an_intact_store_is_reported_intact_with_exit_status_0(settings: Settings) -> None:
    done = verify(settings)
    assert done.exit_code == 0, done.output
    assert "event store: intact" in done.output


def test_a_modified_event_exits_1_and_names_the_first_broken_link(settings: Settings) -> None:
    position = last_report(settings)
    with closing(sqlite3.connect(settings.event_store_path)) as db, db:
        state = db.execute("SELECT state FROM stored_events WHERE rowid = ?", (position,)).fetchone()[0]
        changed = state.replace("井盖缺失".encode(), "井盖完好".encode())
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (changed, position))
    done = verify(settings)
    assert done.exit_code == 1, done.output
    assert "BROKEN" in done.output
    assert f"first broken link: position {position}, version 1 of" in done.output
    assert "the event was modified after it was recorded" in done.output


def test_the_json_verdict_names_the_first_broken_link(settings: Settings) -> None:
    position = last_report(settings)
    with closing(sqlite3.connect(settings.event_store_path)) as db, db:
        db.execute("DELETE FROM stored_events WHERE rowid = ?", (position,))
    done = verify(settings, "--json")
    assert done.exit_code == 1, done.output
    verdict = json.loads(done.output)
    assert verdict["intact"] is False and "kafka" not in verdict
    assert verdict["store"]["first_broken"]["kind"] == "deleted"
    assert verdict["store"]["first_broken"]["position"] == position
    assert verdict["store"]["counts"] == {"deleted": 1}


def test_a_data_directory_without_an_event_store_is_bad_input_with_exit_status_2(tmp_path: Path) -> None:
    done = verify(load_settings({}, data_dir=tmp_path / "empty"))
    assert done.exit_code == 2
    assert "no event store at" in done.output
    assert not (tmp_path / "empty" / "events.sqlite").exists(), "verifying creates no store"


def test_verifying_nothing_is_refused_as_a_usage_error(settings: Settings) -> None:
    done = verify(settings, "--no-store")
    assert done.exit_code == 2
    assert "nothing to verify" in done.output


def test_a_postgres_store_is_verified_the_same_way(postgres: Server, pg_schema: str, tmp_path: Path) -> None:
    settings = load_settings(
        {}, data_dir=tmp_path, mode="distributed", postgres_provisioner="external", postgres_host=postgres.host,
        postgres_port=postgres.port, postgres_dbname=postgres.dbname, postgres_schema=pg_schema,
    )  # fmt: skip
    app = Gridloop(settings.event_store_env(), clock=ManualClock(datetime(2026, 11, 23, 1, tzinfo=UTC)))
    set_up_district(app)
    done = app.execute(c.ReportCase(command_id="r0", actor="resident:1", source="app", category="C0101", grid=GRID,
                                    description="井盖缺失"))  # fmt: skip
    position = app.position_of(done.aggregate_id)
    app.close()
    assert verify(settings).exit_code == 0
    import psycopg

    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        events = f"{pg_schema}.gridloop_events"
        row = db.execute(f"SELECT state FROM {events} WHERE notification_id = %s", (position,)).fetchone()
        assert row is not None
        changed = bytes(row[0]).replace("井盖缺失".encode(), "井盖完好".encode())
        db.execute(f"UPDATE {events} SET state = %s WHERE notification_id = %s", (changed, position))
    broken = verify(settings)
    assert broken.exit_code == 1, broken.output
    assert f"first broken link: position {position}, version 1 of" in broken.output
