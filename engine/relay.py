"""The relay: ships the event store's notification log to Kafka, each event once, in order (the outbox)."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from engine import codec
from engine.errors import GridloopError
from engine.kafka import (
    CHECKPOINT,
    EVENT_TYPE,
    FINGERPRINT,
    HASH,
    OCCURRED_AT,
    POSITION,
    PREV_HASH,
    RECORDED_AT,
    Headers,
    LogWriter,
    Record,
    Topics,
    partition_of,
    read_tails,
)
from engine.seal import Seal
from engine.sealing import SealingError, SealReader, seal_reader

log = structlog.get_logger()

TailReader = Callable[[Sequence[str]], Record | None]
"""Reads Kafka back: the committed record with the highest global position on the given topics (None if none)."""

StoreOpener = Callable[[], Application[UUID]]
"""Opens the event store (an application on it) in the relay's builder process; picklable (a partial of store_of)."""

Outgoing = tuple[str, int, bytes, bytes, Headers, int]
"""One record as built for the writer: topic, partition, key, value, headers, global position."""


class RelayStopped(GridloopError):
    """A relay whose batch failed ships no more: only Kafka knows whether that batch was committed."""


class LogMismatch(GridloopError):
    """The topics hold a log that is not this store's: resuming would skip or misplace events."""


@dataclass(frozen=True)
class Shipment:
    """One record the relay writes, built from one notification."""

    topic: str
    partition: int
    key: bytes
    value: bytes
    headers: Headers
    position: int


def position_of(record: Record) -> int:
    """The global log position a relayed record carries in its header (0 for a record without one)."""
    raw = record.headers.get(POSITION)
    return int(raw) if raw else 0


def _instant(value: datetime) -> bytes:
    return value.isoformat().encode()


def store_of(app_class: type[Application[UUID]], env: Mapping[str, str]) -> Application[UUID]:
    """An application on the same store, opened anew (in the builder process) without creating tables."""
    return app_class({**env, "CREATE_TABLE": "n"})


PLACED_KEYS = 100_000
"""How many keys' partitions a builder remembers (then it forgets them all and starts again)."""


class _Builder:
    """Turns notifications into the relay's records; the same code in the relay and in its builder process.

    Each record carries its event's seal (prev_hash, hash) and, at a checkpoint position, the checkpoint,
    read from the store the notifications come from.
    """

    def __init__(
        self, mapper: Mapper[UUID], seals: SealReader, topics: Topics, partitions: Callable[[str], int]
    ) -> None:
        self._mapper = mapper
        self._seals = seals
        self._topics = topics
        self._partitions = partitions
        # Per event class: topic and the two headers that depend on the class alone.
        self._by_class: dict[type[Any], tuple[str, bytes, bytes]] = {}
        # Per (topic, key): its partition. An aggregate's events follow each other, and hashing a key is
        # a tenth of a record's building; a topic's partition count is read once per relay anyway.
        self._placed: dict[tuple[str, bytes], int] = {}

    def build(self, notifications: Sequence[Notification]) -> list[Outgoing]:
        """The records of consecutive notifications, with their seals."""
        if not notifications:
            return []
        first, last = notifications[0].id, notifications[-1].id
        seals = {s.position: s for s in self._seals.select_seals(first, last)}
        checkpoints = {c.position: c.hash.hex().encode() for c in self._seals.select_checkpoints(first, last)}
        return [self._build(n, seals.get(n.id), checkpoints.get(n.id)) for n in notifications]

    def _build(self, notification: Notification, sealed: Seal | None, checkpoint: bytes | None) -> Outgoing:
        if sealed is None or (sealed.originator_id, sealed.originator_version) != (
            notification.originator_id,
            notification.originator_version,
        ):
            raise SealingError(
                f"the event at position {notification.id} (version {notification.originator_version} of "
                f"{notification.originator_id}) has no seal of its own: the store was altered behind gridloop's "
                "back, and the relay ships no unsealed event (run gridloop audit verify)"
            )
        event: Any = self._mapper.to_domain_event(notification)
        known = self._by_class.get(type(event))
        if known is None:
            folder, name = codec.event_type(event)
            known = (self._topics.of(folder), f"{folder}.{name}".encode(), codec.fingerprint_of(event).hex().encode())
            self._by_class[type(event)] = known
        topic, event_type, fingerprint = known
        key = str(event.originator_id).encode()
        recorded_at = _instant(event.timestamp)
        occurred = getattr(event, "occurred_at", None)
        headers: Headers = (
            (EVENT_TYPE, event_type),
            (FINGERPRINT, fingerprint),
            (POSITION, str(notification.id).encode()),
            (OCCURRED_AT, _instant(occurred) if isinstance(occurred, datetime) else recorded_at),
            (RECORDED_AT, recorded_at),
            (PREV_HASH, sealed.prev_hash.hex().encode()),
            (HASH, sealed.hash.hex().encode()),
        )
        if checkpoint is not None:
            headers = (*headers, (CHECKPOINT, checkpoint))
        value = codec.encode(event)
        return topic, self._partition(topic, key), key, value, headers, notification.id

    def _partition(self, topic: str, key: bytes) -> int:
        placed = self._placed.get((topic, key))
        if placed is None:
            if len(self._placed) >= PLACED_KEYS:
                self._placed.clear()
            placed = self._placed[(topic, key)] = partition_of(key, self._partitions(topic))
        return placed


