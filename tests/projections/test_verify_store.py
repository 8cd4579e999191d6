"""Tamper evidence in the event store: a simulated store altered for real (sqlite3 on SQLite, psycopg on
PostgreSQL), and what verify reports."""

from __future__ import annotations

import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

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
from tests.conftest import pg_env
from tests.engine.test_sealing_postgres import drop_schema, new_schema
from tests.ops.test_simulator import _small_yuanqu

DAY = date(2026, 11, 23)  # a Monday


class Store:
    """One event store to alter and verify, on SQLite or PostgreSQL: the SQL of the tests is written once, with
    {events}, {pos}, {seals} and {checkpoints} standing for the backend's names and ? for parameters."""

    def __init__(self, env: dict[str, str], names: dict[str, str], dsn: str = "") -> None:
        self.env, self.names, self.dsn = env, names, dsn

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement with plain sqlite3 or psycopg, as someone with access to the store would; committed."""
        text = statement.format(**self.names)
        if not self.dsn:
            with closing(sqlite3.connect(self.env["SQLITE_DBNAME"])) as db, db:
                return db.execute(text, params).fetchall()
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            cursor = db.execute(text.replace("%", "%%").replace("?", "%s"), params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def tables(self) -> set[str]:
        if not self.dsn:
            return {str(row[0]) for row in self.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        schema = self.env["POSTGRES_SCHEMA"]
        return {str(row[0]) for row in self.sql(f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")}


SQLITE_NAMES = {"events": "stored_events", "pos": "rowid", "seals": "event_seal", "checkpoints": "log_checkpoint"}


def simulate_into(env: dict[str, str]) -> None:
    clock = ManualClock(midnight(DAY))
    app = Gridloop(env, clock=clock)
    simulate(app, clock, _small_yuanqu(), days=2, start=DAY)
    app.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def simulated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Two simulated days of two of Yuanqu's communities: about 1,900 events, a checkpoint at 1,000."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("verify") / "events.sqlite"
        store = Store({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, SQLITE_NAMES)
        simulate_into(store.env)
        yield store
        return
    server = request.getfixturevalue("postgres")
    schema = new_schema(server)
    store = postgres_store(server, schema)
    simulate_into(store.env)
    yield store
    drop_schema(server, schema)


def postgres_store(server: Any, schema: str) -> Store:
    names = {"events": f"{schema}.gridloop_events", "pos": "notification_id", "seals": f"{schema}.event_seal",
             "checkpoints": f"{schema}.log_checkpoint"}  # fmt: skip
    return Store(pg_env(server, schema), names, server.dsn)


@pytest.fixture
def store(simulated: Store, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A copy of the simulated store for one test to alter."""
    if not simulated.dsn:
        copy = tmp_path / "events.sqlite"
        shutil.copyfile(simulated.env["SQLITE_DBNAME"], copy)
        yield Store({**simulated.env, "SQLITE_DBNAME": str(copy)}, SQLITE_NAMES)
        return
    server = request.getfixturevalue("postgres")
    source, schema = simulated.env["POSTGRES_SCHEMA"], new_schema(server)
    for table in ("gridloop_events", "event_seal", "log_checkpoint", "log_skipped", "gridloop_tracking"):
        simulated.sql(f"CREATE TABLE {schema}.{table} (LIKE {source}.{table} INCLUDING ALL)")
        simulated.sql(f"INSERT INTO {schema}.{table} SELECT * FROM {source}.{table}")
    yield postgres_store(server, schema)
    drop_schema(server, schema)


def verify(store: Store) -> Verdict:
    """Verify the store as the audit opens it: without creating tables or sealing anything."""
    app = store_of(Gridloop, store.env)
    try:
        return verify_store(app)
    finally:
        app.close()


def case_positions(store: Store) -> dict[str, list[int]]:
    """Each case's event positions, in version order."""
    cases: dict[str, list[int]] = defaultdict(list)
    rows = store.sql(
        "SELECT originator_id, {pos} FROM {events} WHERE topic LIKE 'engine.work_order:WorkOrder.%' "
        "ORDER BY originator_id, originator_version"
    )
    for case, position in rows:
        cases[str(case)].append(int(position))  # type: ignore[call-overload]
    return cases


def a_case(store: Store, versions: int, before: int = CHECKPOINT_EVERY) -> list[int]:
    """The positions of a case with at least ``versions`` events, the first two before position ``before``."""
    return next(p for p in case_positions(store).values() if len(p) >= versions and p[1] < before)


def modify(store: Store, position: int) -> None:
    """Change one character of what the event at ``position`` says (its actor's name), keeping valid JSON."""
    state = bytes(store.sql("SELECT state FROM {events} WHERE {pos} = ?", (position,))[0][0])  # type: ignore[arg-type]
    changed = state.replace(b'"actor":"', b'"actor":"X', 1)
    assert changed != state
    store.sql("UPDATE {events} SET state = ? WHERE {pos} = ?", (changed, position))


def reseal(store: Store, position: int) -> None:
    """Recompute the seal of the (altered) event at ``position`` from its content, as a careful forger would."""
    app = store_of(Gridloop, store.env)
    try:
        notification: Notification = app.recorder.select_notifications(position, 1)[0]
        sealed = app.recorder.select_seals(position, position)[0]  # type: ignore[attr-defined]
        forged = link(sealed.prev_hash, content_hash(app.mapper.to_domain_event(notification)))
    finally:
        app.close()
    store.sql("UPDATE {seals} SET hash = ? WHERE position = ?", (forged, position))


def at(verdict: Verdict) -> list[tuple[str, int]]:
    return [(p.kind, p.position) for p in verdict.problems]


