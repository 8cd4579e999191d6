"""The view store: the views' tables and their tracking rows in one SQLite file of their own, and reads of its state.

``Views`` is what the runners, the queries and the API use of a view store; ``ViewStore`` here is SQLite's,
``projections.store_postgres.PostgresViewStore`` PostgreSQL's.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, cast

import structlog
from eventsourcing.persistence import IntegrityError, InterfaceError, Tracking
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
    SQLiteTransaction,
)

from engine.errors import UnknownReference
from projections.projection import Cursor, Projection
from projections.views import VIEW_NAMES, VIEWS

STATEMENT_CACHE = 256
"""Prepared statements kept per connection: every statement the views use, with room to spare."""

LOCK_TIMEOUT = 60
"""Seconds a writer waits for another (a runner in another process) to commit its batch."""

log = structlog.get_logger()

_CREATED = re.compile(r"CREATE\s+(?:UNIQUE\s+)?(TABLE|VIEW|INDEX|TRIGGER)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)


def schema_objects(view: type[Projection]) -> dict[str, str]:
    """What a view's schema creates, by name: 'table', 'view', 'index' or 'trigger' (its ViewTables included)."""
    found = {match[2]: match[1].lower() for statement in view.schema for match in _CREATED.finditer(statement)}
    return found | {table.name: "table" for table in view.tables}


def _use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode, waiting (up to ``timeout`` s) for another process that holds it locked.

    Switching the journal mode needs the database to itself, and SQLite answers "database is locked"
    at once rather than through the busy timeout: two runners opening a new view store together (seen
    in CI) would otherwise have one of them fail. Once a process has switched it, the mode is persistent.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


class Views(Protocol):
    """A view store: the views' tables and tracking rows, written in transactions and read in snapshots."""

    views: dict[str, type[Projection]]

    def create_table(self) -> None: ...

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A write transaction: commits on leaving, rolls back everything if an exception escapes."""
        ...

    def reading(self) -> AbstractContextManager[Cursor]:
        """A read-only transaction: one consistent snapshot of the views."""
        ...

    def track(self, cursor: Cursor, name: str, position: int) -> None: ...

    def forget(self, cursor: Cursor, name: str) -> None: ...

    def positions(self, names: Sequence[str], cursor: Cursor | None = None) -> dict[str, int]: ...

    def close(self) -> None: ...


class ViewCursor(SQLiteCursor):
    """The library's SQLite cursor, with the ``rowcount`` views read after an UPDATE (Cursor's protocol)."""

    @property
    def rowcount(self) -> int:
        return int(self.sqlite_cursor.rowcount)

    @property
    def description(self) -> Any:
        return self.sqlite_cursor.description


class _WriteFirstTransaction(SQLiteTransaction):
    """The library's transaction, except that a writing one takes the write lock before it reads.

    The library begins with a plain ``BEGIN``, which takes no lock until the first write: a runner
    could read the tracking positions, another process commit a batch, and the first then apply the
    same events again (or, in WAL mode, fail to upgrade its stale snapshot). ``BEGIN IMMEDIATE``
    waits for the write lock first, so what a writing transaction reads is what it writes over.
    """

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if self.commit else "BEGIN")
        return cursor


class _ViewConnection(SQLiteConnection):
    """The library's SQLite connection, with write transactions that lock before they read."""

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        with _WriteFirstTransaction(self, commit=commit) as cursor, cursor:
            yield cursor

    def cursor(self) -> ViewCursor:
        return ViewCursor(self._sqlite_conn.cursor())


