"""Blue/green rebuilds: built beside the live views, swapped in one transaction, equal to them by checksum.

A rebuild killed midway is a real OS process killed with SIGKILL; run as a script, this module is that process.
SQLite only: the blue/green rebuild builds beside the live store in an ATTACHed file and swaps within it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from projections import rebuild as blue_green
from projections.board import CaseBoard
from projections.projection import Projection, chosen
from projections.rebuild import BlueGreen, LogSource, RebuildBusy, Swapped, rebuild
from projections.runner import EmbeddedRunner
from projections.store import ViewStore, checksum, view_checksum
from projections.views import VIEW_NAMES, default_projections

pytestmark = pytest.mark.sqlite_only

STARTUP_LIMIT = 120.0
"""Seconds the rebuild process may take to reach the point it is killed at (a hang, not a measurement)."""


def follow(app: Gridloop, store: ViewStore) -> EmbeddedRunner:
    return EmbeddedRunner(app.recorder, app.mapper, store, default_projections())


def views_of(app: Gridloop, path: Path) -> dict[str, str]:
    """The checksums of the views a fresh store gets by folding the whole log."""
    store = ViewStore.open(path)
    follow(app, store).run_until_caught_up()
    sums = {name: view_checksum(store, name) for name in VIEW_NAMES}
    store.close()
    return sums


def checksums(store: ViewStore) -> dict[str, str]:
    return {name: view_checksum(store, name) for name in VIEW_NAMES}


def scratch_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("views.rebuild-*"))


def board(app: Gridloop, store: ViewStore) -> list[Projection]:
    return chosen(default_projections(), "case_board")


def spoil(store: ViewStore, case_id: Any) -> None:
    """What a bug in a view would do: a case on the board in a state it never reached, a timeline step lost."""
    with store.transaction() as cursor:
        cursor.execute("UPDATE board_case SET status = 'dispatched', worker = 'W9' WHERE case_id = ?", (str(case_id),))
        cursor.execute("DELETE FROM timeline_event WHERE case_id = ? AND version = 2", (str(case_id),))


@pytest.fixture
def live(story: Any, views: ViewStore) -> EmbeddedRunner:
    """Every lifecycle path, with live views that followed it."""
    runner = follow(story.app, views)
    story.every_path().supervision_paths()
    runner.run_until_caught_up()
    return runner


def test_every_rebuilt_view_equals_the_live_one_by_checksum(
    story: Any, views: ViewStore, live: Any, tmp_path: Path
) -> None:
    before = checksums(views)
    swapped = rebuild(story.app.recorder, story.app.mapper, views, default_projections())
    end = story.app.recorder.max_notification_id()
    assert [(s.name, s.position, s.compared, s.equal) for s in swapped] == [(n, end, True, True) for n in VIEW_NAMES]
    assert (
        {s.name: s.live for s in swapped}
        == before
        == checksums(views)
        == views_of(story.app, tmp_path / "fresh.sqlite")
    )
    assert views.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, end)
    assert scratch_files(tmp_path) == []


def test_a_live_view_gone_wrong_is_reported_and_replaced_by_the_rebuilt_one(
    story: Any, views: ViewStore, live: Any, tmp_path: Path
) -> None:
    spoil(views, story.cases["reassigned"])
    swapped = {s.name: s for s in rebuild(story.app.recorder, story.app.mapper, views, default_projections())}
    assert {name for name, s in swapped.items() if not s.equal} == {"case_board", "case_timeline"}
    assert all(s.compared for s in swapped.values())
    assert checksums(views) == views_of(story.app, tmp_path / "fresh.sqlite")


def test_check_only_compares_and_keeps_the_live_view(story: Any, views: ViewStore, live: Any, tmp_path: Path) -> None:
    spoil(views, story.cases["reassigned"])
    spoiled = checksums(views)
    [result] = rebuild(story.app.recorder, story.app.mapper, views, board(story.app, views), check_only=True)
    assert (result.compared, result.equal, result.live) == (True, False, spoiled["case_board"])
    assert checksums(views) == spoiled
    assert scratch_files(tmp_path) == []


def test_a_live_view_that_can_no_longer_be_folded_is_replaced_without_a_comparison(
    story: Any, views: ViewStore, live: Any, tmp_path: Path
) -> None:
    with views.transaction() as cursor:  # a case lost from the queue: its next event cannot be applied
        cursor.execute("DELETE FROM queue_case WHERE case_id = ?", (str(story.cases["waiting"]),))
    story.on("waiting", c.RegisterCase)
    with pytest.raises(LookupError):
        live.run_until_caught_up()
    swapped = {s.name: s for s in rebuild(story.app.recorder, story.app.mapper, views, default_projections())}
    assert (swapped["worker_queue"].compared, swapped["worker_queue"].equal) == (False, False)
    assert swapped["case_board"].equal
    assert checksums(views) == views_of(story.app, tmp_path / "fresh.sqlite")
    live.run_until_caught_up()  # the live runner follows the log again


def test_readers_see_the_old_rows_or_the_new_never_a_mix(
    story: Any, views: ViewStore, live: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoil(views, story.cases["reassigned"])
    old = view_checksum(views, "case_board")
    path = tmp_path / "views.sqlite"
    holding = sqlite3.connect(path, isolation_level=None)
    holding.execute("BEGIN")
    assert checksum(holding.cursor(), CaseBoard) == old  # this reader's snapshot starts here, before the swap
    mid_swap: list[str] = []
    replace = blue_green._replace_rows

    def replace_and_look(cursor: sqlite3.Cursor, table: str, schema: str) -> None:
        replace(cursor, table, schema)

        # A reader arriving between the board's two tables, from another thread and connection.
        def look() -> None:
            reader = sqlite3.connect(path, isolation_level=None)
            reader.execute("BEGIN")
            mid_swap.append(checksum(reader.cursor(), CaseBoard))
            reader.execute("COMMIT")
            reader.close()

        thread = threading.Thread(target=look)
        thread.start()
        thread.join()

    monkeypatch.setattr(blue_green, "_replace_rows", replace_and_look)
    [result] = rebuild(story.app.recorder, story.app.mapper, views, board(story.app, views))

    assert not result.equal and result.rebuilt != old
    assert mid_swap == [old, old]  # after board_case was replaced, and after board_grid: not committed yet
    assert checksum(holding.cursor(), CaseBoard) == old  # the held snapshot still shows the old rows whole
    holding.execute("COMMIT")
    assert checksum(holding.cursor(), CaseBoard) == result.rebuilt == view_checksum(views, "case_board")
    holding.close()


def test_a_live_runner_working_through_the_swap_neither_applies_an_event_twice_nor_skips_one(
    story: Any, views: ViewStore, live: Any, tmp_path: Path
) -> None:
    follower = Gridloop(dict(story.app.env), clock=ManualClock(datetime(2026, 11, 23, tzinfo=UTC)))
    runner = EmbeddedRunner(
        follower.recorder, follower.mapper, ViewStore.open(tmp_path / "views.sqlite"), default_projections()
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(stop, poll_interval=0.002)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    reports = iter(range(1000))

    def a_command_per_batch(position: int) -> None:  # commands come in while the rebuild builds
        story.report(f"during-{next(reports)}")

    try:
        with BlueGreen(story.app.recorder, story.app.mapper, views, default_projections(), batch_size=20) as rebuilding:
            rebuilding.build(a_command_per_batch)
            story.report("before the swap")
            swapped = rebuilding.swap()
        story.report("after the swap")
        story.on("after the swap", c.RegisterCase)
    finally:
        time.sleep(0.05)
        stop.set()
        thread.join()
    assert errors == []
    assert all(s.equal for s in swapped)
    runner.run_until_caught_up()
    assert checksums(views) == views_of(story.app, tmp_path / "fresh.sqlite")
    assert views.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, story.app.recorder.max_notification_id())
    follower.close()


def test_a_second_rebuild_of_the_same_store_is_refused_while_one_runs(story: Any, views: ViewStore, live: Any) -> None:
    with (
        BlueGreen(story.app.recorder, story.app.mapper, views, default_projections()),
        pytest.raises(RebuildBusy, match="another rebuild"),
        BlueGreen(story.app.recorder, story.app.mapper, views, default_projections()),
    ):
        pass
    with BlueGreen(story.app.recorder, story.app.mapper, views, default_projections()):
        pass  # free again


def test_views_built_in_two_processes_equal_the_live_ones(
    story: Any, views: ViewStore, live: Any, tmp_path: Path
) -> None:
    positions: list[int] = []
    swapped = rebuild(
        story.app.recorder, story.app.mapper, views, default_projections(), positions.append,
        workers=LogSource(Gridloop, dict(story.app.env)), groups=2,
    )  # fmt: skip
    assert all(s.equal for s in swapped) and sorted(s.name for s in swapped) == sorted(VIEW_NAMES)
    assert positions and positions[-1] == story.app.recorder.max_notification_id()
    assert scratch_files(tmp_path) == []


@pytest.mark.parametrize("point", ["build", "swap"])
def test_a_rebuild_killed_midway_leaves_the_live_views_intact_and_a_rerun_succeeds(
    story: Any, views: ViewStore, live: Any, tmp_path: Path, point: str
) -> None:
    spoil(views, story.cases["reassigned"])  # so that a swap, had it been committed, would show
    before, positions = checksums(views), views.positions(VIEW_NAMES)
    marker = tmp_path / "stalled"
    process = subprocess.Popen(
        [sys.executable, __file__, str(tmp_path / "events.sqlite"), str(tmp_path / "views.sqlite"), point, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    given_up = time.monotonic() + STARTUP_LIMIT
    while not marker.exists() and process.poll() is None:
        assert time.monotonic() < given_up, "the rebuild did not reach the point it is killed at"
        time.sleep(0.01)
    assert process.poll() is None, process.communicate()[0].decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert scratch_files(tmp_path)  # what the killed rebuild left
    assert (checksums(views), views.positions(VIEW_NAMES)) == (before, positions)
    swapped = rebuild(story.app.recorder, story.app.mapper, views, default_projections())
    assert {s.name for s in swapped if not s.equal} == {"case_board", "case_timeline"}
    assert checksums(views) == views_of(story.app, tmp_path / "fresh.sqlite")
    assert scratch_files(tmp_path) == []


def killed_rebuild(events: Path, views: Path, point: str, marker: Path) -> None:
    """The rebuild process: it stalls (to be killed) after its first batch, or inside the swap's transaction."""
    app = Gridloop(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(events)},
        clock=ManualClock(datetime(2026, 11, 23, tzinfo=UTC)),
    )
    store = ViewStore.open(views)

    def stall(*_: object) -> None:
        marker.touch()
        time.sleep(STARTUP_LIMIT * 10)

    progress = stall if point == "build" else None
    if point == "swap":
        replace = blue_green._replace_rows

        def replace_and_stall(cursor: sqlite3.Cursor, table: str, schema: str) -> None:
            replace(cursor, table, schema)
            stall()

        blue_green._replace_rows = replace_and_stall
    with BlueGreen(app.recorder, app.mapper, store, default_projections(), batch_size=5) as rebuilding:
        rebuilding.build(progress)
        swapped: tuple[Swapped, ...] = rebuilding.swap()
    raise AssertionError(f"not stalled: {swapped}")


if __name__ == "__main__":
    events_path, views_path, point_name, marker_path = sys.argv[1:]
    killed_rebuild(Path(events_path), Path(views_path), point_name, Path(marker_path))
