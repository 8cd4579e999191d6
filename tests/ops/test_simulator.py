"""The district simulator: deterministic, idempotent, legal commands only, and every path of the closed loop."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from engine.application import Gridloop
from engine.clock import ManualClock
from engine.errors import UnknownReference
from engine.lifecycle import Status, status_after
from engine.working_time import china_calendar
from ops.presets import Preset, StaffSpec, load_preset
from ops.simulation.district import plan_district, setup_commands
from ops.simulation.working_time import ZONE, add_working, is_working, midnight
from ops.simulator import SimulationReport, simulate

START = date(2026, 11, 23)  # a Monday
SUNDAY = date(2026, 11, 22)
DESK_EVENTS = ("Registered", "Rejected", "Merged", "Dispatched", "Verified", "CalledBack", "Suspended", "Resumed")
"""What the desk does, and the dispatches the policy makes at once when the desk registers, verifies or calls back."""


# -- helpers --------------------------------------------------------------------------------


def _store(path: Path | None = None) -> tuple[Gridloop, ManualClock]:
    """An app on a fresh SQLite store (a file when it must be opened twice, else in memory) and its clock."""
    clock = ManualClock(midnight(START))
    name = str(path) if path is not None else ":memory:"
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": name}, clock=clock), clock


def _small_yuanqu() -> Preset:
    """Two of Yuanqu's communities (17 grids) with their share of the staff: a quick district to run often."""
    yuanqu = load_preset("yuanqu")
    return dataclasses.replace(
        yuanqu,
        name="yuanqu-small",
        communities=yuanqu.communities[:2],
        staff=StaffSpec(grid_leaders=3, grid_workers=17, grid_assistants=34, mediators=1),
    )


def _notifications(app: Gridloop) -> Iterator[Any]:
    start = 1
    while page := app.recorder.select_notifications(start, 2000):
        yield from page
        start = page[-1].id + 1


def _log(app: Gridloop) -> list[tuple[str, bytes]]:
    return [(n.topic, n.state) for n in _notifications(app)]


def _events(app: Gridloop, kind: str) -> list[Any]:
    prefix = {"case": "engine.work_order:", "patrol": "engine.patrol:", "worker": "engine.reference:Worker."}[kind]
    return [app.mapper.to_domain_event(n) for n in _notifications(app) if n.topic.startswith(prefix)]


POLICY_EVENTS = ("Dispatched", "Reassigned", "DeadlineWarned", "Escalated", "HandedOver")
"""The events a policy's command records (one command, one event)."""


def _name(event: Any) -> str:
    return type(event).__name__


def _final_statuses(case_events: list[Any]) -> dict[UUID, Status]:
    """Each case's status, folded from its events by the lifecycle table, independently of the simulator."""
    status: dict[UUID, Status] = {}
    suspended_from: dict[UUID, Status] = {}
    for event in case_events:
        case, name = event.originator_id, _name(event)
        after = status_after(
            name,
            status.get(case),
            suspended_from.get(case),
            passed=getattr(event, "passed", None),
            fixed=getattr(event, "fixed", None),
        )
        if name == "Suspended":
            suspended_from[case] = status[case]
        elif name == "Resumed":
            suspended_from.pop(case)
        status[case] = after
    return status


@pytest.fixture(scope="module")
def yuanqu() -> tuple[Gridloop, SimulationReport]:
    """Two simulated days of Yuanqu County (99 grids) in a fresh store."""
    app, clock = _store()
    return app, simulate(app, clock, load_preset("yuanqu"), days=2, start=START)


# -- determinism and idempotency ------------------------------------------------------------------


def test_the_same_seed_records_the_same_log_and_report_in_two_fresh_stores() -> None:
    first_app, first_clock = _store()
    second_app, second_clock = _store()
    first = simulate(first_app, first_clock, _small_yuanqu(), days=2, start=START, seed=7)
    second = simulate(second_app, second_clock, _small_yuanqu(), days=2, start=START, seed=7)
    assert first.events_recorded > 1000
    assert _log(first_app) == _log(second_app)
    assert first == second


def test_a_different_seed_gives_a_different_day_in_the_same_district() -> None:
    first_app, first_clock = _store()
    second_app, second_clock = _store()
    simulate(first_app, first_clock, _small_yuanqu(), start=START, seed=7)
    simulate(second_app, second_clock, _small_yuanqu(), start=START, seed=8)
    assert _log(first_app) != _log(second_app)
    # The reference model (names included) comes from the preset, so the two runs share it.
    assert [e.__dict__ for e in _events(first_app, "worker") if _name(e) == "Enrolled"] == [
        e.__dict__ for e in _events(second_app, "worker") if _name(e) == "Enrolled"
    ]


