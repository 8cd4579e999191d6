"""Tamper evidence (防篡改) as pure functions: an event's canonical bytes and hash, the hash chain, checkpoints."""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from engine import codec

HASH_SIZE = 32
GENESIS = bytes(HASH_SIZE)
"""The "previous hash" of an aggregate's first event and of the log's first checkpoint."""

CHECKPOINT_EVERY = 1000
"""A checkpoint chains the whole log at every multiple of this many global positions."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = object()

Convert = Callable[[Any], Any]
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
"""Canonical JSON: sorted keys, no whitespace, UTF-8 text as is, floats as Python's repr."""


@dataclass(frozen=True)
class Seal:
    """One event's link in its aggregate's hash chain: the previous event's hash and its own, at its position."""

    position: int
    originator_id: UUID
    originator_version: int
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class Checkpoint:
    """The hash over every event hash up to ``position``, chained to the checkpoint before it (``prev``)."""

    position: int
    hash: bytes
    prev: bytes


def canonical_bytes(event: DomainEventProtocol[Any]) -> bytes:
    """The event as the Avro codec sees it, as canonical JSON: the bytes its content hash is taken over.

    The envelope (aggregate, version, event type, recorded time) and the payload by Avro field names,
    each value normalised by its Avro type. A payload field whose value is its schema's default is left
    out, and so is a field an old stored event lacks: adding a field with a default (the allowed schema
    evolution) leaves every earlier hash valid.
    """
    event_type, fields = _plan(type(event))
    payload: dict[str, Any] = {}
    for attribute, field, convert, has_default, default in fields:
        value = getattr(event, attribute, _MISSING)
        if value is _MISSING:
            if has_default:
                continue
            raise AttributeError(f"{type(event).__qualname__} has no {attribute} and its schema gives no default")
        value = convert(value)
        if has_default and value == default:
            continue
        payload[field] = value
    document = {
        "aggregate_id": _uuid(event.originator_id),
        "aggregate_version": int(event.originator_version),
        "event_type": event_type,
        "recorded_at": _instant(cast(codec.Event, event).timestamp),
        "payload": payload,
    }
    return _encode(document).encode()


def content_hash(event: DomainEventProtocol[Any]) -> bytes:
    """SHA-256 of the event's canonical bytes."""
    return hashlib.sha256(canonical_bytes(event)).digest()


def link(prev_hash: bytes, content: bytes) -> bytes:
    """An event's hash: its content hash chained to the hash of its aggregate's previous event."""
    return hashlib.sha256(prev_hash + content).digest()


def checkpoint(prev_checkpoint: bytes, position: int, hashes: Iterable[bytes]) -> bytes:
    """The checkpoint at ``position``: the previous checkpoint, the position, and the hashes of the events
    after the previous checkpoint up to ``position``, in position order."""
    digest = hashlib.sha256(prev_checkpoint)
    digest.update(position.to_bytes(8, "big"))
    for hash_ in hashes:
        digest.update(hash_)
    return digest.digest()


def checkpoint_positions(first: int, last: int) -> range:
    """The checkpoint positions from ``first`` to ``last``, both included."""
    start = -(-max(first, 1) // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
    return range(start, last + 1, CHECKPOINT_EVERY)


@functools.cache
def _plan(event_class: type[Any]) -> tuple[str, tuple[tuple[str, str, Convert, bool, Any], ...]]:
    """Per event class: its type's name and, per payload field, the converter and the normalised default."""
    (folder, name), payload = codec.payload_of(event_class)
    fields = []
    for f in payload:
        convert = _converter(f.type)
        fields.append((f.attribute, f.field, convert, f.has_default, convert(f.default) if f.has_default else None))
    return f"{folder}.{name}", tuple(fields)


def _converter(avro_type: Any) -> Convert:
    """A function normalising a value of ``avro_type`` to what the codec's decode gives back, as JSON."""
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        if len(branches) != 1 or len(avro_type) != 2:
            raise ValueError(f"cannot seal a union other than [null, T]: {avro_type}")
        inner = _converter(branches[0])
        return lambda value: None if value is None else inner(value)
    if isinstance(avro_type, dict):
        kind, logical = avro_type["type"], avro_type.get("logicalType")
        if kind == "array":
            items = _converter(avro_type["items"])
            return lambda value: [items(item) for item in value]
        if kind == "map":
            values = _converter(avro_type["values"])
            return lambda value: {str(key): values(item) for key, item in value.items()}
        if (kind, logical) == ("long", "timestamp-micros"):
            return _instant
        if (kind, logical) == ("string", "uuid"):
            return _uuid
        if logical is None and isinstance(kind, str):
            return _converter(kind)
        raise ValueError(f"cannot seal Avro type {avro_type}: add its canonical form to engine/seal.py")
    primitive = _PRIMITIVES.get(avro_type)
    if primitive is None:
        raise ValueError(f"cannot seal Avro type {avro_type!r}: add its canonical form to engine/seal.py")
    return primitive


def _instant(value: datetime | int) -> str:
    """UTC, to the microsecond (what timestamp-micros keeps); naive times are UTC, as fastavro writes them."""
    if isinstance(value, int):  # a schema default, in microseconds since the epoch
        value = _EPOCH + timedelta(microseconds=value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _uuid(value: UUID | str) -> str:
    return str(value if isinstance(value, UUID) else UUID(value))


def _float32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


_PRIMITIVES: dict[str, Convert] = {
    "null": lambda value: None,
    "boolean": bool,
    "int": int,
    "long": int,
    "float": _float32,
    "double": float,
    "string": str,
    "bytes": lambda value: bytes(value).hex(),
}
