"""`gridloop chaos`: SIGKILL the relay, a projection worker or the broker under load, restart it, then check.

A run owns a local broker (in its data directory, reused across trials) and gives each trial a store, topics and
a consumer group of its own, so that one trial's counts are that trial's. The faults are real: child processes
and the broker's JVM are sent SIGKILL at a moment chosen by a seeded generator (after the k-th acknowledged
command), so a run is repeatable in what it does, if not in where the kill lands inside the machinery.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import click
from kafka import KafkaProducer

from engine.application import Gridloop
from engine.clock import ManualClock
from engine.commands import RegisterCase, ReportCase
from engine.kafka import Topics, client_config
from ops.chaos_checks import (
    Hung,
    StoredEvent,
    caught_up,
    check_log,
    missing_receipts,
    read_topics,
    unequal_views,
)
from ops.chaos_processes import Children
from ops.cli_support import fail_cleanly, out
from ops.config import Settings, load_settings
from ops.kafka_broker import LocalBroker
from ops.runtime import dead_letters, ensure_topics
from ops.sample import GRID, set_up_district
from projections.kafka_runner import followed_topics
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import VIEW_NAMES, default_projections

TARGETS = ("relay", "worker", "broker")
CATCH_UP_GUARD = 120.0
"""How long a trial may take to catch up after its fault before it is called hung (a guard, not a measure)."""
START = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
"""The domain time of the first command of every trial (a manual clock: the same commands give the same events)."""


@dataclass
class Trial:
    """One trial's plan and what its checks counted."""

    number: int
    target: str
    kill_after: int
    commands: int
    poison: int
    acknowledged: int = 0
    missing_receipts: int = 0
    events: int = 0
    on_kafka: int = 0
    duplicates: int = 0
    missing_on_kafka: int = 0
    reorderings: int = 0
    views_equal: int = 0
    views: int = len(VIEW_NAMES)
    dead_letters: int = 0
    restarts: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.acknowledged == self.commands
            and not self.missing_receipts
            and (
                self.on_kafka == self.events
                and not (self.duplicates or self.missing_on_kafka or self.reorderings)
                and self.views_equal == self.views
                and self.dead_letters == self.poison
            )
        )


