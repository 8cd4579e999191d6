"""The benchmarks still run (tiny sizes; speed itself is measured by `make bench`, never asserted here)."""

from __future__ import annotations

from ops.bench import avro_codec, command_path, markdown, projection_rebuild


def test_every_benchmark_measures_its_path_and_its_baseline_on_the_same_items() -> None:
    results = [command_path(30, 1), avro_codec(60, 1), projection_rebuild(60, 1)]
    for m in results:
        assert m.items > 0 and m.gridloop_per_s > 0 and m.baseline_per_s > 0
    table = markdown(results)
    assert table.count("\n| ") == len(results) + 1  # header + one row each
