"""The event schemas: one per event type, matching the domain, fingerprinted per the Avro spec, evolvable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import types
import typing
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import AggregateCreated
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form

import engine.application  # noqa: F401 - imports every aggregate module, so no aggregate class hides
from engine.base import GridloopAggregate
from engine.codec import AGGREGATES, RENAMED_FIELDS, event_classes
from engine.patrol import Patrol
from engine.receipts import CommandReceipt
from engine.reference import Division, Grid, Worker
from engine.work_order import WorkOrder
from schemas.registry import (
    CURRENT,
    SchemaError,
    event_types,
    full_schema,
    load_registry,
    registry,
    released_versions,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas.md"
FOLDERS = {WorkOrder: "workorder", Division: "division", Grid: "grid", Worker: "worker", Patrol: "patrol",
           CommandReceipt: "command"}  # fmt: skip
LIBRARY_ATTRIBUTES = {"originator_id", "originator_version", "timestamp", "originator_topic"}
UUID_TYPE = {"type": "string", "logicalType": "uuid"}
TIMESTAMP_TYPE = {"type": "long", "logicalType": "timestamp-micros"}
ENVELOPE = [
    ("aggregate_id", UUID_TYPE),
    ("aggregate_version", "long"),
    ("recorded_at", TIMESTAMP_TYPE),
]


def domain_events() -> dict[tuple[str, str], type[Any]]:
    """Every event class of every aggregate, found by looking at the classes themselves."""
    found: dict[tuple[str, str], type[Any]] = {}
    for aggregate, folder in FOLDERS.items():
        classes = {
            name: value
            for name, value in vars(aggregate).items()
            if isinstance(value, type) and issubclass(value, GridloopAggregate.Event)
        }
        # "Event" and "Created" are the library's base classes on every aggregate; each of ours names its own
        # "created" event with @event("...") on __init__.
        created = [name for name, cls in classes.items() if issubclass(cls, AggregateCreated) and name != "Created"]
        assert len(created) == 1, f"{aggregate.__name__} should have exactly one named created event: {created}"
        for name, cls in classes.items():
            if name not in ("Event", "Created"):
                found[(folder, name)] = cls
    return found


def expected_avro_type(hint: Any) -> Any:
    """The Avro type gridloop's mapping gives a Python type."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (present,) = [a for a in arguments if a is not type(None)]
        return ["null", expected_avro_type(present)]
    if origin is list:
        return {"type": "array", "items": expected_avro_type(arguments[0])}
    if origin is dict:
        assert arguments[0] is str
        return {"type": "map", "values": expected_avro_type(arguments[1])}
    simple = {str: "string", int: "long", float: "double", bool: "boolean", datetime: TIMESTAMP_TYPE, UUID: UUID_TYPE}
    return simple[hint]


def payload_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = schema["fields"]
    return fields[len(ENVELOPE) :]


# -- one schema per event type, matching the domain ----------------------------------------


def test_every_aggregate_in_the_engine_has_a_schema_folder() -> None:
    engine_aggregates = {cls for cls in GridloopAggregate.__subclasses__() if cls.__module__.startswith("engine.")}
    assert engine_aggregates == set(FOLDERS) == set(AGGREGATES)
    assert AGGREGATES == FOLDERS


def test_the_codec_finds_the_same_event_classes_as_a_plain_look_at_the_aggregates() -> None:
    assert {
        (folder, name): cls
        for aggregate, folder in AGGREGATES.items()
        for name, cls in event_classes(aggregate).items()
    } == domain_events()


def test_every_event_type_has_a_schema_and_every_schema_an_event_type() -> None:
    assert set(domain_events()) == set(event_types())


@pytest.mark.parametrize("key", sorted(domain_events()), ids=lambda key: "/".join(key))
def test_a_schemas_payload_is_the_events_fields_with_mapped_types(key: tuple[str, str]) -> None:
    event_class = domain_events()[key]
    hints = typing.get_type_hints(event_class)
    renamed = RENAMED_FIELDS.get(key, {})
    expected = [
        (renamed.get(f.name, f.name), expected_avro_type(hints[f.name]))
        for f in dataclasses.fields(event_class)
        if f.name not in LIBRARY_ATTRIBUTES
    ]
    fields = payload_fields(full_schema(*key))
    assert [(f["name"], f["type"]) for f in fields] == expected
    for field in fields:
        if isinstance(field["type"], list):
            assert "default" in field and field["default"] is None, f"{field['name']}: an optional field needs null"


