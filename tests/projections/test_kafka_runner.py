"""The Kafka runner on an in-memory consumer: store errors, poison, holds, rewinds (real broker: integration).

Each test runs on both view stores (the ``views`` fixture): per-partition tracking on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.application import Gridloop
from engine.clock import ManualClock
from engine.kafka import DEAD_ATTEMPTS, DEAD_ERROR, POSITION, Topics, partition_of
from engine.parsing import parse_command
from engine.relay import Relay
from ops.sample import GRID, set_up_district
from projections.kafka_runner import HELD_BEHIND, TRANSIENT, KafkaRunner
from projections.queries import find_case, held_aggregates, view_checksum
from projections.runner import EmbeddedRunner
from projections.store import Views, ViewStore
from projections.views import VIEW_NAMES, default_projections
from tests.kafka_fakes import PARTITIONS, FakeConsumer, TransactionalLog

TOPICS = Topics("t")


class DeadLetters(list[tuple[bytes | None, dict[str, bytes]]]):
    def __call__(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        self.append((key, dict(headers)))


@pytest.fixture
def app(tmp_path: Path) -> Gridloop:
    app = Gridloop(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.sqlite")},
        clock=ManualClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC)),
    )
    set_up_district(app)
    for n in range(6):
        case = app.execute(parse_command("report", {
            "command_id": f"r{n}", "actor": "resident:1", "source": "hotline", "category": "E0101",
            "grid": GRID, "description": "垃圾堆放",
        })).aggregate_id  # fmt: skip
        app.execute(parse_command("register", {"command_id": f"g{n}", "actor": "op:1", "case_id": str(case)}))
    return app


@pytest.fixture
def log(app: Gridloop) -> TransactionalLog:
    log = TransactionalLog(TOPICS)
    Relay(app.recorder, app.mapper, log, log.read_tail, TOPICS, batch_size=1000).ship_all()
    return log


def runner(store: Views, consumer: FakeConsumer, dead: DeadLetters, max_records: int = 2000) -> KafkaRunner:
    return KafkaRunner(consumer, store, default_projections(), TOPICS, "g", dead, attempts=3, max_records=max_records)


def embedded(app: Gridloop, path: Path) -> ViewStore:
    store = ViewStore.open(path)
    EmbeddedRunner(app.recorder, app.mapper, store, default_projections()).run_until_caught_up()
    return store


def test_the_runner_folds_the_log_into_views_equal_to_the_embedded_ones(
    app: Gridloop, log: TransactionalLog, tmp_path: Path, views: Views
) -> None:
    store, dead = views, DeadLetters()
    worker = runner(store, FakeConsumer(log), dead, max_records=3)
    while worker.poll_once():
        pass
    reference = embedded(app, tmp_path / "embedded.sqlite")
    assert [view_checksum(store, n) for n in VIEW_NAMES] == [view_checksum(reference, n) for n in VIEW_NAMES]
    assert not dead


def test_a_view_store_error_is_waited_out_and_never_makes_a_good_record_a_dead_letter(
    app: Gridloop, log: TransactionalLog, tmp_path: Path, views: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, dead = views, DeadLetters()
    worker = runner(store, FakeConsumer(log), dead)
    real = KafkaRunner._apply_one
    failures = iter(range(5))

    def locked_for_a_while(self: KafkaRunner, record: Any, due: Any, cursor: Any) -> int:
        if record.topic == "t.workorder" and next(failures, None) is not None:
            raise sqlite3.OperationalError("database is locked")
        return real(self, record, due, cursor)

    monkeypatch.setattr(KafkaRunner, "_apply_one", locked_for_a_while)
    with pytest.raises(TRANSIENT):
        worker.poll_once()  # the batch fails whole, and the consumer is put back where it was
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"poll_timeout": 0, "backoff": 0.001})
    thread.start()
    reference = embedded(app, tmp_path / "embedded.sqlite")
    for _ in range(2000):
        if view_checksum(store, "case_board") == view_checksum(reference, "case_board"):
            break
        stop.wait(0.01)
    stop.set()
    thread.join()
    assert not dead and not held_aggregates(store)
    assert [view_checksum(store, n) for n in VIEW_NAMES] == [view_checksum(reference, n) for n in VIEW_NAMES]


def poisoned_log(app: Gridloop, log: TransactionalLog) -> tuple[FakeConsumer, str]:
    """The log with a garbage record in one case's partition, after its report and before its registration."""
    key, _, headers = next(
        (k, v, h)
        for records in log.committed.values()
        for k, v, h in records
        if h["event_type"] == b"workorder.Reported"
    )
    topic, partition = "t.workorder", partition_of(key, PARTITIONS)
    records = log.committed[(topic, partition)]
    report = next(i for i, (k, _, h) in enumerate(records) if k == key and h["event_type"] == b"workorder.Reported")
    garbage = (key, b"\xc3\x01not avro at all", {POSITION: headers[POSITION], "event_type": b"workorder.Registered"})
    records.insert(report + 1, garbage)
    return FakeConsumer(log), key.decode()


def test_a_poison_record_is_dead_lettered_once_and_its_aggregate_held_while_others_apply(
    app: Gridloop, log: TransactionalLog, tmp_path: Path, views: Views
) -> None:
    consumer, case_id = poisoned_log(app, log)
    store, dead = views, DeadLetters()
    worker = runner(store, consumer, dead)
    while worker.poll_once():
        pass
    poison, held = dead
    assert poison[0] == held[0] == case_id.encode()
    assert "unknown schema fingerprint" in poison[1][DEAD_ERROR].decode()
    assert poison[1][DEAD_ATTEMPTS] == b"1"
    assert held[1][HELD_BEHIND].decode().startswith("t.workorder[")
    assert held[1][DEAD_ATTEMPTS] == b"0"
    assert [h["key"] for h in held_aggregates(store)] == [case_id]
    assert find_case(store, case_id).status == "reported"  # its registration was held, not applied
    reference = embedded(app, tmp_path / "embedded.sqlite")
    with reference.reading() as cursor:
        cursor.execute("SELECT COUNT(*) FROM board_case WHERE status = 'registered' AND case_id != ?", (case_id,))
        others = cursor.fetchone()[0]
    with store.reading() as cursor:
        cursor.execute("SELECT COUNT(*) FROM board_case WHERE status = 'registered'")
        assert cursor.fetchone()[0] == others == 5


def test_a_dead_letter_that_cannot_be_sent_fails_the_batch_and_the_batch_is_read_again(
    app: Gridloop, log: TransactionalLog, tmp_path: Path, views: Views
) -> None:
    consumer, case_id = poisoned_log(app, log)
    store, sent = views, DeadLetters()
    broken = SimpleNamespace(up=False)

    def sink(topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        if not broken.up:
            raise ConnectionError("dead-letter topic unreachable")
        sent(topic, key, value, headers)

    worker = runner(store, consumer, sink)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        while worker.poll_once():
            pass
    broken.up = True
    while worker.poll_once():
        pass
    assert [key for key, _ in sent] == [case_id.encode(), case_id.encode()]  # the poison, then the held one
    reference = embedded(app, tmp_path / "embedded.sqlite")
    with reference.reading() as cursor:
        cursor.execute("SELECT COUNT(*) FROM timeline_event WHERE case_id != ?", (case_id,))
        expected = cursor.fetchone()[0]
    with store.reading() as cursor:
        cursor.execute("SELECT COUNT(*) FROM timeline_event WHERE case_id != ?", (case_id,))
        assert cursor.fetchone()[0] == expected  # nothing of the failed batch was skipped
