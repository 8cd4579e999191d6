"""The schema registry: every event type's full Avro writer schema, current and released, by name and by fingerprint."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

CURRENT = "current"
"""The version label of the schemas at the top of ``schemas/``: the ones gridloop writes with today."""

ENVELOPE_FILE = "envelope.avsc"
RELEASED_FOLDER = "released"
NAMESPACE = "gridloop"

EventKey = tuple[str, str]
"""An event type as (aggregate folder, event name), e.g. ("workorder", "Dispatched")."""


class SchemaError(ValueError):
    """A schema file that is not a valid gridloop event schema."""


@dataclass(frozen=True)
class EventSchema:
    """One event type's full writer schema (envelope + payload), as one schema version defines it."""

    aggregate: str
    event: str
    version: str
    schema: Mapping[str, Any]
    parsed: Any  # fastavro's parsed form, handed to its reader and writer as is
    fingerprint: bytes  # CRC-64-AVRO of the Parsing Canonical Form, 8 bytes little-endian as on the wire

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}.{self.aggregate}.{self.event}"


@dataclass(frozen=True)
class Registry:
    """All schema versions of all event types, indexed for the codec."""

    current: Mapping[EventKey, EventSchema]
    released: Mapping[str, Mapping[EventKey, EventSchema]]
    by_fingerprint: Mapping[bytes, EventSchema]


def compose(envelope: Mapping[str, Any], payload: Mapping[str, Any], aggregate: str) -> dict[str, Any]:
    """The full schema of an event: the envelope's fields, then the payload's, in one record."""
    envelope_names = {field["name"] for field in envelope["fields"]}
    clashes = sorted(envelope_names & {field["name"] for field in payload["fields"]})
    if clashes:
        raise SchemaError(
            f"{aggregate}/{payload['name']}: payload field(s) {', '.join(clashes)} clash with the envelope; "
            "rename them in the payload"
        )
    return {
        "type": "record",
        "name": payload["name"],
        "namespace": f"{NAMESPACE}.{aggregate}",
        "doc": payload.get("doc", ""),
        "fields": copy.deepcopy([*envelope["fields"], *payload["fields"]]),
    }


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, little-endian as on the wire."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(dict(schema)), "CRC-64-AVRO"))


def load_version(root: Traversable, version: str) -> dict[EventKey, EventSchema]:
    """Every event schema of one version folder: ``envelope.avsc`` plus ``<aggregate>/<Event>.avsc``."""
    envelope = _read(root / ENVELOPE_FILE)
    loaded: dict[EventKey, EventSchema] = {}
    for folder in _aggregate_folders(root):
        for file in sorted(folder.iterdir(), key=lambda f: f.name):
            if not file.name.endswith(".avsc"):
                continue
            payload = _read(file)
            _check_payload(payload, folder.name, file.name.removesuffix(".avsc"))
            full = compose(envelope, payload, folder.name)
            try:
                parsed = parse_schema(copy.deepcopy(full))
            except Exception as exc:  # fastavro raises several types for a bad schema; all mean the same here
                raise SchemaError(f"{version} {folder.name}/{file.name}: {exc}") from exc
            key = (folder.name, payload["name"])
            loaded[key] = EventSchema(key[0], key[1], version, full, parsed, schema_fingerprint(full))
    return loaded


def load_registry(root: Traversable) -> Registry:
    """The registry of a schema tree: current schemas at ``root``, released ones under ``root/released/<version>``."""
    current = load_version(root, CURRENT)
    released_root = root / RELEASED_FOLDER
    released = (
        {v.name: load_version(v, v.name) for v in sorted(released_root.iterdir(), key=lambda f: f.name) if v.is_dir()}
        if released_root.is_dir()
        else {}
    )
    by_fingerprint: dict[bytes, EventSchema] = {}
    # Current first: an unchanged schema keeps its fingerprint across releases, and either copy reads the same.
    for schemas in (current, *released.values()):
        for schema in schemas.values():
            by_fingerprint.setdefault(schema.fingerprint, schema)
    return Registry(current, released, by_fingerprint)


@functools.cache
def registry() -> Registry:
    """The registry of the schemas shipped with gridloop (loaded once)."""
    return load_registry(files("schemas"))


def current_schema(aggregate: str, event: str) -> EventSchema:
    """The schema gridloop writes ``aggregate``'s ``event`` with today (KeyError if there is none)."""
    try:
        return registry().current[(aggregate, event)]
    except KeyError:
        raise KeyError(f"no schema for {aggregate}/{event}") from None


def schema_by_fingerprint(fingerprint_bytes: bytes) -> EventSchema | None:
    """The writer schema a record names in its header, current or released; None if unknown."""
    return registry().by_fingerprint.get(fingerprint_bytes)


def full_schema(aggregate: str, event: str) -> dict[str, Any]:
    """The full current schema of an event type (envelope + payload) as JSON data, for analysts."""
    return copy.deepcopy(dict(current_schema(aggregate, event).schema))


def event_types() -> tuple[EventKey, ...]:
    """Every event type that has a current schema, as (aggregate, event)."""
    return tuple(sorted(registry().current))


def released_versions() -> tuple[str, ...]:
    """The released schema versions, oldest name first."""
    return tuple(sorted(registry().released))


def _aggregate_folders(root: Traversable) -> Iterator[Traversable]:
    for entry in sorted(root.iterdir(), key=lambda f: f.name):
        if entry.is_dir() and entry.name != RELEASED_FOLDER and not entry.name.startswith(("_", ".")):
            yield entry


def _read(file: Traversable) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{file.name}: cannot read a JSON schema ({exc})") from exc
    if not isinstance(data, dict) or data.get("type") != "record" or not isinstance(data.get("fields"), list):
        raise SchemaError(f"{file.name}: not an Avro record schema")
    return data


def _check_payload(payload: Mapping[str, Any], aggregate: str, stem: str) -> None:
    if payload.get("name") != stem:
        raise SchemaError(f"{aggregate}/{stem}.avsc: record name {payload.get('name')!r} differs from the file name")
    if payload.get("namespace") != f"{NAMESPACE}.{aggregate}":
        raise SchemaError(
            f"{aggregate}/{stem}.avsc: namespace {payload.get('namespace')!r}, expected '{NAMESPACE}.{aggregate}'"
        )
