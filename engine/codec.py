"""The Avro codec: a domain event to single-object-encoded bytes and back (the wire format of the relay and Kafka)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from io import BytesIO
from typing import Any, NamedTuple, cast

from eventsourcing.domain import AggregateCreated, DomainEventProtocol
from eventsourcing.utils import get_topic
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from engine.base import GridloopAggregate
from engine.errors import GridloopError, UnknownReference
from engine.patrol import Patrol
from engine.receipts import CommandReceipt
from engine.reference import Division, Grid, Worker
from engine.work_order import WorkOrder
from schemas.registry import EventKey, EventSchema, registry

AGGREGATES: dict[type[GridloopAggregate], str] = {
    WorkOrder: "workorder",
    Division: "division",
    Grid: "grid",
    Worker: "worker",
    Patrol: "patrol",
    CommandReceipt: "command",
}
"""Each aggregate class and the ``schemas/`` folder that holds its event schemas: the one domain-to-schema table."""

RENAMED_FIELDS: dict[EventKey, dict[str, str]] = {
    # The receipt's own attribute would clash with the envelope's aggregate_id (the receipt's id).
    ("command", "Received"): {"aggregate_id": "target_aggregate_id"},
}
"""Event attributes whose Avro field has another name, per event type: attribute → field."""

MAGIC = b"\xc3\x01"
"""The two bytes that open an Avro single-object encoded record."""

HEADER_SIZE = len(MAGIC) + 8
ENVELOPE_ATTRIBUTES = ("originator_id", "originator_version", "timestamp", "originator_topic")
"""The library's attributes that the envelope carries (or the registry knows), not the payload."""

Event = GridloopAggregate.Event


class UndecodableRecord(GridloopError):
    """Bytes that are not a gridloop event record: what was wrong, exactly."""


@dataclass(frozen=True)
class _EventCodec:
    """Everything encode and decode need for one event class, computed once."""

    event_class: type[Event]
    key: EventKey
    fields: tuple[tuple[str, str], ...]  # (event attribute, Avro field)
    schema: EventSchema
    header: bytes
    topic: str | None  # the aggregate's topic, for "created" events only
    defaults: dict[str, Any]  # Avro field → default, for the fields that have one


def event_classes(aggregate: type[GridloopAggregate]) -> dict[str, type[Event]]:
    """The event classes an aggregate records, by name."""
    found = {
        name: value
        for name, value in vars(aggregate).items()
        if isinstance(value, type) and issubclass(value, Event) and name != "Event"
    }
    # The library defines a base ``Created`` on every aggregate class; it is an event of its own only
    # when no @event("...") on __init__ names another "created" event.
    if any(issubclass(cls, AggregateCreated) for name, cls in found.items() if name != "Created"):
        found.pop("Created", None)
    return found


def encode(event: DomainEventProtocol[Any]) -> bytes:
    """The event as an Avro single-object encoded record: C3 01, 8-byte schema fingerprint, body."""
    codec = _codec_of(type(event))
    event = cast(Event, event)  # the table holds gridloop's event classes only
    record: dict[str, Any] = {
        "aggregate_id": event.originator_id,
        "aggregate_version": event.originator_version,
        "recorded_at": event.timestamp,
    }
    for attribute, field in codec.fields:
        try:
            record[field] = getattr(event, attribute)
        except AttributeError:
            # An event stored before its type gained this field: the schema's default stands in, as an
            # older record read with today's schema would get it.
            if field not in codec.defaults:
                raise
            record[field] = codec.defaults[field]
    out = BytesIO()
    out.write(codec.header)
    schemaless_writer(out, codec.schema.parsed, record)
    return out.getvalue()