def test_a_day_the_store_already_holds_is_refused_and_a_later_day_repeats_only_the_set_up(tmp_path: Path) -> None:
    path = tmp_path / "district.sqlite"
    app, clock = _store(path)
    first = simulate(app, clock, _small_yuanqu(), start=START)
    again_app, again_clock = _store(path)
    with pytest.raises(ValueError, match="already holds 2026-11-23 of preset yuanqu-small with seed 140827"):
        simulate(again_app, again_clock, _small_yuanqu(), start=START)
    assert again_app.recorder.max_notification_id() == first.last_position
    later = simulate(again_app, again_clock, _small_yuanqu(), start=START + timedelta(days=1))
    setup = sum(1 for _ in setup_commands(plan_district(_small_yuanqu())))
    assert first.commands_repeated == 0
    assert later.commands_repeated == setup
    assert later.first_position == first.last_position and later.events_recorded > 500
    assert (later.refused_commands, later.policy_refusals) == (0, 0), later.refusals + later.policy_refusal_texts


def test_the_desk_runs_the_dispatch_policy_it_is_given() -> None:
    app, clock = _store()
    report = simulate(app, clock, _small_yuanqu(), start=START, dispatch="grid-owner")
    assert (report.dispatch, report.refused_commands, report.policy_refusals) == ("grid-owner", 0, 0)
    dispatched = [e for e in _events(app, "case") if _name(e) == "Dispatched"]
    assert dispatched and {(e.policy, e.actor) for e in dispatched} == {("grid-owner", "policy:dispatch/grid-owner")}


def test_an_unknown_dispatch_policy_is_refused_with_the_known_ones() -> None:
    app, clock = _store()
    with pytest.raises(UnknownReference, match="balanced, grid-owner"):
        simulate(app, clock, _small_yuanqu(), start=START, dispatch="random")


def test_on_a_sunday_of_the_mainland_calendar_cases_are_dispatched_but_no_deadline_clock_runs() -> None:
    clock = ManualClock(midnight(SUNDAY))
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}, clock=clock,
                   calendar=china_calendar())  # fmt: skip
    report = simulate(app, clock, _small_yuanqu(), start=SUNDAY)
    named = Counter(_name(e) for e in _events(app, "case"))
    assert named["Dispatched"] > 10
    assert report.warnings == {}
    assert named["DeadlineWarned"] == 0
    assert all(e.actor.startswith("supervisor:") for e in _events(app, "case") if _name(e) == "Escalated")


def test_a_clock_past_the_start_is_refused_because_it_does_not_go_back() -> None:
    app, clock = _store()
    clock.set(midnight(START) + timedelta(hours=9))
    with pytest.raises(ValueError, match="does not go back"):
        simulate(app, clock, _small_yuanqu(), start=START)


def test_without_a_start_the_run_begins_at_the_next_local_midnight() -> None:
    app, clock = _store()
    clock.set(midnight(START) + timedelta(hours=9))
    report = simulate(app, clock, _small_yuanqu())
    assert report.start == midnight(START + timedelta(days=1))
    assert clock.now() == report.end == midnight(START + timedelta(days=2))


# -- a simulated Yuanqu ---------------------------------------------------------------------------------


