"""Poison records on a real broker: dead-lettered with their origin after bounded attempts, their aggregate held."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from kafka import KafkaProducer

from engine import codec
from engine.clock import ManualClock
from engine.kafka import Record, client_config, partition_of
from engine.work_order import WorkOrder
from ops.kafka_broker import Broker
from ops.runtime import ensure_topics, open_kafka_runner, open_relay, open_runtime
from projections.kafka_runner import HELD_BEHIND
from projections.queries import view_rows
from projections.runner import Verdict
from projections.store import ViewStore
from tests.integration.kafka_helpers import (
    Deployment,
    assert_same_views,
    caught_up,
    data_ends,
    embedded_views,
    open_store,
    read_topics,
    simulated_store,
)

ATTEMPTS = 3
"""What open_kafka_runner allows a record before dead-lettering it."""


@dataclass(frozen=True)
class Poisoned:
    """A relayed day with poison injected into the work-order topic, and what the projection worker made of it."""

    deployment: Deployment
    held_case: UUID
    held_at: str
    """The origin of the garbage record injected between the held case's events."""
    last_version_before: int
    poison: dict[str, str]
    """Origin of each plain poison record → a word its dead letter's error must carry."""
    log: list[Record]
    dead: list[Record]
    dead_lettered: int


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker) -> Iterator[Poisoned]:
    tmp = tmp_path_factory.mktemp("poisoned")
    deployment = Deployment.of(tmp, kafka_broker.bootstrap, simulated_store(tmp_path_factory))
    settings = deployment.settings()
    ensure_topics(settings)
    workorder = deployment.topics.of("workorder")
    rng = random.Random(20261104)

    cut, case, versions_before = _a_case_cut_in_two(deployment.events)
    producer = KafkaProducer(**client_config(deployment.bootstrap, acks="all"))
    app = open_store(deployment.events)
    try:
        # The first half of the log, then garbage with the case's key on the case's partition, then the rest.
        relay, close_relay = open_relay(deployment.settings(relay_batch_size=cut), app)
        assert relay.ship_batch() == cut
        key = str(case).encode()
        headers = [("event_type", b"workorder.Accepted"), ("position", str(cut).encode())]
        sent = producer.send(
            workorder,
            key=key,
            value=b"not an event: " + rng.randbytes(40),
            headers=headers,
            partition=partition_of(key, settings.kafka_partitions),
        ).get(timeout=60)
        held_at = f"{workorder}[{sent.partition}]@{sent.offset}"
        relay.ship_all()
        close_relay()
    finally:
        app.close()

    # Plain poison, each with an aggregate of its own: garbage, bad magic bytes, a real record cut short.
    real = next(r for r in read_topics(deployment.bootstrap, [workorder]) if r.key != key)
    assert real.value is not None
    real_headers = list(real.headers.items())
    poison: dict[str, str] = {}
    for value, headers, error in (
        (rng.randbytes(40), [], "no valid position header"),
        (b"\x00\x01" + real.value[2:], real_headers, "bad magic bytes"),
        (real.value[: len(real.value) // 2], real_headers, "truncated or corrupt"),
    ):
        stray = str(UUID(int=rng.getrandbits(128), version=4)).encode()
        sent = producer.send(workorder, key=stray, value=value, headers=headers).get(timeout=60)
        poison[f"{workorder}[{sent.partition}]@{sent.offset}"] = error
    producer.close()

    rt = open_runtime(settings, ManualClock(datetime(2026, 11, 3, tzinfo=UTC)))
    try:
        runner = open_kafka_runner(settings, rt)
        runner.catch_up()
        dead_lettered = runner.dead_lettered
    finally:
        rt.close()
    log = read_topics(deployment.bootstrap, [workorder, deployment.topics.of("grid")])
    dead = read_topics(deployment.bootstrap, [deployment.dead_letters])
    yield Poisoned(deployment, case, held_at, versions_before, poison, log, dead, dead_lettered)


def test_each_poison_record_is_dead_lettered_with_its_error_and_origin_after_bounded_attempts(
    poisoned: Poisoned,
) -> None:
    letters = {_origin(letter): letter for letter in poisoned.dead}
    originals = {r.origin: r for r in poisoned.log}
    for origin, error in poisoned.poison.items():
        assert origin in letters, f"{origin} is not on {poisoned.deployment.dead_letters}"
        letter = letters[origin]
        assert error in letter.header("dlq_error"), letter.header("dlq_error")
        # Bytes do not change between attempts: a record that cannot decode is given up after the first.
        assert letter.header("dlq_attempts") == "1"
        assert letter.header("dlq_group") == poisoned.deployment.group
        assert (letter.key, letter.value) == (originals[origin].key, originals[origin].value)
    assert "bad magic bytes" in letters[poisoned.held_at].header("dlq_error")


def test_the_later_records_of_a_case_behind_a_poison_record_are_held_not_applied(poisoned: Poisoned) -> None:
    key = str(poisoned.held_case).encode()
    later = [r for r in poisoned.log if r.key == key and _version(r) > poisoned.last_version_before]
    assert later, "the case has events after the cut"
    letters = {_origin(letter): letter for letter in poisoned.dead}
    for record in later:
        letter = letters[record.origin]
        assert letter.header(HELD_BEHIND) == poisoned.held_at
        assert letter.header("dlq_attempts") == "0"
        assert letter.value == record.value

    store = ViewStore.open(poisoned.deployment.views)
    try:
        board = [r for r in view_rows(store, "case_board")["board_case"] if r["case_id"] == str(poisoned.held_case)]
        timeline = view_rows(store, "case_timeline")["timeline_event"]
        with store.reading() as cursor:
            cursor.execute("SELECT topic, partition, key, first_offset FROM held_aggregate")
            held = {(row[0], row[1], row[2]): row[3] for row in cursor.fetchall()}
    finally:
        store.close()
    assert [row["version"] for row in board] == [poisoned.last_version_before], "the board keeps the earlier state"
    assert sorted(r["version"] for r in timeline if r["case_id"] == str(poisoned.held_case)) == list(
        range(1, poisoned.last_version_before + 1)
    )
    topic, partition, offset = _parts(poisoned.held_at)
    assert held[(topic, partition, str(poisoned.held_case))] == offset
    stray = {r.key.decode() for r in poisoned.log if r.origin in poisoned.poison and r.key}
    assert {k for (_, _, k) in held} == {str(poisoned.held_case), *stray}, "each poisoned aggregate is held"


def test_every_other_case_is_folded_as_the_embedded_runner_folds_it(poisoned: Poisoned, tmp_path: Path) -> None:
    def held_back(event: Any, position: int) -> Verdict:
        """The Kafka worker holds the case's events after the poison record: the embedded fold leaves them out too."""
        held = event.originator_id == poisoned.held_case and event.originator_version > poisoned.last_version_before
        return Verdict.SKIP if held else Verdict.APPLY

    # Every view, aggregated ones (the daily flow) included, row for row: the held case as it stood before the poison.
    embedded = embedded_views(poisoned.deployment.events, tmp_path / "embedded.sqlite", gate=held_back)
    kafka = ViewStore.open(poisoned.deployment.views)
    try:
        assert_same_views(kafka, embedded)
    finally:
        kafka.close()
        embedded.close()


def test_nothing_is_dropped_silently_every_record_is_applied_or_dead_lettered(poisoned: Poisoned) -> None:
    assert caught_up(poisoned.deployment.views, data_ends(poisoned.log)), "every view read every record"
    store = ViewStore.open(poisoned.deployment.views)
    try:
        on_timeline = {(r["case_id"], r["version"]) for r in view_rows(store, "case_timeline")["timeline_event"]}
    finally:
        store.close()
    dead = {_origin(letter) for letter in poisoned.dead}
    workorder = poisoned.deployment.topics.of("workorder")
    neither = [
        r.origin
        for r in poisoned.log
        if r.topic == workorder and r.origin not in dead and ((r.key or b"").decode(), _version(r)) not in on_timeline
    ]
    assert not neither, f"records neither applied nor dead-lettered: {neither[:5]}"
    assert poisoned.dead_lettered == len(poisoned.dead)


def test_a_restarted_worker_neither_applies_nor_dead_letters_anything_again(poisoned: Poisoned) -> None:
    settings = poisoned.deployment.settings()
    rt = open_runtime(settings, ManualClock(datetime(2026, 11, 3, tzinfo=UTC)))
    try:
        runner = open_kafka_runner(settings, rt)
        runner.catch_up()
        assert (runner.applied, runner.dead_lettered) == (0, 0)
    finally:
        rt.close()
    assert len(read_topics(poisoned.deployment.bootstrap, [poisoned.deployment.dead_letters])) == len(poisoned.dead)


def _a_case_cut_in_two(events: Path) -> tuple[int, UUID, int]:
    """A position halfway through the case events, a case with events on both sides of it, its last version before."""
    app = open_store(events)
    try:
        last = app.recorder.max_notification_id() or 0
        prefix = f"{WorkOrder.__module__}:{WorkOrder.__qualname__}."
        cases: dict[UUID, list[tuple[int, int, str]]] = defaultdict(list)
        for n in app.recorder.select_notifications(1, last + 1):
            if n.topic.startswith(prefix):
                cases[UUID(str(n.originator_id))].append((n.id, n.originator_version, n.topic.removeprefix(prefix)))
    finally:
        app.close()
    # The district is set up first: the middle of the case events, not of the whole log.
    cut = sorted(position for steps in cases.values() for position, _, _ in steps)[sum(map(len, cases.values())) // 2]
    for case, steps in cases.items():
        before = [version for position, version, _ in steps if position <= cut]
        after = [name for position, _, name in steps if position > cut]
        # A merge changes the case it merges into as well: choose a case whose held events touch only itself.
        if before and len(after) >= 2 and "Merged" not in after:
            return cut, case, before[-1]
    raise AssertionError("no case of the simulated day has events on both sides of the middle of its cases")


def _origin(letter: Record) -> str:
    return f"{letter.header('dlq_topic')}[{letter.header('dlq_partition')}]@{letter.header('dlq_offset')}"


def _parts(origin: str) -> tuple[str, int, int]:
    topic, _, rest = origin.partition("[")
    partition, _, offset = rest.partition("]@")
    return topic, int(partition), int(offset)


def _version(record: Record) -> int:
    """The aggregate version of a record's event (-1 for a record that does not decode)."""
    assert record.value is not None
    try:
        return codec.decode(record.value).originator_version
    except codec.UndecodableRecord:
        return -1