def checkpoint_after(position: int) -> int:
    return -(-position // CHECKPOINT_EVERY) * CHECKPOINT_EVERY


# -- intact ---------------------------------------------------------------------------------------------


def test_an_intact_simulated_store_verifies_clean(simulated: Store) -> None:
    verdict = verify(simulated)
    events = int(simulated.sql("SELECT COUNT(*) FROM {events}")[0][0])  # type: ignore[call-overload]
    assert verdict.intact, verdict.problems[:5]
    assert verdict.first_broken is None
    assert verdict.events_checked == events > CHECKPOINT_EVERY
    assert verdict.last_position == int(simulated.sql("SELECT MAX({pos}) FROM {events}")[0][0])  # type: ignore[call-overload]
    assert verdict.checkpoints_checked == len(verdict.checkpoints) == verdict.last_position // CHECKPOINT_EVERY


# -- altered ----------------------------------------------------------------------------------------------


def test_a_modified_event_is_reported_at_its_position(store: Store) -> None:
    positions = a_case(store, 3)
    modify(store, positions[1])
    verdict = verify(store)
    first = verdict.first_broken
    assert first is not None and (first.kind, first.position, first.version) == ("modified", positions[1], 2)
    assert first.detail == "content differs from its seal: the event was modified after it was recorded"
    assert verdict.counts == {"modified": 1}


def test_a_modified_event_whose_seal_was_recomputed_is_caught_at_the_next_link_and_its_checkpoint(
    store: Store,
) -> None:
    positions = a_case(store, 3)
    modify(store, positions[1])
    reseal(store, positions[1])
    verdict = verify(store)
    assert ("relinked", positions[2]) in at(verdict)
    assert ("checkpoint", checkpoint_after(positions[1])) in at(verdict)
    assert "modified" not in verdict.counts
    first = verdict.first_broken
    assert first is not None and first.position == min(positions[2], checkpoint_after(positions[1]))


def test_a_cases_last_event_modified_and_resealed_is_caught_by_its_checkpoint(store: Store) -> None:
    last = max(p[-1] for p in case_positions(store).values() if p[-1] < CHECKPOINT_EVERY)
    modify(store, last)
    reseal(store, last)
    verdict = verify(store)
    assert at(verdict) == [("checkpoint", CHECKPOINT_EVERY)]
    assert "a seal in that range was altered" in verdict.problems[0].detail


def test_a_deleted_event_is_reported_at_its_position(store: Store) -> None:
    positions = a_case(store, 3)
    store.sql("DELETE FROM {events} WHERE {pos} = ?", (positions[1],))
    verdict = verify(store)
    assert at(verdict) == [("deleted", positions[1]), ("out_of_order", positions[2])]
    assert verdict.problems[1].detail.startswith("version 3 follows version 1: version 2 is missing")


def test_an_event_deleted_with_its_seal_leaves_a_gap_and_breaks_the_chain_and_the_checkpoint(store: Store) -> None:
    positions = a_case(store, 3)
    store.sql("DELETE FROM {events} WHERE {pos} = ?", (positions[1],))
    store.sql("DELETE FROM {seals} WHERE position = ?", (positions[1],))
    verdict = verify(store)
    assert verdict.first_broken is not None and verdict.first_broken.kind == "missing"
    assert verdict.first_broken.position == positions[1]
    assert {("out_of_order", positions[2]), ("checkpoint", checkpoint_after(positions[1]))} <= set(at(verdict))


def test_two_events_of_one_case_swapped_are_reported_where_each_now_stands(store: Store) -> None:
    positions = a_case(store, 3)
    first, second = positions[1], positions[2]
    store.sql("UPDATE {events} SET {pos} = -1 WHERE {pos} = ?", (first,))
    store.sql("UPDATE {events} SET {pos} = ? WHERE {pos} = ?", (first, second))
    store.sql("UPDATE {events} SET {pos} = ? WHERE {pos} = -1", (second,))
    verdict = verify(store)
    assert verdict.first_broken is not None
    assert (verdict.first_broken.kind, verdict.first_broken.position, verdict.first_broken.version) == (
        "moved",
        first,
        3,
    )
    assert {("moved", first), ("moved", second), ("out_of_order", second)} <= set(at(verdict))
    assert set(verdict.counts) == {"moved", "out_of_order"}


def test_an_event_inserted_behind_gridloops_back_is_reported(store: Store) -> None:
    positions = a_case(store, 3)
    # A made-up next step of the case: a copy of its last event under the next version number.
    store.sql(
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version + 100, topic, state FROM {events} WHERE {pos} = ?",
        (positions[-1],),
    )
    forged = store.sql("SELECT MAX({pos}) FROM {events}")[0][0]
    verdict = verify(store)
    assert verdict.first_broken is not None
    assert (verdict.first_broken.kind, verdict.first_broken.position) == ("unsealed", forged)
    assert "inserted behind gridloop's back" in verdict.first_broken.detail


def test_the_logs_end_deleted_with_its_seals_is_caught_by_the_checkpoint_that_covered_it(store: Store) -> None:
    store.sql("DELETE FROM {events} WHERE {pos} > ?", (CHECKPOINT_EVERY - 10,))
    store.sql("DELETE FROM {seals} WHERE position > ?", (CHECKPOINT_EVERY - 10,))
    verdict = verify(store)
    assert at(verdict) == [("deleted", CHECKPOINT_EVERY)]
    assert "events at the end were deleted with their seals" in verdict.problems[0].detail


def test_a_store_without_seal_tables_is_reported_not_sealed_by_the_audit(store: Store) -> None:
    store.sql("DROP TABLE {seals}")
    store.sql("DROP TABLE {checkpoints}")
    verdict = verify(store)
    assert verdict.counts == {"unsealed": 1}
    assert "event_seal" not in store.tables(), "verifying must not write to the store"
