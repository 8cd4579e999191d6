"""The sealed event store on a real PostgreSQL: the library's recorder contract, skipped positions, two writers."""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests import persistence as es_tests

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.kafka import Record, Topics
from engine.relay import _Builder, store_of
from engine.sealing import SealedStoredEvent, SealingError, open_recorder
from engine.sealing_postgres import SealingPostgresRecorder
from ops.postgres import Server
from ops.sample import GRID, set_up_district
from ops.simulation.working_time import midnight
from projections.audit.verdict import Verdict
from projections.audit.verify import _KafkaAudit, verify_store
from tests.conftest import pg_env

DAY = date(2026, 11, 23)  # a Monday


class ContentHashingRecorder(SealingPostgresRecorder):
    """The sealed recorder, given stored events as the library's test cases make them: plain, with no content
    hash. Each is wrapped with the SHA-256 of its topic and state, the hash gridloop's SealingMapper would
    attach (it hashes the domain event instead, which these cases do not have); the rest is the real
    recorder: the seals and checkpoints are written in the library's insert transaction."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        hashed = [
            SealedStoredEvent(
                s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
                hashlib.sha256(s.topic.encode() + s.state).digest(),
            )
            for s in stored_events
        ]
        return super().insert_events(hashed, **kwargs)


def new_schema(server: Server) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    return name


def drop_schema(server: Server, name: str) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


class OnPostgres:
    """A fresh schema per library test case, with the sealed recorder on it."""

    server: Server

    @pytest.fixture(autouse=True)
    def _on_server(self, postgres: Server) -> None:
        self.server = postgres

    def create_recorder(self) -> ContentHashingRecorder:
        schema = new_schema(self.server)
        datastore = PostgresDatastore(
            self.server.dbname, self.server.host, self.server.port, self.server.user, self.server.password,
            schema=schema, pool_size=4, max_overflow=10,
        )  # fmt: skip
        recorder = ContentHashingRecorder(datastore)
        recorder.create_table()
        self.addCleanup(drop_schema, self.server, schema)  # type: ignore[attr-defined]
        self.addCleanup(datastore.close)  # type: ignore[attr-defined]
        return recorder


class TestSealedPostgresIsAProcessRecorder(OnPostgres, es_tests.ProcessRecorderTestCase):
    """The library's contract for process recorders (events with tracking in one transaction), run as is."""

    test_performance = None  # type: ignore[assignment]  # prints a rate, asserts nothing: the benchmark measures it


class TestSealedPostgresIsAnApplicationRecorder(OnPostgres, es_tests.ApplicationRecorderTestCase[Any]):
    """The library's contract for application recorders: contiguous notification ids, concurrent writers that
    never interleave, subscriptions. Run as is but for the cases that print rates and assert nothing."""

    test_performance = None  # type: ignore[assignment]
    test_concurrent_throughput = None  # type: ignore[assignment]


# -- gridloop on PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def app(postgres: Server, pg_schema: str) -> Iterator[Gridloop]:
    app = Gridloop(pg_env(postgres, pg_schema), clock=ManualClock(midnight(DAY)))
    set_up_district(app)
    yield app
    app.close()


def report(n: int | str) -> c.ReportCase:
    return c.ReportCase(command_id=f"r{n}", actor="resident:1", source="app", category="C0101", grid=GRID,
                        description=f"井盖缺失 {n}")  # fmt: skip


def recorder_of(app: Gridloop) -> SealingPostgresRecorder:
    assert isinstance(app.recorder, SealingPostgresRecorder)
    return app.recorder


def test_a_command_on_postgres_is_sealed_and_found_at_its_position(app: Gridloop) -> None:
    done = app.execute(report(1))
    recorder = recorder_of(app)
    assert done.position == recorder.max_notification_id() == recorder.max_sealed_position()
    assert app.position_of(done.aggregate_id) == done.position - 1  # the case, then its receipt
    again = app.execute(report(1))
    assert again.duplicate and again.position == done.position
    assert recorder.select_skipped() == []
    assert verify_store(app).intact


def test_a_process_managers_tracking_is_recorded_with_its_command_once(app: Gridloop) -> None:
    done = app.execute(report(1), tracking=Tracking("dispatch-policy", 7))
    assert app.recorder.max_tracking_id("dispatch-policy") == 7  # type: ignore[attr-defined]
    with pytest.raises(IntegrityError):  # the same upstream position again: refused, and nothing written
        app.save(app.case(done.aggregate_id), tracking=Tracking("dispatch-policy", 7))
    assert app.recorder.max_notification_id() == done.position


