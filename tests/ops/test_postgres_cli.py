"""`gridloop postgres` and the elected processes of mode distributed, through the real console script.

The relay's and the projection workers' multi-process behaviour with Kafka is tested in
tests/integration/test_distributed.py; here nothing needs a broker: the Kafka address given points
nowhere, so a relay that went on to ship would fail the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from ops.cli import main
from ops.config import Settings, load_settings
from ops.distributed import RELAY, SUPERVISE, leader_lock
from ops.postgres import LocalServer, Server
from tests.integration.processes import Child, wait_until
from tests.ops.test_cli import GRIDLOOP, gridloop

SECRET = "pa55-Not-To-Be-Shown"


@pytest.fixture(scope="module")
def deployment(postgres: Server) -> Iterator[dict[str, str]]:
    """The environment of a distributed deployment on the test server, in two schemas of its own."""
    schema = f"d_{uuid.uuid4().hex[:10]}"
    yield {
        "GRIDLOOP_MODE": "distributed",
        "GRIDLOOP_POSTGRES_PROVISIONER": "external",
        "GRIDLOOP_POSTGRES_HOST": postgres.host,
        "GRIDLOOP_POSTGRES_PORT": str(postgres.port),
        "GRIDLOOP_POSTGRES_SCHEMA": schema,
        "GRIDLOOP_POSTGRES_VIEWS_SCHEMA": f"{schema}_views",
        "GRIDLOOP_KAFKA_PROVISIONER": "external",
        "GRIDLOOP_KAFKA_BOOTSTRAP": "127.0.0.1:9",  # the discard port: no broker answers there
        "GRIDLOOP_LOG_FORMAT": "json",
        "GRIDLOOP_LOG_LEVEL": "info",
    }
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        for name in (schema, f"{schema}_views"):
            connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def settings_of(environ: Mapping[str, str]) -> Settings:
    return load_settings(dict(environ))


def terminate_holder(postgres: Server, key: int) -> int:
    """End the session holding advisory lock ``key`` (as a failover or an operator would); how many ended."""
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        return len(
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s",
                (key,),
            ).fetchall()
        )


def postgres_command(data_dir: Path, action: str) -> Result:
    """`gridloop --data-dir DATA postgres ACTION`, in this process (the console script's start-up costs seconds)."""
    return CliRunner(env={"GRIDLOOP_POSTGRES_PROVISIONER": "local"}).invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", "postgres", action]
    )


def test_postgres_up_status_and_down_with_the_local_provisioner() -> None:
    # Under /var/tmp: the postgres user must reach the cluster's directory (pytest's tmp_path is root's alone).
    data_dir = Path(tempfile.mkdtemp(prefix="gridloop-cli-pg-", dir="/var/tmp"))
    data_dir.chmod(0o755)
    try:
        before = postgres_command(data_dir, "status")
        assert before.exit_code == 1 and "gridloop postgres up" in before.stderr
        up = postgres_command(data_dir, "up")
        assert up.exit_code == 0, up.stderr
        address = up.stdout.strip().splitlines()[-1]
        assert address.startswith("postgres@127.0.0.1:") and address.endswith("/gridloop")
        assert postgres_command(data_dir, "status").stdout.strip() == address
        assert postgres_command(data_dir, "down").exit_code == 0
        assert postgres_command(data_dir, "status").exit_code == 1
    finally:
        LocalServer(data_dir / "postgres").down()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_password_is_never_printed(tmp_path: Path, deployment: dict[str, str]) -> None:
    wrong = {**deployment, "GRIDLOOP_POSTGRES_PORT": "9", "GRIDLOOP_POSTGRES_PASSWORD": SECRET}
    status = gridloop(tmp_path, "postgres", "status", env=wrong)
    assert status.returncode == 1 and "postgres@" in status.stderr and ":9/gridloop" in status.stderr
    refused = gridloop(tmp_path, "board", "--summary", env=wrong)
    assert refused.returncode != 0
    for done in (status, refused):
        assert SECRET not in done.stdout + done.stderr
    assert SECRET not in repr(settings_of(wrong))


@pytest.mark.parametrize(("role", "args", "words"), [
    (RELAY, ("relay",), "another relay is active (it holds the relay lock): nothing shipped"),
    (SUPERVISE, ("supervise",), "another `gridloop supervise` is active (it holds the supervise lock): nothing done"),
])  # fmt: skip
def test_a_one_shot_run_does_nothing_while_another_process_is_active(
    tmp_path: Path, deployment: dict[str, str], role: str, args: tuple[str, ...], words: str
) -> None:
    with leader_lock(settings_of(deployment), role) as active:
        assert active.try_acquire()
        done = gridloop(tmp_path, *args, env=deployment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == words


def test_a_standby_supervisor_takes_over_and_stops_when_its_session_ends(
    tmp_path: Path, postgres: Server, deployment: dict[str, str]
) -> None:
    assert GRIDLOOP
    settings = settings_of(deployment)
    log = tmp_path / "supervise.log"
    args = (GRIDLOOP, "--data-dir", str(tmp_path), "supervise", "--follow", "--every", "0.2", "--json")
    with leader_lock(settings, SUPERVISE) as active, log.open("w") as output:
        assert active.try_acquire()
        process = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, text=True, env={**os.environ, **deployment}
        )
        child = Child(process, log, args)
        try:
            standby = child.wait_for("supervise_standby")
            assert standby["pid"] == process.pid and not child.events("supervise_active")
            active.release()  # the active one goes: the standby takes over at its next try
            assert child.wait_for("supervise_active")["pid"] == process.pid
            rounds = _rounds(child, 2)
            assert all(r["policy_refusals"] == [] for r in rounds)
            assert terminate_holder(postgres, active.key) == 1
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                child.kill()
    assert status != 0
    assert "error: the supervise lock's session to PostgreSQL ended" in log.read_text()


def _rounds(child: Child, count: int) -> list[dict[str, object]]:
    """The first ``count`` rounds the supervisor printed (its --json lines), once it has printed them."""

    def printed() -> list[dict[str, object]]:
        return [json.loads(line) for line in child.log.read_text().splitlines() if line.startswith('{"now"')]

    wait_until(f"{count} rounds of the supervisor", lambda: len(printed()) >= count or child.process.poll() is not None)
    assert len(printed()) >= count, child.tail()
    return printed()[:count]


def test_views_fed_from_kafka_are_rebuilt_by_the_workers_not_by_a_blue_green_swap(
    tmp_path: Path, deployment: dict[str, str]
) -> None:
    done = gridloop(tmp_path, "rebuild", "all", env=deployment)
    assert done.returncode == 2
    assert "mode distributed: the views track Kafka offsets" in done.stderr
    assert "gridloop project --rebuild VIEW|all" in done.stderr
