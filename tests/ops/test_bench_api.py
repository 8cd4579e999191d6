"""The API benchmarks still run (a tiny district, a few requests; speed itself is never asserted here)."""

from __future__ import annotations

import pytest

from ops.bench import Measurement, markdown
from ops.bench.api import District, board_mix, board_reads, read_your_writes, sample_district


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> District:
    return sample_district(tmp_path_factory.mktemp("bench-api") / "district", cases=12)


@pytest.fixture(scope="module")
def reads(district: District) -> Measurement:
    return board_reads(district, reads=24, repeats=2, clients=2, profile=True)


@pytest.fixture(scope="module")
def writes(district: District) -> Measurement:
    return read_your_writes(district, commands=4, repeats=1)


def test_the_board_mix_filters_by_status_overdue_and_the_busiest_grid(district: District) -> None:
    mix = board_mix(district)
    assert mix == ["limit=50", "status=registered&limit=50", "overdue=true&limit=50", "grid=140827100001001&limit=50"]


def test_board_reads_are_timed_on_both_servers_over_the_same_rows(reads: Measurement) -> None:
    assert reads.items == 24 and reads.gridloop_per_s > 0 and reads.baseline_per_s > 0
    assert reads.latency is not None and reads.latency.samples == 48
    assert 0 < reads.latency.gridloop_p50 <= reads.latency.gridloop_p99
    assert 0 < reads.latency.baseline_p50 <= reads.latency.baseline_p99
    assert "(9 rows per answer)" in reads.baseline  # 12, 12, none overdue, 12: pages of at most 50
    assert "projections/api/reads.py" in reads.profile  # the server's own loop thread was profiled
    assert [note.split(" board reads")[0] for note in reads.notes] == ["gridloop", "bare"]


def test_read_your_writes_times_each_command_until_its_case_shows_it(writes: Measurement) -> None:
    assert writes.items == 4  # two cases, each reported and registered, each command followed by a read
    assert writes.gridloop_per_s > 0 and writes.baseline_per_s > 0
    assert writes.latency is not None and writes.latency.samples == 4
    steps = " ".join(writes.notes)
    for step in ("POST", "GET ?position", "no position", "execute", "policies", "catch-up", "query"):
        assert step in steps


def test_the_table_shows_rates_latencies_and_notes(reads: Measurement, writes: Measurement) -> None:
    table = markdown([reads, writes])
    assert table.count("| API ") == 4  # each path once among the rates and once among the latencies
    assert "gridloop p99 ms" in table
    assert table.count("\n- ") == 4  # the CPU notes of both servers, the steps of both sides
