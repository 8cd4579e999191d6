"""The embedded runner: batches in one transaction each, rebuilds that equal the live views, no event twice."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.dispatch import singledispatchmethod
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine.errors import UnknownReference
from engine.work_order import WorkOrder
from projections.projection import Cursor, Projection, ViewTable, event_class, routes
from projections.queries import find_case, view_checksum, view_rows, wait_for
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import VIEW_NAMES, VIEWS, default_projections


def replayed(played: Any, folder: Path, batch_size: int) -> ViewStore:
    """The played story's log folded into a fresh view store."""
    store = ViewStore.open(folder / f"views-{batch_size}.sqlite")
    app = played.story.app
    EmbeddedRunner(app.recorder, app.mapper, store, default_projections(), batch_size).run_until_caught_up()
    return store


@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_views_folded_from_zero_equal_the_live_views_row_by_row(played: Any, tmp_path: Path, batch_size: int) -> None:
    store = replayed(played, tmp_path, batch_size)
    for name in VIEW_NAMES:
        assert view_rows(store, name) == view_rows(played.store, name)
        assert view_checksum(store, name) == view_checksum(played.store, name)
    assert store.positions(VIEW_NAMES) == played.store.positions(VIEW_NAMES)
    store.close()


@settings(max_examples=15, deadline=None)
@given(batch_size=st.integers(min_value=1, max_value=200))
def test_any_batch_size_gives_the_same_views(played: Any, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = replayed(played, Path(folder), batch_size)
        assert [view_checksum(store, n) for n in VIEW_NAMES] == [view_checksum(played.store, n) for n in VIEW_NAMES]
        store.close()


def test_the_views_are_not_empty_so_equal_checksums_mean_something(played: Any) -> None:
    rows = {name: sum(len(r) for r in view_rows(played.store, name).values()) for name in VIEW_NAMES}
    assert rows["case_board"] == 12 + 3  # the cases and the board's own grid map
    assert rows["worker_queue"] == 12
    assert rows["case_timeline"] == sum(played.story.app.case(i).version for i in played.story.cases.values())


def test_a_rebuild_in_place_reproduces_the_live_views(played: Any, tmp_path: Path) -> None:
    store = replayed(played, tmp_path, 500)
    before = {name: view_rows(store, name) for name in VIEW_NAMES}
    app = played.story.app
    runner = EmbeddedRunner(app.recorder, app.mapper, store, default_projections())
    applied = runner.rebuild()
    # Every event of a topic some view follows, once: the case events and the world (divisions, grids, workers).
    assert applied == len(_followed(app, app.recorder.max_notification_id()))
    assert applied > sum(app.case(i).version for i in played.story.cases.values())
    assert {name: view_rows(store, name) for name in VIEW_NAMES} == before
    assert runner.position == app.recorder.max_notification_id()
    store.close()


def test_one_view_can_be_rebuilt_alone_while_the_others_keep_their_rows_and_positions(
    played: Any, tmp_path: Path
) -> None:
    store = replayed(played, tmp_path, 500)
    app = played.story.app
    runner = EmbeddedRunner(app.recorder, app.mapper, store, default_projections())
    queue_before, board_before = view_checksum(store, "worker_queue"), view_checksum(store, "case_board")
    with store.transaction() as cursor:  # damage the queue, as a bug might have
        cursor.execute("UPDATE queue_case SET worker = 'W9'")
    assert view_checksum(store, "worker_queue") != queue_before

    runner.rebuild("worker_queue")
    assert view_checksum(store, "worker_queue") == queue_before
    assert view_checksum(store, "case_board") == board_before
    assert set(store.positions(VIEW_NAMES).values()) == {app.recorder.max_notification_id()}
    with pytest.raises(UnknownReference, match="unknown view 'nope'"):
        runner.rebuild("nope")
    store.close()


class Tripwire(Projection):
    """A view that breaks at one chosen log position, as a buggy projection would."""

    name = "tripwire"
    tables = (ViewTable("tripwire_seen", ("position",)),)
    schema = ("CREATE TABLE IF NOT EXISTS tripwire_seen (position INTEGER PRIMARY KEY)",)

    def __init__(self, trip_at: int | None) -> None:
        self.trip_at = trip_at

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Events of no interest."""

    @process_event.register(event_class(WorkOrder, "Accepted"))
    def _accepted(self, event: Any, position: int, cursor: Cursor) -> None:
        if position == self.trip_at:
            raise RuntimeError(f"tripped at {position}")
        cursor.execute("INSERT INTO tripwire_seen VALUES (?)", (position,))


def test_a_batch_that_fails_midway_writes_nothing_and_a_rerun_applies_every_event_exactly_once(
    played: Any, tmp_path: Path
) -> None:
    app = played.story.app
    accepted = [n.id for n in app.recorder.select_notifications(1, 10_000) if n.topic.endswith("WorkOrder.Accepted")]
    trip_at = accepted[4]
    store = ViewStore.open(tmp_path / "views.sqlite", (*VIEWS, Tripwire))
    tripwire = Tripwire(trip_at)
    # The tripwire comes last, so the other views have already written this event's rows in the batch.
    runner = EmbeddedRunner(app.recorder, app.mapper, store, [*default_projections(), tripwire], batch_size=20)

    with pytest.raises(RuntimeError, match=f"tripped at {trip_at}"):
        runner.run_until_caught_up()

    committed = (trip_at - 1) // 20 * 20  # the last whole batch before the one that failed
    assert runner.position == committed
    assert set(store.positions([*VIEW_NAMES, "tripwire"]).values()) == {committed}
    with store.reading() as cursor:
        for table, column in [("board_case", "position"), ("queue_case", "position"), ("timeline_event", "position")]:
            cursor.execute(f"SELECT MAX({column}) FROM {table}")
            assert cursor.fetchone()[0] <= committed, table
        cursor.execute("SELECT COUNT(*) FROM timeline_event")
        on_timeline = cursor.fetchone()[0]
    case_events = [n for n in app.recorder.select_notifications(1, committed) if ":WorkOrder." in n.topic]
    assert on_timeline == len(case_events)  # nothing before the failed batch was skipped

    tripwire.trip_at = None  # the bug is fixed; run again from where the store says it stopped
    EmbeddedRunner(app.recorder, app.mapper, store, [*default_projections(), tripwire]).run_until_caught_up()
    for name in VIEW_NAMES:
        assert view_checksum(store, name) == view_checksum(played.store, name)
    with store.reading() as cursor:
        cursor.execute("SELECT position FROM tripwire_seen ORDER BY position")
        assert [row[0] for row in cursor.fetchall()] == accepted
    store.close()


def test_a_runner_started_again_on_the_same_store_resumes_without_applying_anything_twice(
    story: Any, views: ViewStore
) -> None:
    app = story.app
    story.report("first")
    # The world (divisions established, grids drawn, workers enrolled …) and one case reported, each once.
    first = EmbeddedRunner(app.recorder, app.mapper, views, default_projections()).run_until_caught_up()
    assert first == len(_followed(app, app.recorder.max_notification_id()))
    assert first >= 8  # four divisions, three grids, the report: never fewer
    story.on("first", c.RegisterCase)
    again = EmbeddedRunner(app.recorder, app.mapper, views, default_projections())
    assert again.position == app.recorder.max_notification_id() - 2
    assert again.run_until_caught_up() == 1  # the registration; the world and the report are not applied again
    assert again.run_until_caught_up() == 0
    assert find_case(views, str(story.cases["first"])).status.value == "registered"


def test_the_runner_follows_the_log_in_the_background_until_told_to_stop(story: Any, views: ViewStore) -> None:
    app = story.app
    runner = EmbeddedRunner(app.recorder, app.mapper, views, default_projections())
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, args=(stop, 0.01))
    follower.start()
    try:
        case = story.report("leak")
        assert wait_for(views, story.results[-1].position, timeout=30)
        assert find_case(views, str(case)).status.value == "reported"
    finally:
        stop.set()
        follower.join(timeout=30)
    assert not follower.is_alive()


def test_projections_need_distinct_names_and_batches_at_least_one_event(story: Any, views: ViewStore) -> None:
    app = story.app
    with pytest.raises(ValueError, match="distinct names"):
        EmbeddedRunner(app.recorder, app.mapper, views, [*default_projections(), *default_projections()])
    with pytest.raises(ValueError, match="batch_size"):
        EmbeddedRunner(app.recorder, app.mapper, views, default_projections(), batch_size=0)


def _followed(app: Any, last: int) -> list[Any]:
    """The notifications up to ``last`` whose topic some view follows: what a runner must apply, each once."""
    followed = routes(default_projections())
    return [n for n in app.recorder.select_notifications(1, last) if n.topic in followed]
