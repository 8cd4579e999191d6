"""Case trace benchmark: one case's trace (痕迹) from the views, against the same rows read by bare sqlite3."""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path

from engine.clock import ManualClock
from ops.bench import Latency, Measurement
from ops.bench.api import District, _latency_ms, cases_of, sample_district, simulated_district
from ops.bench.http import settings_for
from ops.logs import configure_logging
from ops.runtime import open_runtime
from projections.audit.trace import case_trace

TARGET_MS = 10.0
"""The audit issue's target for one case's trace."""


def trace_latency(district: District, rounds: int, limit: int | None = None) -> Measurement:
    """``case_trace`` for every case of the district (``limit``: the first of them), ``rounds`` times each, against
    bare sqlite3 SELECTs of the same board row and timeline rows (no parsing, no shaping); sides interleaved."""
    case_ids = [str(row.case_id) for row in cases_of(district)][:limit]
    rt = open_runtime(settings_for(district.data_dir), ManualClock(district.served_at.astimezone(UTC)))
    bare = sqlite3.connect(f"file:{rt.settings.view_store_path}?mode=ro", uri=True, isolation_level=None)
    try:
        now, calendar = district.served_at, rt.app.calendar
        steps = [len(case_trace(rt.views, case_id, calendar, now=now).steps) for case_id in case_ids]  # and warm

        def ours(case_id: str) -> None:
            case_trace(rt.views, case_id, calendar, now=now)

        def baseline(case_id: str) -> None:
            bare.execute("BEGIN")  # one snapshot for both reads, as the view store's reading() gives
            bare.execute("SELECT * FROM board WHERE case_id = ?", (case_id,)).fetchall()
            bare.execute("SELECT * FROM timeline_event WHERE case_id = ? ORDER BY version", (case_id,)).fetchall()
            bare.execute("COMMIT")

        for case_id in case_ids:
            baseline(case_id)
        samples: dict[str, list[float]] = {"gridloop": [], "bare": []}
        seconds: dict[str, list[float]] = {"gridloop": [], "bare": []}
        for _ in range(rounds):
            for side, read in (("gridloop", ours), ("bare", baseline)):
                seconds[side].append(_timed(read, case_ids, samples[side]))
    finally:
        bare.close()
        rt.close()
    latency = {side: _latency_ms(done) for side, done in samples.items()}
    rate = {side: len(case_ids) / statistics.median(done) for side, done in seconds.items()}
    p99 = latency["gridloop"][1]
    return Measurement(
        "case trace (case_trace, one case)",
        len(case_ids),
        rate["gridloop"],
        rate["bare"],
        "bare sqlite3: the same board row and timeline rows by primary key, unparsed",
        latency=Latency(len(samples["gridloop"]), *latency["gridloop"], *latency["bare"]),
        notes=(
            f"case trace: {len(case_ids)} cases, {statistics.mean(steps):.1f} steps per case on average "
            f"(at most {max(steps)}); target < {TARGET_MS:.0f} ms per trace: "
            f"{'met' if p99 < TARGET_MS else 'NOT met'} at p99 ({p99:.2f} ms)",
        ),
    )


def _timed(read: Callable[[str], None], case_ids: Sequence[str], latencies: list[float]) -> float:
    """Read every case once, keeping each read's latency; the whole round's seconds."""
    started = time.perf_counter()
    for case_id in case_ids:
        sent = time.perf_counter()
        read(case_id)
        latencies.append(time.perf_counter() - sent)
    return time.perf_counter() - started


def trace_paths(quick: bool = False) -> list[Measurement]:
    """The trace benchmark on the bench's simulated day of Yuanqu (a tiny sample district when ``quick``)."""
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-trace-") as tmp:
        if quick:
            return [trace_latency(sample_district(Path(tmp) / "district", cases=50), rounds=3)]
        return [trace_latency(simulated_district(Path(tmp) / "district"), rounds=5)]


if __name__ == "__main__":  # python -m ops.bench.trace [--quick]
    import sys

    from ops.bench import markdown

    configure_logging("warning")
    print(markdown(trace_paths(quick="--quick" in sys.argv[1:])))
