"""The Kafka projection runner: the relay's topics → the same projections → the view store, in a consumer group."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import get_topic
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from engine import codec
from engine.kafka import (
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_GROUP,
    DEAD_OFFSET,
    DEAD_PARTITION,
    DEAD_TOPIC,
    EVENT_TYPE,
    POSITION,
    Record,
    Topics,
    to_record,
)
from projections.projection import Cursor, Handler, Projection, chosen, routes
from projections.store import Views

log = structlog.get_logger()

DeadLetterSink = Callable[[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]], None]
"""Sends one record to a topic and returns once the broker has it: (topic, key, value, headers)."""

HELD_BEHIND = "dlq_held_behind"
"""Header of a record dead-lettered only because an earlier record of its aggregate was."""


TRANSIENT = (sqlite3.OperationalError, OperationalError, InterfaceError)
"""Errors of the view store, not of a record (locked, disk full, gone): never a reason to dead-letter."""


def _key_text(key: bytes | None) -> str:
    """A record key as the held-aggregate table keeps it (lossy for non-UTF-8 keys: holds more, never less)."""
    return (key or b"").decode("utf-8", "replace")


class _NeedsCare(Exception):
    """The batch must be applied record by record (it holds a record for the dead-letter topic)."""


class PoisonRecord(Exception):
    """A record a projection cannot take: undecodable, without a position, or failing every attempt."""


@dataclass(frozen=True)
class _Decoded:
    event: Any
    position: int
    routes: tuple[tuple[str, Handler], ...]


def tracking_name(projection: str, topic: str, partition: int) -> str:
    """The tracking row of one view on one partition: its id is the next offset to read there."""
    return f"{projection}@{topic}:{partition}"


class KafkaRunner:
    """Follows the relay's topics as a member of a consumer group and folds them into the views.

    Views, rows and positions are those of the embedded runner; only the source differs. Each view
    tracks, per topic-partition, the next offset it needs, in the same transaction as its rows; Kafka's
    own committed offsets are kept for lag monitoring only. When the group hands this worker a
    partition, it seeks to the offset its view store records, so a rebalance neither skips nor repeats.
    A record that cannot be decoded or applied is tried ``attempts`` times, then sent to the group's
    dead-letter topic with the error and its origin in headers; the aggregate it belongs to is held
    (recorded in the view store), and its later records follow it to the dead-letter topic instead of
    being applied out of order.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        store: Views,
        projections: Sequence[Projection],
        topics: Topics,
        group: str,
        dead_letter: DeadLetterSink,
        attempts: int = 3,
        max_records: int = 2000,
    ) -> None:
        names = [projection.name for projection in projections]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"projections need distinct names, got {names}")
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self._consumer = consumer
        self._store = store
        self._projections = tuple(projections)
        self._group = group
        self._dead_letter = dead_letter
        self._dead_topic = topics.dead_letters(group)
        self._attempts = attempts
        self._max_records = max_records
        self._routes = routes(self._projections)
        self._by_class: dict[type, tuple[tuple[str, Handler], ...]] = {}
        self.topics = followed_topics(self._projections, topics)
        self._assigned: set[TopicPartition] = set()
        self.applied = 0
        self.dead_lettered = 0
        consumer.subscribe(self.topics, listener=_Listener(self))
        # The group's first assignment must see every partition of these topics. A worker that joins before
        # its metadata names them is given nothing, and rejoins when the metadata arrives; kafka-python 3.0.12
        # drops such a rejoin if a poll times out as it completes, and the worker then holds no partition
        # for good. Fetching the metadata now, once subscribed, makes the first join the only one.
        consumer.topics()

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        """The partitions the group has given this worker."""
        return frozenset(self._assigned)

    def run(self, stop: threading.Event, poll_timeout: float = 0.2, backoff: float = 1.0) -> None:
        """Consume until ``stop`` is set; a view-store error (locked, full) is waited out, the batch read again."""
        pause = backoff
        while not stop.is_set():
            try:
                self.poll_once(poll_timeout)
            except TRANSIENT as exc:
                log.warning("view_store_unavailable", error=f"{type(exc).__name__}: {exc}", retry_in=pause)
                stop.wait(pause)
                pause = min(pause * 2, 30.0)
            else:
                pause = backoff

    def poll_once(self, timeout: float = 0.2) -> int:
        """Poll one batch and fold it into the views in one transaction; returns how many records it read."""
        polled = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=self._max_records)
        records = [to_record(m) for messages in polled.values() for m in messages]
        if not records:
            return 0
        try:
            try:
                self.applied += self._apply(records, careful=False)
            except TRANSIENT:
                raise
            except Exception as exc:
                # Something in the batch fails: redo it record by record, each in a savepoint, so the
                # good records land and the bad ones are tried again, then dead-lettered.
                log.warning("projection_batch_failed", error=f"{type(exc).__name__}: {exc}", records=len(records))
                self.applied += self._apply(records, careful=True)
        except BaseException:
            # Nothing of the batch committed, but the consumer has moved past it: put it back, so a
            # caller that polls again reads the batch again instead of skipping it.
            self._rewind(records)
            raise
        self._consumer.commit_async(
            {TopicPartition(r.topic, r.partition): OffsetAndMetadata(r.offset + 1, "", -1) for r in records}
        )
        return len(records)

    def catch_up(self, timeout: float = 60.0) -> int:
        """Consume until this worker has joined its group and read every assigned partition to its end.

        The ends are read-committed ends, taken once assigned; returns how many records were read.
        """
        deadline = time.monotonic() + timeout
        read = 0
        while not self._assigned:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {list(self.topics)} assigned within {timeout} s")
            read += self.poll_once()
        ends = self._consumer.end_offsets(list(self._assigned))
        while any(self._consumer.position(tp) < ends[tp] for tp in self._assigned if tp in ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not caught up with {list(self.topics)} within {timeout} s")
            read += self.poll_once()
        return read

    def tracking_names(self, partitions: Iterable[TopicPartition]) -> list[str]:
        return [tracking_name(p.name, tp.topic, tp.partition) for tp in partitions for p in self._projections]

    def next_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each partition must be read from: the lowest next offset any view records for it."""
        partitions = list(partitions)
        positions = self._store.positions(self.tracking_names(partitions))
        return {
            tp: min(positions[tracking_name(p.name, tp.topic, tp.partition)] for p in self._projections)
            for tp in partitions
        }

    def rebuild(self, name: str | None = None) -> None:
        """Drop one view's rows and tracking (every view's, for None); the views are read again from offset 0."""
        views = chosen(self._projections, name)
        with self._store.transaction() as cursor:
            for projection in views:
                projection.clear(cursor)
                per_partition = f"{projection.name}@"  # not LIKE: its "_" would match any character
                cursor.execute(
                    "DELETE FROM tracking WHERE substr(application_name, 1, ?) = ?", (len(per_partition), per_partition)
                )
            if name is None:
                cursor.execute("DELETE FROM held_aggregate")
        for tp in self._assigned:
            self._consumer.seek(tp, 0)
        log.info("views_cleared", views=[p.name for p in views])

    # -- the fold ----------------------------------------------------------------------------------

    def _apply(self, records: Sequence[Record], careful: bool) -> int:
        applied = 0
        with self._store.transaction() as cursor:
            partitions = {TopicPartition(r.topic, r.partition) for r in records}
            # Read inside the write transaction: a worker that lost these partitions in a rebalance may
            # have committed a batch since, and what it applied must not be applied again.
            names = self.tracking_names(partitions)
            positions = self._store.positions(names, cursor)
            read_from = dict(positions)
            held = self._held(cursor, partitions)
            for record in records:
                due = [
                    p.name
                    for p in self._projections
                    if positions[tracking_name(p.name, record.topic, record.partition)] <= record.offset
                ]
                if not due:
                    continue
                aggregate = (record.topic, record.partition, _key_text(record.key))
                if record.key is not None and aggregate in held:
                    if not careful:
                        # Dead letters are sent from the careful pass only, which is never redone: a
                        # fast batch that sent one and then failed would send it twice.
                        raise _NeedsCare(f"{record.origin} belongs to a held aggregate")
                    self._send_dead(
                        record,
                        f"held: an earlier record of this aggregate is dead-lettered ({held[aggregate]})",
                        attempts=0,
                        behind=held[aggregate],
                    )
                elif careful:
                    error, attempts = self._apply_carefully(record, due, cursor)
                    applied += error is None
                    if error is not None:
                        self._send_dead(record, error, attempts=attempts)
                        if record.key is not None:
                            held[aggregate] = record.origin
                            self._hold(cursor, record, error)
                else:
                    applied += self._apply_one(record, due, cursor)
                for projection in due:
                    positions[tracking_name(projection, record.topic, record.partition)] = record.offset + 1
            # Only the views that moved: the store refuses a tracking position that does not advance, and a
            # view read here already (a rebuild of another view, a partition re-read after a rebalance) did not.
            for name in names:
                if positions[name] != read_from[name]:
                    self._store.track(cursor, name, positions[name])
        return applied

    def _apply_one(self, record: Record, due: Sequence[str], cursor: Cursor) -> int:
        """Fold one record into the views that are due to read it; returns 1 if any view took it."""
        decoded = self._decode(record)
        for name, process_event in decoded.routes:
            if name in due:
                process_event(decoded.event, decoded.position, cursor)
        return 1 if decoded.routes else 0

    def _apply_carefully(self, record: Record, due: Sequence[str], cursor: Cursor) -> tuple[str | None, int]:
        """Apply one record in a savepoint, up to ``attempts`` times; returns (last error or None, attempts)."""
        error = ""
        attempt = 0
        for attempt in range(1, self._attempts + 1):
            cursor.execute("SAVEPOINT record")
            try:
                self._apply_one(record, due, cursor)
            except Exception as exc:
                cursor.execute("ROLLBACK TO record")
                cursor.execute("RELEASE record")
                if isinstance(exc, TRANSIENT):
                    raise  # the store's trouble, not the record's: the batch fails, nothing is held
                error = f"{type(exc).__name__}: {exc}"
                log.warning("record_failed", origin=record.origin, attempt=attempt, error=error)
                if isinstance(exc, PoisonRecord):
                    return error, attempt  # bytes do not change between attempts
                continue
            cursor.execute("RELEASE record")
            return None, attempt
        return error, attempt

    def _decode(self, record: Record) -> _Decoded:
        if record.value is None:
            raise PoisonRecord(f"{record.origin} has no value (a tombstone); gridloop records always carry an event")
        raw = record.headers.get(POSITION, b"")
        if not raw.isdigit():
            raise PoisonRecord(f"{record.origin} has no valid {POSITION} header (got {raw!r}); the relay sets one")
        try:
            event = codec.decode(record.value)
        except codec.UndecodableRecord as exc:
            raise PoisonRecord(f"{record.origin}: {exc}") from exc
        if record.key is not None and str(event.originator_id).encode() != record.key:
            raise PoisonRecord(
                f"{record.origin}: key {record.key!r} is not the event's aggregate {event.originator_id}"
            )
        kind = type(event)
        routes = self._by_class.get(kind)
        if routes is None:
            routes = self._by_class[kind] = self._routes.get(get_topic(kind), ())
        return _Decoded(event, int(raw), routes)

    def _send_dead(self, record: Record, error: str, attempts: int, behind: str | None = None) -> None:
        headers = [
            *((name, value) for name, value in record.headers.items() if not name.startswith("dlq_")),
            (DEAD_ERROR, error.encode()),
            (DEAD_TOPIC, record.topic.encode()),
            (DEAD_PARTITION, str(record.partition).encode()),
            (DEAD_OFFSET, str(record.offset).encode()),
            (DEAD_GROUP, self._group.encode()),
            (DEAD_ATTEMPTS, str(attempts).encode()),
        ]
        if behind is not None:
            headers.append((HELD_BEHIND, behind.encode()))
        # Before the view transaction commits: a crash now sends it again, never loses it.
        self._dead_letter(self._dead_topic, record.key, record.value, headers)
        self.dead_lettered += 1
        log.error(
            "record_dead_lettered",
            origin=record.origin,
            event_type=record.header(EVENT_TYPE),
            error=error,
            dead_letter_topic=self._dead_topic,
        )

    def _held(self, cursor: Cursor, partitions: Iterable[TopicPartition]) -> dict[tuple[str, int, str], str]:
        held: dict[tuple[str, int, str], str] = {}
        for tp in partitions:
            cursor.execute(
                "SELECT key, first_offset FROM held_aggregate WHERE topic = ? AND partition = ?",
                (tp.topic, tp.partition),
            )
            for key, first in cursor.fetchall():
                held[(tp.topic, tp.partition, key)] = f"{tp.topic}[{tp.partition}]@{first}"
        return held

    def _hold(self, cursor: Cursor, record: Record, error: str) -> None:
        assert record.key is not None
        cursor.execute(
            "INSERT OR IGNORE INTO held_aggregate (topic, partition, key, first_offset, error) VALUES (?, ?, ?, ?, ?)",
            (record.topic, record.partition, _key_text(record.key), record.offset, error),
        )

    def _rewind(self, records: Sequence[Record]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        for tp, offset in first.items():
            if tp in self._assigned:
                self._consumer.seek(tp, offset)

    def _assign(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        self._assigned.update(partitions)
        for tp, offset in self.next_offsets(partitions).items():
            self._consumer.seek(tp, offset)
        log.info("partitions_assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in partitions))

    def _revoke(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        self._assigned.difference_update(partitions)
        log.info("partitions_revoked", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in partitions))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to where the view store says; nothing is in flight on revoke."""

    def __init__(self, runner: KafkaRunner) -> None:
        self._runner = runner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._runner._revoke(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._runner._assign(assigned)


def followed_topics(projections: Sequence[Projection], topics: Topics) -> tuple[str, ...]:
    """The Kafka topics of the aggregates some projection folds events of: command receipts are never read."""
    found = routes(projections)
    return tuple(
        topics.of(folder)
        for aggregate, folder in codec.AGGREGATES.items()
        if any(topic.startswith(get_topic(aggregate) + ".") for topic in found)
    )