def test_every_event_says_when_it_occurred_in_the_street() -> None:
    for key in event_types():
        names = {f["name"]: f["type"] for f in payload_fields(full_schema(*key))}
        assert names.get("occurred_at") == TIMESTAMP_TYPE, key


def test_the_full_schema_is_the_envelope_then_the_payload_under_the_events_full_name() -> None:
    for aggregate, event in event_types():
        schema = full_schema(aggregate, event)
        assert (schema["namespace"], schema["name"]) == (f"gridloop.{aggregate}", event)
        assert [(f["name"], f["type"]) for f in schema["fields"][: len(ENVELOPE)]] == ENVELOPE
        assert json.loads(to_parsing_canonical_form(schema))["name"] == f"gridloop.{aggregate}.{event}"


def test_each_schema_file_is_an_avro_record_named_after_its_file_with_the_chinese_term() -> None:
    files = sorted((SCHEMAS).glob("*/*.avsc"))
    assert len(files) == len(event_types())
    for file in files:
        schema = json.loads(file.read_text(encoding="utf-8"))
        parse_schema(schema)
        assert (schema["type"], schema["name"], schema["namespace"]) == (
            "record",
            file.stem,
            f"gridloop.{file.parent.name}",
        )
        assert any("\u4e00" <= ch <= "\u9fff" for ch in schema["doc"]), f"{file}: doc lacks the Chinese term"
        assert all(f.get("doc") for f in schema["fields"]), f"{file}: a field has no doc"


def test_the_analysts_copy_of_a_schema_cannot_change_the_registry() -> None:
    copy = full_schema("workorder", "Dispatched")
    copy["fields"].clear()
    assert full_schema("workorder", "Dispatched")["fields"]


def test_the_schema_docs_name_every_event_type() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [f"{a}.{e}" for a, e in event_types() if f"`{a}.{e}`" not in text]
    assert not missing


# -- fingerprints ----------------------------------------------------------------------------


