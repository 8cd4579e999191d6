"""``gridloop bench``: every benchmark in one run, with the machine it ran on and the issue's targets.

The rows come from the modules beside this one; this module only decides which run, at which size,
in what order (the embedded rows before the broker's JVM starts, the API after it stops, so neither
takes CPU from the other), and writes one report: the table, the targets, the machine before and after.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ops.bench import Measurement, avro_codec, command_path, markdown, projection_rebuild


@dataclass
class Report:
    """What one ``gridloop bench`` run measured: the rows, any extra tables, the machine, how long it took."""

    quick: bool
    sections: list[str]
    results: list[Measurement] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    """Tables in a shape of their own (the distributed workers), already Markdown."""
    machine: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _sizes(quick: bool) -> tuple[int, int]:
    return (300, 3) if quick else (3000, 5)


def _postgres(report: Report) -> None:
    from ops.bench.postgres import bench_postgres, postgres_command_path

    n, repeats = _sizes(report.quick)
    with bench_postgres() as server:
        report.machine["postgresql"] = _postgres_version(server.dsn)
        report.results.append(postgres_command_path(server, n // 3, repeats))


def _embedded(run: Callable[[int, int], Measurement], scale: int) -> Callable[[Report], None]:
    def section(report: Report) -> None:
        n, repeats = _sizes(report.quick)
        report.results.append(run(n * scale, repeats))

    return section


def _rebuild(report: Report) -> None:
    """The live runner folding the bench's log from zero (the worst case: every event a case event ten views
    fold), then what `gridloop rebuild all` does (two processes, scratch files, the swap) on a simulated
    district's log (made once and kept in var/bench)."""
    from ops.bench.rebuild import blue_green_rebuild

    _embedded(projection_rebuild, 3)(report)
    report.results.append(blue_green_rebuild(20_000 if report.quick else 100_000))


def _kafka(report: Report) -> None:
    from ops.bench.kafka import bench_broker, kafka_paths
    from ops.bench.ryw_kafka import read_your_writes_kafka

    n, repeats = _sizes(report.quick)
    with bench_broker() as broker:
        report.machine["kafka"] = _kafka_version()
        report.results.extend(kafka_paths(broker, n * 10, repeats))
        report.results.append(read_your_writes_kafka(broker, seconds=2 if report.quick else 20))


def _api(report: Report) -> None:
    from ops.bench.api import api_paths

    report.results.extend(api_paths(report.quick))


