"""Broker provisioning without a broker: the jar cache, the provisioner chosen, errors that say what is missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ops.config import Settings, load_settings
from ops.kafka_broker import (
    FETCHED_MARKER,
    BrokerUnavailable,
    ContainerBroker,
    ExternalBroker,
    LocalBroker,
    fetch_jars,
    provisioner,
)

FAKE_MVN = """#!/bin/sh
# Stands in for Maven: counts its runs, then copies two "jars" into -DoutputDirectory (or fails when told to).
echo run >> "{runs}"
if [ -n "{fail}" ]; then echo "[ERROR] Could not resolve dependencies for project local.gridloop"; exit 1; fi
for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac; done
mkdir -p "$out" && touch "$out/kafka_2.13-9.9.9.jar" "$out/kafka-clients-9.9.9.jar"
"""


def settings_with_cache(tmp_path: Path) -> Settings:
    return load_settings({}, data_dir=tmp_path / "var", kafka_cache_dir=tmp_path / "cache", kafka_version="9.9.9")


def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> Path:
    """Put a stand-in `mvn` first on PATH; returns the file that records each of its runs."""
    bin_dir, runs = tmp_path / "bin", tmp_path / "mvn-runs"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text(FAKE_MVN.format(runs=runs, fail="yes" if fail else ""))
    (bin_dir / "mvn").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return runs


@contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but refuses every connection."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_the_jars_are_fetched_once_into_the_cache_and_marked_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = fake_maven(tmp_path, monkeypatch)
    settings = settings_with_cache(tmp_path)
    libs = fetch_jars(settings)
    assert libs == tmp_path / "cache" / "9.9.9" / "libs"
    assert sorted(p.name for p in libs.iterdir()) == ["kafka-clients-9.9.9.jar", "kafka_2.13-9.9.9.jar"]
    assert json.loads((libs.parent / FETCHED_MARKER).read_text())["version"] == "9.9.9"
    assert not list(libs.parent.glob("fetching-*")), "the download folder is renamed into place, not left behind"
    assert fetch_jars(settings) == libs
    assert runs.read_text().count("run") == 1


def test_fetching_is_a_no_op_when_the_marker_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with_cache(tmp_path)
    libs = settings.kafka_cache_dir / "9.9.9" / "libs"
    libs.mkdir(parents=True)
    (libs.parent / FETCHED_MARKER).write_text("{}")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no mvn: any attempt to fetch would fail
    assert fetch_jars(settings) == libs


def test_jars_without_the_marker_are_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = fake_maven(tmp_path, monkeypatch)
    settings = settings_with_cache(tmp_path)
    half_done = settings.kafka_cache_dir / "9.9.9" / "libs"
    half_done.mkdir(parents=True)
    (half_done / "truncated.jar").write_bytes(b"PK")
    libs = fetch_jars(settings)
    assert runs.read_text().count("run") == 1
    assert "truncated.jar" not in {p.name for p in libs.iterdir()}


def test_a_failed_fetch_repeats_what_maven_said_and_leaves_no_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_maven(tmp_path, monkeypatch, fail=True)
    settings = settings_with_cache(tmp_path)
    with pytest.raises(BrokerUnavailable, match=r"(?s)mvn could not fetch .*kafka_2.13:9.9.9.*Could not resolve"):
        fetch_jars(settings)
    assert not (settings.kafka_cache_dir / "9.9.9" / "libs").exists()
    assert not (settings.kafka_cache_dir / "9.9.9" / FETCHED_MARKER).exists()


def test_without_maven_the_fetch_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(BrokerUnavailable, match=r"mvn not found on PATH: install Maven"):
        fetch_jars(settings_with_cache(tmp_path))


def test_without_java_the_local_broker_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with_cache(tmp_path)
    (settings.kafka_cache_dir / "9.9.9" / "libs").mkdir(parents=True)
    (settings.kafka_cache_dir / "9.9.9" / FETCHED_MARKER).write_text("{}")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerUnavailable, match=r"java not found \(JAVA_HOME or PATH\)"):
        LocalBroker(settings).up()


def test_a_local_broker_whose_process_is_gone_is_down_and_its_state_is_cleared(tmp_path: Path) -> None:
    settings = settings_with_cache(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    settings.kafka_dir.mkdir(parents=True)
    state = {"pid": gone.pid, "port": 9, "controller_port": 9, "cluster_id": "x"}
    (settings.kafka_dir / "broker.json").write_text(json.dumps(state))
    broker = LocalBroker(settings)
    assert broker.status() is None
    broker.down()
    assert not (settings.kafka_dir / "broker.json").exists()


def test_the_provisioner_is_the_one_the_settings_name(tmp_path: Path) -> None:
    chosen = {
        kind: type(provisioner(load_settings({}, data_dir=tmp_path, kafka_provisioner=kind, kafka_bootstrap="h:1")))
        for kind in ("local", "container", "external")
    }
    assert chosen == {"local": LocalBroker, "container": ContainerBroker, "external": ExternalBroker}


def test_the_container_broker_says_when_testcontainers_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers.kafka", None)  # makes the import fail, installed or not
    with pytest.raises(BrokerUnavailable, match=r"testcontainers not installed"):
        ContainerBroker(load_settings({}, data_dir=tmp_path)).up()


def test_the_container_broker_says_when_no_docker_engine_is_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(BrokerUnavailable, match=rf"no Docker engine reachable at unix://{tmp_path}/docker.sock"):
        ContainerBroker(load_settings({}, data_dir=tmp_path)).up()


def test_an_external_broker_nobody_answers_for_is_unavailable(tmp_path: Path) -> None:
    with socket_nobody_listens_on() as port:
        settings = load_settings({}, kafka_provisioner="external", kafka_bootstrap=f"127.0.0.1:{port}")
        external = ExternalBroker(settings, timeout=1.0)
        assert external.status() is None
        with pytest.raises(BrokerUnavailable, match=rf"no Kafka broker answered at '127.0.0.1:{port}'"):
            external.up()
