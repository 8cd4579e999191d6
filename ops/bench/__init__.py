"""Benchmarks: each gridloop path measured against the raw library doing the same work, in the same run."""

from __future__ import annotations

import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from fastavro import schemaless_reader, schemaless_writer

from engine import codec
from engine import commands as c
from engine.application import Gridloop
from engine.base import name_id
from engine.clock import ManualClock
from engine.work_order import WorkOrder
from ops.sample import set_up_district
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections

T0 = datetime(2026, 11, 2, 0, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Latency:
    """Per-item latency of a path and of its baseline, in milliseconds: the median and the 99th percentile."""

    samples: int
    gridloop_p50: float
    gridloop_p99: float
    baseline_p50: float
    baseline_p99: float


@dataclass(frozen=True)
class Measurement:
    """One path against its baseline: items per second (median of the repeats) and their ratio."""

    name: str
    items: int
    gridloop_per_s: float
    baseline_per_s: float
    baseline: str
    profile: str = ""
    """Where the gridloop side spent its time (cProfile, as text), for paths that are profiled."""
    latency: Latency | None = None
    """For paths a client waits on (the HTTP API): each item's latency on both sides."""
    notes: tuple[str, ...] = ()
    """What the run measured besides the rates (CPU per item, time per step), one line each."""

    @property
    def ratio(self) -> float:
        return self.gridloop_per_s / self.baseline_per_s


def _rate(items: int, run: Callable[[], None], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(items / (time.perf_counter() - started))
    return statistics.median(samples)


def _app(directory: Path, name: str, clock: ManualClock) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(directory / name)}, clock=clock)


StoreEnv = Callable[[str], dict[str, str]]
"""A fresh, empty event store for each name: the eventsourcing environment opening it."""


def _report(i: int, grid: str) -> c.ReportCase:
    return c.ReportCase(
        command_id=f"r{i}",
        actor="bench",
        source="resident",
        category="C0101",
        grid=grid,
        description="井盖缺失",
        lon=111.67,
        lat=35.3,
    )


def command_path(n: int, repeats: int) -> Measurement:
    """Report N cases through ``Gridloop.execute`` vs saving the same aggregates with the bare library (SQLite).

    The target's baseline is the bare library (its default recorder and JSON transcoder); a note gives the
    row against ``Gridloop.save`` too (gridloop's own sealed store, no command path), the row's old baseline.
    """
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)

        def sqlite(name: str) -> dict[str, str]:
            return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(directory / f"{name}.sqlite")}

        row = compare_command_path(sqlite, n, repeats, "command → stored (report)")
        stored = _rate(n, _saving(sqlite, n, Gridloop, "s"), repeats)
    note = (
        f"command → stored (report) against Gridloop.save of the same aggregate (sealed, no receipt, no "
        f"validation): {row.gridloop_per_s:,.0f} vs {stored:,.0f} /s, {row.gridloop_per_s / stored:.2f}x"
    )
    return dataclasses.replace(row, notes=(*row.notes, note))


def bare_case(name: str, category: str, desk: str, lon: float, lat: float, actor: str) -> WorkOrder:
    """A reported case as the baselines save it: the aggregate alone, through no command path."""
    return WorkOrder(
        id=name_id("case", name),
        source="resident",
        category=category,
        grid="g",
        desk=desk,
        description="井盖缺失",
        reporter="",
        lon=lon,
        lat=lat,
        patrol_id=None,
        occurred_at=T0,
        actor=actor,
        service_item="",
        processing_unit="",
        admission_item="",
        certificate="",
    )


def _saving(store: StoreEnv, n: int, baseline: type[Application[UUID]], prefix: str) -> Callable[[], None]:
    """One run of ``baseline.save`` of N reported cases, each run on a fresh store from ``store``."""
    runs = iter(range(1_000_000))

    def save() -> None:
        app = baseline(store(f"{prefix}{next(runs)}"))
        for i in range(n):
            app.save(bare_case(f"r{i}", "C0101", "140827", 111.67, 35.3, "bench"))
        app.close()

    return save


def compare_command_path(
    store: StoreEnv, n: int, repeats: int, name: str, baseline: type[Application[UUID]] = Application
) -> Measurement:
    """Report N cases through ``Gridloop.execute`` vs ``baseline.save`` of the same aggregates, each run on a
    fresh store from ``store``. ``Application`` is the bare library: its default recorder and JSON
    transcoder, nothing gridloop adds; ``Gridloop`` saves through gridloop's own sealed store."""
    clock = ManualClock(T0)
    runs = iter(range(repeats))

    def gridloop() -> None:
        app = Gridloop(store(f"g{next(runs)}"), clock=clock)
        grid = set_up_district(app, "bench", "b")
        for i in range(n):
            app.execute(_report(i, grid))
        app.close()

    bare = _saving(store, n, baseline, "b")
    what = "Gridloop.save" if issubclass(baseline, Gridloop) else "bare eventsourcing Application.save"
    return Measurement(name, n, _rate(n, gridloop, repeats), _rate(n, bare, repeats), f"{what} of the same aggregate")