def test_a_simulated_yuanqu_issues_only_legal_commands(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    _, report = yuanqu
    assert report.refused_commands == 0, report.refusals
    assert report.refusals == ()
    assert report.commands_executed > 5000


def test_the_policies_command_nothing_the_engine_refuses(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    _, report = yuanqu
    assert report.policy_refusals == 0, report.policy_refusal_texts
    assert report.policy_commands > 500
    assert json.loads(json.dumps(report.as_dict()))["dispatch"] == "balanced"


def test_every_dispatch_is_the_policy_s_decision_with_its_reason_and_inputs(
    yuanqu: tuple[Gridloop, SimulationReport],
) -> None:
    app, _ = yuanqu
    moves = [e for e in _events(app, "case") if _name(e) in ("Dispatched", "Reassigned")]
    assert moves
    for move in moves:
        assert (move.actor, move.policy, move.policy_version) == ("policy:dispatch/balanced", "balanced", "1")
        assert move.reason and move.inputs["category"] and move.inputs["trigger"]
        assert move.worker or move.unit


def test_a_returned_case_is_dispatched_again_to_another_party(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    app, report = yuanqu
    cases = _events(app, "case")
    assert report.returns > 0
    for index, event in enumerate(cases):
        if _name(event) != "Returned":
            continue
        again = next(e for e in cases[index:] if e.originator_id == event.originator_id and _name(e) == "Dispatched")
        assert event.actor not in (again.worker, again.unit)
        assert again.occurred_at == event.occurred_at


def test_every_path_of_the_closed_loop_is_exercised(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    app, _ = yuanqu
    cases = _events(app, "case")
    seen = Counter(_name(e) for e in cases)
    for step in (
        "Reported",
        "Registered",
        "Rejected",
        "Merged",
        "DuplicateLinked",
        "Dispatched",
        "Accepted",
        "Returned",
        "ExtensionRequested",
        "ExtensionGranted",
        "ExtensionDenied",
        "Suspended",
        "Resumed",
        "HandlingReported",
        "Verified",
        "Escalated",
        "DeadlineWarned",
        "Reassigned",
        "CalledBack",
    ):
        assert seen[step] > 0, f"no {step} in two days of Yuanqu"
    assert any(_name(e) == "Verified" and not e.passed for e in cases), "no rework"
    assert any(_name(e) == "CalledBack" and not e.fixed for e in cases), "no call-back answering not fixed"
    assert max(e.level for e in cases if _name(e) == "Escalated" and e.actor == "policy:supervisor") >= 2
    assert any(_name(e) == "Escalated" and not e.actor.startswith("policy:") for e in cases), "no resident urged"
    assert {e.threshold for e in cases if _name(e) == "DeadlineWarned"} == {50, 75, 100}
    assert {e.source for e in cases if _name(e) == "Reported"} == {
        "patrol",
        "resident",
        "hotline",
        "app",
        "department",
        "sensor",
    }
    patrols = Counter(_name(e) for e in _events(app, "patrol"))
    assert patrols["Started"] == patrols["Ended"] > 0
    assert patrols["FindingReported"] == sum(1 for e in cases if _name(e) == "Reported" and e.source == "patrol")


def test_every_case_is_open_with_exactly_one_accountable_party_or_closed_with_none(
    yuanqu: tuple[Gridloop, SimulationReport],
) -> None:
    app, _ = yuanqu
    reported = [e.originator_id for e in _events(app, "case") if _name(e) == "Reported"]
    open_cases = 0
    for case_id in reported:
        case = app.case(case_id)
        if case.is_open:
            open_cases += 1
            assert case.accountable is not None
            assert case.accountable.split(":", 1)[0] in ("desk", "unit", "worker")
        else:
            assert case.accountable is None
    assert 0 < open_cases < len(reported)


def test_the_report_matches_counts_folded_from_the_event_log(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    app, report = yuanqu
    cases = _events(app, "case")
    named = Counter(_name(e) for e in cases)
    assert report.cases_reported == dict(Counter(e.source for e in cases if _name(e) == "Reported"))
    assert report.cases_by_status == dict(Counter(s.value for s in _final_statuses(cases).values()))
    assert report.rejections == named["Rejected"]
    assert report.merges == named["Merged"] == named["DuplicateLinked"]
    assert report.returns == named["Returned"]
    assert report.reworks == sum(1 for e in cases if _name(e) == "Verified" and not e.passed)
    assert report.extensions_requested == named["ExtensionRequested"]
    assert report.extensions_granted == named["ExtensionGranted"]
    assert report.extensions_denied == named["ExtensionDenied"]
    assert report.suspensions == named["Suspended"]
    assert report.escalations == named["Escalated"] == sum(report.escalations_by_level.values())
    assert report.escalations_by_level == dict(Counter(e.level for e in cases if _name(e) == "Escalated"))
    assert report.warnings == dict(Counter(e.threshold for e in cases if _name(e) == "DeadlineWarned"))
    assert report.reassignments == named["Reassigned"]
    policy_events = sum(1 for e in cases if _name(e) in POLICY_EVENTS and e.actor.startswith("policy:"))
    assert report.policy_commands == policy_events
    assert report.call_backs == named["CalledBack"]
    assert report.not_fixed == sum(1 for e in cases if _name(e) == "CalledBack" and not e.fixed)
    assert report.patrols == Counter(_name(e) for e in _events(app, "patrol"))["Started"]
    assert report.events_recorded == report.last_position - report.first_position == len(_log(app))


def test_the_report_agrees_with_each_case_aggregate(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    app, report = yuanqu
    reported = [e.originator_id for e in _events(app, "case") if _name(e) == "Reported"]
    assert report.cases_by_status == dict(Counter(app.case(case_id).status.value for case_id in reported))


def test_the_desk_acts_in_working_hours_and_late_uploads_are_at_most_two_hours_late(
    yuanqu: tuple[Gridloop, SimulationReport],
) -> None:
    app, report = yuanqu
    cases = _events(app, "case")
    desk = [e for e in cases if _name(e) in DESK_EVENTS]
    assert desk and all(is_working(e.occurred_at) for e in desk)
    late = [e for e in cases + _events(app, "patrol") if e.occurred_at < e.timestamp]
    assert late, "no patrol uploaded late"
    assert all(e.timestamp - e.occurred_at <= timedelta(hours=2) for e in late)
    assert report.late_uploads > 0
    assert all(e.timestamp.tzinfo is not None and e.timestamp.utcoffset() == timedelta(hours=8) for e in cases)


def test_workers_sign_in_in_the_morning_and_out_at_night(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    app, _ = yuanqu
    duty = [e for e in _events(app, "worker") if _name(e) in ("WentOnDuty", "WentOffDuty")]
    on = [e.occurred_at.astimezone(ZONE) for e in duty if _name(e) == "WentOnDuty"]
    off = [e.occurred_at.astimezone(ZONE) for e in duty if _name(e) == "WentOffDuty"]
    assert len(on) == len(off) == 2 * (99 + 15 + 6)  # grid workers, leaders, mediators, two days
    assert all(e.hour == 8 and 15 <= e.minute < 30 for e in on)
    assert all(e.hour == 17 and 30 <= e.minute < 45 for e in off)


def test_patrol_checkpoints_lie_inside_their_synthetic_grid(yuanqu: tuple[Gridloop, SimulationReport]) -> None:
    app, _ = yuanqu
    patrol_events = _events(app, "patrol")
    grid_of = {e.originator_id: e.grid for e in patrol_events if _name(e) == "Started"}
    boxes: dict[str, list[float]] = {}
    for code in set(grid_of.values()):
        ring = json.loads(app.grid(code).boundary)["coordinates"][0]
        boxes[code] = [ring[0][0], ring[0][1], ring[2][0], ring[2][1]]
    visits = [e for e in patrol_events if _name(e) == "CheckpointVisited"]
    assert visits
    for visit in visits:
        west, south, east, north = boxes[grid_of[visit.originator_id]]
        assert west < visit.lon < east and south < visit.lat < north


# -- the district and the working day ------------------------------------------------------------------


def test_shizuishan_is_planned_as_one_worker_and_four_assistants_per_grid() -> None:
    district = plan_district(load_preset("shizuishan"))
    roles = Counter(w.role for w in district.workers)
    assert len(district.grids) == 547
    assert roles == {"grid_worker": 547, "grid_assistant": 2188, "grid_leader": 119, "mediator": 119}
    assert len({w.code for w in district.workers}) == len(district.workers)
    assistants = Counter(w.grid for w in district.workers if w.role == "grid_assistant")
    assert set(assistants.values()) == {4}
    assert all(g.name.endswith("(示意)") and json.loads(g.box.polygon())["type"] == "Polygon" for g in district.grids)


def test_yuanqu_grid_leaders_each_lead_a_block_of_grids_covering_all_99() -> None:
    district = plan_district(load_preset("yuanqu"))
    leaders = [w for w in district.workers if w.role == "grid_leader"]
    assert len(leaders) == 15
    led = [code for leader in leaders for code in leader.grids]
    assert sorted(led) == sorted(g.code for g in district.grids)
    assert all(6 <= len(leader.grids) <= 7 for leader in leaders)


def test_the_desk_clock_stops_at_night() -> None:
    evening = datetime(2026, 11, 23, 17, 20, tzinfo=ZONE)
    assert add_working(evening, timedelta(minutes=25)) == datetime(2026, 11, 24, 8, 45, tzinfo=ZONE)
    night = datetime(2026, 11, 23, 22, 0, tzinfo=ZONE)
    assert add_working(night, timedelta(minutes=5)) == datetime(2026, 11, 24, 8, 35, tzinfo=ZONE)
    assert add_working(datetime(2026, 11, 24, 9, 0, tzinfo=ZONE), timedelta(minutes=30)).hour == 9
