"""Projection workers in one consumer group: one joins, one leaves, the relay ships on; nothing lost or doubled."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from engine.work_order import WorkOrder
from ops.kafka_broker import Broker
from projections.kafka_runner import followed_topics
from projections.queries import view_rows
from projections.store import ViewStore
from projections.views import default_projections
from tests.integration.kafka_helpers import (
    SECOND_DAY,
    Deployment,
    assert_same_views,
    caught_up,
    data_ends,
    embedded_views,
    max_position,
    open_store,
    read_topics,
    simulate_day,
    simulated_store,
    tracking,
)
from tests.integration.processes import Background, children, wait_until

ASSIGNED = "partitions_assigned"


def test_a_worker_joining_and_leaving_the_group_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker
) -> None:
    deployment = Deployment.of(tmp_path, kafka_broker.bootstrap, simulated_store(tmp_path_factory))
    first_day = max_position(deployment.events)
    followed = followed_topics(default_projections(), deployment.topics)
    every = {f"{t}:{p}" for t in followed for p in range(deployment.settings().kafka_partitions)}
    with children(deployment, tmp_path / "logs") as started:
        relay = started.start("relay", "--follow", relay_batch_size=200)
        a = started.start("project", "--follow", projection_batch_size=50)
        a.wait_for(ASSIGNED, lambda entry: set(entry["partitions"]) == every)

        b = started.start("project", "--follow", projection_batch_size=50)
        joined = b.wait_for(ASSIGNED, lambda entry: bool(entry["partitions"]))
        # The group shares the partitions out: A gives up those B takes.
        shared = a.wait_for(ASSIGNED, lambda entry: bool(entry["partitions"]) and set(entry["partitions"]) < every)
        assert set(shared["partitions"]).isdisjoint(joined["partitions"])
        assert set(shared["partitions"]) | set(joined["partitions"]) == every

        second_day = Background(simulate_day, deployment.events, SECOND_DAY)
        try:
            # B leaves once it has folded records of the second day into its partitions' views.
            theirs = [f"case_board@{partition}" for partition in joined["partitions"]]
            at_join = tracking(deployment.views)
            wait_until(
                "B applies records of the second day",
                lambda: (
                    deployment.committed() > first_day
                    and any(tracking(deployment.views).get(name, 0) > at_join.get(name, 0) for name in theirs)
                ),
            )
            seen = len(a.events(ASSIGNED))
            assert b.stop() == 0, b.tail()
            a.wait_for(ASSIGNED, lambda entry: set(entry["partitions"]) == every, after=seen)
        finally:
            second_day.join()

        last = max_position(deployment.events)
        wait_until("the relay ships the second day", lambda: deployment.committed() == last)
        ends = data_ends(read_topics(deployment.bootstrap, followed))
        wait_until("A catches up", lambda: caught_up(deployment.views, ends))
        assert a.stop() == 0, a.tail()
        assert relay.stop() == 0, relay.tail()

    applied = re.search(r"^(\d+) events applied", b.log.read_text(), re.MULTILINE)
    assert applied is not None and int(applied.group(1)) > 0, "B took part"
    embedded = embedded_views(deployment.events, tmp_path / "embedded.sqlite")
    kafka = ViewStore.open(deployment.views)
    try:
        timeline = Counter(row["case_id"] for row in view_rows(kafka, "case_timeline")["timeline_event"])
        assert timeline == _events_per_case(deployment.events), "each case's events on its timeline once"
        assert_same_views(kafka, embedded)
    finally:
        kafka.close()
        embedded.close()


def _events_per_case(events: Path) -> Counter[str]:
    app = open_store(events)
    try:
        last = app.recorder.max_notification_id() or 0
        prefix = f"{WorkOrder.__module__}:{WorkOrder.__qualname__}."
        return Counter(
            str(n.originator_id) for n in app.recorder.select_notifications(1, last + 1) if n.topic.startswith(prefix)
        )
    finally:
        app.close()
