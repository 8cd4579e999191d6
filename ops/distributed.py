"""What mode distributed adds to a process's wiring: the PostgreSQL schemas, one set-up at a time, the leader locks."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from ops.config import Settings
from ops.leader import KEEPALIVE, RETRY_SECONDS, LeaderLock, lock_key
from ops.postgres import PostgresUnavailable, Server

log = structlog.get_logger()

RELAY = "relay"
SUPERVISE = "supervise"
CHECK_SECONDS = 1.0
"""How often an active process waiting between rounds makes sure it still holds its lock."""


def connect(server: Server) -> Any:
    """An autocommit psycopg connection to the configured database; PostgresUnavailable, saying where and why,
    if the server does not answer or refuses."""
    import psycopg

    try:
        return server.connect(connect_timeout=KEEPALIVE["connect_timeout"], autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(
            f"PostgreSQL at {address(server)} does not answer or refuses: {reason(exc)} (see postgres_host, "
            "postgres_port, postgres_user; or start the local one with `gridloop postgres up`)"
        ) from None


def address(server: Server) -> str:
    """Where the server is, never with its password."""
    return f"{server.user}@{server.host}:{server.port}/{server.dbname}"


def reason(exc: BaseException) -> str:
    """An error's first line (psycopg's messages carry the server's detail on the next ones)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def setting_up(settings: Settings, server: Server) -> Iterator[None]:
    """Create the event store's and the views' schemas if missing, and hold a lock while the caller creates their
    tables: processes started together (two relays, three workers) would otherwise race on CREATE … IF NOT EXISTS,
    which PostgreSQL does not make safe against a concurrent twin."""
    key = lock_key(settings.postgres_schema, "set-up")
    with connect(server) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            for schema in (settings.postgres_schema, settings.postgres_views_schema):
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")  # a checked identifier (SCHEMA_NAME)
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


def drop_schemas(settings: Settings) -> None:
    """`simulate --fresh`: drop the event store's and the views' schemas, with everything in them."""
    server = settings.postgres_server()
    with connect(server) as connection:
        for schema in (settings.postgres_schema, settings.postgres_views_schema):
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    log.info("postgres_schemas_dropped", schemas=[settings.postgres_schema, settings.postgres_views_schema])


def leader_lock(settings: Settings, role: str) -> LeaderLock:
    """The lock that elects the one active process of ``role`` (relay, supervise) in this deployment."""
    parts = [settings.postgres_schema, role]
    if role == RELAY:  # the relays of one transactional id fence each other on Kafka: one lock for them all
        parts.append(settings.relay_transactional_id)
    return LeaderLock(settings.postgres_server(), lock_key(*parts), role)


@dataclass(frozen=True)
class Election:
    """Whether this process is the active one of its role, and how to make sure it still is before each step."""

    active: bool
    lock: LeaderLock | None = None
    """None outside mode distributed: there one process of each role runs by configuration, not by election."""

    def check(self) -> None:
        """Raise LeadershipLost if the lock's session has ended (nothing to check without a lock)."""
        if self.lock is not None:
            self.lock.check()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop`` is set (then True), checking the lock every second meanwhile: a
        process that lost it learns so within a second, not at its next round minutes later."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if stop.wait(min(left, CHECK_SECONDS)):
                return True
            self.check()
        return stop.is_set()


@contextmanager
def elected(settings: Settings, role: str, stop: threading.Event | None) -> Iterator[Election]:
    """Mode distributed: take the lock of ``role`` for the block — waiting for it until ``stop`` is set (logging
    ``<role>_standby`` once, then ``<role>_active``), or trying once when ``stop`` is None. Other modes: active."""
    if not settings.uses_postgres:
        yield Election(active=True)
        return
    with leader_lock(settings, role) as lock:
        fields = {"pid": os.getpid(), "schema": settings.postgres_schema}
        if stop is None:
            held = lock.try_acquire()
        else:
            held = lock.acquire(stop, on_standby=lambda: log.info(f"{role}_standby", retry=RETRY_SECONDS, **fields))
        if held:
            log.info(f"{role}_active", **fields)
        yield Election(active=held, lock=lock if held else None)
