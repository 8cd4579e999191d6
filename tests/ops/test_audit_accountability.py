"""`gridloop audit accountability` through the real console script: exit 0 on a sound log, 1 on a corrupted one."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from engine import commands as c
from engine.clock import ManualClock
from ops.config import load_settings
from ops.runtime import open_runtime
from ops.sample import set_up_district
from tests.ops.test_cli import gridloop

MONDAY = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, UUID]:
    """A data dir whose event store holds one case, registered and dispatched to a unit; no view has read it."""
    data_dir = tmp_path_factory.mktemp("audit-accountability")
    clock = ManualClock(MONDAY)
    rt = open_runtime(load_settings(environ={}, data_dir=data_dir), clock)
    try:
        grid = set_up_district(rt.app)
        case = rt.app.execute(
            c.ReportCase(
                command_id="r", actor="resident:1", source="resident", category="C0101", grid=grid,
                description="井盖缺失",
            )
        ).aggregate_id  # fmt: skip
        clock.advance(timedelta(minutes=30))
        rt.app.execute(c.RegisterCase(command_id="g", actor="desk:140827", case_id=case, note="属实"))
        clock.advance(timedelta(minutes=5))
        rt.app.execute(
            c.DispatchCase(
                command_id="d", actor="desk:140827", case_id=case, unit="chengguan",
                deadline=clock.now() + timedelta(hours=8), reason="城管负责",
            )
        )  # fmt: skip
    finally:
        rt.close()
    return data_dir, case


@pytest.fixture
def data_dir(recorded: tuple[Path, UUID], tmp_path: Path) -> Path:
    copy = tmp_path / "var"
    shutil.copytree(recorded[0], copy)
    return copy


def _dispatch_to_nobody(data_dir: Path, case: UUID) -> None:
    """Rewrite the recorded Dispatched in the event store's file: neither unit nor worker."""
    with sqlite3.connect(data_dir / "events.sqlite") as db:
        rowid, state = db.execute(
            "SELECT rowid, state FROM stored_events WHERE originator_id = ? AND topic LIKE '%WorkOrder.Dispatched'",
            (case.hex,),
        ).fetchone()
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state.replace(b"chengguan", b""), rowid))
    db.close()


def test_a_sound_log_prints_the_summary_and_exits_0(data_dir: Path, recorded: tuple[Path, UUID]) -> None:
    done = gridloop(data_dir, "audit", "accountability")
    assert done.returncode == 0, done.stderr
    assert "事事有人办 — 1 cases (1 open)" in done.stdout
    assert "violations: 0 (unowned 0, overlap 0, gap 0, unknown_case 0)" in done.stdout
    assert "no violation" in done.stdout

    case = recorded[1]
    shown = json.loads(gridloop(data_dir, "audit", "accountability", "--case", case.hex[:8], "--json").stdout)
    assert [(h["party"], h["start_event"], h["end_event"]) for h in shown["holdings"]] == [
        ("desk:140827", "Reported", "Dispatched"), ("unit:chengguan", "Dispatched", None),
    ]  # fmt: skip
    assert shown["summary"]["violations"] == {"unowned": 0, "overlap": 0, "gap": 0, "unknown_case": 0}


def test_a_dispatch_to_nobody_is_printed_as_unowned_and_exits_1(data_dir: Path, recorded: tuple[Path, UUID]) -> None:
    case = recorded[1]
    _dispatch_to_nobody(data_dir, case)
    done = gridloop(data_dir, "audit", "accountability")
    assert done.returncode == 1, done.stderr
    assert "violations: 1 (unowned 1, overlap 0, gap 0, unknown_case 0)" in done.stdout
    assert f"│ {case.hex[:8]} │ unowned │" in done.stdout and "(still)" in done.stdout
    assert "1 of 1 violation(s) shown" in done.stdout

    shown = json.loads(gridloop(data_dir, "audit", "accountability", "--json").stdout)
    assert shown["matching"] == 1
    (violation,) = shown["violations"]
    assert (violation["case_id"], violation["kind"], violation["from_event"], violation["to_at"]) == (
        str(case),
        "unowned",
        "Dispatched",
        None,
    )
    assert violation["from_at"] == (MONDAY + timedelta(minutes=35)).isoformat()
    assert "the case has neither a unit nor a worker after Dispatched" in violation["message"]
    assert gridloop(data_dir, "audit", "accountability", "--kind", "overlap").returncode == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--kind", "late"), "unknown violation kind 'late'; known: unowned, overlap, gap, unknown_case"),
        (("--case", "abcdef"), "unknown case 'abcdef'"),
        (("--case", "not-hex"), "is not a case id"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_status_2(data_dir: Path, args: tuple[str, ...], words: str) -> None:
    done = gridloop(data_dir, "audit", "accountability", *args)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1
