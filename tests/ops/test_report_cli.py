"""`gridloop report` through the real console script: the ranked table, the chart files, and one-line refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.clock import ManualClock
from ops.config import load_settings
from ops.presets import load_preset
from ops.runtime import open_runtime
from ops.simulator import simulate
from projections.kpi_queries import LEVELS, kpi_table, parse_period
from projections.store import ViewStore

GRIDLOOP = shutil.which("gridloop", path=str(Path(sys.executable).parent))
LOCAL = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 2)
DISTRICT = "140827"


def gridloop(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
    env = {"GRIDLOOP_LOG_LEVEL": "warning", "COLUMNS": "220", "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [GRIDLOOP, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated day of Yuanqu (seeded), its views caught up."""
    data_dir = tmp_path_factory.mktemp("report")
    settings = load_settings(environ={}, data_dir=data_dir, log_format="json")
    clock = ManualClock(datetime.combine(DAY, datetime.min.time(), LOCAL).astimezone(UTC))
    rt = open_runtime(settings, clock)
    try:
        simulate(rt.app, clock, load_preset("yuanqu"), days=1, start=DAY, seed=7)
        rt.catch_up()
    finally:
        rt.close()
    return data_dir


def expected_codes(data_dir: Path, level: str, within: str | None = None) -> list[str]:
    store = ViewStore.open(data_dir / "views.sqlite")
    try:
        return [row.code for row in kpi_table(store, level, parse_period("2026-11"), within=within)]
    finally:
        store.close()


def test_the_report_prints_the_ranking_and_writes_every_chart(district: Path, tmp_path: Path) -> None:
    done = gridloop(district, "report", "--level", "community", "--period", "2026-11", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr

    codes = expected_codes(district, "community")
    printed = [line for line in done.stdout.splitlines() if any(code in line for code in codes)]
    assert [next(code for code in codes if code in line) for line in printed] == codes
    assert "按期结案率" in done.stdout and "等级" in done.stdout
    charts = sorted(path.name for path in tmp_path.iterdir())
    assert charts == sorted(f"community-2026-11-{name}.{fmt}" for name in ("ranking", "trend", "overdue")
                            for fmt in ("png", "svg"))  # fmt: skip
    assert all(str(tmp_path / name) in done.stdout.replace("\n", "") for name in charts)


def test_the_json_holds_every_rate_and_count_and_the_charts_are_byte_stable(district: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    runs = [
        gridloop(district, "report", "--level", "grid", "--period", "2026-11", "--within", "140827100001",
                 "--trend", "2", "--json", "--out", str(out))
        for out in (first, second)
    ]  # fmt: skip
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    body = json.loads(runs[0].stdout)

    assert [row["code"] for row in body["rows"]] == expected_codes(district, "grid", "140827100001")
    assert body["within"] == "140827100001" and body["period"]["start"] == "2026-11-01"
    assert all(set(row["rates"]) == {rate["key"] for rate in body["rates"]} for row in body["rows"])
    for svg in first.glob("*.svg"):
        assert svg.read_bytes() == (second / svg.name).read_bytes()
    assert len(list(first.glob("grid-2026-11-140827100001-*"))) == 6


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("--level", "town", "--period", "2026-11"),
            f"error: level 'town' is not allowed; allowed: {', '.join(LEVELS)}",
        ),
        (
            ("--level", "grid", "--period", "2026-13"),
            "error: period '2026-13' is not allowed; allowed: a month 2026-11",
        ),
        (("--level", "grid", "--period", "2026-11", "--within", "999"), "error: unknown division '999'"),
        (("--level", "grid", "--period", "2026-11", "--trend", "0"), "error: --trend 0 is not allowed; allowed: 1 to"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_status_2(
    district: Path, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    done = gridloop(district, "report", *args, "--out", str(tmp_path))

    assert done.returncode == 2
    assert done.stderr.startswith(said)
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
