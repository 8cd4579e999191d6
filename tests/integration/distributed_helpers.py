"""What the distributed mode's tests share: a schema pair on PostgreSQL, a deployment on it, a workload, views read."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.kafka import Record
from ops.postgres import Server
from ops.sample import GRID, district_commands
from projections.projection import Projection
from projections.runner import EmbeddedRunner
from projections.store_postgres import PostgresViewStore
from projections.views import VIEW_NAMES, VIEWS, default_projections
from tests.conftest import pg_env
from tests.integration.kafka_helpers import Deployment, assert_log_matches_the_store

WORKER = "W140827100001001"
"""The sample grid's one grid worker: every case of the workload is dispatched to it."""
UNIT = "140827100001"
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
"""A Monday morning in Yuanqu (09:00 local): when the workload's clock starts."""


@dataclass(frozen=True)
class Schemas:
    """The two schemas of one distributed deployment on a server: its event store's and its views'."""

    events: str
    views: str


@contextmanager
def schema_pair(server: Server, count: int = 2) -> Iterator[list[str]]:
    """``count`` fresh schemas of the server's database for one test, dropped afterwards whatever they hold."""
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        for name in names:
            connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield names
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as connection:
            # A process killed mid-transaction leaves its backend until PostgreSQL notices; it holds locks.
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = %s AND state LIKE 'idle in transaction%%'",
                (server.dbname,),
            )
            for name in names:
                connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


# -- the event store and its workload -------------------------------------------------------------


def open_pg_store(server: Server, schema: str, clock: ManualClock | None = None) -> Gridloop:
    """The application over the event store in ``schema`` (tables created if missing)."""
    return Gridloop(pg_env(server, schema), clock=clock)


def set_up(app: Gridloop) -> None:
    """The sample district (垣曲县 → 新城镇 → 东峰山社区 → one grid) and its grid worker, on duty."""
    for command in [
        *district_commands(),
        c.EnrollWorker(
            command_id="enroll-w",
            actor="admin",
            code=WORKER,
            worker_name="张三",
            role="grid_worker",
            unit=UNIT,
            grid=GRID,
        ),
        c.SetDuty(command_id="duty-w", actor="admin", worker=WORKER, on_duty=True),
    ]:
        app.execute(command)


def work(app: Gridloop, clock: ManualClock, cases: int, tag: str, halfway: threading.Event | None = None) -> list[UUID]:
    """Run ``cases`` cases round the loop (report, register, dispatch, accept; every other one handled and
    verified, every third one escalated), one minute apart; returns their ids. Sets ``halfway`` when half of
    them are done, so a test can kill a process while the other half is being written."""
    ids = []
    for n in range(cases):
        if halfway is not None and n == cases // 2:
            halfway.set()
        case_id = app.execute(
            c.ReportCase(
                command_id=f"{tag}-r{n}",
                actor="resident:1",
                source="resident",
                category="C0101",
                grid=GRID,
                description=f"井盖缺失 {tag} {n}",
                lon=111.67,
                lat=35.30,
            )
        ).aggregate_id
        steps: list[c.Command] = [
            c.RegisterCase(command_id=f"{tag}-g{n}", actor="desk:140827", case_id=case_id),
            c.DispatchCase(
                command_id=f"{tag}-d{n}", actor="desk:140827", case_id=case_id, worker=WORKER, reason="本网格"
            ),
            c.AcceptCase(command_id=f"{tag}-a{n}", actor=WORKER, case_id=case_id),
        ]
        if n % 2 == 0:
            steps += [
                c.ReportHandling(command_id=f"{tag}-h{n}", actor=WORKER, case_id=case_id, result="已补齐井盖"),
                c.VerifyCase(command_id=f"{tag}-v{n}", actor="desk:140827", case_id=case_id, passed=True),
            ]
        elif n % 3 == 0:
            steps.append(
                c.EscalateCase(command_id=f"{tag}-e{n}", actor="sup:1", case_id=case_id, level=2, reason="群众催办")
            )
        for step in steps:
            app.execute(step)
        clock.advance(timedelta(minutes=1))
        ids.append(case_id)
    return ids


def seeded_store(server: Server, schema: str, cases: int) -> tuple[int, ManualClock]:
    """Set the district up and run ``cases`` cases into the store in ``schema``; returns its last position and
    the clock, which later writers go on from."""
    clock = ManualClock(T0)
    app = open_pg_store(server, schema, clock)
    try:
        set_up(app)
        work(app, clock, cases, "seed")
        return app.recorder.max_notification_id() or 0, clock
    finally:
        app.close()


def more_work(
    server: Server, schema: str, clock: ManualClock, cases: int, tag: str, halfway: threading.Event | None = None
) -> None:
    """More cases, from another process's point of view (a connection of its own): the load during a kill."""
    app = open_pg_store(server, schema, clock)
    try:
        work(app, clock, cases, tag, halfway)
    finally:
        app.close()


def last_position(server: Server, schema: str) -> int:
    app = open_pg_store(server, schema)
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


