"""End to end through the real console script: simulate, board, case, queue, do, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GRIDLOOP = shutil.which("gridloop", path=str(Path(sys.executable).parent))


def gridloop(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
    env = {**os.environ, "GRIDLOOP_LOG_LEVEL": "warning", "COLUMNS": "200"}
    return subprocess.run(
        [GRIDLOOP, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("var")
    done = gridloop(data_dir, "simulate", "--preset", "yuanqu", "--days", "1", "--start", "2026-11-02", "--fresh")
    assert done.returncode == 0, done.stderr
    assert "垣曲县" in done.stdout and "Board" in done.stdout and "refused: 0" in done.stdout
    return data_dir


def test_the_board_summary_counts_every_case_of_the_simulated_day(simulated: Path) -> None:
    done = gridloop(simulated, "board", "--summary", "--json", "--now", "2026-11-03T00:00+08:00")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert sum(summary["by_status"].values()) > 50
    assert summary["open"] + summary["closed"] <= sum(summary["by_status"].values())


def test_a_case_shows_its_trace_and_a_worker_their_queue(simulated: Path) -> None:
    cases = json.loads(gridloop(simulated, "board", "--json", "--status", "dispatched", "--limit", "5").stdout)
    assert cases, "a simulated day leaves some cases dispatched"
    case = cases[0]
    done = gridloop(simulated, "case", case["case_id"][:8], "--json")
    assert done.returncode == 0, done.stderr
    trace = json.loads(done.stdout)
    assert [s["event_type"] for s in trace["timeline"]][:3] == ["Reported", "Registered", "Dispatched"]
    assert gridloop(simulated, "case", case["case_id"][:8]).returncode == 0
    if case["worker"]:
        queue = json.loads(gridloop(simulated, "queue", case["worker"], "--json").stdout)
        assert case["case_id"] in [r["case_id"] for r in queue]


def test_a_command_through_the_cli_is_visible_on_the_board_at_once(simulated: Path) -> None:
    cases = json.loads(gridloop(simulated, "board", "--json", "--status", "dispatched", "--limit", "1").stdout)
    case_id = cases[0]["case_id"]
    done = gridloop(
        simulated,
        "do",
        "escalate",
        f"case_id={case_id}",
        "actor=sup:test",
        "command_id=cli-e-1",
        "level=5",
        "reason=the resident called the mayor",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == ["Escalated"]
    again = gridloop(
        simulated,
        "do",
        "escalate",
        f"case_id={case_id}",
        "actor=sup:test",
        "command_id=cli-e-1",
        "level=5",
        "reason=the resident called the mayor",
    )
    assert json.loads(again.stdout)["duplicate"] is True
    shown = json.loads(gridloop(simulated, "case", case_id, "--json").stdout)
    assert shown["case"]["escalation_level"] == 5


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("do", "fly"), "unknown command 'fly'"),
        (
            ("do", "escalate", "command_id=x", "actor=a", "case_id=nope", "level=1", "reason=r"),
            "case_id: 'nope' is malformed",
        ),
        (
            ("do", "report", "command_id=x", "actor=a", "source=resident", "category=Z9999", "grid=g", "description=d"),
            "unknown category 'Z9999'",
        ),
        (("case", "ffffffffffff"), "unknown case"),
        (("simulate", "--preset", "atlantis", "--start", "2026-11-02"), "unknown preset 'atlantis'"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_status_2(simulated: Path, args: tuple[str, ...], words: str) -> None:
    done = gridloop(simulated, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert words in done.stderr
    assert "Traceback" not in done.stderr
