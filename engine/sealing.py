"""The sealed event store: each event's hash-chain link and the log's checkpoints, written with the events."""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable
from uuid import UUID

import structlog
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    Mapper,
    Notification,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteCursor, SQLiteFactory, SQLiteProcessRecorder

from engine import seal
from engine.errors import GridloopError, UnknownReference
from engine.seal import GENESIS, Checkpoint, Seal

if TYPE_CHECKING:
    from engine.sealing_postgres import SealingPostgresRecorder

log = structlog.get_logger()

SEAL_TABLE = "event_seal"
CHECKPOINT_TABLE = "log_checkpoint"
SKIPPED_TABLE = "log_skipped"
BACKFILL_PAGE = 1000


SealedRecorder: TypeAlias = "SealingSQLiteRecorder | SealingPostgresRecorder"
"""A process recorder that seals every event it inserts, on SQLite or PostgreSQL."""


class SealingError(GridloopError):
    """The event store cannot seal what it is asked to record, or was altered where sealing meets it."""


class StaleRead(IntegrityError):
    """An aggregate a command read (and did not change) got a newer event before the command's own were
    recorded: the command decided on a state that is gone, so nothing is written and it is tried again."""


Versions: TypeAlias = "Sequence[tuple[UUID, int]]"
"""Aggregates a command read, by id and the version it saw (``unchanged=`` of ``insert_events``)."""


@dataclass(frozen=True)
class SealedStoredEvent(StoredEvent):
    """A stored event with the hash of its content (the domain event's canonical bytes)."""

    content_hash: bytes


class SealingMapper(Mapper[UUID]):
    """The library's mapper, whose stored events carry their content hash (taken from the domain event)."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        stored = super().to_stored_event(domain_event)
        try:
            content = seal.content_hash(domain_event)
        except UnknownReference:  # not an event the codec writes (a snapshot): left unsealed, and refused if recorded
            return stored
        return SealedStoredEvent(stored.originator_id, stored.originator_version, stored.topic, stored.state, content)


@runtime_checkable
class SealReader(Protocol):
    """What the relay and the verifier read of a sealed store."""

    def select_seals(self, first: int, last: int) -> list[Seal]: ...

    def select_checkpoints(self, first: int = 1, last: int | None = None) -> list[Checkpoint]: ...

    def max_sealed_position(self) -> int: ...

    def select_skipped(self) -> list[tuple[int, int]]: ...


def seal_reader(recorder: ApplicationRecorder) -> SealReader:
    """The recorder as a reader of its seals; refuses, by name, a recorder that does not seal."""
    if not isinstance(recorder, SealReader):
        raise TypeError(f"{type(recorder).__qualname__} does not seal its events: open the store with Gridloop")
    return recorder


class Sealing(ABC):
    """How a batch of stored events is sealed, whatever the database: subclasses read and write the rows.

    Called inside the transaction that inserted the events, once the positions are known, so an event
    and its seal are committed together or not at all.
    """

    datastore: Any  # the recorder's: SQLite's or PostgreSQL's, with the same transaction(commit=...)

    def _seal(self, c: Any, stored_events: Sequence[StoredEvent], positions: Sequence[int]) -> None:
        contents = [content_of(s) for s in stored_events]
        in_batch: dict[tuple[UUID, int], bytes] = {}
        seals = []
        for stored, position, content in zip(stored_events, positions, contents, strict=True):
            originator_id = UUID(str(stored.originator_id))
            version = stored.originator_version
            prev = GENESIS if version == 1 else in_batch.get((originator_id, version - 1))
            if prev is None:
                prev = self._seal_hash(c, originator_id, version - 1)
            if prev is None:  # the previous event's seal is gone: chain on, and let gridloop audit verify say where
                log.warning("seal_missing", originator_id=str(originator_id), version=version - 1)
                prev = GENESIS
            hash_ = seal.link(prev, content)
            in_batch[(originator_id, version)] = hash_
            seals.append(Seal(position, originator_id, version, prev, hash_))
        self._write_seals(c, seals)
        for position in seal.checkpoint_positions(self._note_skipped(c, positions), max(positions)):
            first = position - seal.CHECKPOINT_EVERY + 1
            prev_checkpoint = GENESIS if first == 1 else self._checkpoint_hash(c, first - 1)
            if prev_checkpoint is None:
                log.warning("checkpoint_missing", position=first - 1)
                prev_checkpoint = GENESIS
            hashes = self._seal_hashes(c, first, position)
            self._write_checkpoint(
                c, Checkpoint(position, seal.checkpoint(prev_checkpoint, position, hashes), prev_checkpoint)
            )

    def backfill(self, mapper: Mapper[UUID]) -> int:
        """Seal a store recorded before sealing existed (no seal at all), in log order; returns how many.

        Only a store with no seal is sealed here: an unsealed event in a sealed store was inserted behind
        gridloop's back, and sealing it now would launder it.
        """
        if not self._needs_backfill():
            return 0
        count = after = 0
        with self.datastore.transaction(commit=True) as c:
            # Take the write lock first: another process opening the same old store waits, then finds it sealed.
            if not self._lock_unsealed(c):
                return 0
            while page := self._events_after(c, after, BACKFILL_PAGE):
                sealed_page = [
                    SealedStoredEvent(
                        n.originator_id,
                        n.originator_version,
                        n.topic,
                        n.state,
                        seal.content_hash(mapper.to_domain_event(n)),
                    )
                    for n in page
                ]
                self._seal(c, sealed_page, [n.id for n in page])
                count += len(page)
                after = page[-1].id
        log.info("store_sealed", events=count, last_position=after)
        return count

    @abstractmethod
    def position_of(self, originator_id: UUID, version: int) -> int:
        """The log position of one recorded event (0 if there is none)."""

    @abstractmethod
    def _needs_backfill(self) -> bool:
        """Whether the store holds events and no seal at all."""

    @abstractmethod
    def _lock_unsealed(self, c: Any) -> bool:
        """Take the store's write lock; whether it is still unsealed under it."""

    @abstractmethod
    def _events_after(self, c: Any, after: int, limit: int) -> list[Notification]:
        """Up to ``limit`` events after position ``after``, in log order."""

    def _note_skipped(self, c: Any, positions: Sequence[int]) -> int:
        """Where to look for the checkpoints due with a batch at ``positions`` (ascending): the batch's start
        where positions never skip (SQLite's rowid). A store whose positions skip records the skipped runs
        and answers the position after the last sealed one, so a checkpoint in a skipped run is written."""
        return positions[0]

    def select_skipped(self) -> list[tuple[int, int]]:
        """The runs of positions (first, last) that no committed transaction took: none where positions never skip."""
        return []

    @abstractmethod
    def _seal_hash(self, c: Any, originator_id: UUID, version: int) -> bytes | None:
        """The hash sealed for one version of an aggregate (None if it has no seal)."""

    @abstractmethod
    def _write_seals(self, c: Any, seals: Sequence[Seal]) -> None:
        """Insert the batch's seals."""

    @abstractmethod
    def _checkpoint_hash(self, c: Any, position: int) -> bytes | None:
        """The checkpoint's hash at ``position`` (None if there is none)."""

    @abstractmethod
    def _seal_hashes(self, c: Any, first: int, last: int) -> list[bytes]:
        """The sealed hashes of positions ``first`` to ``last``, in position order."""

    @abstractmethod
    def _write_checkpoint(self, c: Any, checkpoint: Checkpoint) -> None:
        """Insert one checkpoint."""


