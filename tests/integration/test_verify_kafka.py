"""Tamper evidence on the real Kafka log: a relayed day verifies clean, forged and altered copies are caught."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from engine import codec
from engine.kafka import HASH, PlainWriter, Record, Topics, client_config
from engine.relay import position_of
from ops.kafka_broker import Broker, create_topics
from projections.audit.verdict import Verdict, compare
from projections.audit.verify import verify_kafka, verify_store
from tests.integration.kafka_helpers import GRIDLOOP, HANG_GUARD, Deployment, open_store, read_topics, simulated_store

Edit = Callable[[list[Record]], list[Record]]


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker) -> Deployment:
    """A simulated Yuanqu day relayed by the console script to topics of its own; left as it is by the tests."""
    deployment = Deployment.of(
        tmp_path_factory.mktemp("verify"), kafka_broker.bootstrap, simulated_store(tmp_path_factory)
    )
    deployment.gridloop("relay")
    return deployment


@pytest.fixture(scope="module")
def records(relayed: Deployment) -> list[Record]:
    return read_topics(relayed.bootstrap, relayed.topics.event_topics)


def copy_log(deployment: Deployment, records: list[Record], edit: Edit) -> Topics:
    """The log copied record by record, partition by partition, to topics of another prefix, after ``edit``."""
    copy = Topics(f"{deployment.prefix}c{uuid.uuid4().hex[:6]}")
    partitions = max(r.partition for r in records) + 1
    create_topics(Broker(deployment.bootstrap, "external"), copy.event_topics, partitions, 1)
    producer = KafkaProducer(**client_config(deployment.bootstrap, acks="all", linger_ms=5))
    try:
        for r in edit(records):
            folder = r.topic.rsplit(".", 1)[1]
            producer.send(
                copy.of(folder), value=r.value, key=r.key, partition=r.partition, headers=list(r.headers.items())
            )
        producer.flush(timeout=HANG_GUARD)
    finally:
        producer.close()
    return copy


def a_case(records: list[Record], versions: int) -> list[Record]:
    """The records of a case with at least ``versions`` of them, in their partition's order."""
    by_key: dict[bytes | None, list[Record]] = {}
    for r in records:
        if r.topic.endswith(".workorder"):
            by_key.setdefault(r.key, []).append(r)
    return next(found for found in by_key.values() if len(found) >= versions)


def first(verdict: Verdict) -> tuple[str, int]:
    assert verdict.first_broken is not None, "nothing reported"
    return verdict.first_broken.kind, verdict.first_broken.position


# -- intact ---------------------------------------------------------------------------------------------


def test_an_intact_relayed_log_verifies_clean_and_agrees_with_its_store(relayed: Deployment) -> None:
    kafka = verify_kafka(relayed.bootstrap, relayed.topics)
    app = open_store(relayed.events)
    try:
        store = verify_store(app)
        last = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    assert kafka.intact, kafka.problems[:5]
    assert kafka.events_checked == kafka.last_position == last
    assert kafka.checkpoints_checked == last // 1000 > 0
    comparison = compare(store, kafka)
    assert comparison.agree and comparison.position == last // 1000 * 1000
    assert comparison.store_hash == comparison.kafka_hash != ""


def test_the_console_script_checks_the_store_and_kafka_and_exits_0_when_both_are_intact(relayed: Deployment) -> None:
    done = relayed.gridloop("audit", "verify", "--json")
    result = json.loads(done.stdout)
    assert result["intact"] is True
    assert result["store"]["intact"] and result["kafka"]["intact"]
    assert result["comparison"]["agree"] is True
    assert result["store"]["latest_checkpoint"] == result["kafka"]["latest_checkpoint"]


# -- forged and altered -----------------------------------------------------------------------------------


def test_a_record_forged_onto_the_real_topic_is_reported_at_the_position_it_reuses(
    tmp_path: Path, kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    deployment = Deployment.of(tmp_path, kafka_broker.bootstrap, simulated_store(tmp_path_factory))
    deployment.gridloop("relay")
    case = a_case(read_topics(deployment.bootstrap, deployment.topics.event_topics), 3)
    original = case[1]
    headers = {**original.headers, HASH: b"0" * 64}  # a position the log already has, a hash made up
    writer = PlainWriter(deployment.bootstrap)
    try:
        writer.send_now(original.topic, original.key, original.value, list(headers.items()))
    finally:
        writer.close()

    verdict = verify_kafka(deployment.bootstrap, deployment.topics)
    position = position_of(original)
    assert first(verdict) == ("modified", position)
    assert verdict.counts["duplicate"] == 1
    assert {"modified", "duplicate", "out_of_order"} <= set(verdict.counts)
    assert all(p.position == position for p in verdict.problems), verdict.problems

    done = subprocess.run(
        [str(GRIDLOOP), "--data-dir", str(deployment.data_dir), "audit", "verify"],
        capture_output=True,
        text=True,
        env=deployment.env(log_level="warning"),
        timeout=HANG_GUARD,
    )
    assert done.returncode == 1, done.stderr
    assert "BROKEN" in done.stdout and f"first broken link: position {position}" in done.stdout


def test_a_copy_with_one_record_modified_is_reported_at_that_records_position(
    relayed: Deployment, records: list[Record]
) -> None:
    target = a_case(records, 3)[1]

    def modify(found: list[Record]) -> list[Record]:
        event: Any = codec.decode(target.value or b"")
        object.__setattr__(event, "actor", event.actor + "X")
        forged = Record(target.topic, target.partition, target.offset, target.key, codec.encode(event), target.headers)
        return [forged if r == target else r for r in found]

    verdict = verify_kafka(relayed.bootstrap, copy_log(relayed, records, modify))
    assert first(verdict) == ("modified", position_of(target))
    assert verdict.counts == {"modified": 1}
    assert verdict.first_broken is not None and verdict.first_broken.where.endswith(
        f"[{target.partition}]@{target.offset}"
    )


def test_a_copy_with_one_record_deleted_is_reported_at_the_missing_position(
    relayed: Deployment, records: list[Record]
) -> None:
    case = a_case(records, 3)
    target = case[1]
    verdict = verify_kafka(
        relayed.bootstrap, copy_log(relayed, records, lambda found: [r for r in found if r != target])
    )
    assert first(verdict) == ("missing", position_of(target))
    assert verdict.problems[0].detail == f"position {position_of(target)} is not on Kafka: deleted, or lost"
    assert ("out_of_order", position_of(case[2])) in [(p.kind, p.position) for p in verdict.problems]


def test_a_copy_with_two_records_of_one_key_swapped_is_reported_at_the_earlier_position(
    relayed: Deployment, records: list[Record]
) -> None:
    case = a_case(records, 3)
    earlier, later = case[1], case[2]

    def swap(found: list[Record]) -> list[Record]:
        return [later if r == earlier else earlier if r == later else r for r in found]

    verdict = verify_kafka(relayed.bootstrap, copy_log(relayed, records, swap))
    assert first(verdict) == ("out_of_order", position_of(earlier))
    reported = {(p.kind, p.position) for p in verdict.problems}
    assert {("out_of_order", position_of(earlier)), ("out_of_order", position_of(later))} <= reported
    assert set(verdict.counts) == {"out_of_order"}