# -- a deployment in mode distributed -------------------------------------------------------------


@dataclass(frozen=True)
class DistributedDeployment(Deployment):
    """A deployment in mode distributed: its event store and views in two schemas of one PostgreSQL server,
    its topics and group on a broker. ``data_dir`` holds only the logs and the token file."""

    server: Server
    schemas: Schemas

    @classmethod
    def on(cls, tmp_path: Path, bootstrap: str, server: Server, schemas: Schemas) -> DistributedDeployment:
        data_dir = tmp_path / "var"
        data_dir.mkdir(parents=True)
        prefix = f"it{uuid.uuid4().hex[:12]}"
        return cls(data_dir, bootstrap, prefix, f"{prefix}-views", server, schemas)

    def _kafka_mode(self) -> dict[str, str]:
        """The kafka mode's settings of this deployment, in mode distributed, with its PostgreSQL schemas."""
        return {
            **super()._kafka_mode(),
            "mode": "distributed",
            "postgres_provisioner": "external",
            "postgres_host": self.server.host,
            "postgres_port": str(self.server.port),
            "postgres_user": self.server.user,
            "postgres_password": self.server.password,
            "postgres_dbname": self.server.dbname,
            "postgres_schema": self.schemas.events,
            "postgres_views_schema": self.schemas.views,
        }

    def last_position(self) -> int:
        return last_position(self.server, self.schemas.events)

    def committed(self) -> int:
        """The highest position committed on the event topics; 0 before a relay has created them."""
        try:
            return super().committed()
        except LookupError:
            return 0

    def assert_exactly_once(self, records: list[Record]) -> None:
        """The read-committed records hold each event of the PostgreSQL store once, in per-aggregate order."""
        app = open_pg_store(self.server, self.schemas.events)
        try:
            assert_log_matches_the_store(records, app, self.topics)
        finally:
            app.close()


# -- the views on PostgreSQL ----------------------------------------------------------------------


def tracking_positions(server: Server, schema: str, names: Sequence[str]) -> dict[str, int]:
    """The views' tracking positions in ``schema`` (0 for a name not there yet), read as they stand: the
    workers create the tables, never the test (two creators of one table race on PostgreSQL)."""
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        rows = connection.execute(
            f"SELECT application_name, notification_id FROM {schema}.tracking WHERE application_name = ANY(%s)",
            (list(names),),
        ).fetchall()
    found = {str(name): int(position) for name, position in rows}
    return {name: found.get(name, 0) for name in names}


def caught_up(server: Server, schema: str, ends: Mapping[tuple[str, int], int]) -> bool:
    """Whether every view in ``schema`` has read every partition of ``ends`` to its last record."""
    names = {f"{view}@{topic}:{partition}": end for (topic, partition), end in ends.items() for view in VIEW_NAMES}
    try:
        found = tracking_positions(server, schema, list(names))
    except psycopg.errors.UndefinedTable:  # no worker has created the views yet
        return False
    return all(found[name] >= end for name, end in names.items())


def fold_from_the_store(server: Server, events: str, into: str) -> None:
    """Fold the event store in ``events`` into fresh views in ``into`` with the embedded runner: what the views the
    workers built from Kafka must equal."""
    app = open_pg_store(server, events)
    store = PostgresViewStore.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=server.dbname,
        schema=into,
        views=VIEWS,
    )
    try:
        EmbeddedRunner(
            app.recorder, app.mapper, store, default_projections(app.catalogue, app.calendar)
        ).run_until_caught_up()
    finally:
        store.close()
        app.close()


def pg_view_rows(server: Server, schema: str, view: type[Projection]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of one view in ``schema``, table by table, in canonical order (its tables' key columns)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(server.dsn) as connection:
        for table in sorted(view.tables, key=lambda t: t.name):
            found = connection.execute(f"SELECT * FROM {schema}.{table.name} ORDER BY {', '.join(table.key)}")
            rows[table.name] = [tuple(row) for row in found.fetchall()]
    return rows


def assert_same_pg_views(server: Server, ours: str, theirs: str) -> dict[str, int]:
    """Every view in schema ``ours`` equals the one in ``theirs``, row for row; returns the rows per view.table."""
    sizes = {}
    for view in VIEWS:
        mine, wanted = pg_view_rows(server, ours, view), pg_view_rows(server, theirs, view)
        for table in wanted:
            if mine[table] != wanted[table]:
                only_ours = sorted(set(map(repr, mine[table])) - set(map(repr, wanted[table])))
                only_theirs = sorted(set(map(repr, wanted[table])) - set(map(repr, mine[table])))
                pytest.fail(
                    f"{view.name}.{table}: {len(mine[table])} rows from the workers, {len(wanted[table])} folded "
                    f"from the store; only the workers': {only_ours[:3]}; only the fold's: {only_theirs[:3]}"
                )
        sizes.update({f"{view.name}.{table}": len(found) for table, found in mine.items()})
    return sizes