def test_a_rolled_back_write_skips_positions_and_verifies_intact(app: Gridloop, pg_schema: str) -> None:
    first = app.execute(report(1))
    case = app.case(first.aggregate_id)
    stale = app.case(first.aggregate_id)
    case.register(category="C0101", note="", occurred_at=case.reported_at, actor="desk:1")
    app.save(case)
    stale.register(category="C0101", note="", occurred_at=case.reported_at, actor="desk:2")
    with pytest.raises(Exception, match="duplicate key"):  # a concurrency conflict: the sequence moved on
        app.save(stale)
    after = app.execute(report(2))
    recorder = recorder_of(app)
    skipped = recorder.select_skipped()
    assert skipped == [(first.position + 2, first.position + 2)]
    assert after.position == first.position + 4
    verdict = verify_store(app)
    assert verdict.intact, verdict.problems
    assert verdict.last_position == after.position


def test_a_checkpoint_due_in_a_skipped_run_is_written_by_the_next_batch(app: Gridloop, pg_schema: str) -> None:
    recorder = recorder_of(app)
    last = recorder.max_notification_id() or 0
    with psycopg.connect(recorder_dsn(app), autocommit=True) as db:  # as rolled-back writes would leave it
        db.execute(f"SELECT setval('{pg_schema}.gridloop_events_notification_id_seq', 1005)")
    done = app.execute(report(1))
    assert done.position == 1007
    assert recorder.select_skipped() == [(last + 1, 1005)]
    assert [cp.position for cp in recorder.select_checkpoints()] == [1000]
    verdict = verify_store(app)
    assert verdict.intact, verdict.problems
    assert verdict.checkpoints_checked == 1


def test_an_event_deleted_with_its_seal_is_not_taken_for_a_skipped_position(app: Gridloop, pg_schema: str) -> None:
    first = app.execute(report(1))
    order = app.case(first.aggregate_id)
    order.register(category="C0101", note="", occurred_at=order.reported_at, actor="desk:1")
    app.save(order)
    order.escalate(level=2, reason="overdue", occurred_at=order.reported_at, actor="sup:1")
    app.save(order)
    middle = app.position_of(first.aggregate_id, 2)
    with psycopg.connect(recorder_dsn(app), autocommit=True) as db:
        db.execute(f"DELETE FROM {pg_schema}.gridloop_events WHERE notification_id = %s", (middle,))
        db.execute(f"DELETE FROM {pg_schema}.event_seal WHERE position = %s", (middle,))
    verdict = verify_store(app)
    found = [(p.kind, p.position) for p in verdict.problems]
    assert found[0] == ("missing", middle)
    assert set(found) == {("missing", middle), ("out_of_order", app.position_of(first.aggregate_id, 3))}


def test_a_stored_event_without_a_content_hash_is_refused_and_nothing_is_written(app: Gridloop) -> None:
    before = app.recorder.max_notification_id()
    plain = StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic="t", state=b"{}")
    with pytest.raises(SealingError, match="carries no content hash"):
        app.recorder.insert_events([plain])
    assert app.recorder.max_notification_id() == before