class _PreparedStatementPool(SQLiteConnectionPool):
    """The library's SQLite connection pool, with a prepared-statement cache worth the name, tuned for views.

    The library opens connections with ``cached_statements=True``, which sqlite3 reads as a cache of
    ONE statement, so a batch that alternates board, queue and timeline statements re-prepares every
    one (measured: 66 µs against 16 µs per statement). Otherwise this is the library's connection.
    """

    def _create_connection(self) -> SQLiteConnection:
        try:
            connection = sqlite3.connect(
                database=self.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # autocommit: the library issues BEGIN itself
                cached_statements=STATEMENT_CACHE,
                timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )
        except (sqlite3.Error, TypeError) as e:
            raise InterfaceError(e) from e
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            # WAL: readers (queries, the HTTP API) never block the runner's writes, nor it them.
            _use_wal(connection, self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)
            self.is_journal_mode_wal = True
        # A power cut may lose the last few commits but never splits a batch from its tracking row,
        # and the runner reads lost batches again; a sync per commit buys nothing a view needs.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.row_factory = sqlite3.Row
        return _ViewConnection(sqlite_conn=connection, max_age=self.max_age)


TRACKING_OF = "(application_name = :name OR substr(application_name, 1, :length) = :per_partition)"
"""A view's tracking rows: the embedded runner's (the view's name) and the Kafka runner's, one per partition
(``<view>@<topic>:<partition>``, projections.kafka_runner.tracking_name). Portable SQL: no GLOB, and no LIKE,
whose ``_`` would match any character of a view name."""


def tracking_params(name: str) -> dict[str, str | int]:
    return {"name": name, "per_partition": f"{name}@", "length": len(name) + 1}


def drop_changed_views(
    c: Cursor, views: Iterable[type[Projection]], existing: set[str], kinds: Sequence[str], cascade: str = ""
) -> list[tuple[str, int | None, int]]:
    """Drop the objects (``kinds``, in that order) and tracking rows of each view whose recorded version is not
    its class's; returns (view, from, to) of those dropped. ``existing``: the names of the store's objects.

    A view with no recorded version is dropped too if the store holds its tables or tracking rows: the store
    was made before versions were recorded, and its tables may lack today's columns (``CREATE TABLE IF NOT
    EXISTS`` would keep them as they are). With no tracking row left, every runner folds the view again from
    the start of the log.
    """
    recorded: dict[str, int] = {}
    if "view_version" in existing:
        c.execute("SELECT name, version FROM view_version")
        recorded = {row[0]: int(row[1]) for row in c.fetchall()}
    dropped: list[tuple[str, int | None, int]] = []
    for view in views:
        was = recorded.get(view.name)
        if was == view.version:
            continue
        objects = schema_objects(view)
        tracked = False
        if "tracking" in existing:
            c.execute(f"SELECT COUNT(*) FROM tracking WHERE {TRACKING_OF}", tracking_params(view.name))  # noqa: S608
            row = c.fetchone()
            tracked = row is not None and int(row[0]) > 0
        if was is None and not tracked and not existing & objects.keys():
            continue  # a view new to this store: nothing to drop
        for kind in kinds:
            for name in sorted(name for name, of_kind in objects.items() if of_kind == kind):
                c.execute(f"DROP {kind.upper()} IF EXISTS {name}{cascade}")
        if "tracking" in existing:
            c.execute(f"DELETE FROM tracking WHERE {TRACKING_OF}", tracking_params(view.name))  # noqa: S608
        dropped.append((view.name, was, view.version))
    return dropped


