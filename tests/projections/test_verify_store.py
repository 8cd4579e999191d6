"""Tamper evidence in the event store: a simulated store altered for real with sqlite3, and what verify reports."""

from __future__ import annotations

import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path

import pytest
from eventsourcing.persistence import Notification

from engine.application import Gridloop
from engine.clock import ManualClock
from engine.relay import store_of
from engine.seal import CHECKPOINT_EVERY, content_hash, link
from ops.simulation.working_time import midnight
from ops.simulator import simulate
from projections.audit.verdict import Verdict
from projections.audit.verify import verify_store
from tests.ops.test_simulator import _small_yuanqu

DAY = date(2026, 11, 23)  # a Monday


def env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated days of two of Yuanqu's communities: about 1,900 events, a checkpoint at 1,000."""
    preset = _small_yuanqu()
    path = tmp_path_factory.mktemp("verify") / "events.sqlite"
    clock = ManualClock(midnight(DAY))
    app = Gridloop(env(path), clock=clock)
    simulate(app, clock, preset, days=2, start=DAY)
    app.close()
    return path


@pytest.fixture
def store(simulated: Path, tmp_path: Path) -> Path:
    """A copy of the simulated store for one test to alter."""
    copy = tmp_path / "events.sqlite"
    shutil.copyfile(simulated, copy)
    return copy


def verify(path: Path) -> Verdict:
    """Verify the store as the audit opens it: without creating tables or sealing anything."""
    app = store_of(Gridloop, env(path))
    try:
        return verify_store(app)
    finally:
        app.close()


@contextmanager
def altered(path: Path) -> Iterator[sqlite3.Connection]:
    """The store's file opened with plain sqlite3, as someone with access to it would; committed at the end."""
    with closing(sqlite3.connect(path)) as db, db:
        yield db


def case_positions(path: Path) -> dict[str, list[int]]:
    """Each case's event positions, in version order."""
    cases: dict[str, list[int]] = defaultdict(list)
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT originator_id, rowid FROM stored_events WHERE topic LIKE 'engine.work_order:WorkOrder.%' "
            "ORDER BY originator_id, originator_version"
        )
        for case, position in rows:
            cases[case].append(position)
    return cases


def a_case(path: Path, versions: int, before: int = CHECKPOINT_EVERY) -> list[int]:
    """The positions of a case with at least ``versions`` events, the first two before position ``before``."""
    return next(p for p in case_positions(path).values() if len(p) >= versions and p[1] < before)


def modify(db: sqlite3.Connection, position: int) -> None:
    """Change one character of what the event at ``position`` says (its actor's name), keeping valid JSON."""
    state: bytes = db.execute("SELECT state FROM stored_events WHERE rowid = ?", (position,)).fetchone()[0]
    changed = state.replace(b'"actor":"', b'"actor":"X', 1)
    assert changed != state
    db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (changed, position))


def reseal(path: Path, position: int) -> None:
    """Recompute the seal of the (altered) event at ``position`` from its content, as a careful forger would."""
    app = store_of(Gridloop, env(path))
    try:
        notification: Notification = app.recorder.select_notifications(position, 1)[0]
        sealed = app.recorder.select_seals(position, position)[0]  # type: ignore[attr-defined]
        forged = link(sealed.prev_hash, content_hash(app.mapper.to_domain_event(notification)))
    finally:
        app.close()
    with altered(path) as db:
        db.execute("UPDATE event_seal SET hash = ? WHERE position = ?", (forged, position))


def at(verdict: Verdict) -> list[tuple[str, int]]:
    return [(p.kind, p.position) for p in verdict.problems]


