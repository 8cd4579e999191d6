"""`gridloop audit case` through the real console script: the trace's tables, and its JSON and HTML exports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from engine import commands as c
from engine.clock import ManualClock
from ops.config import load_settings
from ops.runtime import open_runtime
from ops.sample import COMMUNITY, set_up_district
from tests.ops.test_cli import gridloop

MONDAY = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai
NOW = "2026-11-24T09:00+08:00"
HOSTILE = "<script>alert(1)</script> [bold]井盖[/bold]"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, UUID]:
    """A data dir whose event store holds one case, dispatched by a policy and handled (uploaded late); its
    views have not read any of it: the command must catch them up itself."""
    data_dir = tmp_path_factory.mktemp("audit-case")
    clock = ManualClock(MONDAY)
    rt = open_runtime(load_settings(environ={}, data_dir=data_dir), clock)
    try:
        grid = set_up_district(rt.app)
        rt.app.execute(
            c.EnrollWorker(
                command_id="w", actor="admin", code="W9", worker_name="W9", role="grid_worker", unit=COMMUNITY,
                grid=grid,
            )
        )  # fmt: skip
        rt.app.execute(c.SetDuty(command_id="on", actor="admin", worker="W9", on_duty=True))
        case = rt.app.execute(
            c.ReportCase(
                command_id="r", actor="resident:1", source="resident", category="C0101", grid=grid,
                description=HOSTILE,
            )
        ).aggregate_id  # fmt: skip
        clock.advance(timedelta(minutes=30))
        rt.app.execute(c.RegisterCase(command_id="g", actor="desk:140827", case_id=case, note="属实"))
        rt.app.execute(
            c.DispatchCase(
                command_id="d", actor="policy:balanced", case_id=case, worker="W9",
                deadline=clock.now() + timedelta(hours=8), reason="负载最低", policy="balanced", policy_version="2",
                inputs={"open_cases": "1"},
            )
        )  # fmt: skip
        clock.advance(timedelta(hours=1))
        rt.app.execute(c.AcceptCase(command_id="a", actor="W9", case_id=case))
        seen = clock.now()
        clock.advance(timedelta(hours=2))
        rt.app.execute(
            c.ReportHandling(command_id="h", actor="W9", case_id=case, result="已处置", photos=[], occurred_at=seen)
        )
    finally:
        rt.close()
    return data_dir, case


def test_the_trace_is_printed_as_steps_and_totals(recorded: tuple[Path, UUID]) -> None:
    data_dir, case = recorded
    done = gridloop(data_dir, "audit", "case", case.hex[:8], "--now", NOW)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for shown in ("上报", "立案", "派遣", "签收", "处置反馈", "policy balanced v2", "late upload +2h 00m"):
        assert shown in text, shown
    assert "time in each state" in text and "worker:W9" in text and "desk:140827" in text
    assert HOSTILE in text  # printed as written: neither markup for rich nor dropped
    assert "5 step(s)" in text


def test_both_exports_are_written_and_agree_with_json_on_stdout(recorded: tuple[Path, UUID], tmp_path: Path) -> None:
    data_dir, case = recorded
    html_file, json_file = tmp_path / "trace.html", tmp_path / "trace.json"
    args = ("audit", "case", str(case), "--now", NOW, "--html", str(html_file), "--json-out", str(json_file))
    done = gridloop(data_dir, *args, "--json")
    assert done.returncode == 0, done.stderr
    printed, written = json.loads(done.stdout), json.loads(json_file.read_text(encoding="utf-8"))
    assert printed == written
    assert [s["event_type"] for s in written["steps"]] == [
        "Reported", "Registered", "Dispatched", "Accepted", "HandlingReported",
    ]  # fmt: skip
    assert written["steps"][-1]["late_upload"] and written["case"]["description"] == HOSTILE
    html = html_file.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert re.findall(r"<[^>]*\b(?:src|href)\s*=", html) == []
    assert "http://" not in html and "https://" not in html
    assert f"wrote {json_file}" in done.stderr and f"wrote {html_file}" in done.stderr


def test_an_unknown_case_is_one_line_and_exit_status_2(recorded: tuple[Path, UUID]) -> None:
    done = gridloop(recorded[0], "audit", "case", "ffffffffffff")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown case 'ffffffffffff'"