def content_of(stored: StoredEvent) -> bytes:
    """The content hash a stored event carries; refuses one that carries none."""
    if not isinstance(stored, SealedStoredEvent):
        raise SealingError(
            f"version {stored.originator_version} of {stored.originator_id} ({stored.topic}) carries no content "
            "hash: a sealed store records events mapped by SealingMapper only"
        )
    return stored.content_hash


class SealingSQLiteRecorder(Sealing, SQLiteProcessRecorder):
    """The library's SQLite process recorder, sealing every event it inserts (tables event_seal, log_checkpoint)."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {SEAL_TABLE} (position INTEGER PRIMARY KEY, originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (position INTEGER PRIMARY KEY, hash BLOB NOT NULL, "
            "prev BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        for stored in stored_events:  # before anything is written: a refused batch leaves no trace
            content_of(stored)
        positions = super()._insert_events(c, stored_events, **kwargs)
        assert positions is not None  # the application recorder returns the rowids
        self._check_unchanged(c, kwargs.get("unchanged", ()))  # after the insert: under the write lock
        if stored_events:
            self._seal(c, stored_events, positions)
        return positions

    def select_seals(self, first: int, last: int) -> list[Seal]:
        """The seals of positions ``first`` to ``last`` (both included), in position order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT * FROM {SEAL_TABLE} WHERE position BETWEEN ? AND ? ORDER BY position",  # noqa: S608
                (first, last),
            )
            return [Seal(row[0], UUID(row[1]), row[2], bytes(row[3]), bytes(row[4])) for row in c.fetchall()]

    def select_checkpoints(self, first: int = 1, last: int | None = None) -> list[Checkpoint]:
        """The checkpoints at positions ``first`` to ``last`` (both included; no end if None), in position order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT * FROM {CHECKPOINT_TABLE} WHERE position >= ? AND position <= ? ORDER BY position",  # noqa: S608
                (first, last if last is not None else 2**62),
            )
            return [Checkpoint(row[0], bytes(row[1]), bytes(row[2])) for row in c.fetchall()]

    def max_sealed_position(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT MAX(position) FROM {SEAL_TABLE}")  # noqa: S608
            return int(c.fetchone()[0] or 0)

    def position_of(self, originator_id: UUID, version: int) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid FROM {self.events_table_name} WHERE originator_id=? AND originator_version=?",  # noqa: S608
                (originator_id.hex, version),
            )
            row = c.fetchone()
        return int(row[0]) if row else 0

    def _needs_backfill(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT EXISTS (SELECT 1 FROM {SEAL_TABLE}), MAX(rowid) FROM {self.events_table_name}")  # noqa: S608
            sealed, last = c.fetchone()
        return not sealed and bool(last)

    def _lock_unsealed(self, c: SQLiteCursor) -> bool:
        c.execute(f"DELETE FROM {SEAL_TABLE} WHERE 0")  # noqa: S608
        c.execute(f"SELECT EXISTS (SELECT 1 FROM {SEAL_TABLE})")  # noqa: S608
        return not c.fetchone()[0]

    def _events_after(self, c: SQLiteCursor, after: int, limit: int) -> list[Notification]:
        c.execute(
            f"SELECT rowid, * FROM {self.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?",  # noqa: S608
            (after, limit),
        )
        return [
            Notification(
                id=row["rowid"],
                originator_id=self.convert_originator_id(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
            )
            for row in c.fetchall()
        ]

    def _check_unchanged(self, c: SQLiteCursor, unchanged: Versions) -> None:
        """Refuse the batch (StaleRead) if an aggregate it was decided on has an event after the version read.

        Called after the batch's own insert, under the store's write lock, so no writer can slip in between
        this check and the commit: a command may read a reference (a grid) from a cache and still be
        recorded only against its current state.
        """
        for originator_id, version in unchanged:
            c.execute(
                f"SELECT 1 FROM {self.events_table_name} WHERE originator_id=? AND originator_version>? LIMIT 1",  # noqa: S608
                (originator_id.hex, version),
            )
            if c.fetchone() is not None:
                raise StaleRead(f"{originator_id} has events after version {version}")

    def _seal_hash(self, c: SQLiteCursor, originator_id: UUID, version: int) -> bytes | None:
        # Through the event's own primary key to its position: no second index to write on every insert.
        c.execute(
            f"SELECT s.hash FROM {self.events_table_name} e JOIN {SEAL_TABLE} s ON s.position = e.rowid "  # noqa: S608
            "WHERE e.originator_id=? AND e.originator_version=?",
            (originator_id.hex, version),
        )
        row = c.fetchone()
        return bytes(row[0]) if row else None

    def _write_seals(self, c: SQLiteCursor, seals: Sequence[Seal]) -> None:
        try:
            c.executemany(
                f"INSERT INTO {SEAL_TABLE} VALUES (?, ?, ?, ?, ?)",  # noqa: S608
                [(s.position, s.originator_id.hex, s.originator_version, s.prev_hash, s.hash) for s in seals],
            )
        except sqlite3.IntegrityError as exc:  # the event's own insert passed, so its position was sealed before
            raise SealingError(
                f"positions {seals[0].position}-{seals[-1].position} are sealed already: events at the end of the "
                "log were deleted behind gridloop's back (run gridloop audit verify)"
            ) from exc

    def _checkpoint_hash(self, c: SQLiteCursor, position: int) -> bytes | None:
        c.execute(f"SELECT hash FROM {CHECKPOINT_TABLE} WHERE position=?", (position,))  # noqa: S608
        row = c.fetchone()
        return bytes(row[0]) if row else None

    def _seal_hashes(self, c: SQLiteCursor, first: int, last: int) -> list[bytes]:
        c.execute(
            f"SELECT hash FROM {SEAL_TABLE} WHERE position BETWEEN ? AND ? ORDER BY position",  # noqa: S608
            (first, last),
        )
        return [bytes(row[0]) for row in c.fetchall()]

    def _write_checkpoint(self, c: SQLiteCursor, checkpoint: Checkpoint) -> None:
        c.execute(
            f"INSERT INTO {CHECKPOINT_TABLE} VALUES (?, ?, ?)",  # noqa: S608
            (checkpoint.position, checkpoint.hash, checkpoint.prev),
        )


def open_recorder(factory: InfrastructureFactory[Any], mapper: Mapper[UUID]) -> SealedRecorder:
    """The application's sealed recorder on the factory's store, its tables created and an old store sealed."""
    recorder: SealedRecorder
    if isinstance(factory, SQLiteFactory):
        recorder = SealingSQLiteRecorder(factory.datastore)
    else:
        from eventsourcing.postgres import PostgresFactory  # psycopg is loaded for PostgreSQL only

        from engine.sealing_postgres import SealingPostgresRecorder

        if not isinstance(factory, PostgresFactory):
            raise SealingError(
                f"sealing is written for SQLite and PostgreSQL, not {type(factory).__module__}: "
                "use PERSISTENCE_MODULE=eventsourcing.sqlite or eventsourcing.postgres"
            )
        recorder = SealingPostgresRecorder.on(factory)
    if factory.env_create_table():  # the relay's builder process opens the store without: it only reads
        recorder.create_table()
        recorder.backfill(mapper)
    return recorder