class ViewStore(SQLiteTrackingRecorder):
    """Materialised views of the gridloop event log, with the position each view has read up to."""

    def __init__(self, datastore: SQLiteDatastore, views: Sequence[type[Projection]] = VIEWS) -> None:
        # Set before the library's constructor, which asks for the create-table statements.
        self.views: dict[str, type[Projection]] = {view.name: view for view in views}
        self._dropped: list[tuple[str, int | None, int]] = []  # (view, from, to), logged once committed
        super().__init__(datastore)

    @classmethod
    def open(cls, path: Path, views: Sequence[type[Projection]] = VIEWS) -> ViewStore:
        """Open (and create, if new) the view store at ``path``, in WAL mode."""
        datastore = SQLiteDatastore(db_name=str(path))
        datastore.pool.close()  # not used yet: replace it by one that keeps prepared statements
        datastore.pool = _PreparedStatementPool(db_name=str(path), lock_timeout=LOCK_TIMEOUT)
        store = cls(datastore, views)
        store.create_table()
        return store

    def create_table(self) -> None:
        """Create the tracking table and the views' tables, if another process has not already.

        The library looks for the tracking table before its create transaction begins; when two
        processes open a new store at once, the second to commit finds the first one's migration
        row and refuses. By then the tables exist, so looking again finds them and creates nothing.
        """
        try:
            super().create_table()
        except IntegrityError:
            super().create_table()
        for name, was, now in self._dropped:
            log.info("view_schema_changed", name=name, **{"from": was, "to": now})

    def _create_table(self, c: SQLiteCursor) -> None:
        """In the library's create transaction: drop the views whose version changed, create, record versions.

        One write transaction, so a process opening the store at the same moment sees the views either
        before or after, and the second to get the lock finds the versions recorded and drops nothing.
        """
        self._drop_changed_views(c)
        super()._create_table(c)
        c.executemany(
            "INSERT INTO view_version (name, version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            [(view.name, view.version) for view in self.views.values()],
        )

    def _drop_changed_views(self, c: SQLiteCursor) -> None:
        """Drop the tables and tracking rows of each view whose recorded version is not its class's."""
        c.execute("SELECT name FROM sqlite_master")
        existing = {row[0] for row in c.fetchall()}
        # Triggers and SQL views first, as they name the tables; indexes go with their tables.
        self._dropped = drop_changed_views(cast(Cursor, c), self.views.values(), existing, ("trigger", "view", "table"))

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append("CREATE TABLE IF NOT EXISTS view_version (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        # Aggregates whose records the Kafka runner dead-letters instead of applying out of order.
        statements.append(
            "CREATE TABLE IF NOT EXISTS held_aggregate (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
            "key TEXT NOT NULL, first_offset INTEGER NOT NULL, error TEXT NOT NULL, "
            "PRIMARY KEY (topic, partition, key)) WITHOUT ROWID"
        )
        for view in self.views.values():
            statements.extend(view.schema)
        return statements

    def transaction(self) -> AbstractContextManager[ViewCursor]:
        """A write transaction: commits on leaving, rolls back everything if an exception escapes.

        It holds the view store's write lock from its first statement, so write transactions from
        any number of runners, in any number of processes, run one after the other.
        """
        return cast(AbstractContextManager[ViewCursor], self.datastore.transaction(commit=True))

    def reading(self) -> AbstractContextManager[ViewCursor]:
        """A read-only transaction: one consistent snapshot of the views."""
        return cast(AbstractContextManager[ViewCursor], self.datastore.transaction(commit=False))

    def track(self, cursor: Cursor, name: str, position: int) -> None:
        """Record, in the caller's transaction, that view ``name`` has read the log up to ``position``."""
        self._insert_tracking(cast(SQLiteCursor, cursor), Tracking(name, position))

    def forget(self, cursor: Cursor, name: str) -> None:
        """Drop view ``name``'s tracking row, in the caller's transaction (before a rebuild)."""
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (name,))

    def positions(self, names: Sequence[str], cursor: Cursor | None = None) -> dict[str, int]:
        """The position each named view has read up to (0 for a view that has read nothing).

        Read in the caller's transaction if given one (a runner deciding what to apply), else in a
        snapshot of its own.
        """
        if cursor is None:
            with self.reading() as reading:
                return self.positions(names, reading)
        cursor.execute(
            f"SELECT application_name, notification_id FROM tracking "  # noqa: S608 - placeholders only
            f"WHERE application_name IN ({', '.join('?' * len(names))})",
            list(names),
        )
        found = {row[0]: int(row[1]) for row in cursor.fetchall()}
        return {name: found.get(name, 0) for name in names}

    def close(self) -> None:
        self.datastore.close()


