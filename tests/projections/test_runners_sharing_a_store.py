"""Several runners in several processes on one view store, while commands come in: no event lost, none twice.

The CLI opens a runner per command, so a ``board`` can run beside a ``simulate`` and a
``project --rebuild`` beside both. Each runner here is a real OS process with its own event-store
app and its own ViewStore on the same files; run as a script, this module is that process.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.application import Gridloop
from engine.clock import ManualClock
from projections.queries import view_checksum
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import VIEW_NAMES, default_projections

STARTUP_LIMIT = 120.0
"""Seconds a runner process may take to start before the test gives up on it (a hang, not a measurement)."""


def open_event_store(path: Path) -> Gridloop:
    clock = ManualClock(datetime(2026, 11, 23, tzinfo=UTC))  # a runner only reads: the clock is never asked
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)


def share_the_store(events: Path, views: Path, seed: int, ready: Path, stop: Path) -> None:
    """One runner process: catch up and rebuild, in an order the seed chooses, until told to stop."""
    rng = random.Random(seed)
    app = open_event_store(events)
    store = ViewStore.open(views)
    # One runner for the whole run, as a long-lived process keeps it: what it last saw goes stale.
    runner = EmbeddedRunner(app.recorder, app.mapper, store, default_projections(), batch_size=rng.choice([1, 2, 5]))
    runner.run_until_caught_up()
    ready.touch()
    while not stop.exists():
        if rng.random() < 0.2:
            runner.rebuild(rng.choice([None, *VIEW_NAMES]))
        else:
            runner.run_until_caught_up()
    runner.run_until_caught_up()
    store.close()
    app.close()


def start_runner(events: Path, views: Path, seed: int, folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    ready = folder / f"ready-{seed}"
    with log_of(folder, seed).open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, __file__, str(events), str(views), str(seed), str(ready), str(folder / "stop")],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, ready


def log_of(folder: Path, seed: int) -> Path:
    return folder / f"runner-{seed}.log"


def wait_until_ready(runners: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """Until both runners have caught up once, so that the commands come in while they work (or one died)."""
    given_up = time.monotonic() + STARTUP_LIMIT
    while not all(ready.exists() for _, ready in runners) and all(process.poll() is None for process, _ in runners):
        assert time.monotonic() < given_up, "the runners did not start"
        time.sleep(0.01)


@pytest.mark.parametrize("seed", [11, 22, 33])
def test_two_runner_processes_catching_up_and_rebuilding_while_commands_come_in_leave_the_views_a_fresh_rebuild_has(
    story: Any, tmp_path: Path, seed: int
) -> None:
    events, views = tmp_path / "events.sqlite", tmp_path / "views.sqlite"
    runners = [start_runner(events, views, seed + n, tmp_path) for n in range(2)]
    try:
        wait_until_ready(runners)
        story.every_path()  # the writer: this process, while both runners work
        story.every_path()
    finally:
        (tmp_path / "stop").touch()
        codes = [process.wait(timeout=STARTUP_LIMIT) for process, _ in runners]
    logs = [log_of(tmp_path, seed + n).read_text() for n in range(2)]
    assert codes == [0, 0], "\n".join(logs)
    assert not any("Traceback" in log for log in logs), "\n".join(logs)

    app = story.app
    shared = ViewStore.open(views)
    EmbeddedRunner(app.recorder, app.mapper, shared, default_projections()).run_until_caught_up()
    fresh = ViewStore.open(tmp_path / "fresh.sqlite")
    EmbeddedRunner(app.recorder, app.mapper, fresh, default_projections()).run_until_caught_up()
    assert {name: view_checksum(shared, name) for name in VIEW_NAMES} == {
        name: view_checksum(fresh, name) for name in VIEW_NAMES
    }
    assert shared.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, app.recorder.max_notification_id())
    shared.close()
    fresh.close()


if __name__ == "__main__":
    events_path, views_path, seed_text, ready_path, stop_path = sys.argv[1:]
    share_the_store(Path(events_path), Path(views_path), int(seed_text), Path(ready_path), Path(stop_path))
