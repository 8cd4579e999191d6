"""SIGKILL trials: a relay or a projection worker killed mid-stream and restarted loses nothing and repeats nothing."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from engine.relay import position_of
from ops.kafka_broker import Broker
from tests.integration.kafka_helpers import (
    Deployment,
    assert_exactly_once,
    assert_views_match_the_embedded_fold,
    max_position,
    read_topics,
    simulated_store,
    tracking,
)
from tests.integration.processes import children, wait_until

RELAY_KILLS = 10
WORKER_KILLS = 3
RELAY_BATCH = 50
"""Small transactions, so that a kill lands in an open one more often than between two."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_store(tmp_path_factory)


def test_a_relay_killed_ten_times_mid_batch_leaves_every_event_on_kafka_exactly_once(
    tmp_path: Path, kafka_broker: Broker, store: Path
) -> None:
    deployment = Deployment.of(tmp_path, kafka_broker.bootstrap, store)
    last = max_position(deployment.events)
    rng = random.Random(20261102)
    progress: list[int] = []
    # Each kill comes once Kafka holds a seeded position of the first 40 % of the log (a sleep would let a fast
    # relay finish before its last kill; reading the tail takes a while under load, so the margin is wide):
    # positions, not times, so a faster relay or a slower machine moves
    # when the kills come, never whether they land before the end.
    plan = sorted(rng.sample(range(1, int(last * 0.4)), RELAY_KILLS))
    with children(deployment, tmp_path / "logs") as started:
        for planned in plan:
            relay = started.start("relay", "--follow", relay_batch_size=RELAY_BATCH)
            resumed = relay.wait_for("relay_resumed")
            # A restarted relay resumes from what Kafka committed before the kill; more only if the kill came
            # after a commit request, which the broker completes when this relay fences its predecessor.
            assert resumed["position"] >= (progress[-1] if progress else 0)
            target = max(planned, resumed["position"] + 1)
            wait_until(f"the relay ships position {target}", lambda: deployment.committed() >= target, poll=0.02)  # noqa: B023
            relay.kill()
            progress.append(deployment.committed())
    assert progress == sorted(progress), f"a committed batch disappeared: {progress}"
    assert progress[-1] < last, "the kills came after the relay had finished: they tested nothing"

    done = deployment.gridloop("relay", relay_batch_size=RELAY_BATCH)

    assert f"up to position {last} ({last - progress[-1]} new)" in done.stdout
    committed = read_topics(deployment.bootstrap, deployment.topics.event_topics)
    assert_exactly_once(committed, deployment.events, deployment.topics)
    # A read-uncommitted reader also sees the records of the batches the kills cut short (aborted, sent again).
    everything = read_topics(deployment.bootstrap, deployment.topics.event_topics, isolation="read_uncommitted")
    origins = {(r.topic, r.partition, r.offset) for r in committed}
    aborted = [r for r in everything if (r.topic, r.partition, r.offset) not in origins]
    assert len(everything) == len(committed) + len(aborted)
    assert {position_of(r) for r in aborted} <= {position_of(r) for r in committed}, "aborted records are resent"
    print(f"committed position after each kill: {progress}; {len(aborted)} aborted records seen read-uncommitted")


def test_a_projection_worker_killed_mid_stream_resumes_where_its_view_store_says(
    tmp_path: Path, kafka_broker: Broker, store: Path
) -> None:
    deployment = Deployment.of(tmp_path, kafka_broker.bootstrap, store)
    last = max_position(deployment.events)
    rng = random.Random(20261103)
    folded: list[int] = []
    with children(deployment, tmp_path / "logs") as started:
        relay = started.start("relay", "--follow", relay_batch_size=RELAY_BATCH)
        for n in range(WORKER_KILLS):
            # A killed member keeps its partitions until its session times out (45 s in kafka-python); each
            # incarnation joins a group of its own instead of waiting. Where it resumes comes from the view
            # store's tracking, never from the group's offsets, and that is what is under test.
            worker = started.start(
                "project", "--follow", kafka_group=f"{deployment.group}-{n}", projection_batch_size=20
            )
            worker.wait_for("partitions_assigned", lambda entry: bool(entry["partitions"]))
            time.sleep(rng.uniform(0.3, 1.0))
            worker.kill()
            folded.append(sum(tracking(deployment.views).values()))
        wait_until("the relay ships the whole store", lambda: deployment.committed() == last)
        assert relay.stop() == 0, relay.tail()

    done = deployment.gridloop("project", kafka_group=f"{deployment.group}-last")

    assert "0 dead-lettered" in done.stdout
    print(f"records folded (summed over views and partitions) after each kill: {folded}; {done.stdout.strip()}")
    assert_views_match_the_embedded_fold(deployment, tmp_path)
