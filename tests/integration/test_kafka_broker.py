"""The brokers gridloop provisions and the topics it creates, on a real Apache Kafka broker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient

from ops.config import Settings, load_settings
from ops.kafka_broker import (
    TOPIC_CONFIGS,
    Broker,
    BrokerUnavailable,
    ExternalBroker,
    LocalBroker,
    TopicsRefused,
    create_topics,
    provisioner,
)

GRIDLOOP = shutil.which("gridloop", path=str(Path(sys.executable).parent))


def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, key=key, value=value, partition=0).get(timeout=30)
    finally:
        producer.close()


@contextmanager
def consumer_of(bootstrap: str, topic: str) -> Iterator[tuple[KafkaConsumer, list[TopicPartition]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"the broker knows no partitions of {topic}"
        yield consumer, [TopicPartition(topic, p) for p in sorted(partitions)]
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every record of the topic, from the beginning to the end offsets it has now."""
    with consumer_of(bootstrap, topic) as (consumer, partitions):
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += [(record.key, record.value) for record in batch]
        return records


def partition_count(bootstrap: str, topic: str) -> int:
    with consumer_of(bootstrap, topic) as (_, partitions):
        return len(partitions)


def gridloop(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
    env = {**os.environ, "GRIDLOOP_LOG_LEVEL": "warning", "GRIDLOOP_KAFKA_PROVISIONER": "local"}
    return subprocess.run(
        [GRIDLOOP, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env=env, timeout=300
    )


# -- topics on the session's broker -----------------------------------------------------------


def test_a_created_topic_carries_a_record_from_producer_to_consumer(kafka_broker: Broker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.workorder"
    assert create_topics(kafka_broker, [topic], partitions=3, replication=1) == [topic]
    produce(kafka_broker.bootstrap, topic, b"case-1", b"Reported")
    assert read_all(kafka_broker.bootstrap, topic) == [(b"case-1", b"Reported")]


def test_creating_topics_again_creates_only_the_missing_ones_and_leaves_the_others_as_they_are(
    kafka_broker: Broker, topic_prefix: str
) -> None:
    grid, worker = f"{topic_prefix}.grid", f"{topic_prefix}.worker"
    assert create_topics(kafka_broker, [grid], partitions=2, replication=1) == [grid]
    assert create_topics(kafka_broker, [grid, worker, worker], partitions=4, replication=1) == [worker]
    assert create_topics(kafka_broker, [grid, worker], partitions=4, replication=1) == []
    assert (partition_count(kafka_broker.bootstrap, grid), partition_count(kafka_broker.bootstrap, worker)) == (2, 4)


def test_created_topics_keep_every_record_whatever_the_brokers_default_retention(
    kafka_broker: Broker, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.retention"
    create_topics(kafka_broker, [topic], partitions=1, replication=1)
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap.split(","), client_id="test-retention")
    try:
        described = admin.describe_configs([ConfigResource("TOPIC", topic, ["retention.ms", "retention.bytes"])])
    finally:
        admin.close()
    [entries] = described["topic"].values()
    # Set on the topic itself (the local broker's own default is already "keep forever"; an operator's may not be).
    assert {key: (entries[key]["value"], entries[key]["config_source"]) for key in TOPIC_CONFIGS} == {
        key: (value, "DYNAMIC_TOPIC_CONFIG") for key, value in TOPIC_CONFIGS.items()
    }


def test_a_topic_the_cluster_cannot_replicate_is_refused_with_the_brokers_reason(
    kafka_broker: Broker, topic_prefix: str
) -> None:
    with pytest.raises(TopicsRefused, match=rf"refused to create: {topic_prefix}\.patrol \(.*replication factor"):
        create_topics(kafka_broker, [f"{topic_prefix}.patrol"], partitions=1, replication=50)


def test_an_external_broker_is_checked_but_never_stopped(kafka_broker: Broker) -> None:
    external = ExternalBroker(load_settings({}, kafka_provisioner="external", kafka_bootstrap=kafka_broker.bootstrap))
    assert external.up() == Broker(kafka_broker.bootstrap, "external")
    external.down()
    assert external.status() == Broker(kafka_broker.bootstrap, "external")


def test_kafka_settings_name_the_session_broker_and_topics_of_the_tests_own(
    kafka_settings: Callable[..., Settings], kafka_broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    settings = kafka_settings(tmp_path)
    assert (settings.mode, settings.kafka_topic_prefix, settings.data_dir) == ("kafka", topic_prefix, tmp_path)
    assert provisioner(settings).status() == Broker(kafka_broker.bootstrap, "external")


# -- local brokers of their own -----------------------------------------------------------------


def test_a_restarted_or_killed_local_broker_comes_back_on_its_address_with_its_records(
    own_broker: LocalBroker,
) -> None:
    first = own_broker.up()
    assert own_broker.status() == first == own_broker.up()
    create_topics(first, ["cases"], partitions=1, replication=1)
    produce(first.bootstrap, "cases", b"case-1", b"Reported")

    restarted = own_broker.restart()
    assert (restarted.bootstrap, restarted.cluster_id) == (first.bootstrap, first.cluster_id)
    assert restarted.pid != first.pid
    assert read_all(restarted.bootstrap, "cases") == [(b"case-1", b"Reported")]

    produce(restarted.bootstrap, "cases", b"case-1", b"Dispatched")
    assert restarted.pid is not None
    os.kill(restarted.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while own_broker.status() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert own_broker.status() is None

    recovered = own_broker.restart()
    assert recovered.bootstrap == first.bootstrap
    assert read_all(recovered.bootstrap, "cases") == [(b"case-1", b"Reported"), (b"case-1", b"Dispatched")]


def test_gridloop_kafka_up_status_and_down_through_the_console_script(tmp_path: Path, local_kafka_jars: Path) -> None:
    up = gridloop(tmp_path, "kafka", "up")
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip()
    host, port = bootstrap.split(":")
    try:
        status = gridloop(tmp_path, "kafka", "status")
        assert (status.returncode, status.stdout.strip()) == (0, bootstrap)
        assert gridloop(tmp_path, "kafka", "up").stdout.strip() == bootstrap, "up again finds the running broker"

        down = gridloop(tmp_path, "kafka", "down")
        assert down.returncode == 0, down.stderr
        after = gridloop(tmp_path, "kafka", "status")
        assert after.returncode == 1
        assert "no Kafka broker is up (local provisioner)" in after.stderr
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5).close()
        assert not (tmp_path / "kafka" / "broker.json").exists()
    finally:
        LocalBroker(load_settings(data_dir=tmp_path)).down()  # whatever an assertion left running


def test_a_local_broker_that_cannot_start_says_why_with_the_end_of_its_log(
    tmp_path: Path, local_kafka_jars: Path
) -> None:
    settings = load_settings(data_dir=tmp_path)
    data = settings.kafka_dir / "data"
    data.mkdir(parents=True)
    # The data of another node: Kafka refuses to start on it.
    (data / "meta.properties").write_text("version=1\nnode.id=2\ncluster.id=Lhe2nV5bRJ2OQ2yJjHD9xg\n")
    broker = LocalBroker(settings)
    with pytest.raises(BrokerUnavailable, match=r"(?s)exited while starting; the end of .*broker\.log:.*node id 2"):
        broker.up()
    assert broker.status() is None
    assert not (settings.kafka_dir / "broker.json").exists()
