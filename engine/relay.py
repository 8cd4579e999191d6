"""The relay: ships the event store's notification log to Kafka, each event once, in order (the outbox)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from engine import codec
from engine.errors import GridloopError
from engine.kafka import (
    EVENT_TYPE,
    FINGERPRINT,
    OCCURRED_AT,
    POSITION,
    RECORDED_AT,
    Headers,
    LogWriter,
    Record,
    Topics,
    partition_of,
    read_tails,
)

log = structlog.get_logger()

TailReader = Callable[[Sequence[str]], Record | None]
"""Reads Kafka back: the committed record with the highest global position on the given topics (None if none)."""


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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._recorder = recorder
        self._mapper = mapper
        self._writer = writer
        self._topics = topics
        self._batch_size = batch_size
        self._failed: str | None = None
        self._position = self._check(read_tail(topics.event_topics))
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
        notifications = self._recorder.select_notifications(start=self._position + 1, limit=self._batch_size)
        if not notifications:
            return 0
        shipments = [self.shipment(n) for n in notifications]
        self._writer.begin()
        try:
            for s in shipments:
                self._writer.send(s.topic, s.partition, s.key, s.value, s.headers)
            self._writer.commit()
        except BaseException as exc:
            # Whether a failed commit took effect is unknown here (a timeout may follow a commit the broker
            # completed), so this relay ships nothing more: a new one reads back what Kafka committed.
            self._failed = f"{type(exc).__name__}: {exc}"
            self._abort_quietly()
            raise
        self._position = notifications[-1].id
        return len(notifications)

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

    def shipment(self, notification: Notification) -> Shipment:
        """The Kafka record for one notification: Avro single-object value, aggregate-id key, legible headers."""
        event: Any = self._mapper.to_domain_event(notification)
        folder, name = codec.event_type(event)
        topic = self._topics.of(folder)
        key = str(event.originator_id).encode()
        recorded_at = _instant(event.timestamp)
        occurred = getattr(event, "occurred_at", None)
        headers = (
            (EVENT_TYPE, f"{folder}.{name}".encode()),
            (FINGERPRINT, codec.fingerprint_of(event).hex().encode()),
            (POSITION, str(notification.id).encode()),
            (OCCURRED_AT, _instant(occurred) if isinstance(occurred, datetime) else recorded_at),
            (RECORDED_AT, recorded_at),
        )
        return Shipment(
            topic=topic,
            partition=partition_of(key, self._writer.partitions(topic)),
            key=key,
            value=codec.encode(event),
            headers=headers,
            position=notification.id,
        )

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