class _MissingPartitions(Exception):
    """The builder process was not told a topic's partition count: the relay builds that batch itself."""


CHUNK = 500
"""Records per message from the builder process: the relay sends a chunk while the next is built."""


def _build_in_worker(connection: Connection, opener: StoreOpener, topics: Topics) -> None:
    """The builder process: reads a batch from the store and streams its records back in chunks.

    A batch shorter than asked for (the store's end) is followed by None; a full one by nothing, so the
    relay can ask for the next as soon as it has the last chunk.

    It holds only its own end of the pipe, so when the relay goes (even killed) ``recv`` meets the end
    of the pipe and this process ends with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the relay, which then closes the pipe
    try:
        app = opener()  # kept: the store closes when the application goes
    except Exception as exc:
        connection.send(f"{type(exc).__name__}: {exc}")
        return
    connection.send(None)  # ready
    partitions: dict[str, int] = {}

    def count(topic: str) -> int:
        found = partitions.get(topic)
        if found is None:
            raise _MissingPartitions(topic)
        return found

    builder = _Builder(app.mapper, seal_reader(app.recorder), topics, count)
    try:
        while True:
            start, limit, known = connection.recv()
            partitions.update(known)
            try:
                while limit:  # read in chunks too: the first records go out without waiting for the batch's read
                    notifications = app.recorder.select_notifications(start=start, limit=min(limit, CHUNK))
                    if notifications:
                        connection.send(builder.build(notifications))
                        start, limit = notifications[-1].id + 1, limit - len(notifications)
                    if len(notifications) < CHUNK and limit:
                        connection.send(None)
                        break
            except (BrokenPipeError, OSError):
                raise
            except Exception as exc:  # the relay builds this batch itself, so it meets the error itself
                connection.send(f"{type(exc).__name__}: {exc}")
    except (EOFError, OSError):
        return


class _BuilderFailed(Exception):
    """The builder process could not build a batch (or is gone): the relay builds it itself."""


class _Ahead:
    """The relay's builder process: reads and builds batches while the relay sends.

    Building a record costs about as much Python as sending it; in another process it runs beside the
    send instead of before it, outside the relay's GIL. It streams a batch in chunks, so the relay sends
    the first records while the rest are built, and builds batch k+1 while batch k commits.
    """

    def __init__(self, opener: StoreOpener, topics: Topics) -> None:
        # spawn, not fork: the relay's producer has an I/O thread whose locks a forked child could inherit held.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._connection = ours
        self._process: BaseProcess = context.Process(
            target=_build_in_worker, args=(theirs, opener, topics), name="gridloop-relay-builder", daemon=True
        )
        self._process.start()
        theirs.close()
        self._asked: int | None = None
        """The start of the batch asked for whose end has not been read yet."""
        self._left = 0
        """How many records of that batch may still come."""
        self._begun = False
        """Whether some of that batch was read already."""
        self._finalizer = weakref.finalize(self, _stop, self._connection, self._process)
        try:  # started and the store open before the relay counts on it: start-up, not shipping
            failed = self._connection.recv()
        except (EOFError, OSError):
            failed = f"it exited with code {self._process.exitcode}"
        if failed is not None:
            self.close()
            raise RuntimeError(f"the relay's builder process could not open the event store: {failed}")

    @property
    def busy(self) -> bool:
        """Whether a batch was asked for and not read to its end (it must be read before the store is read again)."""
        return self._asked is not None

    def ask(self, start: int, limit: int, partitions: Mapping[str, int]) -> bool:
        """Have the batch from ``start`` built, unless it already is being built (then False)."""
        if self._asked == start and not self._begun:
            return False
        if self._asked is not None:
            for _ in self.chunks():  # one request at a time: a stale batch is read and dropped
                pass
        try:
            self._connection.send((start, limit, dict(partitions)))
        except (BrokenPipeError, OSError) as exc:
            raise _BuilderFailed("the builder process is gone") from exc
        self._asked, self._left = start, limit
        return True

    def chunks(self) -> Iterator[list[Outgoing]]:
        """The records of the batch asked for, chunk by chunk; raises _BuilderFailed if it cannot build them."""
        while self._asked is not None:
            self._begun = True
            try:
                reply = self._connection.recv()
            except (EOFError, OSError) as exc:
                raise _BuilderFailed("the builder process is gone") from exc
            if reply is None or isinstance(reply, str):
                self._asked, self._begun = None, False
                if reply is not None:
                    raise _BuilderFailed(reply)
                return
            self._left -= len(reply)
            if not self._left:  # the batch is complete: the next may be asked for before this chunk is used
                self._asked, self._begun = None, False
                yield reply
                return
            yield reply

    def close(self) -> None:
        self._finalizer()


def _stop(connection: Connection, process: BaseProcess) -> None:
    connection.close()  # the builder meets the end of the pipe and returns
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join(timeout=5)


class Relay:
    """Follows the notification log and writes it to Kafka in transactions, one batch per transaction.

    Exactly once, without a side file: where to resume is read back from Kafka itself (the highest
    global position committed on any partition). A batch is one Kafka transaction, committed before
    the next is read, so everything up to that position is on Kafka and nothing after it is visible
    to a read-committed reader; a batch cut short by a crash is aborted when the next relay with the
    same transactional id starts, and is sent again whole. Record key = aggregate id, partition by the
    key, records sent in log order: per-aggregate order holds on every partition.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        writer: LogWriter,
        read_tail: TailReader,
        topics: Topics,
        batch_size: int = 5000,
        build_ahead: StoreOpener | None = None,
    ) -> None:
        """``build_ahead`` opens the same store in a second process that builds each next batch's records
        while this one is sent (same records, same transactions); without it the relay builds them itself."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._recorder = recorder
        self._writer = writer
        self._topics = topics
        self._batch_size = batch_size
        self._failed: str | None = None
        self._partitions: dict[str, int] = {}
        self._builder = _Builder(mapper, seal_reader(recorder), topics, self._partitions_of)
        self._position = self._check(read_tail(topics.event_topics))
        self._ahead = _Ahead(build_ahead, topics) if build_ahead is not None else None
        self.built_ahead = 0
        """How many batches the builder process built (the others the relay built itself)."""
        self._behind = True
        """Whether the last batch was full (or none was shipped yet): the store is ahead of Kafka, so the next
        batch is built in the builder process. A caught-up relay ships the few events a follow loop finds
        itself: a round trip to another process would cost more than building them, and would add the
        scheduling of that process to each event's way to the board."""
        if self._ahead is not None:
            # The builder process builds only for topics it knows the size of; a batch with an event for a
            # missing topic is built here instead, and raises here as it would without a builder.
            for topic in topics.event_topics:
                with contextlib.suppress(LookupError):
                    self._partitions_of(topic)
        log.info("relay_resumed", position=self._position, topics=list(topics.event_topics))

    @property
    def position(self) -> int:
        """The global position of the last event this relay knows to be committed on Kafka."""
        return self._position

    def ship_batch(self) -> int:
        """Ship the next batch of notifications in one transaction; returns how many were shipped."""
        if self._failed is not None:
            raise RelayStopped(
                f"this relay stopped after a failed batch ({self._failed}); start a new one, which resumes "
                "from what Kafka committed"
            )
        start = self._position + 1
        if self._ahead is not None and (self._behind or self._ahead.busy):
            try:
                shipped = self._ship_built_ahead(start)
            except _BuilderFailed as exc:  # nothing of the batch was committed: build it here, as without a builder
                log.warning("relay_builder_failed", start=start, error=str(exc))
                self.close()
                self._ahead = None
            else:
                self._behind = shipped == self._batch_size
                return shipped
        notifications = self._recorder.select_notifications(start=start, limit=self._batch_size)
        self._behind = len(notifications) == self._batch_size
        if not notifications:
            return 0
        records = self._builder.build(notifications)
        self._writer.begin()
        try:
            send = self._writer.send
            for topic, partition, key, value, headers, _ in records:
                send(topic, partition, key, value, headers)
            self._writer.commit()
        except BaseException as exc:
            self._stop(exc)
            raise
        self._position = records[-1][5]
        return len(records)

    def _ship_built_ahead(self, start: int) -> int:
        """One batch as the builder process streams it: sent chunk by chunk, committed whole."""
        assert self._ahead is not None
        fresh = self._ahead.ask(start, self._batch_size, self._partitions)
        shipped = last = 0
        try:
            for chunk in self._ahead.chunks():
                if not shipped:
                    self._writer.begin()
                shipped += len(chunk)
                last = chunk[-1][5]
                if shipped == self._batch_size:  # more may follow: the next batch is built while this one ends
                    self._ahead.ask(last + 1, self._batch_size, self._partitions)
                send = self._writer.send
                for topic, partition, key, value, headers, _ in chunk:
                    send(topic, partition, key, value, headers)
            if not shipped:
                # Asked for before the store had more: ask again, now.
                return 0 if fresh else self._ship_built_ahead(start)
            self._writer.commit()
        except _BuilderFailed:
            if shipped:  # the open transaction ends without a record of it visible; its batch is built again
                try:
                    self._writer.abort()
                except BaseException as exc:
                    self._failed = f"{type(exc).__name__}: {exc}"
                    raise
            raise
        except BaseException as exc:
            self._stop(exc)
            raise
        self._position = last
        self.built_ahead += 1
        return shipped

    def _stop(self, exc: BaseException) -> None:
        # Whether a failed commit took effect is unknown here (a timeout may follow a commit the broker
        # completed), so this relay ships nothing more: a new one reads back what Kafka committed.
        self._failed = f"{type(exc).__name__}: {exc}"
        self._abort_quietly()

    def ship_all(self) -> int:
        """Ship batches until the store has nothing new; returns how many events were shipped."""
        shipped = 0
        while True:
            count = self.ship_batch()
            shipped += count
            if count < self._batch_size:
                if shipped:
                    log.info("relay_caught_up", shipped=shipped, position=self._position)
                return shipped

    def run(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Follow the store until ``stop`` is set, polling every ``poll_interval`` seconds once caught up."""
        while not stop.is_set():
            self.ship_all()
            stop.wait(poll_interval)

    def close(self) -> None:
        """Stop the builder process, if any (the writer is its owner's to close)."""
        if self._ahead is not None:
            self._ahead.close()

    def shipment(self, notification: Notification) -> Shipment:
        """The Kafka record for one notification: Avro single-object value, aggregate-id key, legible headers."""
        topic, partition, key, value, headers, position = self._builder.build([notification])[0]
        return Shipment(topic, partition, key, value, headers, position)

    def _partitions_of(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = self._writer.partitions(topic)
        return count

    def _check(self, tail: Record | None) -> int:
        """The position to resume after, once the tail on Kafka is shown to be this store's own event."""
        if tail is None:
            return 0
        position = position_of(tail)
        stored = self._recorder.select_notifications(start=position, limit=1)
        if not stored or stored[0].id != position:
            raise LogMismatch(
                f"Kafka holds position {position} on {tail.origin}, but this store has no event there "
                f"(it ends at {self._recorder.max_notification_id() or 0}): the topics belong to another store; "
                "use other topics (kafka_topic_prefix) or an empty broker"
            )
        ours = self.shipment(stored[0])
        if (ours.key, ours.topic, ours.value) != (tail.key, tail.topic, tail.value):
            raise LogMismatch(
                f"the record at position {position} on Kafka ({tail.origin}, key {tail.key!r}) is not this store's "
                f"event at that position (key {ours.key!r} on {ours.topic}): the topics belong to another store"
            )
        return position

    def _abort_quietly(self) -> None:
        try:
            self._writer.abort()
        except Exception as exc:  # the producer may be fenced or the broker gone: the next start aborts it
            log.warning("relay_abort_failed", error=str(exc))


def committed_position(consumer: Any) -> TailReader:
    """A TailReader over a read-committed consumer: the highest position header in any partition's tail."""

    def read(topics: Sequence[str]) -> Record | None:
        tails = read_tails(consumer, topics, wanted=lambda record: POSITION in record.headers)
        return max((record for record in tails.values() if record is not None), key=position_of, default=None)

    return read