def checkpoint_after(position: int) -> int:
    return -(-position // CHECKPOINT_EVERY) * CHECKPOINT_EVERY


# -- intact ---------------------------------------------------------------------------------------------


def test_an_intact_simulated_store_verifies_clean(simulated: Path) -> None:
    verdict = verify(simulated)
    with closing(sqlite3.connect(simulated)) as db:
        events = db.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
    assert verdict.intact, verdict.problems[:5]
    assert verdict.first_broken is None
    assert verdict.events_checked == verdict.last_position == events > CHECKPOINT_EVERY
    assert verdict.checkpoints_checked == events // CHECKPOINT_EVERY
    assert len(verdict.checkpoints) == events // CHECKPOINT_EVERY


# -- altered ----------------------------------------------------------------------------------------------


def test_a_modified_event_is_reported_at_its_position(store: Path) -> None:
    positions = a_case(store, 3)
    with altered(store) as db:
        modify(db, positions[1])
    verdict = verify(store)
    first = verdict.first_broken
    assert first is not None and (first.kind, first.position, first.version) == ("modified", positions[1], 2)
    assert first.detail == "content differs from its seal: the event was modified after it was recorded"
    assert verdict.counts == {"modified": 1}


def test_a_modified_event_whose_seal_was_recomputed_is_caught_at_the_next_link_and_its_checkpoint(
    store: Path,
) -> None:
    positions = a_case(store, 3)
    with altered(store) as db:
        modify(db, positions[1])
    reseal(store, positions[1])
    verdict = verify(store)
    assert ("relinked", positions[2]) in at(verdict)
    assert ("checkpoint", checkpoint_after(positions[1])) in at(verdict)
    assert "modified" not in verdict.counts
    first = verdict.first_broken
    assert first is not None and first.position == min(positions[2], checkpoint_after(positions[1]))


def test_a_cases_last_event_modified_and_resealed_is_caught_by_its_checkpoint(store: Path) -> None:
    last = max(p[-1] for p in case_positions(store).values() if p[-1] < CHECKPOINT_EVERY)
    with altered(store) as db:
        modify(db, last)
    reseal(store, last)
    verdict = verify(store)
    assert at(verdict) == [("checkpoint", CHECKPOINT_EVERY)]
    assert "a seal in that range was altered" in verdict.problems[0].detail


def test_a_deleted_event_is_reported_at_its_position(store: Path) -> None:
    positions = a_case(store, 3)
    with altered(store) as db:
        db.execute("DELETE FROM stored_events WHERE rowid = ?", (positions[1],))
    verdict = verify(store)
    assert at(verdict) == [("deleted", positions[1]), ("out_of_order", positions[2])]
    assert verdict.problems[1].detail.startswith("version 3 follows version 1: version 2 is missing")


def test_an_event_deleted_with_its_seal_leaves_a_gap_and_breaks_the_chain_and_the_checkpoint(store: Path) -> None:
    positions = a_case(store, 3)
    with altered(store) as db:
        db.execute("DELETE FROM stored_events WHERE rowid = ?", (positions[1],))
        db.execute("DELETE FROM event_seal WHERE position = ?", (positions[1],))
    verdict = verify(store)
    assert verdict.first_broken is not None and verdict.first_broken.kind == "missing"
    assert verdict.first_broken.position == positions[1]
    assert {("out_of_order", positions[2]), ("checkpoint", checkpoint_after(positions[1]))} <= set(at(verdict))


def test_two_events_of_one_case_swapped_are_reported_where_each_now_stands(store: Path) -> None:
    positions = a_case(store, 3)
    first, second = positions[1], positions[2]
    with altered(store) as db:
        db.execute("UPDATE stored_events SET rowid = -1 WHERE rowid = ?", (first,))
        db.execute("UPDATE stored_events SET rowid = ? WHERE rowid = ?", (first, second))
        db.execute("UPDATE stored_events SET rowid = ? WHERE rowid = -1", (second,))
    verdict = verify(store)
    assert verdict.first_broken is not None
    assert (verdict.first_broken.kind, verdict.first_broken.position, verdict.first_broken.version) == (
        "moved",
        first,
        3,
    )
    assert {("moved", first), ("moved", second), ("out_of_order", second)} <= set(at(verdict))
    assert set(verdict.counts) == {"moved", "out_of_order"}


def test_an_event_inserted_behind_gridloops_back_is_reported(store: Path) -> None:
    positions = a_case(store, 3)
    with altered(store) as db:
        # A made-up next step of the case: a copy of its last event under the next version number.
        db.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version + 100, topic, state FROM stored_events WHERE rowid = ?",
            (positions[-1],),
        )
        forged = db.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0]
    verdict = verify(store)
    assert verdict.first_broken is not None
    assert (verdict.first_broken.kind, verdict.first_broken.position) == ("unsealed", forged)
    assert "inserted behind gridloop's back" in verdict.first_broken.detail


def test_the_logs_end_deleted_with_its_seals_is_caught_by_the_checkpoint_that_covered_it(store: Path) -> None:
    with altered(store) as db:
        db.execute("DELETE FROM stored_events WHERE rowid > ?", (CHECKPOINT_EVERY - 10,))
        db.execute("DELETE FROM event_seal WHERE position > ?", (CHECKPOINT_EVERY - 10,))
    verdict = verify(store)
    assert at(verdict) == [("deleted", CHECKPOINT_EVERY)]
    assert "events at the end were deleted with their seals" in verdict.problems[0].detail


def test_a_store_without_seal_tables_is_reported_not_sealed_by_the_audit(store: Path) -> None:
    with altered(store) as db:
        db.executescript("DROP TABLE event_seal; DROP TABLE log_checkpoint;")
    verdict = verify(store)
    assert verdict.counts == {"unsealed": 1}
    with closing(sqlite3.connect(store)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "event_seal" not in tables, "verifying must not write to the store"
