"""The analytics consumer (分析消费者): gridloop's topics in a group of its own, records decoded by fingerprint."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import structlog
from fastavro import schemaless_reader
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from engine.codec import AGGREGATES, HEADER_SIZE, MAGIC, UndecodableRecord
from engine.errors import InvalidCommand
from engine.kafka import EVENT_TYPE, POSITION, Record, Topics, read_committed_consumer, to_record
from ops.cli_support import fail_cleanly
from ops.config import Settings
from ops.runtime import kafka_bootstrap
from ops.serve import stop_on_signals
from schemas.registry import CURRENT, EventSchema, Registry, SchemaError, load_registry, registry

log = structlog.get_logger()

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Schemas:
    """Where writer schemas are looked up by fingerprint, and which schema version reads the records.

    ``read_as`` is ``current`` (the newest schemas of ``registry``) or a released version: an older
    reader, which gets the fields it knows (a newer record's extra fields are left out, fields it
    lacks get their defaults: Avro schema resolution).
    """

    registry: Registry
    read_as: str = CURRENT

    def __post_init__(self) -> None:
        allowed = (CURRENT, *sorted(self.registry.released))
        if self.read_as not in allowed:
            raise InvalidCommand("read_as", f"{self.read_as!r} is not a schema version", " or ".join(allowed))

    def reader_of(self, writer: EventSchema) -> EventSchema:
        """The schema of ``writer``'s event type in the reading version (the writer's own if that has none)."""
        version = self.registry.current if self.read_as == CURRENT else self.registry.released[self.read_as]
        return version.get((writer.aggregate, writer.event), writer)


@dataclass(frozen=True)
class Decoded:
    """One record's value as an analyst sees it: the event's fields, and the schemas that wrote and read it."""

    writer: EventSchema
    reader: EventSchema
    fields: dict[str, Any]


def decode_value(value: bytes, schemas: Schemas) -> Decoded:
    """An Avro single-object encoded value (C3 01, 8-byte CRC-64-AVRO fingerprint, body) as plain fields."""
    if len(value) < HEADER_SIZE or value[:2] != MAGIC:
        raise UndecodableRecord(
            f"not Avro single-object encoding: {len(value)} bytes starting {bytes(value[:2]).hex(' ').upper()} "
            "(expected C3 01 and an 8-byte fingerprint)"
        )
    fingerprint = bytes(value[2:HEADER_SIZE])
    writer = schemas.registry.by_fingerprint.get(fingerprint)
    if writer is None:
        raise UndecodableRecord(f"unknown schema fingerprint {fingerprint.hex().upper()}: not in the schemas given")
    reader = schemas.reader_of(writer)
    body = BytesIO(value)
    body.seek(HEADER_SIZE)
    try:
        fields = schemaless_reader(body, writer.parsed, None if reader is writer else reader.parsed)
    except Exception as exc:  # fastavro raises several types on bad bytes or schemas that do not resolve
        raise UndecodableRecord(
            f"a {writer.full_name} record ({writer.version}) does not read as {reader.version}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    assert isinstance(fields, dict)  # a record schema reads as a dict
    return Decoded(writer, reader, fields)


def json_line(record: Record, decoded: Decoded) -> dict[str, Any]:
    """The JSON line printed for a record: where it was, what it is, and the event's fields."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode() if record.key is not None else None,
        "event_type": record.header(EVENT_TYPE),
        "position": int(record.header(POSITION) or 0),
        "fingerprint": decoded.writer.fingerprint.hex(),
        "written_with": decoded.writer.version,
        "read_as": decoded.reader.version,
        "event": decoded.fields,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, default=_plain)


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes when the group has given this consumer its partitions; with ``from_beginning``, seeks each
    partition to its start the first time it is assigned."""

    def __init__(self, consumer: KafkaConsumer, from_beginning: bool) -> None:
        self._consumer = consumer
        self._from_beginning = from_beginning
        self._sought: set[TopicPartition] = set()
        self.joined = False

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.joined = True
        fresh = [tp for tp in assigned if tp not in self._sought]
        if self._from_beginning and fresh:
            self._consumer.seek_to_beginning(*fresh)
        self._sought.update(fresh)


@dataclass
class Tail:
    """What a tail read: records printed, and those it could not decode (reported, not printed)."""

    printed: int = 0
    undecodable: list[str] = field(default_factory=list)


def tail(
    consumer: KafkaConsumer,
    topics: Sequence[str],
    schemas: Schemas,
    emit: Emit,
    report: Emit,
    limit: int | None = None,
    idle: float | None = None,
    from_beginning: bool = False,
    stop: threading.Event | None = None,
) -> Tail:
    """Read ``topics`` in the consumer's group, emitting one plain dict per record, until ``limit`` records,
    ``idle`` seconds without one once the group has assigned partitions, or ``stop``; commits the group's
    offsets after each batch it emitted.

    A record it cannot decode is reported (``report``) and passed over; its offset is committed too.
    """
    group = _Joined(consumer, from_beginning)
    consumer.subscribe(list(topics), listener=group)
    result = Tail()
    last_seen = time.monotonic()
    stop = stop or threading.Event()
    while not stop.is_set() and (limit is None or result.printed + len(result.undecodable) < limit):
        polled = consumer.poll(timeout_ms=500)
        records = [to_record(m) for messages in polled.values() for m in messages]
        if not records:
            if not group.joined:
                last_seen = time.monotonic()  # joining the group is not being idle
            elif idle is not None and time.monotonic() - last_seen >= idle:
                break
            continue
        last_seen = time.monotonic()
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            if limit is not None and result.printed + len(result.undecodable) >= limit:
                break
            _emit_one(record, schemas, emit, report, result)
            done[TopicPartition(record.topic, record.partition)] = OffsetAndMetadata(record.offset + 1, "", -1)
        consumer.commit(done)
    return result


def _emit_one(record: Record, schemas: Schemas, emit: Emit, report: Emit, result: Tail) -> None:
    try:
        decoded = decode_value(record.value or b"", schemas)
    except UndecodableRecord as exc:
        result.undecodable.append(record.origin)
        report({"origin": record.origin, "event_type": record.header(EVENT_TYPE), "error": str(exc)})
        return
    emit(json_line(record, decoded))
    result.printed += 1


def topics_of(prefix: str, aggregates: Iterable[str]) -> list[str]:
    chosen = set(aggregates)
    return [Topics(prefix).of(folder) for folder in AGGREGATES.values() if not chosen or folder in chosen]


def load_schemas(path: Path | None, read_as: str) -> Schemas:
    """Writer schemas from gridloop's own or the ``schemas/`` tree at ``path``, read as version ``read_as``."""
    if path is None:
        return Schemas(registry(), read_as)
    try:
        return Schemas(load_registry(path), read_as)  # a Path is a Traversable
    except (SchemaError, OSError) as exc:
        raise InvalidCommand(
            "schemas", f"{path}: {exc}", "a schemas/ tree (envelope.avsc, <aggregate>/*.avsc)"
        ) from exc


