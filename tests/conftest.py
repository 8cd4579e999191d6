"""What every test shares: logging starts from structlog's defaults, whatever an earlier test configured."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest
import structlog

from ops.postgres import PostgresUnavailable, Server, throwaway_server


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """A CLI run in-process or a benchmark configures logging for the process (a level, a renderer); the next
    test would inherit it, and ``structlog.testing.capture_logs`` keeps the configured level filter, so a
    test capturing info events after one that configured 'warning' would see none."""
    yield
    structlog.reset_defaults()


def unavailable(reason: str) -> NoReturn:
    """A test that needs a real component (Kafka, kcat, the browser) and cannot have it: under CI it fails;
    elsewhere it is skipped with the reason."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real PostgreSQL server for the session: ``GRIDLOOP_TEST_POSTGRES`` (host:port of a running one, user
    postgres, trust auth) or a throw-away local cluster from Debian's packages (ops.postgres), stopped at the end."""
    try:
        with throwaway_server(os.environ.get("GRIDLOOP_TEST_POSTGRES", ""), "gridloop-pg-", durable=False) as server:
            yield server
    except PostgresUnavailable as exc:
        unavailable(f"PostgreSQL: {exc}")


@pytest.fixture
def pg_schema(postgres: Server) -> Iterator[str]:
    """A fresh, empty schema of the test database for one test (dropped afterwards, whatever it holds)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND datname = %s AND state = 'idle in transaction'",
            (postgres.dbname,),
        )
        connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def pg_env(server: Server, schema: str) -> dict[str, str]:
    """The eventsourcing library's environment for an event store in ``schema`` of ``server``'s database."""
    return server.event_store_env(schema)