def decode(data: bytes) -> Event:
    """The domain event in a record, read with today's schema of its type whichever version wrote it."""
    if len(data) < HEADER_SIZE:
        raise UndecodableRecord(
            f"record too short: {len(data)} bytes, a record has at least {HEADER_SIZE} "
            "(2 magic bytes and an 8-byte schema fingerprint) before its body"
        )
    if data[:2] != MAGIC:
        raise UndecodableRecord(
            f"bad magic bytes {bytes(data[:2]).hex(' ').upper()}, expected C3 01 (Avro single-object encoding)"
        )
    fingerprint = bytes(data[2:HEADER_SIZE])
    writer = registry().by_fingerprint.get(fingerprint)
    if writer is None:
        raise UndecodableRecord(
            f"unknown schema fingerprint {fingerprint.hex().upper()}: not a current or released schema"
        )
    codec = _codecs_by_key().get((writer.aggregate, writer.event))
    if codec is None:
        raise UndecodableRecord(
            f"record written with {writer.full_name} ({writer.version}), an event type gridloop no longer has"
        )
    body = BytesIO(data)
    body.seek(HEADER_SIZE)
    reader = None if writer is codec.schema else codec.schema.parsed
    try:
        # A record schema always reads as a dict.
        record = cast(dict[str, Any], schemaless_reader(body, writer.parsed, reader))
    except SchemaResolutionError as exc:
        raise UndecodableRecord(
            f"a {writer.full_name} record written with schema {writer.version} cannot be read with "
            f"the current schema: {exc}"
        ) from exc
    except Exception as exc:  # fastavro raises EOFError, IndexError, ValueError, … on bad bytes: all undecodable
        raise UndecodableRecord(
            f"the body of a {writer.full_name} record ({writer.version}) does not parse, truncated or corrupt: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    left = len(data) - body.tell()
    if left:
        raise UndecodableRecord(f"{left} bytes left over after the body of a {writer.full_name} record")
    return _rebuild(codec, record)


def event_type(event: DomainEventProtocol[Any]) -> tuple[str, str]:
    """The event's type as (aggregate folder, event name), e.g. ("workorder", "Dispatched")."""
    return _codec_of(type(event)).key


def fingerprint_of(event: DomainEventProtocol[Any]) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint of the schema the event is written with."""
    return _codec_of(type(event)).schema.fingerprint


class PayloadField(NamedTuple):
    """One payload field of an event type as the codec writes it."""

    attribute: str
    field: str  # the Avro field's name
    type: Any  # the Avro type the schema declares, as JSON
    has_default: bool
    default: Any  # the schema's default (JSON form), when it has one


def payload_of(event_class: type[DomainEventProtocol[Any]]) -> tuple[EventKey, tuple[PayloadField, ...]]:
    """An event class's type and its payload fields in the codec's order, with their Avro types and defaults."""
    codec = _codec_of(event_class)
    declared = {f["name"]: f["type"] for f in codec.schema.schema["fields"]}
    fields = tuple(
        PayloadField(attribute, field, declared[field], field in codec.defaults, codec.defaults.get(field))
        for attribute, field in codec.fields
    )
    return codec.key, fields


def _rebuild(codec: _EventCodec, record: dict[str, Any]) -> Event:
    values = {attribute: record[field] for attribute, field in codec.fields}
    if codec.topic is not None:
        values["originator_topic"] = codec.topic
    return codec.event_class(
        originator_id=record["aggregate_id"],
        originator_version=record["aggregate_version"],
        timestamp=record["recorded_at"],
        **values,
    )


def _codec_of(event_class: type[DomainEventProtocol[Any]]) -> _EventCodec:
    codec = _codecs_by_class().get(event_class)
    if codec is None:
        raise UnknownReference("schema", get_topic(event_class), [".".join(k) for k in _codecs_by_key()])
    return codec


@functools.cache
def _codecs_by_class() -> dict[type[Any], _EventCodec]:
    """A codec for every event class that has a current schema (the tests catch those that have none)."""
    current = registry().current
    codecs: dict[type[Any], _EventCodec] = {}
    for aggregate, folder in AGGREGATES.items():
        for name, cls in event_classes(aggregate).items():
            schema = current.get((folder, name))
            if schema is not None:
                codecs[cls] = _make_codec(aggregate, cls, schema)
    return codecs


@functools.cache
def _codecs_by_key() -> dict[EventKey, _EventCodec]:
    return {codec.key: codec for codec in _codecs_by_class().values()}


def _make_codec(aggregate: type[GridloopAggregate], cls: type[Event], schema: EventSchema) -> _EventCodec:
    key = (schema.aggregate, schema.event)
    renamed = RENAMED_FIELDS.get(key, {})
    fields = tuple(
        (f.name, renamed.get(f.name, f.name)) for f in dataclasses.fields(cls) if f.name not in ENVELOPE_ATTRIBUTES
    )
    envelope = {"aggregate_id", "aggregate_version", "recorded_at"}
    schema_fields = [f["name"] for f in schema.schema["fields"] if f["name"] not in envelope]
    if sorted(schema_fields) != sorted(field for _, field in fields):
        raise GridloopError(
            f"schema {schema.full_name} has payload fields {schema_fields}, "
            f"but {cls.__qualname__} has {[field for _, field in fields]}"
        )
    return _EventCodec(
        event_class=cls,
        key=key,
        fields=fields,
        schema=schema,
        header=MAGIC + schema.fingerprint,
        defaults={f["name"]: f["default"] for f in schema.schema["fields"] if "default" in f},
        topic=get_topic(aggregate) if issubclass(cls, AggregateCreated) else None,
    )
