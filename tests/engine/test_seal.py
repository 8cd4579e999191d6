"""Tamper evidence on the write side: canonical bytes that survive every path, hash chains, checkpoints, the seal."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, date
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from fastavro import schemaless_writer
from structlog.testing import capture_logs

from engine import codec
from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.seal import (
    CHECKPOINT_EVERY,
    GENESIS,
    Checkpoint,
    canonical_bytes,
    checkpoint,
    checkpoint_positions,
    content_hash,
    link,
)
from engine.sealing import SealingError, SealingSQLiteRecorder
from ops.sample import GRID, set_up_district
from ops.simulation.working_time import midnight
from ops.simulator import simulate
from schemas.registry import current_schema, registry
from tests.conftest import pg_env
from tests.engine.test_codec import run_scenario
from tests.ops.test_simulator import _small_yuanqu

DAY = date(2026, 11, 23)  # a Monday


class RecordingGridloop(Gridloop):
    """The real application, keeping each event it saves as the domain made it (before the store saw it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved: list[Any] = []

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        recordings = super().save(*objs, **kwargs)
        self.saved.extend(r.domain_event for r in recordings)
        return recordings


def open_app(path: Path, clock: ManualClock | None = None) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)


@pytest.fixture(scope="module")
def simulated_day(tmp_path_factory: pytest.TempPathFactory) -> RecordingGridloop:
    """A simulated day of two of Yuanqu's communities, every event kept as the domain made it."""
    preset = _small_yuanqu()
    clock = ManualClock(midnight(DAY))
    path = tmp_path_factory.mktemp("seal") / "events.sqlite"
    app = RecordingGridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)
    simulate(app, clock, preset, days=1, start=DAY)
    return app


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Gridloop:
    """Every event type of every aggregate (tests/engine/test_codec.py's scenario)."""
    return run_scenario(tmp_path_factory.mktemp("seal-scenario") / "events.sqlite")


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """An empty event store on SQLite or on PostgreSQL (a fresh schema of the session's server)."""
    if request.param == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.sqlite")}
    return pg_env(request.getfixturevalue("postgres"), request.getfixturevalue("pg_schema"))