def sample_events(n: int, directory: Path) -> tuple[Gridloop, list[Any]]:
    """A store in ``directory`` of about N events (cases reported, registered, dispatched) and its events."""
    clock = ManualClock(T0)
    app = _app(directory, "events.sqlite", clock)
    grid = set_up_district(app, "bench", "b")
    for i in range(n // 6):
        case_id = app.execute(_report(i, grid)).aggregate_id
        clock.advance(timedelta(minutes=1))
        app.execute(c.RegisterCase(command_id=f"g{i}", actor="op", case_id=case_id))
        app.execute(c.DispatchCase(command_id=f"d{i}", actor="op", case_id=case_id, unit="chengguan", reason="r"))
    notifications = app.recorder.select_notifications(1, n * 2)
    return app, [app.mapper.to_domain_event(x) for x in notifications]


def avro_codec(n: int, repeats: int) -> Measurement:
    """Encode + decode N events with the codec vs fastavro schemaless write + read of the same records."""
    with tempfile.TemporaryDirectory() as tmp:
        app, events = sample_events(n, Path(tmp))
        app.close()
    encoded = [codec.encode(e) for e in events]
    plans = []
    for e, data in zip(events, encoded, strict=True):
        schema = codec._codec_of(type(e)).schema.parsed
        buffer = BytesIO(data[codec.HEADER_SIZE :])
        plans.append((schema, schemaless_reader(buffer, schema, None)))

    def gridloop() -> None:
        for e in events:
            codec.decode(codec.encode(e))

    def bare() -> None:
        for schema, record in plans:
            out = BytesIO()
            schemaless_writer(out, schema, record)
            out.seek(0)
            schemaless_reader(out, schema, None)

    return Measurement(
        "Avro codec (encode + decode)",
        len(events),
        _rate(len(events), gridloop, repeats),
        _rate(len(events), bare, repeats),
        "fastavro schemaless write + read of the same records",
    )


def projection_rebuild(n: int, repeats: int) -> Measurement:
    """Rebuild all views from the log vs a raw loop that only reads and maps the same notifications."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        app, _ = sample_events(n, directory)
        total = app.recorder.max_notification_id() or 0
        runs = iter(range(repeats))

        def gridloop() -> None:
            store = ViewStore.open(directory / f"views{next(runs)}.sqlite")
            EmbeddedRunner(
                app.recorder, app.mapper, store, default_projections(app.catalogue, app.calendar)
            ).run_until_caught_up()
            store.close()

        def bare() -> None:
            start = 1
            while batch := app.recorder.select_notifications(start, 500):
                for notification in batch:
                    app.mapper.to_domain_event(notification)
                start = batch[-1].id + 1

        result = Measurement(
            "projection rebuild (all views)",
            total,
            _rate(total, gridloop, repeats),
            _rate(total, bare, repeats),
            "select_notifications + mapper.to_domain_event, no views",
        )
        app.close()
        return result


def run(quick: bool = False) -> list[Measurement]:
    """Every benchmark, smaller when ``quick``; the Kafka paths on the configured broker or one of their own."""
    from ops.bench.api import api_paths  # they build on this module
    from ops.bench.kafka import bench_broker, kafka_paths
    from ops.bench.postgres import bench_postgres, postgres_command_path

    n, repeats = (300, 3) if quick else (3000, 5)
    with bench_postgres() as server:
        results = [postgres_command_path(server, n // 3, repeats)]
    with bench_broker() as broker:  # a missing Java or an unreachable cluster fails before the long part
        results += [command_path(n, repeats), avro_codec(n * 3, repeats), projection_rebuild(n * 3, repeats)]
        results += kafka_paths(broker, n * 10, repeats)
    return results + api_paths(quick)  # with the broker stopped: its JVM would take CPU from the servers


def machine() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}, {platform.system()}"
    )


def markdown(results: list[Measurement]) -> str:
    lines = [
        f"Machine: {machine()}",
        "",
        "| path | items | gridloop /s | baseline /s | ratio | baseline |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for m in results:
        rates = f"{m.gridloop_per_s:,.0f} | {m.baseline_per_s:,.0f} | {m.ratio:.2f}"
        lines.append(f"| {m.name} | {m.items} | {rates} | {m.baseline} |")
    timed = [(m.name, m.latency) for m in results if m.latency is not None]
    if timed:
        lines += [
            "",
            "| path | samples | gridloop p50 ms | gridloop p99 ms | baseline p50 ms | baseline p99 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, t in timed:
            shown = f"{t.gridloop_p50:.2f} | {t.gridloop_p99:.2f} | {t.baseline_p50:.2f} | {t.baseline_p99:.2f}"
            lines.append(f"| {name} | {t.samples} | {shown} |")
    notes = [note for m in results for note in m.notes]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    for m in results:
        if m.profile:
            lines += ["", f"Profile of {m.name} (cProfile, one extra run):", "", "```", m.profile, "```"]
    return "\n".join(lines)
