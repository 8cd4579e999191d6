"""The sealed event store on PostgreSQL: the library's process recorder, sealing inside its insert transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow, dict_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from engine.seal import Checkpoint, Seal
from engine.sealing import (
    CHECKPOINT_TABLE,
    SEAL_TABLE,
    SKIPPED_TABLE,
    Sealing,
    SealingError,
    StaleRead,
    Versions,
    content_of,
)


class SealingPostgresRecorder(Sealing, PostgresProcessRecorder):
    """The library's PostgreSQL process recorder, sealing every event it inserts (tables event_seal,
    log_checkpoint and log_skipped in the datastore's schema).

    The library takes ``LOCK TABLE … IN EXCLUSIVE MODE`` on the events table before it inserts, so inserts
    are serialised and commit in notification-id order: the seals of earlier positions are committed and
    visible when a batch looks up its aggregates' previous hashes and its checkpoints. Notification ids come
    from a sequence, which a rolled-back insert (a concurrency conflict, a repeated command) still advances:
    positions may skip. The next batch records the skipped run (table log_skipped), so the verifier tells it
    from a deletion, and writes any checkpoint due in it.
    """

    @classmethod
    def on(cls, factory: PostgresFactory) -> SealingPostgresRecorder:
        """The recorder on the factory's datastore, with the factory's table names (like its process recorder)."""
        if factory.datastore.enable_db_functions:
            raise SealingError(
                "POSTGRES_ENABLE_DB_FUNCTIONS inserts events through a database function that does not seal them: "
                "leave it unset for a gridloop store"
            )
        prefix = factory.env.name.lower()
        return cls(
            factory.datastore,
            events_table_name=f"{prefix or 'stored'}_events",
            tracking_table_name=f"{prefix or 'notification'}_tracking",
        )

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name, tracking_table_name=tracking_table_name)
        schema = Identifier(datastore.schema)
        self.seals = SQL("{}.{}").format(schema, Identifier(SEAL_TABLE))
        self.checkpoints = SQL("{}.{}").format(schema, Identifier(CHECKPOINT_TABLE))
        self.skipped = SQL("{}.{}").format(schema, Identifier(SKIPPED_TABLE))
        self.events = SQL("{}.{}").format(schema, Identifier(events_table_name))
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, originator_id uuid NOT NULL, "
                "originator_version bigint NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL)"
            ).format(self.seals),
            SQL("CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, hash bytea NOT NULL, prev bytea NOT NULL)")
            .format(self.checkpoints),
            SQL("CREATE TABLE IF NOT EXISTS {} (first bigint PRIMARY KEY, last bigint NOT NULL)").format(self.skipped),
        ]  # fmt: skip

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        """The library's tables, types and insert function, then the seal tables, one process at a time:
        replicas starting together would otherwise race on ``CREATE OR REPLACE FUNCTION`` ("tuple
        concurrently updated")."""
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.datastore.schema}.create_table",))
        super()._create_table(curs)

    # -- inside the library's insert transaction ------------------------------------------------------

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        for stored in stored_events:  # before anything is written: a refused batch leaves no trace
            content_of(stored)
        super()._insert_events(curs, stored_events, **kwargs)

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert positions is not None  # the application recorder returns the notification ids
        try:
            asked = self._ask_unchanged(curs, kwargs.get("unchanged", ()))
            self._seal(curs, stored_events, positions)
            if asked is not None:
                self._refuse_stale(asked)
        except psycopg.Error:
            raise  # the server has failed the transaction already
        except BaseException as exc:
            # The library holds an exception back until its transaction block has ended, and that block
            # commits: fail the transaction in the server first, so the events are not committed unsealed.
            # The server's error is what the caller sees: a stale read is a conflict like any other (the
            # library's IntegrityError, so the command is run again on a fresh read), anything else an error.
            reason = str(exc) if isinstance(exc, SealingError) else f"{type(exc).__name__}: {exc}"
            code = "unique_violation" if isinstance(exc, StaleRead) else "raise_exception"
            with contextlib.suppress(psycopg.Error):
                abort = SQL("DO $$ BEGIN RAISE EXCEPTION USING MESSAGE = {}, ERRCODE = {}; END $$").format(
                    Literal(reason.replace("$", "")), Literal(code)
                )
                curs.execute(abort)
            raise
        return positions

    def _ask_unchanged(self, c: Cursor[DictRow], unchanged: Versions) -> Cursor[DictRow] | None:
        """Ask, under the insert lock, whether an aggregate the batch was decided on has an event after the
        version read; answered by ``_refuse_stale``. Pipelined: the answer comes back with the seal's
        first read, not in a round trip of its own."""
        if not unchanged:
            return None
        asked = c.connection.cursor(row_factory=dict_row)
        asked.execute(
            SQL(
                "SELECT e.originator_id, r.version FROM {} e JOIN unnest(%s::uuid[], %s::bigint[]) AS r(id, version) "
                "ON e.originator_id = r.id AND e.originator_version > r.version LIMIT 1"
            ).format(self.events),
            ([originator_id for originator_id, _ in unchanged], [version for _, version in unchanged]),
            prepare=True,
        )
        return asked

    @staticmethod
    def _refuse_stale(asked: Cursor[DictRow]) -> None:
        """Refuse the batch (StaleRead) if ``_ask_unchanged`` found a newer event."""
        with asked:
            row = asked.fetchone()
        if row is not None:
            raise StaleRead(f"{row['originator_id']} has events after version {row['version']}")

    def _seal_hash(self, c: Cursor[DictRow], originator_id: UUID, version: int) -> bytes | None:
        # Through the event's own primary key to its position: no second index to write on every insert.
        c.execute(
            SQL(
                "SELECT s.hash FROM {} e JOIN {} s ON s.position = e.notification_id "
                "WHERE e.originator_id = %s AND e.originator_version = %s"
            ).format(self.events, self.seals),
            (originator_id, version),
            prepare=True,
        )
        row = c.fetchone()
        return bytes(row["hash"]) if row else None

    def _write_seals(self, c: Cursor[DictRow], seals: Sequence[Seal]) -> None:
        # A position sealed already (the sequence set back by hand) fails the transaction as a uniqueness
        # conflict: the command path retries at the next positions, and the verifier reports the seals
        # left without their events as deleted.
        c.execute(
            SQL(
                "INSERT INTO {} SELECT * FROM unnest(%s::bigint[], %s::uuid[], %s::bigint[], %s::bytea[], %s::bytea[])"
            ).format(self.seals),
            (
                [s.position for s in seals],
                [s.originator_id for s in seals],
                [s.originator_version for s in seals],
                [s.prev_hash for s in seals],
                [s.hash for s in seals],
            ),
            prepare=True,
        )

    def _note_skipped(self, c: Cursor[DictRow], positions: Sequence[int]) -> int:
        """Record the runs of positions skipped before and within the batch; the position after the last
        sealed one before it (a checkpoint in a skipped run is due with this batch).

        Under the insert lock every transaction that drew a lower id has ended, so a position with no seal
        below the batch's first was drawn by a transaction that rolled back: skipped, not deleted.
        """
        c.execute(
            SQL("SELECT MAX(position) AS last FROM {} WHERE position < %s").format(self.seals),
            (min(positions),),
            prepare=True,
        )
        row = c.fetchone()
        ordered = sorted(positions)
        after = int(row["last"] or 0) if row else ordered[0] - 1
        runs = [
            (before + 1, position - 1)
            for before, position in zip([after, *ordered[:-1]], ordered, strict=True)
            if position > before + 1
        ]
        if runs:
            c.executemany(SQL("INSERT INTO {} VALUES (%s, %s)").format(self.skipped), runs)
        return after + 1

    def select_skipped(self) -> list[tuple[int, int]]:
        rows = self._select(SQL("SELECT * FROM {} ORDER BY first"), table=self.skipped)
        return [(int(r["first"]), int(r["last"])) for r in rows]

    def _checkpoint_hash(self, c: Cursor[DictRow], position: int) -> bytes | None:
        c.execute(SQL("SELECT hash FROM {} WHERE position = %s").format(self.checkpoints), (position,))
        row = c.fetchone()
        return bytes(row["hash"]) if row else None

    def _seal_hashes(self, c: Cursor[DictRow], first: int, last: int) -> list[bytes]:
        c.execute(
            SQL("SELECT hash FROM {} WHERE position BETWEEN %s AND %s ORDER BY position").format(self.seals),
            (first, last),
        )
        return [bytes(row["hash"]) for row in c.fetchall()]

    def _write_checkpoint(self, c: Cursor[DictRow], checkpoint: Checkpoint) -> None:
        c.execute(
            SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self.checkpoints),
            (checkpoint.position, checkpoint.hash, checkpoint.prev),
        )

    # -- readers ----------------------------------------------------------------------------------------

    def select_seals(self, first: int, last: int) -> list[Seal]:
        """The seals of positions ``first`` to ``last`` (both included), in position order."""
        rows = self._select(SQL("SELECT * FROM {} WHERE position BETWEEN %s AND %s ORDER BY position"), first, last)
        return [
            Seal(r["position"], r["originator_id"], r["originator_version"], bytes(r["prev_hash"]), bytes(r["hash"]))
            for r in rows
        ]

    def select_checkpoints(self, first: int = 1, last: int | None = None) -> list[Checkpoint]:
        """The checkpoints at positions ``first`` to ``last`` (both included; no end if None), in position order."""
        statement = SQL("SELECT * FROM {} WHERE position >= %s AND position <= %s ORDER BY position")
        rows = self._select(statement, first, last if last is not None else 2**62, table=self.checkpoints)
        return [Checkpoint(r["position"], bytes(r["hash"]), bytes(r["prev"])) for r in rows]

    def max_sealed_position(self) -> int:
        return int(self._select(SQL("SELECT MAX(position) AS last FROM {}"))[0]["last"] or 0)

    def position_of(self, originator_id: UUID, version: int) -> int:
        statement = SQL("SELECT notification_id FROM {} WHERE originator_id = %s AND originator_version = %s")
        rows = self._select(statement, originator_id, version, table=self.events)
        return int(rows[0]["notification_id"]) if rows else 0

    def _select(self, statement: SQL, *params: Any, table: Composed | None = None) -> list[DictRow]:
        try:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(statement.format(table if table is not None else self.seals), params)
                rows: list[DictRow] = curs.fetchall()
                return rows
        except ProgrammingError as exc:  # opened without creating tables, and they are not there (as SQLite says)
            if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                raise OperationalError(str(exc)) from exc
            raise

    # -- sealing a store recorded before sealing ------------------------------------------------------

    def _needs_backfill(self) -> bool:
        statement = SQL("SELECT EXISTS (SELECT 1 FROM {}) AS sealed, (SELECT MAX(notification_id) FROM {}) AS last")
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement.format(self.seals, self.events))
            row = curs.fetchone()
        return row is not None and not row["sealed"] and bool(row["last"])

    def _lock_unsealed(self, c: Cursor[DictRow]) -> bool:
        self._lock_table(c)  # the lock every insert takes
        c.execute(SQL("SELECT EXISTS (SELECT 1 FROM {}) AS sealed").format(self.seals))
        row = c.fetchone()
        return row is not None and not row["sealed"]

    def _events_after(self, c: Cursor[DictRow], after: int, limit: int) -> list[Notification]:
        c.execute(
            SQL("SELECT * FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s").format(self.events),
            (after, limit),
        )
        return [
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in c.fetchall()
        ]