def wait_for(store: Views, position: int, timeout: float, names: Sequence[str] = VIEW_NAMES) -> bool:
    """Read-your-writes: wait (at most ``timeout`` seconds) until every named view has read ``position``.

    Returns False on timeout instead of raising: the caller may still answer, marked as stale.
    """
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        if min(store.positions(names).values()) >= position:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # Short first pauses: the embedded runner usually catches up within a poll interval.
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)


def view_rows(store: Views, name: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of one view, table by table, in canonical order (the key columns of each table)."""
    if name not in store.views:
        raise UnknownReference("view", name, sorted(store.views))
    rows: dict[str, list[dict[str, Any]]] = {}
    with store.reading() as cursor:
        for table in sorted(store.views[name].tables, key=lambda t: t.name):
            cursor.execute(f"SELECT * FROM {table.name} ORDER BY {', '.join(table.key)}")  # noqa: S608
            rows[table.name] = [dict(zip(row.keys(), tuple(row), strict=True)) for row in cursor.fetchall()]
    return rows


def view_checksum(store: Views, name: str) -> str:
    """A sha256 over every row and column of one view in canonical order: equal views, equal checksums."""
    if name not in store.views:
        raise UnknownReference("view", name, sorted(store.views))
    with store.reading() as cursor:
        if isinstance(cursor, SQLiteCursor):
            return checksum(cursor.sqlite_cursor, store.views[name])
        return _checksum(cursor, store.views[name])


def _checksum(cursor: Any, view: type[Projection]) -> str:
    """``checksum`` through any store's cursor: the same text hashed, so one view on two stores sums alike."""
    digest = hashlib.sha256()
    for table in sorted(view.tables, key=lambda t: t.name):
        cursor.execute(f"SELECT * FROM {table.name} ORDER BY {', '.join(table.key)}")  # noqa: S608
        columns = [column[0] for column in cursor.description]
        digest.update(f"table {table.name} {json.dumps(columns)}\n".encode())
        while chunk := cursor.fetchmany(1000):
            digest.update(("\n".join(repr(tuple(row)) for row in chunk) + "\n").encode())
    return digest.hexdigest()


def checksum(cursor: sqlite3.Cursor, view: type[Projection], schema: str = "main") -> str:
    """The checksum of ``view``'s tables in database ``schema`` of the cursor's connection, read in its transaction.

    ``schema`` names an attached database (a view built beside the live one) as well as ``main``. Rows
    are streamed, not held (a view of a million events would be a million objects), and each is
    written as Python's repr of its values, one line each: exact for every SQLite type, and hashed a
    thousand rows at a time (measured: a third of the time of one ``json.dumps`` per row).
    """
    rows = cursor.connection.cursor()  # the same transaction; plain tuples whatever the connection's row factory
    rows.row_factory = None
    digest = hashlib.sha256()
    for table in sorted(view.tables, key=lambda t: t.name):
        rows.execute(f"SELECT * FROM {schema}.{table.name} ORDER BY {', '.join(table.key)}")  # noqa: S608
        columns = [column[0] for column in rows.description]
        digest.update(f"table {table.name} {json.dumps(columns)}\n".encode())
        while chunk := rows.fetchmany(1000):
            digest.update(("\n".join(map(repr, chunk)) + "\n").encode())
    rows.close()
    return digest.hexdigest()


def held_aggregates(store: Views) -> list[dict[str, Any]]:
    """Aggregates the Kafka runner holds back (an earlier record of theirs is dead-lettered), oldest first."""
    with store.reading() as cursor:
        cursor.execute("SELECT topic, partition, key, first_offset, error FROM held_aggregate ORDER BY 1, 2, 4")
        return [dict(zip(row.keys(), tuple(row), strict=True)) for row in cursor.fetchall()]
