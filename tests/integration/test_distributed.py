"""Mode distributed on real PostgreSQL and Kafka: racing and killed relays, a worker group losing a member, two APIs."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.kafka_broker import Broker
from ops.postgres import Server
from projections.api.access import Principal, Role, add_token
from projections.kafka_runner import followed_topics
from projections.views import default_projections
from tests.integration.distributed_helpers import (
    WORKER,
    DistributedDeployment,
    Schemas,
    assert_same_pg_views,
    caught_up,
    fold_from_the_store,
    more_work,
    schema_pair,
    seeded_store,
)
from tests.integration.kafka_helpers import HANG_GUARD, data_ends, read_topics
from tests.integration.processes import Background, Child, children, wait_until

SEED_CASES = 24
"""Cases in the store before the processes start: about 240 log positions (receipts included)."""
LOAD_CASES = 16
"""Cases written while a relay or a worker is killed: about 150 positions more."""
SESSION_TIMEOUT_MS = 6000
"""The broker's smallest group session timeout: a killed worker's partitions move on after six seconds."""
NOW = "2026-11-02T18:00%2B08:00"
"""The moment the API reads judge deadlines at: fixed, so that two reads a moment apart agree."""
ACTIVE, STANDBY, ASSIGNED = "relay_active", "relay_standby", "partitions_assigned"


@pytest.fixture
def deployment(tmp_path: Path, kafka_broker: Broker, postgres: Server) -> Iterator[DistributedDeployment]:
    """A distributed deployment on two fresh schemas (event store, views) and its own topics and group."""
    with schema_pair(postgres) as (events, views):
        yield DistributedDeployment.on(tmp_path, kafka_broker.bootstrap, postgres, Schemas(events, views))


def test_two_relays_started_together_one_ships_and_each_event_reaches_kafka_once(
    tmp_path: Path, deployment: DistributedDeployment
) -> None:
    last, _ = seeded_store(deployment.server, deployment.schemas.events, SEED_CASES)
    with children(deployment, tmp_path / "logs") as started:
        relays = [started.start("relay", "--follow", relay_batch_size=50) for _ in range(2)]
        wait_until("one relay is active", lambda: any(r.events(ACTIVE) for r in relays))
        wait_until("Kafka holds the whole store", lambda: deployment.committed() == last)
        # The other one waits on the lock: it said so, and never became active.
        active = [r for r in relays if r.events(ACTIVE)]
        assert len(active) == 1, [r.tail() for r in relays]
        standby = next(r for r in relays if r is not active[0])
        standby.wait_for(STANDBY)
        assert standby.process.poll() is None, standby.tail()
        # The standby first: stopped after the active one, it would take over, as it should.
        assert standby.stop() == 0, standby.tail()
        assert not standby.events(ACTIVE), "the standby shipped too"
        assert active[0].stop() == 0, active[0].tail()
    deployment.assert_exactly_once(read_topics(deployment.bootstrap, deployment.topics.event_topics))


def test_the_active_relay_killed_under_load_the_standby_takes_over_and_nothing_is_lost_or_doubled(
    tmp_path: Path, deployment: DistributedDeployment
) -> None:
    first, clock = seeded_store(deployment.server, deployment.schemas.events, SEED_CASES)
    with children(deployment, tmp_path / "logs") as started:
        a = started.start("relay", "--follow", relay_batch_size=20)
        a.wait_for(ACTIVE)
        b = started.start("relay", "--follow", relay_batch_size=20)
        b.wait_for(STANDBY)
        halfway = threading.Event()
        load = Background(more_work, deployment.server, deployment.schemas.events, clock, LOAD_CASES, "load", halfway)
        try:
            # Killed mid-stream: half of the load is written (and being shipped), the other half still to come.
            assert halfway.wait(HANG_GUARD), "the load did not get halfway"
            a.kill()
            killed = time.monotonic()
            at_kill = deployment.committed()
            b.wait_for(ACTIVE)
            took_over = time.monotonic() - killed
        finally:
            load.join()
        last = deployment.last_position()
        assert at_kill < last, "the kill came after the relay had shipped everything: it tested nothing"
        wait_until("the standby ships the rest", lambda: deployment.committed() == last)
        assert b.stop() == 0, b.tail()
    print(f"the standby took over {took_over:.2f} s after the kill; {last - first} positions written meanwhile")
    deployment.assert_exactly_once(read_topics(deployment.bootstrap, deployment.topics.event_topics))


def test_three_workers_one_killed_the_group_rebalances_and_the_views_equal_a_fold_of_the_store(
    tmp_path: Path, deployment: DistributedDeployment
) -> None:
    _, clock = seeded_store(deployment.server, deployment.schemas.events, SEED_CASES)
    followed = followed_topics(default_projections(), deployment.topics)
    every = {f"{t}:{p}" for t in followed for p in range(deployment.settings().kafka_partitions)}
    worker_settings: dict[str, str | int] = {
        "kafka_session_timeout_ms": SESSION_TIMEOUT_MS,
        "projection_batch_size": 20,
    }
    with children(deployment, tmp_path / "logs") as started:
        relay = started.start("relay", "--follow", relay_batch_size=50)
        workers = [started.start("project", "--follow", **worker_settings) for _ in range(3)]
        _wait_shared("the group shares the partitions three ways", workers, every)
        halfway = threading.Event()
        load = Background(more_work, deployment.server, deployment.schemas.events, clock, LOAD_CASES, "load", halfway)
        try:
            assert halfway.wait(HANG_GUARD), "the load did not get halfway"
            killed, survivors = workers[0], workers[1:]
            held = set(_latest(killed))
            seen = [len(w.events(ASSIGNED)) for w in survivors]
            killed.kill()
            # Once the killed member's session times out, the other two share every partition between them.
            taken = [
                w.wait_for(ASSIGNED, lambda e: bool(e["partitions"]), after=n)
                for w, n in zip(survivors, seen, strict=True)
            ]
            _wait_shared("the survivors share every partition", survivors, every)
        finally:
            load.join()
        assert held & {p for entry in taken for p in entry["partitions"]}, "the killed worker's partitions moved on"
        _wait_for_the_views(deployment, deployment.last_position())
        for child in (*survivors, relay):
            assert child.stop() == 0, child.tail()

    with schema_pair(deployment.server, count=1) as (fold,):
        fold_from_the_store(deployment.server, deployment.schemas.events, fold)
        sizes = assert_same_pg_views(deployment.server, deployment.schemas.views, fold)
    assert sizes["case_board.board_case"] == SEED_CASES + LOAD_CASES, sizes
    print(f"held by the killed worker: {sorted(held)}; rows per table: {sizes}")


def test_two_api_processes_give_the_same_answers_and_read_each_others_writes(
    tmp_path: Path, deployment: DistributedDeployment
) -> None:
    seeded_store(deployment.server, deployment.schemas.events, SEED_CASES)
    token = add_token(deployment.settings().token_file, Principal("it-admin", Role.ADMIN, "140827", "admin:140827"))
    with children(deployment, tmp_path / "logs") as started:
        started.start("relay", "--follow", relay_batch_size=50)
        started.start("project", "--follow")
        apis = [_url(started.start("serve", "--port", "0", read_wait_seconds=15)) for _ in range(2)]
        last = deployment.last_position()
        _wait_for_the_views(deployment, last)
        board = _get(apis[0], f"/v1/board?limit=500&now={NOW}", token)["cases"]
        assert len(board) == SEED_CASES, "the API reads the views the workers wrote"
        case_id = board[0]["case_id"]
        # Every field is the views' or the request's (`now` fixed): no field may differ between the replicas.
        reads = [
            f"/v1/board?limit=500&now={NOW}",
            f"/v1/board/summary?now={NOW}",
            f"/v1/board/escalations?now={NOW}",
            f"/v1/cases/{case_id}?now={NOW}",
            f"/v1/cases/{case_id}/timeline",
            f"/v1/workers/{WORKER}/queue",
            "/v1/divisions",
        ]
        for read in reads:
            one, other = (_raw(api, read, token) for api in apis)
            assert one == other, f"{read}: the two API processes answer differently"

        made = _post(
            apis[0],
            "/v1/cases",
            token,
            {
                "command_id": "it-api-1",
                "source": "hotline",
                "category": "E0101",
                "description": "暴露垃圾",
                "grid": "140827100001001",
            },
        )
        assert made["position"] > last
        seen = _get(apis[1], f"/v1/cases/{made['case_id']}?position={made['position']}&wait=15", token)
        assert seen["case"]["case_id"] == made["case_id"]
        assert seen["consistency"]["reached"], (
            f"the other API did not see the case reach the command's position {made['position']}: {seen['consistency']}"
        )


# -- helpers ----------------------------------------------------------------------------------------


def _wait_for_the_views(deployment: DistributedDeployment, last: int) -> None:
    """Wait until Kafka holds the store up to ``last`` and the views have read every partition to its end."""
    wait_until("the relay ships the store", lambda: deployment.committed() == last)
    ends = data_ends(read_topics(deployment.bootstrap, followed_topics(default_projections(), deployment.topics)))
    wait_until(
        "the views read every partition to its end",
        lambda: caught_up(deployment.server, deployment.schemas.views, ends),
    )


def _latest(worker: Child) -> list[str]:
    """The partitions a worker holds since its last assignment (none before its first)."""
    entries = worker.events(ASSIGNED)
    return list(entries[-1]["partitions"]) if entries else []


def _wait_shared(what: str, workers: list[Child], every: set[str]) -> None:
    try:
        wait_until(what, lambda: _shared(workers, every))
    except pytest.fail.Exception:
        held = "\n".join(f"pid {w.pid}: {_latest(w)}\n{w.tail(8)}" for w in workers)
        pytest.fail(f"{what}: not within {HANG_GUARD} s; the workers' latest assignments:\n{held}")


def _shared(workers: list[Child], every: set[str]) -> bool:
    """Whether the workers' latest assignments are non-empty, disjoint and cover ``every`` partition."""
    held = [_latest(w) for w in workers]
    flat = [p for partitions in held for p in partitions]
    return all(held) and len(flat) == len(set(flat)) and set(flat) == every


def _url(child: Child) -> str:
    """The base URL a `gridloop serve --port 0` prints once it listens."""
    found: list[str] = []

    def listening() -> bool:
        found.extend(re.findall(r"gridloop API on (http://\S+)", child.log.read_text(errors="replace")))
        if child.process.poll() is not None:
            pytest.fail(f"gridloop serve exited {child.process.returncode}:\n{child.tail()}")
        return bool(found)

    wait_until("the API listens", listening)
    return found[0]


def _raw(base: str, path: str, token: str) -> bytes:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
        body: bytes = response.read()
        return body


def _get(base: str, path: str, token: str) -> Any:
    return json.loads(_raw(base, path, token))


def _post(base: str, path: str, token: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
        return json.loads(response.read())
