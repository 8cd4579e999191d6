"""Views fed from Kafka by `gridloop project` equal, row for row, the views the embedded runner folds from the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ops.kafka_broker import Broker
from projections.store import ViewStore
from tests.integration.kafka_helpers import (
    Deployment,
    assert_same_views,
    data_ends,
    embedded_views,
    read_topics,
    simulated_store,
    tracking,
)


@dataclass(frozen=True)
class Projected:
    """A simulated day relayed and projected from Kafka, and the same day folded by the embedded runner."""

    deployment: Deployment
    embedded: ViewStore


@pytest.fixture(scope="module")
def projected(tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker) -> Iterator[Projected]:
    tmp = tmp_path_factory.mktemp("projected")
    deployment = Deployment.of(tmp, kafka_broker.bootstrap, simulated_store(tmp_path_factory))
    deployment.gridloop("relay")
    done = deployment.gridloop("project")
    assert "0 dead-lettered" in done.stdout
    embedded = embedded_views(deployment.events, tmp / "embedded.sqlite")
    yield Projected(deployment, embedded)
    embedded.close()


def test_every_view_fed_from_kafka_equals_the_embedded_view(projected: Projected) -> None:
    kafka = ViewStore.open(projected.deployment.views)
    try:
        assert_same_views(kafka, projected.embedded)
    finally:
        kafka.close()


def test_every_view_has_read_every_partition_it_follows_to_its_last_record(projected: Projected) -> None:
    topics = projected.deployment.topics
    followed = (topics.of("workorder"), topics.of("grid"))
    ends = data_ends(read_topics(projected.deployment.bootstrap, followed))
    found = tracking(projected.deployment.views)
    views = ("case_board", "worker_queue", "case_timeline")
    assert {f"{v}@{t}:{p}": end for (t, p), end in ends.items() for v in views}.items() <= found.items()
    assert not [name for name in found if name.partition("@")[2].startswith(topics.of("command"))], (
        "no view reads the command receipts"
    )


def test_one_view_rebuilt_from_kafka_alone_equals_the_embedded_view_again(projected: Projected) -> None:
    done = projected.deployment.gridloop("project", "--rebuild", "case_board")

    assert "0 dead-lettered" in done.stdout
    kafka = ViewStore.open(projected.deployment.views)
    try:
        assert_same_views(kafka, projected.embedded)
    finally:
        kafka.close()
