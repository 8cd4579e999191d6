"""The view store on PostgreSQL: the library's tracking-recorder contract, its schema, and the same views as SQLite."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError
from eventsourcing.tests import persistence as es_tests

from engine.clock import ManualClock
from ops.postgres import Server
from projections.board import CaseBoard
from projections.runner import EmbeddedRunner
from projections.sql_dialect import translate
from projections.store import ViewStore, view_checksum, view_rows, wait_for
from projections.store_postgres import PostgresViewStore
from projections.views import VIEW_NAMES, VIEWS, default_projections
from tests.projections.conftest import T0, Story, event_store, module_schema, postgres_views


class TestPostgresViewStoreIsATrackingRecorder(es_tests.TrackingRecorderTestCase):
    """The library's own contract for tracking recorders, run against the PostgreSQL view store."""

    server: Server
    schema: str

    @pytest.fixture(autouse=True)
    def _database(self, postgres: Server, pg_schema: str) -> None:
        self.server, self.schema = postgres, pg_schema

    def create_recorder(self) -> PostgresViewStore:
        store = postgres_views(self.server, self.schema)
        self.addCleanup(store.close)
        return store


def test_a_store_keeps_its_tables_in_its_own_schema(postgres: Server, pg_schema: str) -> None:
    store = postgres_views(postgres, pg_schema)
    with psycopg.connect(postgres.dsn) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
            )
        }
    assert {table.name for view in VIEWS for table in view.tables} | {"tracking", "held_aggregate"} <= tables
    with store.reading() as cursor:
        cursor.execute("SELECT name, version FROM view_version ORDER BY name")
        assert {row["name"]: row[1] for row in cursor.fetchall()} == {view.name: view.version for view in VIEWS}
    store.close()


def test_reopening_keeps_rows_and_positions_and_a_failed_transaction_leaves_neither(
    postgres: Server, pg_schema: str
) -> None:
    store = postgres_views(postgres, pg_schema)
    with store.transaction() as cursor:
        store.track(cursor, "case_board", 41)
        cursor.execute("INSERT INTO board_grid VALUES ('G', 'C', 'S')")
    with pytest.raises(IntegrityError), store.transaction() as cursor:
        cursor.execute("INSERT INTO board_grid VALUES ('H', 'C', 'S')")
        store.track(cursor, "case_board", 41)  # not past the recorded position: refused, the row goes too
    store.close()
    again = postgres_views(postgres, pg_schema)
    assert again.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, 0) | {"case_board": 41}
    assert wait_for(again, 41, timeout=0.0, names=["case_board"])
    assert not wait_for(again, 42, timeout=0.0, names=["case_board"])
    with again.reading() as cursor:
        cursor.execute("SELECT * FROM board_grid")
        assert [tuple(row) for row in cursor.fetchall()] == [("G", "C", "S")]
    again.close()


def test_a_view_whose_version_changed_is_dropped_with_its_tracking_rows_and_no_other(
    postgres: Server, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = postgres_views(postgres, pg_schema)
    with store.transaction() as cursor:
        cursor.execute("INSERT INTO board_grid VALUES ('G', 'C', 'S')")
        store.track(cursor, "case_board", 7)
        store.track(cursor, "case_board@t.work_order:0", 3)  # the Kafka runner's row of one partition
        store.track(cursor, "case_timeline", 7)
    store.close()

    monkeypatch.setattr(CaseBoard, "version", CaseBoard.version + 1)
    again = postgres_views(postgres, pg_schema)
    assert again.positions(["case_board", "case_board@t.work_order:0", "case_timeline"]) == {
        "case_board": 0, "case_board@t.work_order:0": 0, "case_timeline": 7,
    }  # fmt: skip
    assert view_rows(again, "case_board")["board_grid"] == []
    with again.reading() as cursor:
        cursor.execute("SELECT version FROM view_version WHERE name = 'case_board'")
        assert cursor.fetchone()[0] == CaseBoard.version
    again.close()


def test_sqlite_statements_read_as_postgresql() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b = :b AND c LIKE '10%' AND d::text = :d") == (
        "SELECT * FROM t WHERE a = %s AND b = %(b)s AND c LIKE '10%%' AND d::text = %(d)s"
    )
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?)") == "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    assert translate("CREATE TABLE IF NOT EXISTS t (a INTEGER, b REAL, c BLOB, d TEXT) WITHOUT ROWID") == (
        "CREATE TABLE IF NOT EXISTS t (a BIGINT, b DOUBLE PRECISION, c BYTEA, d TEXT)"
    )
    assert translate("UPDATE t SET a = MAX(a, (SELECT MAX(x) FROM u)), b = MIN(b, ?), n = 'MAX(a, b)'") == (
        "UPDATE t SET a = GREATEST(a, (SELECT MAX(x) FROM u)), b = LEAST(b, %s), n = 'MAX(a, b)'"
    )
    assert translate("SELECT CAST(ROUND(x) AS INTEGER), CAST(y AS REAL) FROM t") == (
        "SELECT CAST(ROUND(x) AS BIGINT), CAST(y AS DOUBLE PRECISION) FROM t"
    )


