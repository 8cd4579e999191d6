"""The broker restarted mid-stream: the relay carries on (or is restarted), and every event reaches the views once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.kafka_broker import LocalBroker
from tests.integration.kafka_helpers import (
    Deployment,
    assert_exactly_once,
    assert_views_match_the_embedded_fold,
    max_position,
    read_topics,
    report_cases,
    simulated_store,
)
from tests.integration.processes import Child, children, wait_until

RELAY_BATCH = 200


def test_a_following_relay_ships_every_event_once_across_a_broker_restart(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, own_broker: LocalBroker
) -> None:
    broker = own_broker.status()
    assert broker is not None
    deployment = Deployment.of(tmp_path, broker.bootstrap, simulated_store(tmp_path_factory))
    first_day = max_position(deployment.events)
    with children(deployment, tmp_path / "logs") as started:
        relays = [started.start("relay", "--follow", relay_batch_size=RELAY_BATCH)]
        relays[0].wait_for("relay_resumed")
        wait_until("half the day is on Kafka", lambda: deployment.committed() >= first_day // 2)

        own_broker.down()
        # The store keeps growing while the broker is away, so the relay has work after it is back.
        report_cases(deployment.events, count=300, tag="while-the-broker-is-down")
        assert own_broker.restart().bootstrap == broker.bootstrap

        # The realistic thing: `relay --follow` is left running across the restart, as a supervisor would
        # leave it; if it gives up (exits non-zero) it is restarted, as a supervisor would restart it.
        last = max_position(deployment.events)

        def shipped() -> bool:
            if relays[-1].process.poll() is not None:
                assert relays[-1].process.returncode != 0, "a following relay exits only when stopped"
                relays.append(started.start("relay", "--follow", relay_batch_size=RELAY_BATCH))
            return deployment.committed() == last

        wait_until("the relay ships the whole store", shipped)
        assert relays[-1].stop() == 0, relays[-1].tail()
    print(f"relay processes: {len(relays)} ({_exits(relays)})")

    assert_exactly_once(
        read_topics(deployment.bootstrap, deployment.topics.event_topics), deployment.events, deployment.topics
    )
    deployment.gridloop("project")
    assert_views_match_the_embedded_fold(deployment, tmp_path)


def _exits(relays: list[Child]) -> str:
    return ", ".join(f"exit {relay.process.returncode}" for relay in relays)
