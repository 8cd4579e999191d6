"""The Kafka log's shape and gridloop's one narrow port to a Kafka client: topics, records, writer, reader."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from engine.codec import AGGREGATES
from engine.errors import GridloopError

Headers = Sequence[tuple[str, bytes]]

EVENT_TYPE = "event_type"
FINGERPRINT = "schema_fingerprint"
POSITION = "position"
OCCURRED_AT = "occurred_at"
RECORDED_AT = "recorded_at"
PREV_HASH = "prev_hash"
HASH = "hash"
RECORD_HEADERS = (EVENT_TYPE, FINGERPRINT, POSITION, OCCURRED_AT, RECORDED_AT, PREV_HASH, HASH)
"""The headers every gridloop record carries, all printable ASCII (legible in kcat); the hashes in hex."""
CHECKPOINT = "checkpoint"
"""The header of the record at a checkpoint position: the checkpoint's hash, in hex."""

# What a dead letter adds to the record's own headers: why, and where it came from.
DEAD_ERROR = "dlq_error"
DEAD_TOPIC = "dlq_topic"
DEAD_PARTITION = "dlq_partition"
DEAD_OFFSET = "dlq_offset"
DEAD_GROUP = "dlq_group"
DEAD_ATTEMPTS = "dlq_attempts"


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment: one topic per aggregate type, a dead-letter topic per consumer group."""

    prefix: str = "gridloop"

    def of(self, aggregate: str) -> str:
        """The topic of an aggregate type's events, e.g. ``gridloop.workorder``."""
        return f"{self.prefix}.{aggregate}"

    @property
    def event_topics(self) -> tuple[str, ...]:
        """Every aggregate type's topic: what the relay writes and the projection workers read."""
        return tuple(self.of(folder) for folder in AGGREGATES.values())

    def dead_letters(self, group: str) -> str:
        """The dead-letter topic of a consumer group, e.g. ``gridloop.deadletter.gridloop-views``."""
        return f"{self.prefix}.deadletter.{group}"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: the Java client's default (murmur2), so every client agrees."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_WORDS = struct.Struct("<I").iter_unpack
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``, unsigned), a word at a time.

    The same function as kafka-python's, which reads the key a byte at a time: the relay hashes every
    record's key, and this takes half the time (tests compare the two on random keys).
    """
    length = len(data)
    whole = length & ~3
    h = 0x9747B28C ^ length
    for (k,) in _WORDS(data[:whole]):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[whole + 2] << 16
        if extra >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


@dataclass(frozen=True)
class Record:
    """One record read from Kafka, with where it was read from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]

    @property
    def origin(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def header(self, name: str) -> str:
        """A header's value as text ('' when the record has none)."""
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value is not None else ""


class LogWriter(Protocol):
    """What the relay needs of a Kafka producer: atomic batches of keyed records."""

    def partitions(self, topic: str) -> int: ...

    def begin(self) -> None: ...

    def send(self, topic: str, partition: int, key: bytes, value: bytes, headers: Headers) -> None: ...

    def commit(self) -> None:
        """Make the batch visible to read-committed readers, all of it or (raising) none of it."""

    def abort(self) -> None: ...

    def close(self) -> None: ...


def client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """The settings every gridloop Kafka client shares."""
    return {"bootstrap_servers": bootstrap.split(","), "client_id": "gridloop", **extra}


RELAY_BATCHING: Mapping[str, int] = {"linger_ms": 5, "batch_size": 512 * 1024, "max_request_size": 8 * 1024 * 1024}
"""The relay producer's batching: a relay batch is sent whole and committed at once, so large record
batches and a short linger (the benchmark's raw-producer baselines use the same)."""


class UnsentRecords(GridloopError):
    """Records of a batch the broker did not acknowledge: the batch must not be committed."""


class TransactionalWriter:
    """kafka-python's idempotent producer (acks=all) in transactions: a relay batch lands whole or not at all.

    The transactional id is the relay's identity: ``init_transactions`` fences any earlier producer with
    the same id (a killed relay) and aborts the transaction it left open, so a restarted relay never
    races a zombie and the records of a half-sent batch stay invisible to read-committed readers.
    """

    def __init__(self, bootstrap: str, transactional_id: str, **config: Any) -> None:
        self._producer = KafkaProducer(
            **client_config(
                bootstrap,
                transactional_id=transactional_id,
                enable_idempotence=True,
                acks="all",
                **RELAY_BATCHING,
                **config,
            )
        )
        self._producer.init_transactions()
        self._partitions: dict[str, int] = {}
        self._sent: list[Any] = []

    def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            found = self._producer.partitions_for(topic)
            if not found:
                raise LookupError(f"topic {topic} does not exist: create it first (gridloop kafka topics)")
            count = self._partitions[topic] = len(found)
        return count

    def begin(self) -> None:
        self._producer.begin_transaction()

    def send(self, topic: str, partition: int, key: bytes, value: bytes, headers: Headers) -> None:
        self._sent.append(self._producer.send(topic, value=value, key=key, partition=partition, headers=list(headers)))

    def commit(self) -> None:
        """Commit the batch once every record of it is acknowledged; raise, committing nothing, if any failed.

        kafka-python counts an expired record batch (the broker gone past ``delivery_timeout_ms``) as
        retriable and goes on: a commit right away would end the transaction without those records.
        """
        sent, self._sent = self._sent, []
        self._producer.flush()
        failed = [future for future in sent if not future.succeeded()]
        if failed:
            first = failed[0].exception
            raise UnsentRecords(f"{len(failed)} of {len(sent)} records were not acknowledged: {first!r}")
        self._producer.commit_transaction()

    def abort(self) -> None:
        self._sent = []
        self._producer.abort_transaction()

    def close(self) -> None:
        self._producer.close(timeout=10)


class PlainWriter:
    """kafka-python's idempotent producer without transactions: for dead letters, sent and flushed one by one."""

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._producer = KafkaProducer(**client_config(bootstrap, enable_idempotence=True, acks="all", **config))

    def send_now(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Send one record and wait until the broker has it (raises if it cannot)."""
        self._producer.send(topic, value=value, key=key, headers=list(headers)).get(timeout=60)

    def close(self) -> None:
        self._producer.close(timeout=10)


def read_committed_consumer(bootstrap: str, **config: Any) -> KafkaConsumer:
    """A consumer that sees committed records only and never commits offsets by itself."""
    return KafkaConsumer(
        **client_config(
            bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **config,
        )
    )


def to_record(message: Any) -> Record:
    """A kafka-python ConsumerRecord as a gridloop Record."""
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=dict(message.headers or ()),
    )


def read_tails(
    consumer: KafkaConsumer,
    topics: Iterable[str],
    wanted: Callable[[Record], bool],
    window: int = 64,
    timeout: float = 60.0,
) -> dict[TopicPartition, Record | None]:
    """The last committed record of each partition of ``topics`` that ``wanted`` accepts (None if it has none).

    Reads each partition backwards from its end in growing windows (commit markers and aborted
    records take offsets too, so the last offset is not always a record), never the whole topic.
    """
    partitions: list[TopicPartition] = []
    for topic in topics:
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise LookupError(f"topic {topic} does not exist: create it first (gridloop kafka topics)")
        partitions.extend(TopicPartition(topic, p) for p in sorted(found))
    ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
    starts: dict[TopicPartition, int] = consumer.beginning_offsets(partitions)
    tails: dict[TopicPartition, Record | None] = {}
    deadline = time.monotonic() + timeout
    pending = {tp: ends[tp] for tp in partitions if ends[tp] > starts[tp]}
    tails.update({tp: None for tp in partitions if tp not in pending})
    while pending:
        consumer.assign(list(pending))
        lows = {tp: max(starts[tp], end - window) for tp, end in pending.items()}
        for tp, low in lows.items():
            consumer.seek(tp, low)
        last: dict[TopicPartition, Record] = {}
        while any(consumer.position(tp) < end for tp, end in pending.items()):
            if time.monotonic() > deadline:
                behind = {str(tp): end - consumer.position(tp) for tp, end in pending.items()}
                raise TimeoutError(f"reading the tails of {sorted(behind)} took over {timeout} s (behind: {behind})")
            for tp, messages in consumer.poll(timeout_ms=500, max_records=10_000).items():
                for message in messages:
                    record = to_record(message)
                    if message.offset < pending[tp] and wanted(record):
                        last[tp] = record
        for tp in list(pending):
            if tp in last or lows[tp] == starts[tp]:
                tails[tp] = last.get(tp)
                del pending[tp]
        window *= 4
    return tails