class Run:
    """A chaos run: its directory, its broker and a district store every trial starts from."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker = LocalBroker(load_settings({}, data_dir=root / "broker", kafka_provisioner="local"))
        self.bootstrap = self.broker.up().bootstrap
        self.base = root / "district.sqlite"
        self.name = uuid.uuid4().hex[:8]
        self.session_timeout_ms = 6_000
        """The shortest session the workers allow: a killed worker's partitions move to its peer sooner."""
        app = _open(self.base, ManualClock(START))
        try:
            set_up_district(app)
        finally:
            app.close()

    def settings(self, data_dir: Path, prefix: str) -> dict[str, Any]:
        return {
            "mode": "kafka",
            "kafka_provisioner": "external",
            "kafka_bootstrap": self.bootstrap,
            "kafka_topic_prefix": prefix,
            "kafka_group": f"{prefix}-views",
            "relay_transactional_id": f"{prefix}-relay",
            "kafka_session_timeout_ms": self.session_timeout_ms,
            "data_dir": data_dir,
        }

    def trial(self, trial: Trial) -> Trial:
        """Run one trial and fill in its counts; an error (a hang, a child that keeps dying) is recorded, not raised."""
        started = time.monotonic()
        folder = self.root / f"trial-{trial.number:03d}"
        folder.mkdir(parents=True)
        shutil.copyfile(self.base, folder / "events.sqlite")
        values = self.settings(folder, f"chaos{self.name}t{trial.number}")
        settings = load_settings({}, **values)
        children = Children(folder, values)
        try:
            ensure_topics(settings)
            _poison(self.bootstrap, Topics(settings.kafka_topic_prefix), trial.poison)
            acknowledged: dict[int, UUID] = {}
            children.start("relay")
            children.start("worker", "0")
            children.start("worker", "1")
            writer = Writer(folder / "events.sqlite", trial, acknowledged)
            writer.kill_moment.wait(CATCH_UP_GUARD)
            self._kill(trial.target, children)
            writer.join()
            trial.acknowledged = len(acknowledged)
            self._catch_up(settings, folder, children)
            trial.restarts = children.restarts
            children.stop()
            self._check(trial, settings, folder, acknowledged)
        except Exception as exc:  # a hung catch-up, a child that keeps dying, a client error: the trial failed
            trial.error = f"{type(exc).__name__}: {exc}"[-500:]
        finally:
            children.kill_all()
            trial.seconds = round(time.monotonic() - started, 2)
        return trial

    def _kill(self, target: str, children: Children) -> None:
        if target == "broker":
            state = self.broker.status()
            if state is None or state.pid is None:
                raise RuntimeError("the broker was not running at the kill moment")
            os.kill(state.pid, signal.SIGKILL)
            self.broker.restart()
        else:
            children.kill_and_restart("relay" if target == "relay" else "worker-0")

    def _catch_up(self, settings: Settings, folder: Path, children: Children) -> None:
        """Wait until Kafka holds the whole store and both views have read it; restart a child that exits."""
        last = _max_position(folder / "events.sqlite")
        topics = Topics(settings.kafka_topic_prefix).event_topics
        followed = set(followed_topics(default_projections(), Topics(settings.kafka_topic_prefix)))
        deadline = time.monotonic() + CATCH_UP_GUARD
        while time.monotonic() < deadline:
            children.revive()
            records = read_topics(self.bootstrap, topics)
            shipped = max((int(r.headers.get("position", 0)) for r in records), default=0)
            if shipped >= last and caught_up(settings.view_store_path, [r for r in records if r.topic in followed]):
                return
            time.sleep(0.5)
        raise Hung(f"the trial did not catch up within {CATCH_UP_GUARD} s; {children.tails()}")

    def _check(self, trial: Trial, settings: Settings, folder: Path, acknowledged: dict[int, UUID]) -> None:
        app = _open(folder / "events.sqlite")
        try:
            last = app.recorder.max_notification_id() or 0
            stored = [
                StoredEvent(n.id, UUID(str(n.originator_id)), n.originator_version)
                for n in app.recorder.select_notifications(start=1, limit=last + 1)
            ]
            rebuilt = ViewStore.open(folder / "rebuilt.sqlite")
            EmbeddedRunner(app.recorder, app.mapper, rebuilt, default_projections(app.catalogue)).run_until_caught_up()
        finally:
            app.close()
        trial.missing_receipts = missing_receipts(acknowledged, stored)
        log = check_log(read_topics(self.bootstrap, Topics(settings.kafka_topic_prefix).event_topics), stored)
        trial.events, trial.on_kafka, trial.duplicates = log.stored, log.on_kafka, log.duplicates
        trial.missing_on_kafka, trial.reorderings = log.missing + log.unknown, log.reorderings
        live = ViewStore.open(settings.view_store_path)
        try:
            trial.views_equal = len(VIEW_NAMES) - len(unequal_views(live, rebuilt))
        finally:
            live.close()
            rebuilt.close()
        trial.dead_letters = len(dead_letters(settings))


class Writer(threading.Thread):
    """Reports cases and registers every other one through the command path, recording each acknowledgement."""

    def __init__(self, events: Path, trial: Trial, acknowledged: dict[int, UUID]) -> None:
        super().__init__(daemon=True)
        self.events, self.trial, self.acknowledged = events, trial, acknowledged
        self.kill_moment = threading.Event()
        self.start()

    def run(self) -> None:
        clock = ManualClock(START)
        app = _open(self.events, clock)
        try:
            for n in range(self.trial.commands):
                if n == self.trial.kill_after:
                    self.kill_moment.set()
                clock.advance(timedelta(seconds=7))
                command = self._command(n)
                result = app.execute(command)
                self.acknowledged[result.position] = result.aggregate_id
                time.sleep(0.005)  # a steady load the relay and the workers follow, not one burst
        finally:
            self.kill_moment.set()
            app.close()

    def _command(self, n: int) -> ReportCase | RegisterCase:
        tag = f"chaos-{self.trial.number}-{n}"
        if n % 2 and self.acknowledged:
            case = next(reversed(self.acknowledged.values()))
            return RegisterCase(command_id=tag, actor="desk:140827", case_id=case)
        return ReportCase(
            command_id=tag, actor="resident:9001", source="app", category="E0101", grid=GRID, description="暴露垃圾"
        )


def _open(events: Path, clock: ManualClock | None = None) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(events)}, clock=clock)


