"""The Kafka benchmarks still run on a real broker (tiny sizes; speed is measured by `make bench`, never asserted)."""

from __future__ import annotations

from pathlib import Path

from ops.bench import markdown
from ops.bench.kafka import bench_broker, kafka_paths
from ops.config import load_settings
from ops.kafka_broker import Broker, ExternalBroker


def test_the_relay_and_the_kafka_runner_are_measured_against_raw_clients_on_the_same_records(
    kafka_broker: Broker,
) -> None:
    results = kafka_paths(kafka_broker, 120, 1)
    relay_target, relay_plain, projection = results
    assert relay_target.items == relay_plain.items > projection.items > 0, "the views read no command receipts"
    for m in results:
        assert m.gridloop_per_s > 0 and m.baseline_per_s > 0
    assert "engine/relay.py" in relay_target.profile and "ship_all" in relay_target.profile
    assert "projections/kafka_runner.py" in projection.profile and "catch_up" in projection.profile
    table = markdown(results)
    assert table.count("\n| ") == len(results) + 1  # header + one row each
    assert table.count("```") == 4  # the two profiles


def test_the_bench_uses_the_configured_cluster_and_leaves_it_running(kafka_broker: Broker) -> None:
    settings = load_settings({}, kafka_bootstrap=kafka_broker.bootstrap)
    with bench_broker(settings) as broker:
        assert (broker.bootstrap, broker.provisioner) == (kafka_broker.bootstrap, "external")
    with bench_broker(settings) as broker:  # still there
        assert broker.bootstrap == kafka_broker.bootstrap


def test_without_a_configured_cluster_the_bench_starts_a_broker_of_its_own_and_stops_it(
    tmp_path: Path, local_kafka_jars: Path
) -> None:
    settings = load_settings({}, data_dir=tmp_path / "not-used")
    with bench_broker(settings) as broker:
        assert broker.provisioner == "local"
        assert _answers(broker.bootstrap)
    assert not _answers(broker.bootstrap)
    assert not (tmp_path / "not-used").exists(), "the bench's broker keeps its data in a directory of its own"


def _answers(bootstrap: str) -> bool:
    return (
        ExternalBroker(load_settings({}, kafka_provisioner="external", kafka_bootstrap=bootstrap), 3.0).status()
        is not None
    )
