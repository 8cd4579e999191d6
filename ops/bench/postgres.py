"""The PostgreSQL command path benchmarked: a server of its own (or GRIDLOOP_BENCH_POSTGRES), a schema per run."""

from __future__ import annotations

import os
import uuid
from contextlib import AbstractContextManager

from ops.bench import Measurement, compare_command_path
from ops.config import load_settings
from ops.postgres import Server, throwaway_server


def bench_postgres() -> AbstractContextManager[Server]:
    """``GRIDLOOP_BENCH_POSTGRES`` (host:port, user postgres, trust auth), else a durable local cluster under
    /var/tmp (fsync on, as a production store), stopped and removed at the end."""
    return throwaway_server(os.environ.get("GRIDLOOP_BENCH_POSTGRES", ""), "gridloop-bench-pg-", durable=True)


def postgres_command_path(server: Server, n: int, repeats: int) -> Measurement:
    """Report N cases through ``Gridloop.execute`` on PostgreSQL vs the bare library saving the same aggregates
    on the same server, each run in a fresh schema (dropped afterwards)."""
    import psycopg

    schemas: list[str] = []

    def store(name: str) -> dict[str, str]:
        schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server.dsn, autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        return load_settings(
            {}, mode="distributed", postgres_provisioner="external", postgres_schema=schema
        ).event_store_env(server)

    try:
        return compare_command_path(store, n, repeats, "command → stored on PostgreSQL (report)")
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as db:
            for schema in schemas:
                db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