def rabin_fingerprint(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification gives it (Schema Fingerprints), table-driven."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_the_reference_fingerprint_matches_the_avro_specs_test_vectors() -> None:
    """Vectors from Avro's share/test/data/schema-tests.txt (signed 64-bit, as Java prints them)."""
    vectors = {
        '"null"': 7195948357588979594,
        '"boolean"': -6970731678124411036,
        '{"name":"foo","type":"fixed","size":15}': 1756455273707447556,
    }
    for canonical, expected in vectors.items():
        unsigned = rabin_fingerprint(canonical.encode())
        assert int.from_bytes(unsigned.to_bytes(8, "big"), "big", signed=True) == expected


def test_each_fingerprint_is_the_crc_64_avro_of_the_canonical_form_little_endian() -> None:
    for versions in (registry().current, *registry().released.values()):
        for schema in versions.values():
            canonical = to_parsing_canonical_form(dict(schema.schema)).encode()
            assert schema.fingerprint == rabin_fingerprint(canonical).to_bytes(8, "little")


def test_no_two_event_types_share_a_fingerprint() -> None:
    fingerprints = [s.fingerprint for s in registry().current.values()]
    assert len(set(fingerprints)) == len(fingerprints)


def test_a_fingerprint_ignores_docs_but_not_types() -> None:
    schema = full_schema("grid", "Redrawn")
    fingerprint = registry().current[("grid", "Redrawn")].fingerprint
    schema["doc"] = "a different doc"
    assert rabin_fingerprint(to_parsing_canonical_form(schema).encode()).to_bytes(8, "little") == fingerprint
    schema["fields"][3]["type"] = "int"
    assert rabin_fingerprint(to_parsing_canonical_form(schema).encode()).to_bytes(8, "little") != fingerprint


# -- releases and evolution -----------------------------------------------------------------


def sample(avro_type: Any, filled: bool) -> Any:
    """A value of an Avro type: every optional present and every collection non-empty, or the opposite."""
    if isinstance(avro_type, list):
        return sample(avro_type[1], filled) if filled else None
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "uuid":
            return UUID("2b1c7e8a-3f9d-4a51-8c0e-6d5b4a3f2e1d")
        if avro_type.get("logicalType") == "timestamp-micros":
            return datetime(2026, 11, 23, 1, 2, 3, 456789, tzinfo=UTC)
        if avro_type["type"] == "array":
            return [sample(avro_type["items"], filled)] if filled else []
        if avro_type["type"] == "map":
            return {"key": sample(avro_type["values"], filled)} if filled else {}
        if avro_type["type"] == "record":
            return {f["name"]: sample(f["type"], filled) for f in avro_type["fields"]}
        return sample(avro_type["type"], filled)
    return {"string": "网格", "long": 7, "double": 111.65, "boolean": True, "null": None}[avro_type]


def read_across(writer: dict[str, Any], reader: dict[str, Any], datum: dict[str, Any]) -> dict[str, Any]:
    """Write with one schema, read with another (Avro schema resolution); raises when they are incompatible."""
    body = BytesIO()
    schemaless_writer(body, parse_schema(writer), datum)
    body.seek(0)
    result: dict[str, Any] = schemaless_reader(body, parse_schema(writer), parse_schema(reader))  # type: ignore[assignment]
    return result


def released_pairs() -> list[tuple[str, tuple[str, str]]]:
    return [(v, key) for v in released_versions() for key in sorted(registry().released[v]) if key in event_types()]


RELEASED_TREES = {
    "0.1.0": "bd9f09b009d67bb80c3da1cde1df7c3e1aa6db25022ab1863c2da21feca4b3f3",
    "0.2.0": "b506ae3ff894f1b23c6417065968230b49d7bc98f2053c1e1f061bfa027cfeb7",
    "0.3.0": "a073d950a88306d3f29d00d660c3d2a1a98ce5b3821911f452add4aab3bca737",
}
"""SHA-256 of each released folder (paths and bytes): a release is frozen once shipped. Add a release's hash here."""


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(f for f in folder.rglob("*") if f.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def without_docs(schema: Any) -> Any:
    """A schema's types, names, order, defaults and aliases: everything but the prose."""
    if isinstance(schema, dict):
        return {k: without_docs(v) for k, v in schema.items() if k != "doc"}
    if isinstance(schema, list):
        return [without_docs(item) for item in schema]
    return schema


@pytest.mark.parametrize("version", sorted(RELEASED_TREES), ids=str)
def test_a_released_version_never_changes(version: str) -> None:
    assert tree_hash(SCHEMAS / "released" / version) == RELEASED_TREES[version]


def test_every_released_version_is_pinned() -> None:
    assert set(released_versions()) == set(RELEASED_TREES)


def test_the_newest_release_is_a_copy_of_todays_schemas() -> None:
    """A schema change ships as a new release: the newest one is today's schemas (docs may have moved on since)."""
    newest = max(released_versions(), key=version_key)
    release = registry().released[newest]
    assert set(release) == set(registry().current)
    for key, schema in release.items():
        assert schema.fingerprint == registry().current[key].fingerprint
        assert without_docs(dict(schema.schema)) == without_docs(full_schema(*key)), key
        assert schema.version == newest and registry().current[key].version == CURRENT


def test_no_event_type_a_release_wrote_is_dropped() -> None:
    """A record of every released event type is still in Kafka somewhere: today's code must read it."""
    for version in released_versions():
        assert set(registry().released[version]) <= set(registry().current), version


@pytest.mark.parametrize("filled", [True, False], ids=["filled", "empty"])
@pytest.mark.parametrize(("version", "key"), released_pairs(), ids=lambda x: "/".join(x) if isinstance(x, tuple) else x)
def test_todays_schema_reads_what_a_release_wrote_and_the_release_reads_todays(
    version: str, key: tuple[str, str], filled: bool
) -> None:
    released = dict(registry().released[version][key].schema)
    current = full_schema(*key)
    old_datum = sample(released, filled)
    new_datum = sample(current, filled)
    read_new = read_across(released, current, old_datum)
    read_old = read_across(current, released, new_datum)
    common = {f["name"] for f in released["fields"]} & {f["name"] for f in current["fields"]}
    assert {k: read_new[k] for k in common} == {k: old_datum[k] for k in common}
    assert {k: read_old[k] for k in common} == {k: new_datum[k] for k in common}
    # A field added since the release reads as its default from the release's records.
    added = [f for f in current["fields"] if f["name"] not in common]
    assert {f["name"]: read_new[f["name"]] for f in added} == {f["name"]: f["default"] for f in added}


def test_the_fields_added_since_the_first_release_all_have_defaults() -> None:
    """Release 0.2.0 added fields to four work-order events; each reads as its default from a 0.1.0 record."""
    first = registry().released["0.1.0"]
    added = {
        key: [
            f["name"] for f in full_schema(*key)["fields"] if f["name"] not in {g["name"] for g in s.schema["fields"]}
        ]
        for key, s in first.items()
    }
    assert {key: names for key, names in added.items() if names} == {
        ("workorder", "Escalated"): ["policy", "policy_version", "inputs", "due"],
        ("workorder", "Rejected"): ["rule"],
        ("workorder", "Reported"): ["service_item", "processing_unit", "admission_item", "certificate"],
        ("workorder", "Resumed"): ["deadline"],
    }
    assert set(registry().current) - set(first) == {
        ("workorder", "CallBackMissed"),  # 0.3.0
        ("workorder", "DeadlineWarned"),
        ("workorder", "HandedOver"),
        ("workorder", "Recategorised"),
    }


def test_a_new_field_without_a_default_breaks_reading_old_records() -> None:
    """Negative control: the evolution check above does fail on an incompatible change."""
    released = dict(registry().released["0.1.0"][("workorder", "Dispatched")].schema)
    changed = full_schema("workorder", "Dispatched")
    changed["fields"].append({"name": "priority", "type": "long"})
    with pytest.raises(SchemaResolutionError):
        read_across(released, changed, sample(released, True))
    changed["fields"][-1]["default"] = 0
    assert read_across(released, changed, sample(released, True))["priority"] == 0


def test_a_removed_field_without_a_default_breaks_old_readers() -> None:
    """Negative control the other way: the released reader still expects the field."""
    released = dict(registry().released["0.1.0"][("workorder", "Returned")].schema)
    changed = full_schema("workorder", "Returned")
    changed["fields"] = [f for f in changed["fields"] if f["name"] != "reason"]
    with pytest.raises(SchemaResolutionError):
        read_across(changed, released, sample(changed, True))


def test_records_of_a_released_schema_stay_findable_after_the_schema_changes(tmp_path: Path) -> None:
    tree = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, tree, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    dispatched = tree / "workorder" / "Dispatched.avsc"
    schema = json.loads(dispatched.read_text(encoding="utf-8"))
    schema["fields"].append({"name": "priority", "type": "long", "default": 0, "doc": "Dispatch priority."})
    dispatched.write_text(json.dumps(schema, ensure_ascii=False), encoding="utf-8")
    changed = load_registry(tree)
    old = changed.released["0.1.0"][("workorder", "Dispatched")]
    new = changed.current[("workorder", "Dispatched")]
    assert old.fingerprint != new.fingerprint
    assert changed.by_fingerprint[old.fingerprint] is old
    assert changed.by_fingerprint[new.fingerprint] is new


def test_a_payload_field_named_like_an_envelope_field_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, tree, ignore=shutil.ignore_patterns("*.py", "__pycache__", "released"))
    ended = tree / "patrol" / "Ended.avsc"
    schema = json.loads(ended.read_text(encoding="utf-8"))
    schema["fields"].append({"name": "recorded_at", "type": "long"})
    ended.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(SchemaError, match="recorded_at clash with the envelope"):
        load_registry(tree)


def test_a_schema_file_must_be_named_after_its_record(tmp_path: Path) -> None:
    tree = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, tree, ignore=shutil.ignore_patterns("*.py", "__pycache__", "released"))
    (tree / "patrol" / "Ended.avsc").rename(tree / "patrol" / "Finished.avsc")
    with pytest.raises(SchemaError, match="record name 'Ended' differs from the file name"):
        load_registry(tree)
