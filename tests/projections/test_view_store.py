"""The view store: a real eventsourcing TrackingRecorder on its own SQLite file, holding the views' tables."""

from __future__ import annotations

import multiprocessing
import tempfile
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.tests import persistence as es_tests

from projections.store import ViewStore
from projections.views import VIEW_NAMES, VIEWS


class TestViewStoreIsATrackingRecorder(es_tests.TrackingRecorderTestCase):
    """The library's own contract for tracking recorders, run against the view store."""

    def create_recorder(self) -> ViewStore:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        store = ViewStore.open(Path(folder.name) / "views.sqlite")
        self.addCleanup(store.close)
        return store


def test_the_view_store_is_its_own_file_in_wal_mode_so_readers_do_not_block_the_runner(tmp_path: Path) -> None:
    store = ViewStore.open(tmp_path / "views.sqlite")
    with store.reading() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in cursor.fetchall()}
    assert {table.name for view in VIEWS for table in view.tables} | {"tracking"} <= tables
    assert "stored_events" not in tables
    store.close()


def test_opening_an_existing_view_store_keeps_its_rows_and_positions(tmp_path: Path) -> None:
    store = ViewStore.open(tmp_path / "views.sqlite")
    with store.transaction() as cursor:
        store.track(cursor, "case_board", 41)
        cursor.execute("INSERT INTO board_grid VALUES ('G', 'C', 'S')")
    store.close()

    again = ViewStore.open(tmp_path / "views.sqlite")
    assert again.max_tracking_id("case_board") == 41
    assert again.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, 0) | {"case_board": 41}
    with again.reading() as cursor:
        cursor.execute("SELECT * FROM board_grid")
        assert [tuple(row) for row in cursor.fetchall()] == [("G", "C", "S")]
    again.close()


def test_a_failed_transaction_leaves_neither_rows_nor_tracking(tmp_path: Path) -> None:
    store = ViewStore.open(tmp_path / "views.sqlite")
    with pytest.raises(IntegrityError), store.transaction() as cursor:
        cursor.execute("INSERT INTO board_grid VALUES ('G', 'C', 'S')")
        store.track(cursor, "case_board", 5)
        store.track(cursor, "case_board", 5)  # not past the recorded position: refused
    assert store.max_tracking_id("case_board") is None
    with store.reading() as cursor:
        cursor.execute("SELECT COUNT(*) FROM board_grid")
        assert cursor.fetchone()[0] == 0
    store.close()


def test_a_store_another_process_created_while_this_one_was_opening_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two CLI commands open a new view store at once: this one looked for the tracking table
    # before the other created it, and only then began its own create transaction.
    ViewStore.open(tmp_path / "views.sqlite").close()  # the other process, first to commit
    looked_too_early = iter([OperationalError("no such table: tracking")])
    seen = SQLiteTrackingRecorder.max_tracking_id

    def max_tracking_id(recorder: SQLiteTrackingRecorder, name: str) -> int | None:
        too_early = next(looked_too_early, None)
        if too_early is not None:
            raise too_early
        return seen(recorder, name)

    monkeypatch.setattr(SQLiteTrackingRecorder, "max_tracking_id", max_tracking_id)
    store = ViewStore.open(tmp_path / "views.sqlite")
    assert store.max_tracking_id("__migration__") == 1
    assert store.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, 0)
    store.close()


def _open_when_released(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        ViewStore.open(Path(path)).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_view_store_together_all_get_it(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it alone, and SQLite refuses at once instead of waiting:
    # before the fix, 20 trials of four processes each failed with "database is locked" in every run.
    context = multiprocessing.get_context("fork")  # the target lives in this test module, not importable by name
    for trial in range(20):
        barrier, results = context.Barrier(4), context.Queue()
        path = str(tmp_path / f"views-{trial}.sqlite")
        processes = [context.Process(target=_open_when_released, args=(path, barrier, results)) for _ in range(4)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join()
        assert outcomes == ["ok"] * 4
