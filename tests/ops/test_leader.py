"""The leader lock on a real PostgreSQL: one holder at a time, a takeover when the holder's session ends."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from structlog.testing import capture_logs

from ops.config import load_settings
from ops.distributed import RELAY, SUPERVISE, leader_lock
from ops.leader import LeaderLock, LeadershipLost, lock_key
from ops.postgres import Server

PATIENCE_SECONDS = 60.0
"""A bound on waiting for a takeover, so a broken lock fails the test instead of hanging it (not a timing claim)."""


@pytest.fixture
def key() -> int:
    """A key no other test uses (the tests share one database)."""
    return lock_key("test", uuid.uuid4().hex)


@pytest.fixture
def locks(postgres: Server, key: int) -> Iterator[tuple[LeaderLock, LeaderLock]]:
    first, second = LeaderLock(postgres, key, "relay"), LeaderLock(postgres, key, "relay")
    yield first, second
    first.release()
    second.release()


def acquired_later(lock: LeaderLock) -> bool:
    """Wait for ``lock`` as a standby does (retrying), at most PATIENCE_SECONDS."""
    stop = threading.Event()
    timer = threading.Timer(PATIENCE_SECONDS, stop.set)
    timer.start()
    try:
        return lock.acquire(stop, retry=0.05)
    finally:
        timer.cancel()


def test_of_two_lockers_exactly_one_holds_the_lock(locks: tuple[LeaderLock, LeaderLock]) -> None:
    first, second = locks
    assert first.try_acquire()
    assert not second.try_acquire()
    assert not second.try_acquire()  # asking again changes nothing while the holder lives
    assert (first.held, second.held) == (True, False)
    first.check()  # the holder still holds it


def test_a_standby_takes_over_when_the_holder_closes_its_connection(locks: tuple[LeaderLock, LeaderLock]) -> None:
    first, second = locks
    assert first.try_acquire()
    standbys: list[str] = []
    stop = threading.Event()
    timer = threading.Timer(PATIENCE_SECONDS, stop.set)
    outcome: list[bool] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(second.acquire(stop, lambda: standbys.append("standby"), 0.05))
    )
    timer.start()
    waiting.start()
    while not standbys:  # the standby has found the lock taken before the holder goes
        threading.Event().wait(0.01)
    first.release()
    waiting.join()
    timer.cancel()
    assert outcome == [True] and standbys == ["standby"]
    assert not first.try_acquire()  # the old holder comes back as a standby


def test_a_lost_session_is_detected_and_the_lock_passes_to_the_standby(
    postgres: Server, locks: tuple[LeaderLock, LeaderLock]
) -> None:
    first, second = locks
    assert first.try_acquire()
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:  # an operator (or a failover) ends the session
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s",
            (first.key,),
        ).fetchall()
    assert ended == [(True,)]
    with pytest.raises(LeadershipLost, match="relay lock's session to PostgreSQL ended"):
        first.check()
    assert not first.held
    assert acquired_later(second)


def test_a_process_that_never_held_the_lock_cannot_claim_it(locks: tuple[LeaderLock, LeaderLock]) -> None:
    first, _ = locks
    with pytest.raises(LeadershipLost, match="not held"):
        first.check()


def test_deployments_and_roles_have_locks_of_their_own(postgres: Server) -> None:
    environ = {
        "GRIDLOOP_MODE": "distributed",
        "GRIDLOOP_POSTGRES_PROVISIONER": "external",
        "GRIDLOOP_POSTGRES_HOST": postgres.host,
        "GRIDLOOP_POSTGRES_PORT": str(postgres.port),
    }
    one = load_settings({**environ, "GRIDLOOP_POSTGRES_SCHEMA": f"a_{uuid.uuid4().hex[:8]}"})
    other = load_settings({**environ, "GRIDLOOP_POSTGRES_SCHEMA": f"b_{uuid.uuid4().hex[:8]}"})
    held = [leader_lock(one, RELAY), leader_lock(other, RELAY), leader_lock(one, SUPERVISE)]
    try:
        assert [lock.try_acquire() for lock in held] == [True, True, True]
        assert not leader_lock(one, RELAY).try_acquire()
    finally:
        for lock in held:
            lock.release()
    assert len({lock.key for lock in held}) == 3


def test_a_key_is_stable_and_depends_on_every_part() -> None:
    assert lock_key("gridloop", "relay", "gridloop-relay") == lock_key("gridloop", "relay", "gridloop-relay")
    assert lock_key("gridloop", "relay", "x") != lock_key("gridloop", "relay", "y")
    assert lock_key("a", "bc") != lock_key("ab", "c")
    assert -(2**63) <= lock_key("gridloop", "relay") < 2**63


def test_a_standby_that_cannot_reach_the_server_keeps_trying_and_says_so_once(key: int) -> None:
    nowhere = LeaderLock(Server("127.0.0.1", 9), key, "relay")  # the discard port: connection refused
    with capture_logs() as logs:
        assert [nowhere.try_acquire(), nowhere.try_acquire()] == [False, False]
    assert [entry["event"] for entry in logs] == ["leader_lock_unreachable"]
    assert not nowhere.held
