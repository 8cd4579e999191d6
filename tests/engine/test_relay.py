"""The relay's logic over an in-memory log that keeps Kafka's transaction rules (the real broker: tests/integration)."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2 as kafka_python

from engine import codec
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.kafka import (
    CHECKPOINT,
    EVENT_TYPE,
    FINGERPRINT,
    HASH,
    OCCURRED_AT,
    POSITION,
    PREV_HASH,
    RECORDED_AT,
    Topics,
    murmur2,
    partition_of,
)
from engine.parsing import parse_command
from engine.relay import LogMismatch, Relay, RelayStopped, store_of
from engine.seal import CHECKPOINT_EVERY, content_hash, link
from engine.sealing import SealingError
from ops.sample import GRID, set_up_district
from tests.kafka_fakes import PARTITIONS, TransactionalLog


@pytest.fixture
def app(tmp_path: Path) -> Gridloop:
    clock = ManualClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    app = Gridloop(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.sqlite")}, clock=clock
    )
    set_up_district(app)
    return app


def relay_over(app: Gridloop, log: TransactionalLog, batch_size: int = 3) -> Relay:
    return Relay(app.recorder, app.mapper, log, log.read_tail, Topics("t"), batch_size=batch_size)


def test_every_stored_event_is_shipped_once_in_log_order(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    shipped = relay_over(app, log).ship_all()
    stored = app.recorder.max_notification_id()
    assert shipped == stored
    assert log.positions() == list(range(1, stored + 1))
    for records in log.committed.values():
        positions = [int(h[POSITION]) for _, _, h in records]
        assert positions == sorted(positions)


def test_a_restarted_relay_resumes_from_what_kafka_holds_and_ships_only_the_new(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    relay_over(app, log).ship_all()
    assert relay_over(app, log).ship_all() == 0
    for n in range(4):
        app.execute(parse_command("report", {
            "command_id": f"r{n}", "actor": "resident:1", "source": "hotline", "category": "E0101",
            "grid": GRID, "description": "垃圾堆放",
        }))  # fmt: skip
    before = len(log.positions())
    relay = relay_over(app, log)
    assert relay.position == before
    relay.ship_all()
    assert log.positions() == list(range(1, (app.recorder.max_notification_id() or 0) + 1))


def test_after_a_failed_commit_the_relay_stops_and_a_new_one_sends_the_batch_again_whole(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"), fail_commit_after=1)
    relay = relay_over(app, log)
    relay.ship_batch()
    with pytest.raises(ConnectionError):
        relay.ship_batch()
    assert relay.position == 3
    assert log.aborts == 1
    assert log.positions() == [1, 2, 3]
    with pytest.raises(RelayStopped, match="failed batch"):
        relay.ship_batch()  # it cannot know whether the broker committed: it must not guess
    log._fail_commit_after = None
    relay_over(app, log).ship_all()
    assert log.positions() == list(range(1, (app.recorder.max_notification_id() or 0) + 1))


def test_records_are_keyed_and_partitioned_by_aggregate_with_legible_headers(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    relay_over(app, log).ship_all()
    seen = 0
    for (topic, partition), records in log.committed.items():
        for key, value, headers in records:
            event = codec.decode(value)
            assert key == str(event.originator_id).encode()
            assert partition == partition_of(key, PARTITIONS)
            folder, name = codec.event_type(event)
            assert topic == f"t.{folder}"
            assert headers[EVENT_TYPE] == f"{folder}.{name}".encode()
            assert headers[FINGERPRINT] == codec.fingerprint_of(event).hex().encode()
            assert datetime.fromisoformat(headers[RECORDED_AT].decode()) == event.timestamp
            assert datetime.fromisoformat(headers[OCCURRED_AT].decode()) == getattr(
                event, "occurred_at", event.timestamp
            )
            seen += 1
    assert seen == app.recorder.max_notification_id()


def test_each_record_carries_its_events_seal_and_a_checkpoints_record_the_checkpoint(app: Gridloop) -> None:
    report(app, "c", 520)  # past the first checkpoint
    log = TransactionalLog(Topics("t"))
    relay_over(app, log, batch_size=400).ship_all()
    last = app.recorder.max_notification_id() or 0
    seals = {s.position: s for s in app.recorder.select_seals(1, last)}  # type: ignore[attr-defined]
    checkpoints = {c.position: c.hash for c in app.recorder.select_checkpoints()}  # type: ignore[attr-defined]
    assert CHECKPOINT_EVERY in checkpoints
    for records in log.committed.values():
        for _, value, headers in records:
            sealed = seals[int(headers[POSITION])]
            assert (headers[PREV_HASH], headers[HASH]) == (sealed.prev_hash.hex().encode(), sealed.hash.hex().encode())
            assert link(sealed.prev_hash, content_hash(codec.decode(value))) == sealed.hash
            expected = checkpoints.get(sealed.position)
            assert headers.get(CHECKPOINT) == (expected.hex().encode() if expected else None)
    assert sum(CHECKPOINT in h for records in log.committed.values() for _, _, h in records) == len(checkpoints)


def test_an_event_slipped_into_the_store_without_a_seal_is_not_shipped(app: Gridloop) -> None:
    with closing(sqlite3.connect(app.env["SQLITE_DBNAME"])) as db, db:
        db.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version + 1, topic, state FROM stored_events ORDER BY rowid DESC LIMIT 1"
        )
    log = TransactionalLog(Topics("t"))
    with pytest.raises(SealingError, match="has no seal of its own"):
        relay_over(app, log, batch_size=1).ship_all()
    assert log.positions() == list(range(1, app.recorder.max_notification_id() or 0))


def test_per_aggregate_versions_increase_on_every_partition(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    relay_over(app, log, batch_size=2).ship_all()
    last: dict[bytes, int] = {}
    for records in log.committed.values():
        for key, value, _ in records:
            version = codec.decode(value).originator_version
            assert version > last.get(key, 0)
            last[key] = version


def test_a_batch_size_below_one_is_refused(app: Gridloop) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        relay_over(app, TransactionalLog(Topics("t")), batch_size=0)


def test_topics_holding_another_stores_log_are_refused(app: Gridloop, tmp_path: Path) -> None:
    log = TransactionalLog(Topics("t"))
    relay_over(app, log).ship_all()
    other = Gridloop(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "other.sqlite")},
        clock=ManualClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC)),
    )
    with pytest.raises(LogMismatch, match="no event there"):
        relay_over(other, log)  # an empty store: Kafka is ahead of it
    set_up_district(other, prefix="elsewhere")  # as many events, other command ids: other receipts
    assert other.recorder.max_notification_id() == app.recorder.max_notification_id()
    with pytest.raises(LogMismatch, match="another store"):
        relay_over(other, log)


def building_ahead(app: Gridloop, log: TransactionalLog, batch_size: int = 3) -> Relay:
    opener = partial(store_of, Gridloop, dict(app.env))
    return Relay(app.recorder, app.mapper, log, log.read_tail, Topics("t"), batch_size=batch_size, build_ahead=opener)


def test_a_relay_building_ahead_commits_the_same_transactions_as_one_building_itself(app: Gridloop) -> None:
    alone, ahead = TransactionalLog(Topics("t")), TransactionalLog(Topics("t"))
    relay_over(app, alone).ship_all()
    relay = building_ahead(app, ahead)
    try:
        assert relay.ship_all() == app.recorder.max_notification_id()
        built_ahead = relay.built_ahead
    finally:
        relay.close()
    assert ahead.committed == alone.committed
    assert ahead.commits == alone.commits
    assert built_ahead == ahead.commits


def test_building_ahead_events_stored_between_batches_are_shipped_in_order(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    relay = building_ahead(app, log)
    try:
        relay.ship_batch()  # the next batch is being built from the store as it was
        report(app, "a", 3)
        relay.ship_all()
        report(app, "b", 2)
        relay.ship_all()
        assert relay.built_ahead > 0
    finally:
        relay.close()
    assert log.positions() == list(range(1, (app.recorder.max_notification_id() or 0) + 1))


def test_building_ahead_a_batch_asked_for_before_new_events_were_stored_is_asked_for_again(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    stored = app.recorder.max_notification_id() or 0
    relay = building_ahead(app, log, batch_size=stored)
    try:
        assert relay.ship_batch() == stored  # a full batch: the next is asked for at once, and is empty
        report(app, "a", 1)  # one command, one transaction: the builder reads none of it or all of it
        assert relay.ship_all() == 2  # the report and its receipt
    finally:
        relay.close()
    assert log.positions() == list(range(1, stored + 3))


def test_building_ahead_a_failed_commit_stops_the_relay_and_a_new_one_sends_the_batch_again(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"), fail_commit_after=1)
    relay = building_ahead(app, log)
    try:
        relay.ship_batch()
        with pytest.raises(ConnectionError):
            relay.ship_batch()
        assert relay.position == 3
        assert log.positions() == [1, 2, 3]
        with pytest.raises(RelayStopped, match="failed batch"):
            relay.ship_batch()
    finally:
        relay.close()
    log._fail_commit_after = None
    again = building_ahead(app, log)
    try:
        again.ship_all()
    finally:
        again.close()
    assert log.positions() == list(range(1, (app.recorder.max_notification_id() or 0) + 1))


def test_a_builder_that_cannot_open_the_store_fails_the_relays_start(app: Gridloop) -> None:
    log = TransactionalLog(Topics("t"))
    opener = partial(store_of, Gridloop, {"PERSISTENCE_MODULE": "no_such_persistence_module"})
    with pytest.raises(RuntimeError, match="could not open the event store"):
        Relay(app.recorder, app.mapper, log, log.read_tail, Topics("t"), build_ahead=opener)


def test_the_builder_process_ends_when_the_relay_closes(app: Gridloop) -> None:
    before = set(multiprocessing.active_children())
    relay = building_ahead(app, TransactionalLog(Topics("t")))
    started = set(multiprocessing.active_children()) - before
    assert len(started) == 1
    relay.close()
    assert not any(process.is_alive() for process in started)


def report(app: Gridloop, prefix: str, count: int) -> None:
    for n in range(count):
        app.execute(parse_command("report", {
            "command_id": f"{prefix}{n}", "actor": "resident:1", "source": "hotline", "category": "E0101",
            "grid": GRID, "description": "垃圾堆放",
        }))  # fmt: skip


def test_a_caught_up_relay_builds_the_few_new_events_itself_and_ships_the_same_records(app: Gridloop) -> None:
    alone, ahead = TransactionalLog(Topics("t")), TransactionalLog(Topics("t"))
    relay = building_ahead(app, ahead)
    try:
        relay.ship_all()  # from the start: batches built in the builder process
        built = relay.built_ahead
        report(app, "late", 1)  # a follow loop finds a few events: built here, no round trip
        assert 0 < relay.ship_batch() < 3
        assert relay.built_ahead == built
    finally:
        relay.close()
    relay_over(app, alone).ship_all()
    assert ahead.committed == alone.committed


def test_the_word_at_a_time_murmur2_is_kafka_pythons() -> None:
    rnd = random.Random(7)
    keys = [rnd.randbytes(length) for length in range(64) for _ in range(20)]
    assert [murmur2(key) for key in keys] == [kafka_python(key) for key in keys]