def test_a_failure_while_sealing_rolls_the_events_back(app: Gridloop, monkeypatch: pytest.MonkeyPatch) -> None:
    before = app.recorder.max_notification_id()

    def fail(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(SealingPostgresRecorder, "_write_seals", fail)
    with pytest.raises(Exception, match="RuntimeError: disk full"):
        app.execute(report(1))
    monkeypatch.undo()
    assert app.recorder.max_notification_id() == before
    assert verify_store(app).intact


def test_the_database_function_insert_is_refused_because_it_would_not_seal(postgres: Server, pg_schema: str) -> None:
    env = {**pg_env(postgres, pg_schema), "POSTGRES_ENABLE_DB_FUNCTIONS": "y"}
    with pytest.raises(SealingError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
        Gridloop(env)


def test_a_store_of_another_kind_is_refused_by_name() -> None:
    from eventsourcing.popo import POPOFactory

    factory = POPOFactory({})
    with pytest.raises(SealingError, match=re.escape("not eventsourcing.popo: use PERSISTENCE_MODULE=")):
        open_recorder(factory, None)  # type: ignore[arg-type]


def test_a_store_recorded_by_the_bare_library_is_sealed_when_gridloop_opens_it(
    postgres: Server, pg_schema: str
) -> None:
    env = pg_env(postgres, pg_schema)
    sealed = Gridloop(env, clock=ManualClock(midnight(DAY)))
    set_up_district(sealed)
    sealed.execute(report(1))
    last = sealed.recorder.max_notification_id()
    expected = recorder_of(sealed).select_seals(1, last or 0)
    sealed.close()
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"TRUNCATE {pg_schema}.event_seal, {pg_schema}.log_checkpoint")
    reopened = Gridloop(env)
    assert recorder_of(reopened).select_seals(1, last or 0) == expected
    assert verify_store(reopened).intact
    reopened.close()


def test_the_kafka_audit_takes_the_stores_skipped_positions_for_no_loss(app: Gridloop, pg_schema: str) -> None:
    """The relay's own records of a store with skipped runs, read as the Kafka audit reads them (no broker);
    the checkpoint at 1000 covers both runs."""
    district = app.recorder.max_notification_id() or 0
    with psycopg.connect(recorder_dsn(app), autocommit=True) as db:  # as rolled-back writes would leave it
        db.execute(f"SELECT setval('{pg_schema}.gridloop_events_notification_id_seq', 995)")
    first = app.execute(report(1))
    case, stale = app.case(first.aggregate_id), app.case(first.aggregate_id)
    case.register(category="C0101", note="", occurred_at=case.reported_at, actor="desk:1")
    app.save(case)
    stale.register(category="C0101", note="", occurred_at=case.reported_at, actor="desk:2")
    with pytest.raises(Exception, match="duplicate key"):
        app.save(stale)
    recorder = recorder_of(app)
    assert recorder.position_of(app.execute(report(2)).aggregate_id, 1) == 1000
    topics = Topics()
    builder = _Builder(app.mapper, recorder, topics, lambda topic: 3)
    built = builder.build(recorder.select_notifications(1, 1000))
    records = [Record(t, p, n, k, v, dict(h)) for n, (t, p, k, v, h, _) in enumerate(built)]

    def audit(skipped: list[tuple[int, int]]) -> Verdict:
        kafka = _KafkaAudit(topics, {p for a, b in skipped for p in range(a, b + 1)})
        for record in records:
            kafka.check(record)
        kafka.finish()
        return kafka.findings.verdict("kafka", kafka.events, kafka.checkpoints_checked, kafka.last, {}, 0)

    skipped = recorder.select_skipped()
    assert skipped == [(district + 1, 995), (999, 999)]
    assert [(p.kind, p.position) for p in audit([]).problems] == [("missing", district + 1), ("missing", 999)]
    verdict = audit(skipped)
    assert verdict.intact, verdict.problems
    assert verdict.checkpoints_checked == 1


# -- two writers ------------------------------------------------------------------------------------------


def _write(env: dict[str, str], writer: int, shared: uuid.UUID, commands: int, done: Any) -> None:
    """One process's commands: its own reports, and escalations of one case both processes touch."""
    app = Gridloop(env, clock=ManualClock(midnight(DAY)))
    acknowledged = []
    for n in range(commands):
        command: c.Command = report(f"{writer}-{n}")
        if n % 2:
            command = c.EscalateCase(command_id=f"e{writer}-{n}", actor=f"sup:{writer}", case_id=shared, level=2,
                                     reason="督办")  # fmt: skip
        acknowledged.append(app.execute(command).command_id)
    app.close()
    done.put(acknowledged)


def test_two_processes_writing_at_once_lose_nothing_and_the_seals_chain(postgres: Server, pg_schema: str) -> None:
    env = pg_env(postgres, pg_schema)
    app = Gridloop(env, clock=ManualClock(midnight(DAY)))
    set_up_district(app)
    shared = app.execute(report("shared")).aggregate_id
    app.close()  # no pool threads in this process when it forks
    fork = multiprocessing.get_context("fork")  # the target lives in this test module, not importable by name
    done = fork.Queue()
    writers = [fork.Process(target=_write, args=(env, w, shared, 40, done)) for w in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:  # each puts its short list before it ends (well within the pipe's buffer)
        writer.join(timeout=300)
        assert writer.exitcode == 0
    acknowledged = [*done.get(timeout=10), *done.get(timeout=10)]
    app = Gridloop(env)
    assert len(acknowledged) == 80
    assert all(app._receipt(command_id) is not None for command_id in acknowledged), "an acknowledged one is lost"
    assert app.case(shared).version == 1 + 40, "every escalation of the shared case is recorded once"
    recorder = recorder_of(app)
    assert recorder.max_sealed_position() == recorder.max_notification_id()
    app.close()
    verdict = verify_store(store_of(Gridloop, env))
    assert verdict.intact, verdict.problems


def recorder_dsn(app: Gridloop) -> str:
    datastore = recorder_of(app).datastore
    kwargs = datastore.pool.kwargs
    assert isinstance(kwargs, dict)
    return f"host={kwargs['host']} port={kwargs['port']} user={kwargs['user']} dbname={kwargs['dbname']}"