def many_events(path: Path | dict[str, str], reports: int) -> Gridloop:
    """An app on ``path`` (or a store's env) with the sample district and ``reports`` cases reported (two events
    each)."""
    env = path if isinstance(path, dict) else {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    app = Gridloop(env, clock=ManualClock(midnight(DAY)))
    grid = set_up_district(app)
    for n in range(reports):
        app.execute(c.ReportCase(command_id=f"r{n}", actor="resident:1", source="app", category="C0101", grid=grid,
                                 description=f"井盖缺失 {n}"))  # fmt: skip
    return app


# -- canonical bytes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["simulated_day", "scenario"])
def test_an_events_canonical_bytes_are_the_same_from_the_domain_the_wire_and_the_store(
    source: str, request: pytest.FixtureRequest
) -> None:
    app = request.getfixturevalue(source)
    saved = app.saved
    assert len(saved) == app.recorder.max_notification_id()
    for event in saved:
        made = canonical_bytes(event)
        assert canonical_bytes(codec.decode(codec.encode(event))) == made
        assert canonical_bytes(app.mapper.to_domain_event(app.mapper.to_stored_event(event))) == made


def test_the_canonical_form_is_sorted_json_with_utc_times_and_the_event_type(scenario: Any) -> None:
    reported = next(e for e in scenario.saved if codec.event_type(e) == ("workorder", "Reported") and e.lon)
    text = canonical_bytes(reported).decode()
    assert text.startswith('{"aggregate_id":"' + str(reported.originator_id) + '","aggregate_version":1,')
    assert '"event_type":"workorder.Reported"' in text
    assert f'"recorded_at":"{reported.timestamp.astimezone(UTC).isoformat(timespec="microseconds")}"' in text
    assert '"lon":' + repr(float(reported.lon)) in text
    assert "+00:00" in text and "+08:00" not in text
    assert " " not in text.replace(reported.description, "")


def test_any_change_to_an_event_changes_its_content_hash(scenario: Any) -> None:
    reported = next(e for e in scenario.saved if codec.event_type(e) == ("workorder", "Reported"))
    changed = codec.decode(codec.encode(reported))
    assert content_hash(changed) == content_hash(reported)
    for attribute, value in [("description", reported.description + "!"), ("originator_version", 2),
                             ("timestamp", reported.timestamp.replace(microsecond=1))]:  # fmt: skip
        other = codec.decode(codec.encode(reported))
        object.__setattr__(other, attribute, value)
        assert content_hash(other) != content_hash(reported), attribute


def test_a_field_at_its_schema_default_is_left_out_so_adding_one_keeps_every_old_hash(scenario: Any) -> None:
    by_person = next(e for e in scenario.saved if codec.event_type(e) == ("workorder", "Escalated") and not e.policy)
    by_policy = next(e for e in scenario.saved if codec.event_type(e) == ("workorder", "Escalated") and e.policy)
    assert b'"policy"' not in canonical_bytes(by_person)
    assert b'"policy":"' + by_policy.policy.encode() in canonical_bytes(by_policy)

    stored_before_the_field_existed = codec.decode(codec.encode(by_person))
    for field in ("policy", "policy_version", "inputs", "due"):
        del stored_before_the_field_existed.__dict__[field]
    assert canonical_bytes(stored_before_the_field_existed) == canonical_bytes(by_person)


def test_a_record_written_by_the_first_release_hashes_like_the_event_it_came_from(scenario: Any) -> None:
    """Release 0.1.0 wrote events before four types gained fields: read today, their hashes have not moved."""
    first = registry().released["0.1.0"]
    tried = set()
    for original in scenario.saved:
        key = codec.event_type(original)
        old = first.get(key)
        if old is None or old.fingerprint == current_schema(*key).fingerprint:
            continue
        old_fields = [f["name"] for f in old.schema["fields"]][3:]
        added = [f for f in current_schema(*key).schema["fields"] if f["name"] not in old_fields and "default" in f]
        if any(getattr(original, f["name"]) != f["default"] for f in added):
            continue  # the old release could not have written this event
        record = {name: getattr(original, name) for name in old_fields} | {
            "aggregate_id": original.originator_id,
            "aggregate_version": original.originator_version,
            "recorded_at": original.timestamp,
        }
        body = BytesIO()
        schemaless_writer(body, old.parsed, record)
        assert canonical_bytes(codec.decode(codec.MAGIC + old.fingerprint + body.getvalue())) == canonical_bytes(
            original
        )
        tried.add(key)
    assert tried >= {("workorder", "Reported"), ("workorder", "Escalated")}


# -- chains and checkpoints ----------------------------------------------------------------------------


def test_the_chain_and_the_checkpoint_depend_on_every_hash_and_their_order() -> None:
    a, b, c_ = (bytes([n]) * 32 for n in (1, 2, 3))
    assert link(GENESIS, a) != link(GENESIS, b) and link(a, b) != link(b, a)
    assert len(link(GENESIS, a)) == 32
    one = checkpoint(GENESIS, CHECKPOINT_EVERY, [a, b, c_])
    assert one == checkpoint(GENESIS, CHECKPOINT_EVERY, [a, b, c_])
    assert one != checkpoint(GENESIS, CHECKPOINT_EVERY, [b, a, c_])
    assert one != checkpoint(GENESIS, CHECKPOINT_EVERY, [a, c_])
    assert one != checkpoint(a, CHECKPOINT_EVERY, [a, b, c_])
    assert one != checkpoint(GENESIS, 2 * CHECKPOINT_EVERY, [a, b, c_])
    assert list(checkpoint_positions(1, 2 * CHECKPOINT_EVERY)) == [CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY]
    assert list(checkpoint_positions(CHECKPOINT_EVERY + 1, 2 * CHECKPOINT_EVERY - 1)) == []


# -- the sealed store ---------------------------------------------------------------------------------


def test_every_recorded_event_is_sealed_with_its_aggregates_previous_hash(scenario: Any) -> None:
    recorder: SealingSQLiteRecorder = scenario.recorder
    last = scenario.recorder.max_notification_id()
    seals = recorder.select_seals(1, last)
    assert [s.position for s in seals] == list(range(1, last + 1))
    previous: dict[Any, bytes] = {}
    for sealed, notification in zip(seals, scenario.recorder.select_notifications(1, last), strict=True):
        assert (sealed.originator_id, sealed.originator_version) == (
            notification.originator_id,
            notification.originator_version,
        )
        expected_prev = previous.get(sealed.originator_id, GENESIS)
        assert sealed.prev_hash == expected_prev
        assert sealed.hash == link(expected_prev, content_hash(scenario.mapper.to_domain_event(notification)))
        previous[sealed.originator_id] = sealed.hash


def test_each_backend_seals_every_event_with_its_aggregates_previous_hash(store_env: dict[str, str]) -> None:
    app = many_events(store_env, 3)
    reported = app.execute(c.ReportCase(command_id="one-more", actor="resident:1", source="app", category="C0101",
                                        grid=GRID, description="x"))  # fmt: skip
    case = app.execute(c.RegisterCase(command_id="g0", actor="desk:1", case_id=reported.aggregate_id))
    last = app.recorder.max_notification_id() or 0
    seals = app.recorder.select_seals(1, last)  # type: ignore[attr-defined]
    assert [s.position for s in seals] == list(range(1, last + 1))
    previous: dict[Any, bytes] = {}
    for sealed, notification in zip(seals, app.recorder.select_notifications(1, last), strict=True):
        assert (sealed.originator_id, sealed.originator_version) == (
            UUID(str(notification.originator_id)), notification.originator_version
        )  # fmt: skip
        expected_prev = previous.get(sealed.originator_id, GENESIS)
        assert sealed.prev_hash == expected_prev
        assert sealed.hash == link(expected_prev, content_hash(app.mapper.to_domain_event(notification)))
        previous[sealed.originator_id] = sealed.hash
    assert app.position_of(case.aggregate_id, 2) == case.position - 1
    app.close()


def test_a_checkpoint_chains_the_log_at_every_thousandth_position(tmp_path: Path) -> None:
    app = many_events(tmp_path / "events.sqlite", 1050)
    last = app.recorder.max_notification_id() or 0
    recorder: SealingSQLiteRecorder = app.recorder  # type: ignore[assignment]
    checkpoints = recorder.select_checkpoints()
    assert [cp.position for cp in checkpoints] == list(checkpoint_positions(1, last)) == [1000, 2000]
    hashes = [s.hash for s in recorder.select_seals(1, last)]
    assert checkpoints[0] == Checkpoint(1000, checkpoint(GENESIS, 1000, hashes[:1000]), GENESIS)
    assert checkpoints[1].prev == checkpoints[0].hash
    assert checkpoints[1].hash == checkpoint(checkpoints[0].hash, 2000, hashes[1000:2000])
    app.close()


def test_a_stored_event_without_a_content_hash_is_refused_and_nothing_is_written(scenario: Any) -> None:
    before = scenario.recorder.max_notification_id()
    plain = StoredEvent(originator_id=scenario.saved[0].originator_id, originator_version=99, topic="t", state=b"{}")
    with pytest.raises(SealingError, match="carries no content hash"):
        scenario.recorder.insert_events([plain])
    assert scenario.recorder.max_notification_id() == before


def test_a_store_recorded_before_sealing_is_sealed_in_log_order_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    app = many_events(path, 3)
    last = app.recorder.max_notification_id()
    sealed_as_recorded = app.recorder.select_seals(1, last)  # type: ignore[attr-defined]
    app.close()
    with closing(sqlite3.connect(path)) as db:
        db.executescript("DROP TABLE event_seal; DROP TABLE log_checkpoint;")

    with capture_logs() as logs:
        app = open_app(path)
    assert app.recorder.select_seals(1, last) == sealed_as_recorded  # type: ignore[attr-defined]
    assert {"event": "store_sealed", "events": last, "last_position": last, "log_level": "info"} in logs
    app.close()
    with capture_logs() as logs:
        open_app(path).close()
    assert not [log for log in logs if log["event"] == "store_sealed"], "a sealed store is sealed once"


def test_an_event_slipped_into_a_sealed_store_is_not_sealed_when_the_store_is_opened(store_env: dict[str, str]) -> None:
    many_events(store_env, 3).close()
    if "SQLITE_DBNAME" in store_env:
        with closing(sqlite3.connect(store_env["SQLITE_DBNAME"])) as db, db:
            db.execute(
                "INSERT INTO stored_events (originator_id, originator_version, topic, state) SELECT originator_id, "
                "originator_version + 1, topic, state FROM stored_events ORDER BY rowid DESC LIMIT 1"
            )
            forged = db.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0]
    else:
        import psycopg

        events = f"{store_env['POSTGRES_SCHEMA']}.gridloop_events"
        dsn = (
            f"host={store_env['POSTGRES_HOST']} port={store_env['POSTGRES_PORT']} dbname={store_env['POSTGRES_DBNAME']}"
        )
        with psycopg.connect(f"{dsn} user={store_env['POSTGRES_USER']}", autocommit=True) as db:
            row = db.execute(
                f"INSERT INTO {events} (originator_id, originator_version, topic, state) SELECT originator_id, "
                f"originator_version + 1, topic, state FROM {events} ORDER BY notification_id DESC LIMIT 1 "
                "RETURNING notification_id"
            ).fetchone()
            assert row is not None
            forged = row[0]
    app = Gridloop(store_env)
    assert app.recorder.select_seals(forged, forged) == []  # type: ignore[attr-defined]
    app.close()


def test_a_write_after_the_logs_end_was_deleted_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    many_events(path, 3).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM stored_events WHERE rowid = (SELECT MAX(rowid) FROM stored_events)")
    app = open_app(path, ManualClock(midnight(DAY)))
    with pytest.raises(SealingError, match="sealed already: events at the end of the log were deleted"):
        app.execute(c.ReportCase(command_id="after", actor="resident:1", source="app", category="C0101",
                                 grid=GRID, description="x"))  # fmt: skip
    app.close()
