"""The log is legible to ordinary Kafka tools: kcat prints each record's key and headers as plain text."""

from __future__ import annotations

import re
import shutil
import subprocess
from uuid import UUID

import pytest

from engine.seal import CHECKPOINT_EVERY
from ops.kafka_broker import Broker
from tests.conftest import unavailable
from tests.integration.kafka_helpers import HANG_GUARD, Deployment, read_topics, simulated_store

HEADER = re.compile(r"([a-z_]+)=([^,]*)")


@pytest.fixture(scope="module")
def kcat() -> str:
    found = shutil.which("kcat")
    if found is None:
        unavailable("kcat not found: install Debian's kcat (make test does)")
    return found


def test_kcat_prints_every_work_order_record_with_its_uuid_key_and_legible_headers(
    tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker, kcat: str
) -> None:
    store = simulated_store(tmp_path_factory)
    deployment = Deployment.of(tmp_path_factory.mktemp("kcat"), kafka_broker.bootstrap, store)
    deployment.gridloop("relay")
    topic = deployment.topics.of("workorder")

    read_committed = ["-X", "isolation.level=read_committed"]
    done = subprocess.run(
        [kcat, "-C", "-b", deployment.bootstrap, "-t", topic, "-e", "-q", "-f", "%k %h\n", *read_committed],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(read_topics(deployment.bootstrap, [topic])), "one line per committed record"
    positions = set()
    every = {"event_type", "schema_fingerprint", "position", "occurred_at", "recorded_at", "prev_hash", "hash"}
    for line in lines:
        key, _, headers = line.partition(" ")
        assert str(UUID(key)) == key
        fields = dict(HEADER.findall(headers))
        at_checkpoint = int(fields["position"]) % CHECKPOINT_EVERY == 0
        assert set(fields) == (every | {"checkpoint"} if at_checkpoint else every), line
        for name in ("prev_hash", "hash", "checkpoint"):
            assert re.fullmatch(r"[0-9a-f]{64}", fields.get(name, "0" * 64)), line
        assert re.fullmatch(r"workorder\.[A-Z][A-Za-z]+", fields["event_type"]), line
        assert re.fullmatch(r"[0-9a-f]{16}", fields["schema_fingerprint"]), line
        assert fields["position"].isdigit(), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+08:00", fields["occurred_at"]), line
        positions.add(int(fields["position"]))
    assert len(positions) == len(lines)
    assert any("event_type=workorder.Reported," in line for line in lines)
