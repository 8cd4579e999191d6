"""The supervisor (督办) under a manual clock: warnings at 50/75/100 %, the escalation ladder, pauses and extensions."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from engine import commands as c
from engine.supervisor import RUNG_HOURS
from tests.engine.policy_district import CST, DEPARTMENT_WORK, MONDAY, District, build

NORMAL = "E0102"  # 积存垃圾渣土: normal tier, 8 working hours, a department's
KEY = "C0101"  # 井盖缺失: emergency and key, 2 working hours


@pytest.fixture
def district(tmp_path: Path) -> District:
    return build(tmp_path / "events.sqlite")


def of_kind(district: District, case: UUID, name: str) -> list[Any]:
    return [e for e in district.app.events.get(case) if type(e).__name__ == name]


def warnings(district: District, case: UUID, step: str = "handle") -> list[tuple[int, str, datetime]]:
    return [(e.threshold, e.light, e.occurred_at) for e in of_kind(district, case, "DeadlineWarned") if e.step == step]


def ticks(district: District, until: datetime, every: timedelta = timedelta(minutes=15)) -> None:
    while district.clock.now() + every <= until:
        district.later(seconds=every.total_seconds())
    district.at(until)


def test_a_step_is_warned_at_half_three_quarters_and_all_of_its_limit_dated_when_it_was_reached(
    district: District,
) -> None:
    case = district.report_and_register(NORMAL)  # dispatched 09:00 Monday, 8 working hours
    due = district.app.case(case).deadline
    assert due == datetime(2026, 11, 23, 17, 0, tzinfo=CST)
    ticks(district, datetime(2026, 11, 24, 10, 0, tzinfo=CST))
    found = warnings(district, case)
    assert [(t, light) for t, light, _ in found] == [(50, "green"), (75, "yellow"), (100, "red")]
    assert [at for _, _, at in found] == [
        datetime(2026, 11, 23, 13, 0, tzinfo=CST),
        datetime(2026, 11, 23, 15, 0, tzinfo=CST),
        datetime(2026, 11, 23, 17, 0, tzinfo=CST),
    ]
    assert all(e.policy == "supervisor" and e.due == due for e in of_kind(district, case, "DeadlineWarned"))


def test_an_overdue_case_climbs_the_ladder_one_rung_per_rung_deadline(district: District) -> None:
    case = district.report_and_register(NORMAL)
    ticks(district, datetime(2026, 11, 24, 9, 0, tzinfo=CST))
    levels = [(e.level, e.occurred_at) for e in of_kind(district, case, "Escalated")]
    assert levels == [(1, datetime(2026, 11, 23, 17, 0, tzinfo=CST))]
    ticks(district, datetime(2026, 11, 27, 17, 0, tzinfo=CST))
    escalations = of_kind(district, case, "Escalated")
    assert [e.level for e in escalations] == [1, 2, 3, 4]  # grid leader, community, street, district; not the city
    first, second = escalations[0], escalations[1]
    assert first.due == district.app.calendar.add(first.occurred_at, timedelta(hours=RUNG_HOURS[1]))
    assert second.occurred_at == first.due  # the next level takes over when the rung's own deadline passes
    assert first.policy == "supervisor" and first.inputs["step"] == "handle" and "督办至网格长" in first.reason


def test_a_key_case_escalates_at_three_quarters_and_climbs_twice_as_fast(district: District) -> None:
    case = district.report_and_register(KEY)  # 2 working hours → due 11:00, 75 % at 10:30
    ticks(district, datetime(2026, 11, 23, 11, 0, tzinfo=CST))
    first, *_ = of_kind(district, case, "Escalated")
    assert first.occurred_at == datetime(2026, 11, 23, 10, 30, tzinfo=CST)
    assert first.inputs["key"] == "true"
    assert first.due == first.occurred_at + timedelta(hours=RUNG_HOURS[1] / 2)


def test_a_suspension_pauses_the_clock_and_the_deadline_moves_by_the_time_parked(district: District) -> None:
    case = district.report_and_register(NORMAL)
    worker = district.app.case(case).worker or district.app.case(case).unit
    district.run(c.AcceptCase, case_id=case, actor=worker)
    district.at(datetime(2026, 11, 23, 10, 0, tzinfo=CST))
    district.run(c.SuspendCase, case_id=case, reason="等待专项资金")
    ticks(district, datetime(2026, 11, 25, 10, 0, tzinfo=CST))  # two working days parked
    assert warnings(district, case) == []  # a paused clock raises nothing
    district.run(c.ResumeCase, case_id=case)
    moved = district.app.case(case).deadline
    assert moved == datetime(2026, 11, 25, 17, 0, tzinfo=CST)  # the 7 working hours left, counted from Wednesday 10:00
    ticks(district, datetime(2026, 11, 25, 13, 0, tzinfo=CST))
    assert [t for t, _, _ in warnings(district, case)] == [50]
    assert of_kind(district, case, "Escalated") == []


def test_a_granted_extension_moves_the_deadline_and_the_warnings_with_it(district: District) -> None:
    case = district.report_and_register(NORMAL)
    assignee = district.app.case(case).worker or district.app.case(case).unit
    district.run(c.AcceptCase, case_id=case, actor=assignee)
    until = datetime(2026, 11, 27, 17, 0, tzinfo=CST)
    district.run(c.RequestExtension, case_id=case, until=until, reason="需协调多部门", actor=assignee)
    district.run(c.GrantExtension, case_id=case, note="同意")
    ticks(district, datetime(2026, 11, 24, 10, 0, tzinfo=CST))  # past the old deadline
    assert 100 not in [t for t, _, _ in warnings(district, case)]
    assert of_kind(district, case, "Escalated") == []


def test_a_case_handled_in_time_is_not_escalated_and_its_verification_is_timed(district: District) -> None:
    case = district.report_and_register(DEPARTMENT_WORK)
    unit = district.app.case(case).unit
    district.run(c.AcceptCase, case_id=case, actor=unit)
    district.at(datetime(2026, 11, 23, 10, 0, tzinfo=CST))
    district.run(c.ReportHandling, case_id=case, result="已清运", actor=unit)
    ticks(district, datetime(2026, 11, 23, 12, 0, tzinfo=CST))  # 核查 within 1 working hour
    assert [t for t, _, _ in warnings(district, case, "verify")] == [50, 75, 100]
    assert [e.inputs["step"] for e in of_kind(district, case, "Escalated")] == ["verify"]
    district.run(c.VerifyCase, case_id=case, passed=True)
    ticks(district, datetime(2026, 11, 30, 12, 0, tzinfo=CST))
    assert [e.level for e in of_kind(district, case, "Escalated")] == [1]  # a closed case is left alone


def test_the_same_log_and_clock_give_the_same_decisions(tmp_path: Path) -> None:
    def run(name: str) -> list[tuple[str, str, datetime]]:
        district = build(tmp_path / name)
        cases = [district.report_and_register(code) for code in (NORMAL, KEY, DEPARTMENT_WORK)]
        ticks(district, MONDAY + timedelta(days=3))
        return [
            (type(e).__name__, str(getattr(e, "level", getattr(e, "threshold", ""))), e.occurred_at)
            for case in cases
            for e in district.app.events.get(case)
        ]

    assert run("a.sqlite") == run("b.sqlite")