@click.group(name="analytics")
def analytics_group() -> None:
    """Analytics (分析): read the Kafka log as an analyst's consumer does."""


@analytics_group.command(name="tail")
@click.option("--group", required=True, help="This consumer's own group (never the projection workers').")
@click.option("--from-beginning", is_flag=True, help="Read every partition from its start, whatever the group read.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after this many records.")
@click.option("--idle", type=click.FloatRange(0.1), default=None, help="Stop after this many seconds with no record.")
@click.option(
    "--aggregate", "aggregates", multiple=True, type=click.Choice(tuple(AGGREGATES.values())), help="Topics to read."
)
@click.option(
    "--schemas",
    "schemas_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A schemas/ tree to look writer schemas up in (default: this gridloop's).",
)
@click.option(
    "--read-as", default=CURRENT, show_default=True, help="The schema version that reads: current or a release."
)
@click.pass_obj
@fail_cleanly
def tail_command(
    settings: Settings,
    group: str,
    from_beginning: bool,
    limit: int | None,
    idle: float | None,
    aggregates: tuple[str, ...],
    schemas_path: Path | None,
    read_as: str,
) -> None:
    """Print the events on gridloop's Kafka topics as JSON lines, decoded by the schema fingerprint in each record.

    Commits its group's offsets as it goes: a second run with the same group goes on where the first stopped.
    Exit status 1 if a record could not be decoded (each is reported on stderr).
    """
    if group == settings.kafka_group:
        raise InvalidCommand(
            "group", f"{group} is the projection workers' group", "a group of its own, e.g. analytics-<name>"
        )
    schemas = load_schemas(schemas_path, read_as)
    consumer = read_committed_consumer(kafka_bootstrap(settings), group_id=group)
    try:
        result = tail(
            consumer,
            topics_of(settings.kafka_topic_prefix, aggregates),
            schemas,
            emit=lambda line: click.echo(dumps(line)),
            report=lambda problem: click.echo(dumps(problem), err=True),
            limit=limit,
            idle=idle,
            from_beginning=from_beginning,
            stop=stop_on_signals(),
        )
    finally:
        consumer.close()
    log.info("analytics_tail_stopped", group=group, printed=result.printed, undecodable=len(result.undecodable))
    if result.undecodable:
        sys.exit(1)
