"""View versions: a view whose tables or handlers changed is dropped on opening and folded again from the start."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from projections.board import CaseBoard
from projections.kafka_runner import tracking_name
from projections.queries import find_case, view_checksum, view_rows
from projections.queue import WorkerQueue
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.timeline import CaseTimeline
from projections.views import VIEW_NAMES, VIEWS, default_projections

BOARD_ON_KAFKA = tracking_name("case_board", "gridloop.workorder", 3)
QUEUE_ON_KAFKA = tracking_name("worker_queue", "gridloop.workorder", 3)


def _versions(store: ViewStore) -> dict[str, int]:
    with store.reading() as cursor:
        cursor.execute("SELECT name, version FROM view_version")
        return {row[0]: row[1] for row in cursor.fetchall()}


def _tracking(store: ViewStore) -> dict[str, int]:
    with store.reading() as cursor:
        cursor.execute(
            "SELECT application_name, notification_id FROM tracking WHERE application_name != '__migration__'"
        )
        return {row[0]: row[1] for row in cursor.fetchall()}


def _columns(store: ViewStore, table: str) -> list[str]:
    with store.reading() as cursor:
        cursor.execute(f"PRAGMA table_info({table})")
        return [row[1] for row in cursor.fetchall()]


def follow(app: Any, store: ViewStore) -> EmbeddedRunner:
    return EmbeddedRunner(app.recorder, app.mapper, store, default_projections())


def _followed(story: Any, path: Path) -> ViewStore:
    """A view store that has read the whole story, and Kafka tracking rows for the board and the queue."""
    store = ViewStore.open(path)
    follow(story.app, store).run_until_caught_up()
    with store.transaction() as cursor:
        store.track(cursor, BOARD_ON_KAFKA, 17)
        store.track(cursor, QUEUE_ON_KAFKA, 17)
    return store


def test_a_new_store_records_the_version_of_every_view(views: ViewStore) -> None:
    assert _versions(views) == {view.name: view.version for view in VIEWS}
    assert _versions(views)["case_board"] == 2


def test_a_view_whose_version_changed_is_dropped_with_its_tracking_and_folded_again(
    story: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    story.report("leak", lon=111.65, lat=35.32)
    path = tmp_path / "views.sqlite"
    store = _followed(story, path)
    before = {name: view_checksum(store, name) for name in VIEW_NAMES}
    queue_rows = view_rows(store, "worker_queue")
    position = store.positions(["worker_queue"])["worker_queue"]
    store.close()

    monkeypatch.setattr(CaseBoard, "version", 3)
    with capture_logs() as logs:
        store = ViewStore.open(path)
    assert [e for e in logs if e["event"] == "view_schema_changed"] == [
        {"event": "view_schema_changed", "name": "case_board", "from": 2, "to": 3, "log_level": "info"}
    ]
    assert view_rows(store, "case_board") == {"board_case": [], "board_grid": []}
    # Its tracking rows are gone, the embedded runner's and the Kafka runner's; the other views keep theirs.
    assert _tracking(store) == {name: position for name in VIEW_NAMES if name != "case_board"} | {QUEUE_ON_KAFKA: 17}
    assert view_rows(store, "worker_queue") == queue_rows
    assert _versions(store)["case_board"] == 3

    assert follow(story.app, store).run_until_caught_up() > 0  # the board alone, from the start of the log
    assert {name: view_checksum(store, name) for name in VIEW_NAMES} == before
    store.close()


def test_opening_a_store_again_without_a_version_change_drops_nothing(story: Any, tmp_path: Path) -> None:
    story.report("leak")
    path = tmp_path / "views.sqlite"
    store = _followed(story, path)
    tracking = _tracking(store)
    store.close()
    with capture_logs() as logs:
        store = ViewStore.open(path)
    assert not [e for e in logs if e["event"] == "view_schema_changed"]
    assert _tracking(store) == tracking
    assert len(view_rows(store, "case_board")["board_case"]) == 1
    store.close()


def test_a_store_made_before_views_had_versions_is_folded_again_with_todays_columns(story: Any, tmp_path: Path) -> None:
    case = story.report("leak", description="井盖缺失, 路口东侧", lon=111.65, lat=35.32)
    path = tmp_path / "views.sqlite"
    store = _followed(story, path)
    # What such a store looks like: no version table, and a board without the columns added since.
    with store.transaction() as cursor:
        cursor.execute("DROP TABLE view_version")
        cursor.execute("DROP VIEW board")
        for column in ("description", "lon", "lat"):
            cursor.execute(f"ALTER TABLE board_case DROP COLUMN {column}")
        cursor.execute("CREATE VIEW board AS SELECT * FROM board_case")
    store.close()

    with capture_logs() as logs:
        store = ViewStore.open(path)
    changed = {e["name"]: (e["from"], e["to"]) for e in logs if e["event"] == "view_schema_changed"}
    assert changed == {view.name: (None, view.version) for view in VIEWS}
    assert {"description", "lon", "lat"} <= set(_columns(store, "board_case"))
    assert _tracking(store) == {}
    assert _versions(store) == {view.name: view.version for view in VIEWS}

    follow(story.app, store).run_until_caught_up()
    row = find_case(store, str(case))
    assert (row.description, row.lon, row.lat) == ("井盖缺失, 路口东侧", 111.65, 35.32)
    store.close()


def test_a_view_new_to_an_existing_store_is_created_and_the_others_are_kept(story: Any, tmp_path: Path) -> None:
    story.report("leak")
    path = tmp_path / "views.sqlite"
    store = ViewStore.open(path, (CaseBoard, WorkerQueue, CaseTimeline))
    before_the_tree = [p for p in default_projections() if p.name in ("case_board", "worker_queue", "case_timeline")]
    EmbeddedRunner(story.app.recorder, story.app.mapper, store, before_the_tree).run_until_caught_up()
    tracking = _tracking(store)
    store.close()

    with capture_logs() as logs:
        store = ViewStore.open(path)
    assert not [e for e in logs if e["event"] == "view_schema_changed"]
    assert _tracking(store) == tracking
    assert view_rows(store, "division_tree") == {"division": []}
    follow(story.app, store).run_until_caught_up()  # the tree (and the views added since) alone, from the start
    assert len(view_rows(store, "division_tree")["division"]) == 7
    store.close()


def _open_when_released(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with capture_logs() as logs:
            ViewStore.open(Path(path)).close()
        results.put(sum(e["event"] == "view_schema_changed" for e in logs))
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_changed_store_together_drop_the_view_once(
    story: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    story.report("leak")
    path = tmp_path / "views.sqlite"
    _followed(story, path).close()
    monkeypatch.setattr(CaseBoard, "version", 3)  # before the fork: every process opens with the new version
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_open_when_released, args=(str(path), barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()
    assert sorted(outcomes) == [0, 0, 0, 1]

    store = ViewStore.open(path)
    assert _versions(store)["case_board"] == 3
    assert "case_board" not in _tracking(store) and BOARD_ON_KAFKA not in _tracking(store)
    follow(story.app, store).run_until_caught_up()
    assert find_case(store, str(story.cases["leak"])).status.value == "reported"
    store.close()


def test_a_case_board_row_keeps_the_reports_description_and_place(story: Any, views: ViewStore) -> None:
    case = story.report("leak", description="路灯不亮", lon=111.66, lat=35.31)
    story.report("no_place", description="噪音扰民")
    follow(story.app, views).run_until_caught_up()
    row = find_case(views, str(case))
    assert (row.description, row.lon, row.lat) == ("路灯不亮", 111.66, 35.31)
    unplaced = find_case(views, str(story.cases["no_place"]))
    assert (unplaced.description, unplaced.lon, unplaced.lat) == ("噪音扰民", None, None)
