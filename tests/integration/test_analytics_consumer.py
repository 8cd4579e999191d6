"""`gridloop analytics tail` reads a relayed day in a group of its own, every event once, decoded by fingerprint."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine import codec
from engine.kafka import EVENT_TYPE, POSITION, PlainWriter
from ops.analytics_consumer import dumps
from ops.kafka_broker import Broker
from schemas.registry import registry
from tests.integration.kafka_helpers import GRIDLOOP, HANG_GUARD, Deployment, open_store, simulated_store


@dataclass(frozen=True)
class Relayed:
    """A simulated day relayed onto a deployment's topics, and the store's events by position (as JSON data)."""

    deployment: Deployment
    events: dict[int, dict[str, Any]]


def as_json(event: Any) -> dict[str, Any]:
    """An event's envelope and payload fields as the consumer prints them."""
    (_, _), payload = codec.payload_of(type(event))
    fields = {
        "aggregate_id": event.originator_id,
        "aggregate_version": event.originator_version,
        "recorded_at": event.timestamp,
        **{f.field: getattr(event, f.attribute) for f in payload},
    }
    # Avro's timestamps are instants: they read back in UTC, whatever zone the event was stamped in.
    in_utc = {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in fields.items()}
    loaded: dict[str, Any] = json.loads(dumps(in_utc))
    return loaded


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker) -> Relayed:
    tmp = tmp_path_factory.mktemp("analytics")
    deployment = Deployment.of(tmp, kafka_broker.bootstrap, simulated_store(tmp_path_factory))
    deployment.gridloop("relay")
    app = open_store(deployment.events)
    try:
        head = app.recorder.max_notification_id() or 0
        events = {n.id: as_json(app.mapper.to_domain_event(n)) for n in app.recorder.select_notifications(1, head + 1)}
    finally:
        app.close()
    return Relayed(deployment, events)


def tail(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
    return subprocess.run(
        [GRIDLOOP, "--data-dir", str(deployment.data_dir), "analytics", "tail", *args],
        capture_output=True,
        text=True,
        env=deployment.env(log_level="warning"),
        timeout=HANG_GUARD,
    )


def lines(done: subprocess.CompletedProcess[str]) -> Iterator[dict[str, Any]]:
    assert done.returncode == 0, done.stderr[-3000:]
    for line in done.stdout.splitlines():
        loaded: dict[str, Any] = json.loads(line)
        yield loaded


def test_every_relayed_event_is_printed_once_with_the_stores_fields(relayed: Relayed) -> None:
    deployment, events = relayed.deployment, relayed.events
    printed = list(lines(tail(deployment, "--group", f"{deployment.prefix}-all", "--limit", str(len(events)))))

    by_position = {line["position"]: line for line in printed}
    assert len(by_position) == len(printed), "a position printed twice"
    assert set(by_position) == set(events)
    current = registry().current
    for position, line in by_position.items():
        assert line["event"] == events[position], f"position {position}"
        folder, name = line["event_type"].split(".")
        assert line["topic"] == deployment.topics.of(folder)
        assert line["fingerprint"] == current[(folder, name)].fingerprint.hex()
        assert line["written_with"] == line["read_as"] == "current"
        assert line["key"] == line["event"]["aggregate_id"]


def test_a_second_run_of_the_group_goes_on_where_the_first_stopped(relayed: Relayed) -> None:
    deployment, events = relayed.deployment, relayed.events
    group = f"{deployment.prefix}-resume"
    first = [line["position"] for line in lines(tail(deployment, "--group", group, "--limit", "100"))]
    rest = [line["position"] for line in lines(tail(deployment, "--group", group, "--limit", str(len(events) - 100)))]
    assert len(first) == 100 and not set(first) & set(rest)
    assert sorted(first + rest) == sorted(events)

    # Caught up: a third run finds nothing new and stops when idle; --from-beginning reads it all again.
    assert list(lines(tail(deployment, "--group", group, "--idle", "3"))) == []
    again = lines(tail(deployment, "--group", group, "--from-beginning", "--limit", str(len(events))))
    assert sorted(line["position"] for line in again) == sorted(events)


def test_the_projection_workers_group_is_refused(relayed: Relayed) -> None:
    deployment = relayed.deployment
    done = tail(deployment, "--group", deployment.group, "--limit", "1")
    assert done.returncode == 2 and done.stdout == ""
    assert f"group: {deployment.group} is the projection workers' group" in done.stderr


def test_an_undecodable_record_is_reported_on_stderr_and_the_exit_status_is_1(relayed: Relayed, tmp_path: Path) -> None:
    deployment = relayed.deployment
    group = f"{deployment.prefix}-bad"
    # The group first reads the whole day, then one record that is not Avro single-object encoding comes.
    list(lines(tail(deployment, "--group", group, "--limit", str(len(relayed.events)))))
    writer = PlainWriter(deployment.bootstrap)
    try:
        writer.send_now(
            deployment.topics.of("workorder"),
            b"not-a-case",
            b"{json: no}",
            [(EVENT_TYPE, b"workorder.Reported"), (POSITION, b"0")],
        )
    finally:
        writer.close()
    done = tail(deployment, "--group", group, "--limit", "1")
    assert done.returncode == 1 and done.stdout == ""
    problems = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"origin"')]
    assert len(problems) == 1, done.stderr
    problem = problems[0]
    assert problem["event_type"] == "workorder.Reported"
    assert problem["error"].startswith("not Avro single-object encoding: 10 bytes starting 7B 6A (expected C3 01")
