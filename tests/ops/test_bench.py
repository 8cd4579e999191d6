"""The benchmarks still run (tiny sizes; speed itself is measured by `make bench`, never asserted here)."""

from __future__ import annotations

from pathlib import Path

from ops.bench import avro_codec, command_path, markdown, projection_rebuild
from ops.bench.postgres import postgres_command_path
from ops.bench.rebuild import blue_green_rebuild, simulated_log
from ops.postgres import Server


def test_every_benchmark_measures_its_path_and_its_baseline_on_the_same_items() -> None:
    results = [command_path(30, 1), avro_codec(60, 1), projection_rebuild(60, 1)]
    for m in results:
        assert m.items > 0 and m.gridloop_per_s > 0 and m.baseline_per_s > 0
    table = markdown(results)
    assert table.count("\n| ") == len(results) + 1  # header + one row each


def test_the_blue_green_rebuild_runs_on_a_simulated_log_made_once_and_kept(tmp_path: Path) -> None:
    m = blue_green_rebuild(2000, groups=2, preset="yuanqu", cache=tmp_path)
    assert m.items >= 2000 and m.gridloop_per_s > 0 and m.baseline_per_s > 0
    assert any("blue/green rebuild of" in note for note in m.notes)
    [kept] = tmp_path.glob("log-yuanqu-*-2000.sqlite")
    assert simulated_log(2000, "yuanqu", cache=tmp_path) == kept
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]  # the rebuild's own stores are gone


def test_the_postgres_command_path_is_measured_against_the_bare_library_on_the_same_server(postgres: Server) -> None:
    m = postgres_command_path(postgres, 10, 1)
    assert m.items == 10 and m.gridloop_per_s > 0 and m.baseline_per_s > 0
    assert m.baseline == "bare eventsourcing Application.save of the same aggregate"
    import psycopg

    with psycopg.connect(postgres.dsn) as db:
        left = db.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_%'").fetchall()
    assert left == [], "each run's schema is dropped"
