"""`gridloop bench` runs the sections it is given and reports rows, machine and targets (tiny sizes; speed is
measured by the bench itself, never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ops.bench.day import beijing_day
from ops.cli import main


def test_gridloop_bench_prints_the_table_the_machine_and_the_targets_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--quick", "--only", "codec", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Command: `gridloop bench --quick --only codec`" in result.output
    assert "| Avro codec (encode + decode) |" in result.output
    assert "| relay ≥ 0.8x raw producer | not in this run | — |" in result.output
    run = json.loads(out.read_text())
    assert [r["name"] for r in run["results"]] == ["Avro codec (encode + decode)"]
    assert {"cpu", "cores", "memory_gib", "eventsourcing", "fastavro", "load_average_after"} <= set(run["machine"])


def test_gridloop_bench_refuses_a_section_it_does_not_have() -> None:
    result = CliRunner().invoke(main, ["bench", "--only", "codec,nosuch"])
    assert result.exit_code != 0
    assert "nosuch: not one of" in result.output


def test_the_beijing_day_times_every_request_on_both_sides() -> None:
    m = beijing_day(40)
    assert m.items == 40 and m.gridloop_per_s > 0 and m.baseline_per_s > 0
    assert m.latency is not None and m.latency.samples == 40
    assert m.latency.gridloop_p50 <= m.latency.gridloop_p99
    assert m.notes[0].startswith("Beijing-scale day: 40 requests in")
