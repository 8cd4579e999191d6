"""The view store on PostgreSQL: the same views, tracking rows and reads as the SQLite store, in one schema."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

import psycopg
import structlog
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

from projections.projection import Cursor, Projection
from projections.sql_dialect import PgCursor, adapt
from projections.store import drop_changed_views
from projections.views import VIEWS

log = structlog.get_logger()

POOL_SIZE = 1
"""Connections a store opens at once: a runner needs one."""
POOL_OVERFLOW = 7
"""Connections it may open beyond that, when reads come in beside the writer (the HTTP API's threads)."""

JULIANDAY = (
    "CREATE OR REPLACE FUNCTION julianday(moment text) RETURNS double precision LANGUAGE sql IMMUTABLE AS "
    "$$ SELECT (round(extract(epoch FROM moment::timestamptz) * 1000) + 210866760000000)::float8 / 86400000.0 $$"
)
"""SQLite's ``julianday`` of an ISO 8601 time, to the same double: SQLite counts whole milliseconds since noon
UTC of 4714 BC (the epoch is 210 866 760 000 000 ms after it) and divides by a day's milliseconds."""


class _Datastore(PostgresDatastore):
    """The library's PostgreSQL datastore, whose connections look in the store's schema and convert as sqlite3."""

    def after_connect_func(self) -> Callable[[psycopg.Connection[Any]], None]:
        configure = super().after_connect_func()
        search_path = SQL("SET search_path TO {0}").format(Identifier(self.schema))

        def after_connect(connection: psycopg.Connection[Any]) -> None:
            configure(connection)
            connection.execute(search_path)
            adapt(connection)

        return after_connect


class PostgresViewStore(PostgresTrackingRecorder):
    """Materialised views of the gridloop event log on PostgreSQL, with the position each view has read up to.

    Write transactions run one at a time per schema, as SQLite's ``BEGIN IMMEDIATE`` has them: each takes a
    transaction-level advisory lock first. Views read each other's rows across topics (a case's row takes its
    community from ``board_grid``, a grid drawn later fixes the cases already there), so two workers holding
    different partitions, each in a READ COMMITTED transaction that cannot see the other's, would leave a case
    without its community (found by tests/integration/test_distributed.py, four runs in four). The tracking rows
    a writer reads are locked too (``FOR UPDATE``), which keeps a runner that would fold the same views as
    another from applying an event twice even without the advisory lock.
    """

    def __init__(self, datastore: PostgresDatastore, views: Sequence[type[Projection]] = VIEWS) -> None:
        self.views: dict[str, type[Projection]] = {view.name: view for view in views}
        self._dropped: list[tuple[str, int | None, int]] = []
        super().__init__(datastore, tracking_table_name="tracking")

    @classmethod
    def connect(
        cls,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        dbname: str,
        schema: str,
        views: Sequence[type[Projection]] = VIEWS,
    ) -> PostgresViewStore:
        """Open the view store in ``schema`` of database ``dbname`` (creating the schema and tables if new)."""
        with (
            psycopg.connect(
                host=host, port=port, user=user, password=password, dbname=dbname, autocommit=True
            ) as connection,
            contextlib.suppress(psycopg.errors.UniqueViolation),
        ):
            # Two processes creating the schema at once: the second finds it made (IF NOT EXISTS does not lock).
            connection.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
        datastore = _Datastore(
            dbname=dbname,
            host=host,
            port=port,
            user=user,
            password=password,
            schema=schema,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        store = cls(datastore, views)
        store.create_table()
        return store

    @property
    def schema(self) -> str:
        return self.datastore.schema

    def create_table(self) -> None:
        """Create the tracking table and the views' tables, if another process has not already (as ViewStore)."""
        try:
            super().create_table()
        except IntegrityError:
            self.tracking_table_exists = True
            super().create_table()
        for name, was, now in self._dropped:
            log.info("view_schema_changed", name=name, **{"from": was, "to": now})

    def _create_table(self, curs: psycopg.Cursor[Any]) -> None:
        """In one transaction, one process at a time: drop views whose version changed, create, record versions."""
        cursor = PgCursor(curs.connection)
        cursor.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(self.schema),))
        self._drop_changed_views(cursor)
        super()._create_table(curs)
        cursor.execute("CREATE TABLE IF NOT EXISTS view_version (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS held_aggregate (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
            "key TEXT NOT NULL, first_offset INTEGER NOT NULL, error TEXT NOT NULL, "
            "PRIMARY KEY (topic, partition, key))"
        )
        cursor.execute(JULIANDAY)
        # One round trip for every view's statements: a new store's tables are most of its opening time.
        cursor.execute(";\n".join(statement for view in self.views.values() for statement in view.schema))
        cursor.executemany(
            "INSERT INTO view_version (name, version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            [(view.name, view.version) for view in self.views.values()],
        )

    def _drop_changed_views(self, c: PgCursor) -> None:
        """Drop the tables and tracking rows of each view whose recorded version is not its class's (as ViewStore)."""
        c.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? UNION SELECT t.tgname FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ?",
            (self.schema, self.schema),
        )
        existing = {row[0] for row in c.fetchall()}
        # Indexes and triggers go with their tables.
        self._dropped = drop_changed_views(c, self.views.values(), existing, ("view", "table"), " CASCADE")

    def transaction(self) -> AbstractContextManager[PgCursor]:
        """A write transaction: commits on leaving, rolls back everything if an exception escapes."""
        return self._transaction(commit=True)

    def reading(self) -> AbstractContextManager[PgCursor]:
        """A read-only transaction: one consistent snapshot of the views."""
        return self._transaction(commit=False)

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[PgCursor]:
        with self.datastore.transaction(commit=commit) as curs:
            cursor = PgCursor(curs.connection, writing=commit)
            if commit:
                cursor.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(self.schema),))
            else:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            try:
                yield cursor
            finally:
                cursor.close()

    def track(self, cursor: Cursor, name: str, position: int) -> None:
        """Record, in the caller's transaction, that view ``name`` has read the log up to ``position``."""
        with cast(PgCursor, cursor).connection.cursor() as plain:
            self._insert_tracking(plain, Tracking(name, position))

    def forget(self, cursor: Cursor, name: str) -> None:
        """Drop view ``name``'s tracking row, in the caller's transaction (before a rebuild)."""
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (name,))

    def positions(self, names: Sequence[str], cursor: Cursor | None = None) -> dict[str, int]:
        """The position each named view has read up to (0 for one that has read nothing).

        In a write transaction the rows are locked until it ends (a row at 0 is made for a name that has none):
        another writer folding the same views waits, then reads what this one committed, so no event is
        applied twice.
        """
        if not names:
            return {}
        if cursor is None:
            with self.reading() as reading:
                return self.positions(names, reading)
        writing = cast(PgCursor, cursor).writing
        if writing:
            # A row to lock for every name, even one that has read nothing yet: otherwise two runners starting
            # together would both read 0 and fold the same events (the second then refused at its tracking).
            cursor.execute(
                "INSERT INTO tracking (application_name, notification_id) "  # noqa: S608 - placeholders only
                f"VALUES {', '.join(['(?, 0)'] * len(names))} ON CONFLICT DO NOTHING",
                list(names),
            )
        lock = " ORDER BY application_name FOR UPDATE" if writing else ""
        cursor.execute(
            f"SELECT application_name, notification_id FROM tracking "  # noqa: S608 - placeholders only
            f"WHERE application_name IN ({', '.join('?' * len(names))}){lock}",
            list(names),
        )
        found = {row[0]: int(row[1]) for row in cursor.fetchall()}
        return {name: found.get(name, 0) for name in names}

    def close(self) -> None:
        self.datastore.close()


def _lock_key(schema: str) -> int:
    """The advisory lock that makes writing one schema's views (and creating its tables) one process at a time."""
    return zlib.crc32(f"gridloop-views:{schema}".encode())