@pytest.fixture(scope="module")
def both(postgres: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ViewStore, PostgresViewStore]]:
    """Every lifecycle path and the supervision paths, in two districts, folded into a SQLite and a PostgreSQL store."""
    path = tmp_path_factory.mktemp("both")
    clock = ManualClock(T0)
    app = event_store(path / "events.sqlite", clock)
    Story(app, clock).world().city().every_path().supervision_paths()
    with module_schema(postgres, "both") as schema:
        stores = ViewStore.open(path / "views.sqlite"), postgres_views(postgres, schema)
        for store in stores:
            EmbeddedRunner(app.recorder, app.mapper, store, default_projections(), batch_size=50).run_until_caught_up()
        yield stores
        for store in stores:
            store.close()
    app.close()


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_one_log_folds_into_the_same_rows_on_sqlite_and_postgresql(
    both: tuple[ViewStore, PostgresViewStore], name: str
) -> None:
    sqlite, postgresql = both
    rows: dict[str, list[dict[str, Any]]] = view_rows(sqlite, name)
    assert view_rows(postgresql, name) == rows
    assert any(rows.values()), f"{name} folded nothing: the comparison would prove nothing"
    assert view_checksum(postgresql, name) == view_checksum(sqlite, name)
    assert sqlite.positions([name]) == postgresql.positions([name])


def test_two_runners_folding_one_postgres_store_at_once_apply_each_event_once(
    story: Story, postgres: Server, pg_schema: str, tmp_path: Path
) -> None:
    story.every_path()
    app = story.app
    shared = postgres_views(postgres, pg_schema)
    runners = [EmbeddedRunner(app.recorder, app.mapper, shared, default_projections(), batch_size=5) for _ in range(2)]
    errors: list[BaseException] = []

    def fold(runner: EmbeddedRunner) -> None:
        try:
            runner.run_until_caught_up()
        except BaseException as exc:  # reported by the test, which names it
            errors.append(exc)

    threads = [threading.Thread(target=fold, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    alone = ViewStore.open(tmp_path / "views.sqlite")
    EmbeddedRunner(app.recorder, app.mapper, alone, default_projections()).run_until_caught_up()
    assert [view_checksum(shared, name) for name in VIEW_NAMES] == [view_checksum(alone, name) for name in VIEW_NAMES]
    assert shared.positions(VIEW_NAMES) == alone.positions(VIEW_NAMES)
    alone.close()
    shared.close()


def _open_when_released(server: Server, schema: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        postgres_views(server, schema).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_postgres_store_together_all_get_it(postgres: Server) -> None:
    context = multiprocessing.get_context("fork")  # the target lives in this test module, not importable by name
    for trial in range(3):
        with module_schema(postgres, f"race{trial}") as schema:
            with psycopg.connect(postgres.dsn, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema}")  # each process finds no schema and makes it
            barrier, results = context.Barrier(4), context.Queue()
            processes = [
                context.Process(target=_open_when_released, args=(postgres, schema, barrier, results)) for _ in range(4)
            ]
            for process in processes:
                process.start()
            for process in processes:
                process.join(60)
            assert sorted(results.get(timeout=5) for _ in processes) == ["ok"] * 4