def _day(report: Report) -> None:
    from ops.bench.day import REQUESTS, beijing_day

    report.results.append(beijing_day(REQUESTS // 50 if report.quick else REQUESTS))


def _distributed(report: Report) -> None:
    from ops.bench import distributed
    from ops.bench.kafka import bench_broker
    from ops.bench.postgres import bench_postgres

    n, repeats = (1200, 1) if report.quick else (6000, 3)
    with bench_broker() as broker, bench_postgres() as server:
        rows = distributed.workers_scaling(broker, server, n, repeats)
    report.tables.append(distributed.markdown(rows, n, repeats))


SECTIONS: dict[str, Callable[[Report], None]] = {
    "postgres": _postgres,
    "command": _embedded(command_path, 1),
    "codec": _embedded(avro_codec, 3),
    "rebuild": _rebuild,
    "day": _day,
    "kafka": _kafka,
    "api": _api,
    "distributed": _distributed,
}
"""Every section, in the order a run takes them."""

FULL_ONLY = ("distributed",)
"""Sections a ``--quick`` run leaves out unless named with ``--only``: they start processes for minutes."""


def run_suite(quick: bool, only: Sequence[str] = ()) -> Report:
    """Run ``only`` these sections (default: all, less FULL_ONLY when ``quick``) and describe the machine."""
    names = list(only) or [s for s in SECTIONS if not (quick and s in FULL_ONLY)]
    report = Report(quick, names, machine=machine_info())
    started = time.perf_counter()
    for name in names:
        SECTIONS[name](report)
    report.seconds = time.perf_counter() - started
    report.machine["load_average_after"] = list(os.getloadavg())
    return report


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, Python, kernel and the libraries' versions; the load average before the run."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "load_average_before": list(os.getloadavg()),
    }
    for package in ("eventsourcing", "kafka-python", "fastavro", "psycopg"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _kafka_version() -> str:
    """The broker's version, from the jar the local provisioner runs (a remote cluster's is not asked)."""
    from ops.config import load_settings

    return "remote cluster" if os.environ.get("GRIDLOOP_KAFKA_BOOTSTRAP") else load_settings().kafka_version


def _postgres_version(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as db:
        row = db.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def _by_name(results: Sequence[Measurement], prefix: str) -> Measurement | None:
    return next((m for m in results if m.name.startswith(prefix)), None)


def targets(results: Sequence[Measurement]) -> list[tuple[str, str, str]]:
    """Each target of issue 10: the figure this run measured, and whether it is met (or not run)."""
    rows: list[tuple[str, str, str]] = []

    def add(
        target: str, m: Measurement | None, figure: Callable[[Measurement], str], met: Callable[[Measurement], bool]
    ) -> None:
        if m is None:
            rows.append((target, "not in this run", "—"))
        else:
            rows.append((target, figure(m), "met" if met(m) else "**not met**"))

    add(
        "relay ≥ 0.8x raw producer",
        _by_name(results, "relay → Kafka (the target's ratio)"),
        lambda m: f"{m.ratio:.2f}x ({m.gridloop_per_s:,.0f} /s)",
        lambda m: m.ratio >= 0.8,
    )
    add(
        "rebuild ≥ 30k events/s (`gridloop rebuild all`, blue/green, a simulated district)",
        _by_name(results, "blue/green rebuild"),
        lambda m: f"{m.gridloop_per_s:,.0f} log positions/s ({m.items:,} positions)",
        lambda m: m.gridloop_per_s >= 30_000,
    )
    add(
        "rebuild ≥ 30k events/s (live runner from zero, the bench's log: case events only)",
        _by_name(results, "projection rebuild"),
        lambda m: f"{m.gridloop_per_s:,.0f} log positions/s",
        lambda m: m.gridloop_per_s >= 30_000,
    )
    rows.append(("1M events rebuilt < 60 s", "not in this run (`python -m ops.bench --events 1000000`)", "—"))
    for prefix in ("command → stored (report)", "command → stored on PostgreSQL", "Beijing-scale day"):
        add(
            f"command → stored ≥ 0.8x bare eventsourcing ({prefix.split(' (')[0]})",
            _by_name(results, prefix),
            lambda m: f"{m.ratio:.2f}x ({m.gridloop_per_s:,.0f} /s)",
            lambda m: m.ratio >= 0.8,
        )
    add(
        "read-your-writes p99 < 50 ms (embedded, over HTTP)",
        _by_name(results, "API command → visible"),
        lambda m: f"p99 {m.latency.gridloop_p99:.1f} ms" if m.latency else "no latency",
        lambda m: m.latency is not None and m.latency.gridloop_p99 < 50,
    )
    add(
        "read-your-writes p99 < 250 ms through Kafka at 1k events/s",
        _by_name(results, "read-your-writes through Kafka"),
        lambda m: (
            f"p99 {m.latency.gridloop_p99:.1f} ms at {2 * m.gridloop_per_s:,.0f} log positions/s reached"
            if m.latency
            else "no latency"
        ),
        lambda m: m.latency is not None and m.latency.gridloop_p99 < 250,
    )
    boards = [m for m in results if m.name.startswith("API board read")]
    add(
        "API ≥ 1,000 reads/s with p99 < 20 ms",
        max(boards, key=lambda m: m.gridloop_per_s) if boards else None,
        lambda m: (
            f"{m.gridloop_per_s:,.0f} reads/s, p99 {m.latency.gridloop_p99:.1f} ms"
            if m.latency
            else f"{m.gridloop_per_s:,.0f} reads/s"
        ),
        lambda m: m.gridloop_per_s >= 1000 and m.latency is not None and m.latency.gridloop_p99 < 20,
    )
    return rows


def command_line(report: Report) -> str:
    extra = [" --quick"] if report.quick else []
    if report.sections != [s for s in SECTIONS if not (report.quick and s in FULL_ONLY)]:
        extra.append(" --only " + ",".join(report.sections))
    return "gridloop bench" + "".join(extra)


def report_markdown(report: Report) -> str:
    """The whole report: command, machine, the rows, any extra tables, the targets."""
    m = report.machine
    load = " → ".join(
        ", ".join(f"{x:.2f}" for x in m.get(k, [])) for k in ("load_average_before", "load_average_after")
    )
    versions = ", ".join(
        f"{k} {m[k]}" for k in ("eventsourcing", "kafka-python", "fastavro", "psycopg", "kafka", "postgresql") if k in m
    )
    lines = [
        f"Command: `{command_line(report)}` ({report.seconds / 60:.1f} min)",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; {m.get('python')}; "
        f"{m.get('kernel')}; {versions}; load average (1, 5, 15 min) before → after: {load}",
        "",
        markdown(report.results).split("\n", 2)[2] if report.results else "(no rows)",
    ]
    for table in report.tables:
        lines += ["", table]
    lines += ["", "| target (issue 10) | this run | met? |", "|---|---|---|"]
    lines += [f"| {t} | {figure} | {met} |" for t, figure, met in targets(report.results)]
    return "\n".join(lines)


def report_json(report: Report) -> str:
    rows = [{**asdict(m), "ratio": m.ratio} for m in report.results]
    return json.dumps(
        {
            "command": command_line(report),
            "seconds": report.seconds,
            "machine": report.machine,
            "results": rows,
            "tables": report.tables,
            "targets": targets(report.results),
        },
        ensure_ascii=False,
        indent=2,
    )
