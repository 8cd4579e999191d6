"""The relay on a real broker: every stored event on Kafka once, in order, keyed and labelled; resumed from Kafka."""

from __future__ import annotations

import pytest

from engine.relay import position_of
from ops.kafka_broker import Broker
from tests.integration.kafka_helpers import (
    Deployment,
    assert_exactly_once,
    max_position,
    read_topics,
    report_cases,
    simulated_store,
)


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker) -> Deployment:
    """A simulated day shipped to Kafka by `gridloop relay`."""
    deployment = Deployment.of(
        tmp_path_factory.mktemp("relayed"), kafka_broker.bootstrap, simulated_store(tmp_path_factory)
    )
    last = max_position(deployment.events)
    done = deployment.gridloop("relay")
    assert f"up to position {last} ({last} new)" in done.stdout
    return deployment


def test_every_stored_event_is_on_kafka_once_in_log_order_keyed_by_its_aggregate(relayed: Deployment) -> None:
    records = read_topics(relayed.bootstrap, relayed.topics.event_topics)
    assert_exactly_once(records, relayed.events, relayed.topics)
    assert {r.topic for r in records} == set(relayed.topics.event_topics), "a simulated day touches every aggregate"


def test_a_relay_resumes_from_what_kafka_holds_and_ships_only_new_events(relayed: Deployment) -> None:
    topics = relayed.topics.event_topics
    before = read_topics(relayed.bootstrap, topics, isolation="read_uncommitted")
    last = max_position(relayed.events)

    again = relayed.gridloop("relay")

    assert f"up to position {last} (0 new)" in again.stdout
    assert read_topics(relayed.bootstrap, topics, isolation="read_uncommitted") == before, "nothing was sent again"

    reported = report_cases(relayed.events, count=7, tag="relay-test")
    grown = max_position(relayed.events)
    assert grown > last

    after = relayed.gridloop("relay")

    assert f"up to position {grown} ({grown - last} new)" in after.stdout
    records = read_topics(relayed.bootstrap, topics)
    assert_exactly_once(records, relayed.events, relayed.topics)
    new = [r for r in records if position_of(r) > last]
    assert len(new) == grown - last
    assert {r.key for r in new if r.topic == relayed.topics.of("workorder")} == {str(c).encode() for c in reported}
    assert [r for r in records if position_of(r) <= last] == [r for r in before if position_of(r) <= last]
