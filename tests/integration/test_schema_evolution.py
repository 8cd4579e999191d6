"""A new field with a default breaks no reader: across a real export file and a real Kafka topic, in both directions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro import schemaless_writer

from engine import codec
from engine.kafka import EVENT_TYPE, POSITION, PlainWriter, read_committed_consumer
from ops.analytics_consumer import Schemas, tail
from ops.config import Settings
from ops.export import ExportFile, file_schema, record_of
from ops.kafka_broker import Broker, create_topics
from schemas.registry import CURRENT, EventSchema, Registry, load_registry, registry
from tests.integration.kafka_helpers import FIRST_DAY, open_store, simulated_store

EVENT = ("workorder", "Accepted")
NEW_FIELD = {"name": "channel", "type": "string", "default": "app", "doc": "签收渠道: where the worker signed for it."}
OLD = "v1"
"""The release, in the test's schema tree, that holds today's schemas: the older reader."""


@dataclass(frozen=True)
class Versions:
    """A schema tree whose current Accepted has one field more (with a default) than its release ``v1``."""

    registry: Registry
    v1: EventSchema
    v2: EventSchema


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    root = tmp_path_factory.mktemp("schemas")
    shipped = Path(str(files("schemas")))
    folders = [p for p in shipped.iterdir() if p.is_dir() and p.name not in ("released", "__pycache__")]
    for target in (root, root / "released" / OLD):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped / "envelope.avsc", target / "envelope.avsc")
        for folder in folders:
            shutil.copytree(folder, target / folder.name, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    accepted = root / EVENT[0] / f"{EVENT[1]}.avsc"
    schema = json.loads(accepted.read_text(encoding="utf-8"))
    schema["fields"].append(NEW_FIELD)
    accepted.write_text(json.dumps(schema, ensure_ascii=False, indent=2), encoding="utf-8")

    tree = load_registry(root)  # a Path is a Traversable
    v1, v2 = tree.released[OLD][EVENT], tree.current[EVENT]
    assert v1.fingerprint == registry().current[EVENT].fingerprint, "v1 is what gridloop writes today"
    assert v2.fingerprint != v1.fingerprint
    return Versions(tree, v1, v2)


@pytest.fixture(scope="module")
def accepted(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The simulated day's Accepted events (签收) as exported records, written with today's schema (v1)."""
    app = open_store(simulated_store(tmp_path_factory))
    try:
        head = app.recorder.max_notification_id() or 0
        records = []
        for n in app.recorder.select_notifications(1, head + 1):
            event = app.mapper.to_domain_event(n)
            if codec.event_type(event) == EVENT:
                records.append(record_of(event, n.id)[1])
    finally:
        app.close()
    assert len(records) > 10
    return records


def export_file(path: Path, schema: EventSchema, records: list[dict[str, Any]]) -> None:
    file = ExportFile(path, schema, FIRST_DAY, "recorded")
    for record in records:
        file.write(record)
    file.close(path.parent)


def read_export(path: Path, reader: EventSchema) -> list[dict[str, Any]]:
    with path.open("rb") as file:
        return [r for r in fastavro.reader(file, reader_schema=file_schema(reader)) if isinstance(r, dict)]


def test_an_old_reader_reads_an_export_written_with_the_new_field_and_a_new_reader_an_old_one(
    versions: Versions, accepted: list[dict[str, Any]], tmp_path: Path
) -> None:
    newer = [{**r, "channel": "patrol-app"} for r in accepted]
    export_file(tmp_path / "v2.avro", versions.v2, newer)
    assert read_export(tmp_path / "v2.avro", versions.v1) == accepted  # the old reader gets its fields

    export_file(tmp_path / "v1.avro", versions.v1, accepted)
    assert read_export(tmp_path / "v1.avro", versions.v2) == [{**r, "channel": "app"} for r in accepted]

    # Each file names the schema it was written with.
    with (tmp_path / "v2.avro").open("rb") as file:
        assert fastavro.reader(file).metadata["gridloop.schema_fingerprint"] == versions.v2.fingerprint.hex()


def single_object(schema: EventSchema, record: dict[str, Any]) -> bytes:
    """A record as the relay would write it with ``schema``: C3 01, the fingerprint, the body."""
    body = BytesIO()
    schemaless_writer(body, schema.parsed, {k: v for k, v in record.items() if k not in ("event_type", "position")})
    return codec.MAGIC + schema.fingerprint + body.getvalue()


def tail_topic(bootstrap: str, topic: str, group: str, schemas: Schemas, count: int) -> list[dict[str, Any]]:
    printed: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    consumer = read_committed_consumer(bootstrap, group_id=group)
    try:
        tail(consumer, [topic], schemas, printed.append, problems.append, limit=count, idle=60)
    finally:
        consumer.close()
    assert not problems
    return printed


def test_an_old_consumer_reads_the_new_field_off_a_real_topic_and_a_new_one_the_old_records(
    versions: Versions,
    accepted: list[dict[str, Any]],
    kafka_broker: Broker,
    kafka_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = kafka_settings(tmp_path)
    topic = f"{settings.kafka_topic_prefix}.workorder"
    create_topics(kafka_broker, [topic], partitions=3, replication=1)
    newer = [{**r, "channel": "patrol-app"} for r in accepted]
    writer = PlainWriter(kafka_broker.bootstrap)
    try:
        for schema, records in ((versions.v2, newer), (versions.v1, accepted)):
            for record in records:
                headers = [(EVENT_TYPE, b"workorder.Accepted"), (POSITION, str(record["position"]).encode())]
                writer.send_now(topic, str(record["aggregate_id"]).encode(), single_object(schema, record), headers)
    finally:
        writer.close()

    def fields(line: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        return line["written_with"], line["read_as"], line["event"]

    def envelope_and_payload(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in ("event_type", "position")}

    old_reader = tail_topic(
        kafka_broker.bootstrap, topic, f"{topic}-old", Schemas(versions.registry, OLD), 2 * len(accepted)
    )
    assert sorted((fields(line) for line in old_reader), key=_by_position) == sorted(
        [(CURRENT, OLD, envelope_and_payload(r)) for r in accepted]
        + [(OLD, OLD, envelope_and_payload(r)) for r in accepted],
        key=_by_position,
    )

    new_reader = tail_topic(
        kafka_broker.bootstrap, topic, f"{topic}-new", Schemas(versions.registry), 2 * len(accepted)
    )
    assert sorted((fields(line) for line in new_reader), key=_by_position) == sorted(
        [(CURRENT, CURRENT, envelope_and_payload(r)) for r in newer]
        + [(OLD, CURRENT, {**envelope_and_payload(r), "channel": "app"}) for r in accepted],
        key=_by_position,
    )


def _by_position(item: tuple[str, str, dict[str, Any]]) -> tuple[str, int, str]:
    written, _, event = item
    return str(event["aggregate_id"]), int(event["aggregate_version"]), written


def test_the_test_tree_is_a_real_release_pair(versions: Versions) -> None:
    """The reader of each direction really differs from the writer: one field, with a default, and nothing else."""
    old = {f["name"] for f in versions.v1.schema["fields"]}
    new = {f["name"]: f for f in versions.v2.schema["fields"]}
    assert set(new) - old == {"channel"} and "default" in new["channel"]
