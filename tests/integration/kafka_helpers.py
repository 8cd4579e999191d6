"""What the Kafka log's integration tests share: a simulated day, deployments on a broker, the log and views read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from kafka import KafkaConsumer

from engine import codec
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.commands import ReportCase
from engine.kafka import POSITION, RECORD_HEADERS, Record, Topics, client_config, read_tails
from engine.relay import position_of
from ops.chaos_checks import read_topics as read_topics  # the fault trials' reader: tests and trials read alike
from ops.chaos_checks import tracking as tracking
from ops.config import Settings, load_settings
from ops.presets import load_preset
from ops.simulator import simulate
from projections.queries import view_checksum, view_rows
from projections.runner import EmbeddedRunner, Gate
from projections.store import ViewStore
from projections.views import VIEW_NAMES, default_projections

GRIDLOOP = shutil.which("gridloop", path=str(Path(sys.executable).parent))
LOCAL = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2026, 11, 2)
"""A Monday: the simulated Yuanqu day every test starts from."""
SECOND_DAY = date(2026, 11, 3)
HANG_GUARD = 120.0
"""How long a test waits for something that must happen before calling it hung (a guard, not a measure)."""


# -- the event store ------------------------------------------------------------------------------


def open_store(events: Path, clock: ManualClock | None = None) -> Gridloop:
    """The application over one events.sqlite file."""
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(events)}, clock=clock)


def simulate_day(events: Path, day: date) -> int:
    """Simulate one Yuanqu day (the preset's seed, a manual clock) into ``events``; returns the events recorded."""
    clock = ManualClock(datetime.combine(day, datetime.min.time(), LOCAL).astimezone(UTC))
    app = open_store(events, clock)
    try:
        return simulate(app, clock, load_preset("yuanqu"), days=1, start=day).events_recorded
    finally:
        app.close()


def simulated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The events.sqlite of one simulated Yuanqu day: simulated once per test session, then copied by each test."""
    cache = tmp_path_factory.getbasetemp() / "yuanqu-first-day"
    events, done = cache / "events.sqlite", cache / "simulated"
    if not done.is_file():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        recorded = simulate_day(events, FIRST_DAY)
        done.write_text(str(recorded))
    return events


def report_cases(events: Path, count: int, tag: str) -> list[UUID]:
    """Report ``count`` cases from the app on the morning after the simulated day; returns their ids."""
    clock = ManualClock(datetime.combine(SECOND_DAY, time(9), LOCAL))
    app = open_store(events, clock)
    try:
        return [
            app.execute(
                ReportCase(
                    command_id=f"{tag}-{n}",
                    actor="resident:9001",
                    source="app",
                    category="S0303",
                    grid="140827100001003",
                    description="居民反映: 社会救助申请",
                )
            ).aggregate_id
            for n in range(count)
        ]
    finally:
        app.close()


def max_position(events: Path) -> int:
    app = open_store(events)
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


# -- a deployment: a store, a topic prefix and a group on a broker ------------------------------------


@dataclass(frozen=True)
class Deployment:
    """One event store and the topics and consumer group it uses on a broker (a unique prefix per test)."""

    data_dir: Path
    bootstrap: str
    prefix: str
    group: str

    @classmethod
    def of(cls, tmp_path: Path, bootstrap: str, store: Path | None = None, name: str = "var") -> Deployment:
        """A deployment in ``tmp_path/name`` with a copy of ``store`` (if given) and a topic prefix of its own."""
        data_dir = tmp_path / name
        data_dir.mkdir(parents=True)
        if store is not None:
            shutil.copyfile(store, data_dir / "events.sqlite")
        prefix = f"it{uuid.uuid4().hex[:12]}"
        return cls(data_dir, bootstrap, prefix, f"{prefix}-views")

    @property
    def transactional_id(self) -> str:
        """The relay's transactional id: one per store, so relays of other tests never fence this one's."""
        return f"{self.prefix}-relay"

    @property
    def events(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def views(self) -> Path:
        """The kafka mode's view store (Settings.view_store_path)."""
        return self.data_dir / "views-kafka.sqlite"

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def dead_letters(self) -> str:
        return self.topics.dead_letters(self.group)

    def settings(self, **overrides: Any) -> Settings:
        """Kafka-mode settings of this deployment (the test process's GRIDLOOP_* variables ignored)."""
        return load_settings({}, **{"data_dir": self.data_dir, **self._kafka_mode(), **overrides})

    def _kafka_mode(self) -> dict[str, str]:
        """The settings that make a process this deployment's, in kafka mode."""
        return {
            "mode": "kafka",
            "kafka_provisioner": "external",
            "kafka_bootstrap": self.bootstrap,
            "kafka_topic_prefix": self.prefix,
            "kafka_group": self.group,
            "relay_transactional_id": self.transactional_id,
        }

    def env(self, **settings: str | int) -> dict[str, str]:
        """A child's environment: this deployment in kafka mode, JSON logs, plus ``settings`` as GRIDLOOP_*."""
        values: dict[str, str | int] = {
            **self._kafka_mode(),
            "log_format": "json",
            "log_level": "info",
            **settings,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLOOP_")}
        env.update({f"GRIDLOOP_{name.upper()}": str(value) for name, value in values.items()})
        return env

    def committed(self) -> int:
        """The highest global position committed on this deployment's event topics."""
        return committed_position(self.bootstrap, self.topics)

    def gridloop(self, *args: str, **settings: str | int) -> subprocess.CompletedProcess[str]:
        """Run the console script to completion in this deployment; fails the test if it does not exit 0."""
        assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
        done = subprocess.run(
            [GRIDLOOP, "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            env=self.env(**settings),
            timeout=HANG_GUARD,
        )
        assert done.returncode == 0, f"gridloop {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done


# -- the log read back from Kafka -----------------------------------------------------------------


def committed_position(bootstrap: str, topics: Topics) -> int:
    """The highest global position committed on the event topics (what a restarted relay resumes after)."""
    consumer = KafkaConsumer(**client_config(bootstrap, isolation_level="read_committed", enable_auto_commit=False))
    try:
        tails = read_tails(consumer, topics.event_topics, wanted=lambda record: POSITION in record.headers)
    finally:
        consumer.close()
    return max((position_of(record) for record in tails.values() if record is not None), default=0)


def data_ends(records: Iterable[Record]) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the offset after its last record (commit markers take offsets of their own)."""
    ends: dict[tuple[str, int], int] = {}
    for r in records:
        ends[(r.topic, r.partition)] = max(ends.get((r.topic, r.partition), 0), r.offset + 1)
    return ends


def assert_exactly_once(records: list[Record], events: Path, topics: Topics) -> None:
    """The read-committed log holds each stored event once, in order, legibly keyed and labelled."""
    app = open_store(events)
    try:
        assert_log_matches_the_store(records, app, topics)
    finally:
        app.close()


def assert_log_matches_the_store(records: list[Record], app: Gridloop, topics: Topics) -> None:
    """The read-committed log holds each event of ``app``'s store once, in order (any store: SQLite, PostgreSQL)."""
    last = app.recorder.max_notification_id() or 0
    stored = {n.id: n for n in app.recorder.select_notifications(start=1, limit=last + 1)}
    seen = Counter(position_of(r) for r in records)
    repeated = {p: n for p, n in seen.items() if n > 1}
    assert not repeated, f"positions on Kafka more than once: {dict(list(repeated.items())[:10])}"
    missing = sorted(set(range(1, last + 1)) - set(seen))
    assert not missing, f"{len(missing)} stored positions not on Kafka, e.g. {missing[:10]}"
    assert set(seen) == set(range(1, last + 1)), f"positions on Kafka the store never had: {set(seen) - set(stored)}"

    last_position: dict[tuple[str, int], int] = {}
    versions: dict[bytes, list[int]] = defaultdict(list)
    for r in records:
        assert set(RECORD_HEADERS) <= set(r.headers), f"{r.origin} lacks headers: {sorted(r.headers)}"
        assert r.key is not None and r.value is not None, f"{r.origin} has no key or value"
        position = position_of(r)
        folder, _, name = r.header("event_type").partition(".")
        assert r.topic == topics.of(folder), f"{r.origin}: a {folder} event on {r.topic}"
        assert r.header("schema_fingerprint") == r.value[2:10].hex(), f"{r.origin}: fingerprint header and value differ"
        datetime.fromisoformat(r.header("occurred_at"))
        datetime.fromisoformat(r.header("recorded_at"))
        event = codec.decode(r.value)
        assert type(event).__name__ == name, f"{r.origin}: header {r.header('event_type')}, value {type(event)}"
        assert r.key == str(event.originator_id).encode(), f"{r.origin}: key {r.key!r}, event of {event.originator_id}"
        notification = stored[position]
        assert (event.originator_id, event.originator_version) == (
            notification.originator_id,
            notification.originator_version,
        ), f"{r.origin} at position {position} is not the stored event there"
        partition = (r.topic, r.partition)
        assert position > last_position.get(partition, 0), f"{r.origin}: position {position} not after the previous"
        last_position[partition] = position
        versions[r.key].append(event.originator_version)
    for key, found in versions.items():
        assert found == list(range(1, len(found) + 1)), f"aggregate {key.decode()} versions in partition order: {found}"


# -- views ----------------------------------------------------------------------------------------


def embedded_views(events: Path, into: Path, gate: Gate | None = None) -> ViewStore:
    """The views the embedded runner folds from ``events`` (those ``gate`` lets through): what every Kafka-fed view
    must equal."""
    app = open_store(events)
    try:
        store = ViewStore.open(into)
        projections = default_projections(app.catalogue)
        EmbeddedRunner(app.recorder, app.mapper, store, projections, gate=gate).run_until_caught_up()
        return store
    finally:
        app.close()


def assert_same_views(kafka: ViewStore, embedded: ViewStore) -> None:
    """Every view fed from Kafka equals the embedded one, row for row and by checksum."""
    for name in VIEW_NAMES:
        ours, theirs = view_rows(kafka, name), view_rows(embedded, name)
        for table in theirs:
            if ours[table] != theirs[table]:
                mine = {json.dumps(r, sort_keys=True) for r in ours[table]}
                wanted = {json.dumps(r, sort_keys=True) for r in theirs[table]}
                pytest.fail(
                    f"{name}.{table}: {len(ours[table])} rows from Kafka, {len(theirs[table])} embedded; "
                    f"only from Kafka: {sorted(mine - wanted)[:3]}; only embedded: {sorted(wanted - mine)[:3]}"
                )
        assert view_checksum(kafka, name) == view_checksum(embedded, name), name


def caught_up(store_path: Path, ends: Mapping[tuple[str, int], int]) -> bool:
    """Whether every view has read every partition of ``ends`` to its last record."""
    found = tracking(store_path)
    return all(
        found.get(f"{view}@{topic}:{partition}", 0) >= end
        for (topic, partition), end in ends.items()
        for view in VIEW_NAMES
    )


def assert_views_match_the_embedded_fold(deployment: Deployment, folder: Path) -> None:
    """The deployment's Kafka-fed views equal the embedded fold of its event store, row for row."""
    embedded = embedded_views(deployment.events, folder / "embedded.sqlite")
    kafka = ViewStore.open(deployment.views)
    try:
        assert_same_views(kafka, embedded)
    finally:
        kafka.close()
        embedded.close()
