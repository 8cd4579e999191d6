"""The trace benchmark still runs (a tiny district, a few rounds; speed itself is never asserted here)."""

from __future__ import annotations

from pathlib import Path

from ops.bench import markdown
from ops.bench.api import sample_district
from ops.bench.trace import trace_latency


def test_the_trace_benchmark_times_every_case_on_both_sides(tmp_path: Path) -> None:
    measured = trace_latency(sample_district(tmp_path / "district", cases=6), rounds=2)
    assert measured.items == 6 and measured.gridloop_per_s > 0 and measured.baseline_per_s > 0
    assert measured.latency is not None and measured.latency.samples == 12
    assert 0 < measured.latency.gridloop_p50 <= measured.latency.gridloop_p99
    assert 0 < measured.latency.baseline_p50 <= measured.latency.baseline_p99
    (note,) = measured.notes
    assert note.startswith("case trace: 6 cases, 2.0 steps per case") and "target < 10 ms" in note
    assert markdown([measured]).count("| case trace (case_trace, one case) |") == 2  # the rates and the latencies