def _max_position(events: Path) -> int:
    app = _open(events)
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def _poison(bootstrap: str, topics: Topics, count: int) -> None:
    """``count`` garbage records on the work-order topic, each under a key of its own: each must be a dead letter."""
    if not count:
        return
    producer = KafkaProducer(**client_config(bootstrap))
    try:
        for n in range(count):
            producer.send(topics.of("workorder"), key=f"poison-{n}".encode(), value=b"not an avro record %d" % n)
        producer.flush(timeout=60)
    finally:
        producer.close()


def plan(trials: int, seed: int, target: str, commands: int, poison: int) -> list[Trial]:
    """The seeded plan: each trial's target (``any`` cycles through all three) and the command after which it dies."""
    rng = random.Random(seed)
    chosen = [TARGETS[n % len(TARGETS)] if target == "any" else target for n in range(trials)]
    return [
        Trial(n + 1, chosen[n], rng.randint(commands // 5, 4 * commands // 5), commands, poison if n == 0 else 0)
        for n in range(trials)
    ]


@click.command("chaos")
@click.option("--trials", default=3, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--seed", default=20261103, show_default=True, help="Seeds the targets' kill moments.")
@click.option("--target", type=click.Choice([*TARGETS, "any"]), default="any", show_default=True)
@click.option("--commands", default=200, show_default=True, type=click.IntRange(10, 100_000), help="Per trial.")
@click.option("--poison", default=0, show_default=True, type=click.IntRange(0, 1000), help="Garbage records (trial 1).")
@click.option("--keep", is_flag=True, help="Keep the run's directory (its logs, stores and broker data).")
@click.option("--json", "as_json", is_flag=True, help="Print the trials and totals as JSON.")
@fail_cleanly
def chaos_command(trials: int, seed: int, target: str, commands: int, poison: int, keep: bool, as_json: bool) -> None:
    """Kill the relay, a projection worker or the broker under load, restart it, and check nothing was lost."""
    root = Path(tempfile.mkdtemp(prefix="gridloop-chaos-"))
    run: Run | None = None
    started = time.monotonic()
    done: list[Trial] = []
    try:
        run = Run(root)
        for trial in plan(trials, seed, target, commands, poison):
            done.append(run.trial(trial))
            if not as_json:
                _print_trial(done[-1])
    finally:
        if run is not None:
            run.broker.down()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    totals = _totals(done, seed, round(time.monotonic() - started, 1), root if keep else None)
    if as_json:
        click.echo(json.dumps({"trials": [{**asdict(t), "ok": t.ok} for t in done], "totals": totals}, indent=1))
    else:
        out.print(" ".join(f"{k}={v}" for k, v in totals.items()))
    if totals["failed"]:
        sys.exit(1)


def _print_trial(t: Trial) -> None:
    out.print(
        f"trial {t.number:3d} {t.target:6s} kill after {t.kill_after:4d}  acknowledged {t.acknowledged}  "
        f"events {t.events}  on kafka {t.on_kafka}  duplicates {t.duplicates}  missing {t.missing_on_kafka}  "
        f"reorderings {t.reorderings}  views equal {t.views_equal}/{t.views}  dead letters {t.dead_letters}"
        f"/{t.poison}  restarts {t.restarts}  {t.seconds:.1f} s  {'ok' if t.ok else 'FAILED ' + t.error}",
        highlight=False,
    )


def _totals(done: list[Trial], seed: int, seconds: float, kept: Path | None) -> dict[str, Any]:
    return {
        "seed": seed,
        "trials": len(done),
        "failed": sum(1 for t in done if not t.ok),
        "by_target": {name: sum(1 for t in done if t.target == name) for name in TARGETS},
        "acknowledged": sum(t.acknowledged for t in done),
        "missing_receipts": sum(t.missing_receipts for t in done),
        "events": sum(t.events for t in done),
        "on_kafka": sum(t.on_kafka for t in done),
        "duplicates": sum(t.duplicates for t in done),
        "reorderings": sum(t.reorderings for t in done),
        "views_unequal": sum(t.views - t.views_equal for t in done),
        "dead_letters": sum(t.dead_letters for t in done),
        "poison": sum(t.poison for t in done),
        "seconds": seconds,
        "kept": str(kept) if kept else None,
    }
