"""A simulated Beijing-scale day: 65,000 resident requests through the command path, timed one by one.

Beijing's 12345 hotline takes in the order of 65,000 requests a day; the question the row answers is
whether one gridloop process on the bench machine keeps up with such a day, and what each request costs
against the bare eventsourcing library saving the same number of aggregates. Domain time is a ManualClock
advanced by a day's share per request, so the day spans 24 hours of domain time whatever the machine.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from eventsourcing.application import Application

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.work_order import WorkOrder
from ops.bench import T0, Latency, Measurement, bare_case
from ops.sample import set_up_district

REQUESTS = 65_000
"""A Beijing-scale day of requests (the full run); ``--quick`` runs a fiftieth of it."""

CATEGORIES = ("C0101", "C0102", "C0201", "C0301")
"""A few report categories, so the day is not one aggregate type's single code path repeated."""


def _request(i: int, grid: str) -> c.ReportCase:
    return c.ReportCase(
        command_id=f"day{i}",
        actor="hotline",
        source="resident",
        category=CATEGORIES[i % len(CATEGORIES)],
        grid=grid,
        description="井盖缺失",
        lon=116.40,
        lat=39.90,
    )


def _work_order(i: int) -> WorkOrder:
    return bare_case(f"day{i}", CATEGORIES[i % len(CATEGORIES)], "110101", 116.40, 39.90, "hotline")


def _timed(n: int, step: Callable[[int], object]) -> tuple[float, list[float]]:
    """Seconds for all N steps and each step's milliseconds."""
    each = []
    started = time.perf_counter()
    for i in range(n):
        before = time.perf_counter()
        step(i)
        each.append((time.perf_counter() - before) * 1000)
    return time.perf_counter() - started, each


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]


def beijing_day(requests: int = REQUESTS) -> Measurement:
    """``requests`` reports through ``Gridloop.execute`` on SQLite vs the bare library saving as many aggregates.

    One pass each (the day is long enough that its median is the day itself); both sides on fresh
    stores in the same temporary directory, gridloop's side first.
    """
    spacing = timedelta(days=1) / requests
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-day-") as tmp:
        directory = Path(tmp)
        clock = ManualClock(T0)
        app = Gridloop(
            {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(directory / "day.sqlite")},
            clock=clock,
        )
        grid = set_up_district(app, "beijing", "bj")

        def command(i: int) -> None:
            clock.advance(spacing)
            app.execute(_request(i, grid))

        ours, our_ms = _timed(requests, command)
        positions = app.recorder.max_notification_id() or 0
        app.close()

        bare = Application[UUID](
            {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(directory / "bare.sqlite")}
        )
        theirs, their_ms = _timed(requests, lambda i: bare.save(_work_order(i)))
        bare.close()
    latency = Latency(
        requests,
        statistics.median(our_ms),
        _p99(our_ms),
        statistics.median(their_ms),
        _p99(their_ms),
    )
    note = (
        f"Beijing-scale day: {requests:,} requests in {ours:.1f} s ({requests / ours:,.0f} commands/s, "
        f"{positions:,} log positions); the bare library saved as many aggregates in {theirs:.1f} s; "
        f"a Beijing day averages {REQUESTS / 86_400:.2f} requests/s, {requests / ours / (REQUESTS / 86_400):,.0f}x "
        "less than this one process takes"
    )
    return Measurement(
        "Beijing-scale day (report, one by one)",
        requests,
        requests / ours,
        requests / theirs,
        "bare eventsourcing Application.save of as many aggregates",
        latency=latency,
        notes=(note,),
    )
