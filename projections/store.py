"""The view store: the views' tables and their tracking rows in one SQLite file of their own."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

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

from projections.projection import Projection
from projections.views import VIEWS

STATEMENT_CACHE = 256
"""Prepared statements kept per connection: every statement the views use, with room to spare."""

LOCK_TIMEOUT = 60
"""Seconds a writer waits for another (a runner in another process) to commit its batch."""


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


class ViewStore(SQLiteTrackingRecorder):
    """Materialised views of the gridloop event log, with the position each view has read up to."""

    def __init__(self, datastore: SQLiteDatastore, views: Sequence[type[Projection]] = VIEWS) -> None:
        # Set before the library's constructor, which asks for the create-table statements.
        self.views: dict[str, type[Projection]] = {view.name: view for view in views}
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

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        # Aggregates whose records the Kafka runner dead-letters instead of applying out of order.
        statements.append(
            "CREATE TABLE IF NOT EXISTS held_aggregate (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
            "key TEXT NOT NULL, first_offset INTEGER NOT NULL, error TEXT NOT NULL, "
            "PRIMARY KEY (topic, partition, key)) WITHOUT ROWID"
        )
        for view in self.views.values():
            statements.extend(view.schema)
        return statements

    def transaction(self) -> AbstractContextManager[SQLiteCursor]:
        """A write transaction: commits on leaving, rolls back everything if an exception escapes.

        It holds the view store's write lock from its first statement, so write transactions from
        any number of runners, in any number of processes, run one after the other.
        """
        return self.datastore.transaction(commit=True)

    def reading(self) -> AbstractContextManager[SQLiteCursor]:
        """A read-only transaction: one consistent snapshot of the views."""
        return self.datastore.transaction(commit=False)

    def track(self, cursor: SQLiteCursor, name: str, position: int) -> None:
        """Record, in the caller's transaction, that view ``name`` has read the log up to ``position``."""
        self._insert_tracking(cursor, Tracking(name, position))

    def forget(self, cursor: SQLiteCursor, name: str) -> None:
        """Drop view ``name``'s tracking row, in the caller's transaction (before a rebuild)."""
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (name,))

    def positions(self, names: Sequence[str], cursor: SQLiteCursor | None = None) -> dict[str, int]:
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
