"""Configuration: defaults, environment, file, and a clear message for every wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.config import ConfigError, Settings, load_settings


def test_defaults_put_the_stores_under_var() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.event_store_path == Path("var/events.sqlite")
    assert settings.event_store_env()["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"


def test_environment_overrides_the_file_and_arguments_override_both(tmp_path: Path) -> None:
    config = tmp_path / "gridloop.toml"
    config.write_text('[gridloop]\ndata_dir = "/srv/a"\nlog_level = "debug"\nread_wait_seconds = 1.5\n')
    settings = load_settings({"GRIDLOOP_CONFIG": str(config), "GRIDLOOP_LOG_LEVEL": "warning"}, data_dir=Path("/b"))
    assert (settings.data_dir, settings.log_level, settings.read_wait_seconds) == (Path("/b"), "warning", 1.5)


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"GRIDLOOP_MODE": "distributed"}, "mode: 'distributed' is not available; allowed: embedded"),
        ({"GRIDLOOP_LOG_LEVEL": "loud"}, "log_level: 'loud'; allowed: debug, info, warning, error"),
        ({"GRIDLOOP_READ_WAIT_SECONDS": "soon"}, "read_wait_seconds: 'soon' is not a float"),
        ({"GRIDLOOP_READ_WAIT_SECONDS": "0"}, "read_wait_seconds: 0.0; allowed: more than 0"),
        ({"GRIDLOOP_CONFIG": "/nonexistent.toml"}, "GRIDLOOP_CONFIG: /nonexistent.toml is not a file"),
        ({"GRIDLOOP_KAFKA_PROVISIONER": "docker"}, "kafka_provisioner: 'docker'; allowed: local, container, external"),
        ({"GRIDLOOP_KAFKA_PROVISIONER": "external"}, "kafka_bootstrap: needed when kafka_provisioner is external"),
        ({"GRIDLOOP_KAFKA_BOOTSTRAP": "broker.example"}, "kafka_bootstrap: 'broker.example'; allowed: host:port"),
        ({"GRIDLOOP_KAFKA_BOOTSTRAP": "a:9092,b"}, "kafka_bootstrap: 'a:9092,b'; allowed: host:port"),
        ({"GRIDLOOP_KAFKA_VERSION": "latest"}, "kafka_version: 'latest'; allowed: an Apache Kafka release"),
        ({"GRIDLOOP_KAFKA_PARTITIONS": "0"}, "kafka_partitions: 0; allowed: 1 to 1000"),
        ({"GRIDLOOP_KAFKA_REPLICATION": "all"}, "kafka_replication: 'all' is not a int"),
    ],
)
def test_a_wrong_value_is_named_with_what_is_allowed(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ)


def test_an_external_cluster_is_named_by_its_bootstrap_addresses() -> None:
    settings = load_settings(
        {"GRIDLOOP_KAFKA_PROVISIONER": "external", "GRIDLOOP_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092"}
    )
    assert (settings.kafka_provisioner, settings.kafka_bootstrap) == ("external", "kafka-1:9092,kafka-2:9092")


def test_the_local_broker_keeps_its_data_under_the_data_dir_and_its_jars_outside(tmp_path: Path) -> None:
    settings = load_settings({"GRIDLOOP_KAFKA_CACHE_DIR": str(tmp_path / "jars")}, data_dir=tmp_path / "var")
    assert settings.kafka_dir == tmp_path / "var" / "kafka"
    assert settings.kafka_cache_dir == tmp_path / "jars"


def test_an_unknown_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gridloop.toml"
    config.write_text('[gridloop]\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="colour: not a setting; known settings: data_dir"):
        load_settings({"GRIDLOOP_CONFIG": str(config)})
