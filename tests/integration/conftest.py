"""Real Kafka for the integration tests: one broker for the session, brokers of their own for tests that stop one."""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.config import ConfigError, Settings, load_settings
from ops.kafka_broker import Broker, BrokerUnavailable, LocalBroker, fetch_jars, provisioner
from tests.conftest import unavailable

RUN = uuid.uuid4().hex[:8]
"""Names this run's topics, so that runs sharing an external cluster do not meet."""
_tests = itertools.count(1)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session's broker, from the provisioner GRIDLOOP_KAFKA_PROVISIONER names (local by default)."""
    try:
        chosen = provisioner(load_settings(data_dir=tmp_path_factory.mktemp("session-broker")))
        broker = chosen.up()
    except (BrokerUnavailable, ConfigError) as exc:
        unavailable(f"no Kafka broker for the integration tests: {exc}")
    yield broker
    chosen.down()


@pytest.fixture(scope="session")
def local_kafka_jars() -> Path:
    """The local broker's jars (fetched into the default cache if need be), and a Java to run them."""
    try:
        libs = fetch_jars(load_settings())
    except (BrokerUnavailable, ConfigError) as exc:
        unavailable(f"no local Kafka broker for this test: {exc}")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        unavailable("no local Kafka broker for this test: java not found (JAVA_HOME or PATH)")
    return libs


@pytest.fixture
def own_broker(tmp_path: Path, local_kafka_jars: Path) -> Iterator[LocalBroker]:
    """A local broker of the test's own (own data and ports), for tests that restart or kill it; stopped after."""
    broker = LocalBroker(load_settings(data_dir=tmp_path / "own-broker", kafka_provisioner="local"))
    try:
        broker.up()
    except BrokerUnavailable as exc:
        unavailable(f"the test's own Kafka broker did not start: {exc}")
    yield broker
    broker.down()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test of any run uses, so tests can share the session's broker."""
    return f"t{RUN}n{next(_tests)}"


@pytest.fixture
def kafka_settings(kafka_broker: Broker, topic_prefix: str) -> Callable[..., Settings]:
    """Settings of a gridloop in mode kafka on the session's broker: kafka_settings(data_dir, **overrides).

    Every call in one test shares the test's topics, consumer group and transactional id; no other test does.
    """

    def settings(data_dir: Path, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "mode": "kafka",
            "kafka_provisioner": "external",
            "kafka_bootstrap": kafka_broker.bootstrap,
            "kafka_topic_prefix": topic_prefix,
            "kafka_group": f"{topic_prefix}-views",
            "relay_transactional_id": f"{topic_prefix}-relay",
        }
        return load_settings({}, **{**values, **overrides})

    return settings
