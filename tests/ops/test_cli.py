"""End to end through the real console script: simulate, board, case, queue, do, supervise, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from engine import commands as c
from engine.clock import ManualClock
from engine.process import Processes, ProcessManager
from ops.config import load_settings
from ops.runtime import open_runtime
from ops.sample import GRID, set_up_district

GRIDLOOP = shutil.which("gridloop", path=str(Path(sys.executable).parent))
SERVICE_GRID, REGISTERED_IN = "140827100001001", "140827100005001"  # two of Yuanqu's grids, in two communities


def gridloop(data_dir: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
    return subprocess.run(
        [GRIDLOOP, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env=_env(env), timeout=600
    )


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "GRIDLOOP_LOG_LEVEL": "warning", "COLUMNS": "200", **(extra or {})}


def do(data_dir: Path, action: str, env: Mapping[str, str] | None = None, **fields: str) -> dict[str, Any]:
    done = gridloop(data_dir, "do", action, *(f"{k}={v}" for k, v in fields.items()), env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("var")
    done = gridloop(data_dir, "simulate", "--preset", "yuanqu", "--days", "1", "--start", "2026-11-02", "--fresh")
    assert done.returncode == 0, done.stderr
    assert "垣曲县" in done.stdout and "Board" in done.stdout and "refused: 0" in done.stdout
    assert "dispatch policy balanced" in done.stdout and "policy refusals: 0" in done.stdout
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
    steps = [s["event_type"] for s in trace["timeline"] if s["event_type"] not in ("DeadlineWarned", "Escalated")]
    assert steps[:3] == ["Reported", "Registered", "Dispatched"]
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


def test_the_commands_of_dispatch_and_supervision_are_listed_with_their_fields(simulated: Path) -> None:
    listed = dict(line.split("  ", 1) for line in gridloop(simulated, "do").stdout.splitlines())
    assert listed["recategorise"].split()[-2:] == ["category", "reason"]
    assert "case_id reason" in listed["hand_over"]
    assert "case_id step threshold due policy policy_version" in listed["warn_deadline"]


def test_a_case_registered_through_the_cli_is_dispatched_by_the_policy_before_the_command_returns(
    simulated: Path,
) -> None:
    case = do(
        simulated, "report", command_id="cli-r-1", actor="resident:9", source="resident", category="S0201",
        grid=SERVICE_GRID, description="独居老人无人照看",
    )["aggregate_id"]  # fmt: skip
    registered = do(simulated, "register", command_id="cli-r-2", actor="op:140827-01", case_id=case)
    assert registered["events"] == ["Registered"]
    assert registered["policy_counts"] == {"Dispatched": 1}
    decision = registered["policies"][0]
    assert (decision["case_id"], decision["actor"]) == (case, "policy:dispatch/balanced")
    assert decision["details"]["reason"] and decision["details"]["deadline"]
    shown = json.loads(gridloop(simulated, "case", case, "--json").stdout)["case"]
    assert shown["status"] == "dispatched"
    assert shown["accountable"] in (
        f"unit:{decision['details'].get('unit')}",
        f"worker:{decision['details'].get('worker')}",
    )

    moved = do(simulated, "recategorise", command_id="cli-r-3", actor="op:140827-01", case_id=case, category="E0101",
               reason="实为暴露垃圾")  # fmt: skip
    assert moved["events"] == ["Recategorised"]
    assert moved["policy_counts"] == {"Reassigned": 1}
    assert moved["policies"][0]["details"]["unit"] == "chengguan"
    assert json.loads(gridloop(simulated, "case", case, "--json").stdout)["case"]["accountable"] == "unit:chengguan"


def test_without_a_dispatch_policy_the_desk_hands_a_county_wide_request_over_by_hand(
    simulated: Path, tmp_path: Path
) -> None:
    # A copy: the balanced policy, when it next runs on this store, would react to the registration too.
    simulated = Path(shutil.copytree(simulated, tmp_path / "var"))
    by_hand = {"GRIDLOOP_DISPATCH_POLICY": "none"}
    request = {"service_item": "TB02", "registered_in": REGISTERED_IN, "description": "申请临时救助"}
    case = do(
        simulated, "report", env=by_hand, command_id="cli-h-1", actor="resident:7", source="resident",
        category="S0201", grid=SERVICE_GRID, **request,
    )["aggregate_id"]  # fmt: skip
    assert do(simulated, "register", env=by_hand, command_id="cli-h-2", actor="op:1", case_id=case)["policies"] == []
    handed = do(simulated, "hand_over", env=by_hand, command_id="cli-h-3", actor="op:1", case_id=case, reason="转办")
    assert (handed["events"], handed["policies"]) == (["HandedOver"], [])
    shown = json.loads(gridloop(simulated, "case", case, "--json").stdout)["case"]
    assert (shown["status"], shown["accountable"]) == ("dispatched", "unit:140827100")


def test_supervise_warns_and_escalates_the_late_cases_once(simulated: Path) -> None:
    done = gridloop(simulated, "supervise", "--now", "2026-11-03T10:00+08:00", "--json")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["policy_counts"]["DeadlineWarned"] > 0 and first["policy_counts"]["Escalated"] > 0
    assert first["policy_refusals"] == []
    assert {e["actor"] for e in first["policies"]} <= {"policy:supervisor", "policy:dispatch/balanced"}
    again = json.loads(gridloop(simulated, "supervise", "--now", "2026-11-03T10:00+08:00", "--json").stdout)
    assert again["policies"] == []
    board = json.loads(gridloop(simulated, "board", "--summary", "--json", "--now", "2026-11-03T10:00+08:00").stdout)
    assert board["escalated"] > 0
    text = gridloop(simulated, "supervise", "--now", "2026-11-03T10:00+08:00")
    assert "balanced, supervisor: 0 event(s) recorded (nothing); refused: 0" in text.stdout


def test_supervise_follow_acts_every_few_seconds_until_terminated(simulated: Path) -> None:
    assert GRIDLOOP
    args = [GRIDLOOP, "--data-dir", str(simulated), "supervise", "--follow", "--every", "0.2", "--json"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) as running:
        assert running.stdout is not None
        rounds = [json.loads(running.stdout.readline()) for _ in range(2)]
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=60) == 0, running.stderr.read() if running.stderr else ""
    assert all(r["policy_refusals"] == [] for r in rounds)
    assert datetime.fromisoformat(rounds[1]["now"]) > datetime.fromisoformat(rounds[0]["now"])


def test_a_policy_command_the_engine_refuses_is_logged_and_reported(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path)
    rt = open_runtime(settings, ManualClock(datetime.fromisoformat("2026-11-23T09:00+08:00")))
    try:
        set_up_district(rt.app)
        rt.processes = Processes(rt.app, [_AcceptsEverything()])
        report = c.ReportCase(
            command_id="r-1", actor="resident:1", source="resident", category="S0201", grid=GRID, description="情况"
        )
        rt.app.execute(report)
        with capture_logs() as logs:
            run = rt.run_processes()
        assert [r.command.name if r.command else "" for r in run.refusals] == ["accept"]
        assert "cannot accept a case that is reported" in run.refusals[0].error
        refused = [entry for entry in logs if entry["event"] == "policy_command_refused"]
        assert refused and refused[0]["policy"] == "accepts-everything" and refused[0]["command_id"] == "x:r"
        assert rt.run_processes().refusals == ()  # logged once
    finally:
        rt.close()


class _AcceptsEverything(ProcessManager):
    """A policy that signs for every reported case at once: the engine refuses it (nothing was dispatched)."""

    name = "accepts-everything"
    version = "0"

    def observe(self, event: Any, position: int) -> None:
        pass

    def react(self, event: Any, position: int) -> list[c.Command]:
        if type(event).__name__ != "Reported":
            return []
        return [c.AcceptCase(command_id="x:r", actor=self.actor, case_id=event.originator_id)]


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
        (("simulate", "--dispatch", "random", "--start", "2026-11-02"), "unknown dispatch policy 'random'"),
        (("simulate", "--start", "2026-11-02"), "already holds 2026-11-02 of preset yuanqu"),
        (("supervise", "--now", "2999-01-01T00:00+08:00"), "is in the future"),
        (("supervise", "--follow", "--now", "2026-11-03T10:00+08:00"), "give one or the other"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_status_2(simulated: Path, args: tuple[str, ...], words: str) -> None:
    done = gridloop(simulated, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert words in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({"GRIDLOOP_DISPATCH_POLICY": "random"}, ("board",), "dispatch_policy: 'random'; allowed: balanced"),
        ({"GRIDLOOP_DISPATCH_POLICY": "none", "GRIDLOOP_SUPERVISE": "no"}, ("supervise",), "nothing to run"),
    ],
)
def test_a_configuration_the_policies_cannot_run_with_gets_one_clear_line(
    simulated: Path, env: dict[str, str], args: tuple[str, ...], words: str
) -> None:
    done = gridloop(simulated, *args, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert words in done.stderr and "Traceback" not in done.stderr
