"""Configuration: defaults, environment, file, and a clear message for every wrong value."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path

import pytest

from engine.dispatch import POLICIES
from engine.policies import NO_POLICY
from engine.working_time import CHINA
from ops.config import DISPATCH_POLICIES, ConfigError, Settings, load_settings
from ops.postgres import PostgresUnavailable
from ops.runtime import working_calendar


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
        ({"GRIDLOOP_MODE": "cluster"}, "mode: 'cluster' is not available; allowed: embedded, kafka, distributed"),
        ({"GRIDLOOP_POSTGRES_PROVISIONER": "docker"}, "postgres_provisioner: 'docker'; allowed: local, external"),
        ({"GRIDLOOP_POSTGRES_PORT": "0"}, "postgres_port: 0; allowed: 1 to 65535"),
        ({"GRIDLOOP_POSTGRES_HOST": "db 1"}, "postgres_host: 'db 1'; allowed: a host name or address"),
        ({"GRIDLOOP_POSTGRES_USER": ""}, "postgres_user: ''; allowed: a PostgreSQL name of 1 to 63 characters"),
        ({"GRIDLOOP_POSTGRES_SCHEMA": "Events"}, "postgres_schema: 'Events'; allowed: a lower-case identifier"),
        ({"GRIDLOOP_POSTGRES_VIEWS_SCHEMA": "1v"}, "postgres_views_schema: '1v'; allowed: a lower-case identifier"),
        ({"GRIDLOOP_POSTGRES_VIEWS_SCHEMA": "gridloop"}, "postgres_views_schema: 'gridloop' is the event store's"),
        ({"GRIDLOOP_POSTGRES_POOL_SIZE": "0"}, "postgres_pool_size: 0; allowed: 1 to 100"),
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
        ({"GRIDLOOP_DISPATCH_POLICY": "random"}, "dispatch_policy: 'random'; allowed: balanced, grid-owner, none"),
        ({"GRIDLOOP_SUPERVISE": "sometimes"}, "supervise: 'sometimes' is not a bool; allowed: true or false"),
        ({"GRIDLOOP_CALENDAR": "gregorian"}, "calendar: 'gregorian'; allowed: china, weekdays, every-day"),
        ({"GRIDLOOP_WORKING_HOURS": "9-5"}, "working_hours: '9-5'; allowed: HH:MM-HH:MM"),
        ({"GRIDLOOP_WORKING_HOURS": "17:30-08:30"}, "working_hours: '17:30-08:30'; allowed: HH:MM-HH:MM, the start"),
        ({"GRIDLOOP_WORKING_HOURS": "08:30-24:30"}, "working_hours: '08:30-24:30'; allowed"),
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


def distributed(**environ: str) -> Settings:
    return load_settings({"GRIDLOOP_MODE": "distributed", **environ})


def test_distributed_mode_stores_events_in_the_configured_schema_of_an_external_server() -> None:
    settings = distributed(
        GRIDLOOP_POSTGRES_PROVISIONER="external",
        GRIDLOOP_POSTGRES_HOST="DB-1.example",
        GRIDLOOP_POSTGRES_PORT="6432",
        GRIDLOOP_POSTGRES_USER="Gridloop",
        GRIDLOOP_POSTGRES_PASSWORD=" Mixed Case ",
        GRIDLOOP_POSTGRES_SCHEMA="events_a",
        GRIDLOOP_POSTGRES_POOL_SIZE="3",
    )
    assert settings.views_follow_kafka and settings.uses_postgres
    assert settings.event_store_env() == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "gridloop",
        "POSTGRES_HOST": "db-1.example",
        "POSTGRES_PORT": "6432",
        "POSTGRES_USER": "Gridloop",  # PostgreSQL names and the password keep their case (and the password its spaces)
        "POSTGRES_PASSWORD": " Mixed Case ",
        "POSTGRES_SCHEMA": "events_a",
        "POSTGRES_POOL_SIZE": "3",
        "POSTGRES_MAX_OVERFLOW": "3",
    }
    assert settings.postgres_views_schema == "gridloop_views"
    assert "Mixed Case" not in repr(settings) and "postgres_password" not in repr(settings)


def test_the_views_follow_kafka_in_every_mode_but_the_embedded_one() -> None:
    assert [load_settings({"GRIDLOOP_MODE": m}).views_follow_kafka for m in ("embedded", "kafka", "distributed")] == [
        False,
        True,
        True,
    ]
    assert [load_settings({"GRIDLOOP_MODE": m}).uses_postgres for m in ("embedded", "kafka")] == [False, False]


def test_a_local_postgres_that_is_not_up_is_named_with_how_to_start_it(tmp_path: Path) -> None:
    settings = load_settings({"GRIDLOOP_MODE": "distributed"}, data_dir=tmp_path)
    assert settings.postgres_dir == tmp_path / "postgres"
    with pytest.raises(
        PostgresUnavailable, match=r"no PostgreSQL server is up in .* start it with `gridloop postgres up`"
    ):
        settings.event_store_env()


def test_an_unknown_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gridloop.toml"
    config.write_text('[gridloop]\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="colour: not a setting; known settings: data_dir"):
        load_settings({"GRIDLOOP_CONFIG": str(config)})


def test_dispatch_and_supervision_default_to_the_balanced_policy_and_the_mainland_calendar() -> None:
    settings = load_settings({})
    assert (settings.dispatch_policy, settings.supervise, settings.calendar) == ("balanced", True, "china")
    assert settings.working_day == (time(8, 30), time(17, 30))


def test_the_configurable_dispatch_policies_are_the_engines_and_none() -> None:
    assert set(DISPATCH_POLICIES) == {*POLICIES, NO_POLICY}


def test_the_file_switches_the_supervisor_off_and_sets_the_working_hours(tmp_path: Path) -> None:
    config = tmp_path / "gridloop.toml"
    config.write_text('[gridloop]\nsupervise = false\ndispatch_policy = "grid-owner"\nworking_hours = "09:00-18:00"\n')
    settings = load_settings({"GRIDLOOP_CONFIG": str(config)})
    assert (settings.supervise, settings.dispatch_policy) == (False, "grid-owner")
    assert settings.working_day == (time(9), time(18))
    assert load_settings({"GRIDLOOP_SUPERVISE": "yes"}).supervise is True


@pytest.mark.parametrize(
    ("calendar", "day", "working"),
    [
        ("china", date(2026, 10, 1), False),  # National Day
        ("china", date(2026, 10, 10), True),  # a Saturday worked for the National Day week (调休)
        ("china", date(2026, 11, 23), True),  # an ordinary Monday
        ("weekdays", date(2026, 10, 1), True),  # no holiday table
        ("weekdays", date(2026, 10, 10), False),
        ("every-day", date(2026, 11, 22), True),  # a Sunday
    ],
)
def test_the_configured_calendar_decides_which_days_are_working_days(calendar: str, day: date, working: bool) -> None:
    assert working_calendar(load_settings({"GRIDLOOP_CALENDAR": calendar})).is_workday(day) is working


def test_the_configured_working_hours_bound_the_working_day() -> None:
    calendar = working_calendar(load_settings({"GRIDLOOP_WORKING_HOURS": "09:00-18:00"}))
    monday = date(2026, 11, 23)
    assert not calendar.is_working(datetime.combine(monday, time(8, 45), CHINA))
    assert calendar.is_working(datetime.combine(monday, time(17, 45), CHINA))
