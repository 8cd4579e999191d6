"""The auto-dispatch policy (自动派遣) on a real store: routing, workload balance, returns, timeouts, rosters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from engine import commands as c
from engine.lifecycle import Status
from engine.policies import managers
from tests.engine.policy_district import (
    COMMUNITY,
    DEPARTMENT_WORK,
    GRID2,
    MEDIATION,
    District,
    build,
)


@pytest.fixture
def district(tmp_path: Path) -> District:
    return build(tmp_path / "events.sqlite", supervise=False)


def events_of(district: District, case: UUID) -> list[Any]:
    return list(district.app.events.get(case))


def dispatches(district: District, case: UUID) -> list[Any]:
    return [e for e in events_of(district, case) if type(e).__name__ in ("Dispatched", "Reassigned")]


def test_a_registered_grid_case_goes_to_an_on_duty_worker_of_its_grid_with_the_decision_explained(
    district: District,
) -> None:
    case = district.report_and_register()
    order = district.app.case(case)
    assert order.status is Status.DISPATCHED
    assert order.worker in {"W1", "W2", "A1"}
    (decision,) = dispatches(district, case)
    assert (decision.policy, decision.policy_version) == ("balanced", "1")
    assert decision.actor == "policy:dispatch/balanced"
    assert decision.inputs["trigger"].startswith("Registered@")
    assert decision.inputs["candidates"] == "A1=0,W1=0,W2=0"
    assert decision.worker in decision.reason


def test_the_balanced_policy_spreads_open_work_over_the_grids_staff(district: District) -> None:
    cases = [district.report_and_register() for _ in range(6)]
    load = Counter(district.app.case(case).worker for case in cases)
    assert load == {"A1": 2, "W1": 2, "W2": 2}


def test_the_grid_owner_policy_keeps_giving_the_grid_worker_its_cases(tmp_path: Path) -> None:
    district = build(tmp_path / "owner.sqlite", dispatch="grid-owner", supervise=False)
    cases = [district.report_and_register() for _ in range(4)]
    assert {district.app.case(case).worker for case in cases} == {"W1"}
    assert dispatches(district, cases[0])[0].policy == "grid-owner"


def test_when_the_grids_staff_are_loaded_the_community_s_other_grid_workers_are_considered(district: District) -> None:
    for _ in range(9):  # three each for W1, W2, A1: every candidate of the grid at the spill load
        district.report_and_register()
    spilled = district.report_and_register()
    assert district.app.case(spilled).worker == "W3"
    assert "W3=0" in dispatches(district, spilled)[0].inputs["candidates"]


def test_a_category_needing_a_skill_goes_to_the_skilled_worker(district: District) -> None:
    case = district.report_and_register(MEDIATION)
    assert district.app.case(case).worker == "M1"


def test_department_work_goes_to_the_catalogues_department_as_a_unit(district: District) -> None:
    case = district.report_and_register(DEPARTMENT_WORK)
    order = district.app.case(case)
    expected = district.app.catalogue.category(DEPARTMENT_WORK).department
    assert (order.unit, order.worker) == (expected, "")
    assert dispatches(district, case)[0].inputs["route"].startswith(("catalogue:", "rule:"))


def test_nothing_is_dispatched_to_an_off_duty_worker(district: District) -> None:
    for worker in ("W1", "W2", "A1"):
        district.duty(worker, False)
    case = district.report_and_register()
    order = district.app.case(case)
    assert (order.unit, order.worker) == (COMMUNITY, "")  # 属地兜底: the community holds it
    assert dispatches(district, case)[0].inputs["off_duty"] == "A1,W1,W2"


def test_a_returned_case_is_re_routed_without_the_party_that_returned_it(district: District) -> None:
    case = district.report_and_register()
    first = district.app.case(case).worker
    district.run(c.ReturnCase, case_id=case, reason="不属本人负责", actor=first)
    order = district.app.case(case)
    assert order.status is Status.DISPATCHED
    assert order.worker not in ("", first)
    last = dispatches(district, case)[-1]
    assert first in last.inputs["excluded"] and "退单" in last.reason


def test_a_case_not_signed_for_in_time_is_reassigned(district: District) -> None:
    case = district.report_and_register()
    first = district.app.case(case).worker
    district.later(minutes=20)
    assert district.app.case(case).worker == first  # 30 working minutes to sign for a normal case
    district.later(minutes=15)
    order = district.app.case(case)
    assert order.status is Status.DISPATCHED and order.worker not in ("", first)
    reassigned = dispatches(district, case)[-1]
    assert type(reassigned).__name__ == "Reassigned"
    assert reassigned.inputs["trigger"].startswith("sign-for timeout") and "签收超时" in reassigned.reason


def test_a_signed_case_is_not_reassigned(district: District) -> None:
    case = district.report_and_register()
    district.run(c.AcceptCase, case_id=case, actor=district.app.case(case).worker)
    district.later(hours=3)
    assert len(dispatches(district, case)) == 1


def test_a_worker_going_off_duty_hands_on_cases_not_yet_signed_for(district: District) -> None:
    case = district.report_and_register()
    first = district.app.case(case).worker
    district.duty(first, False)
    assert district.app.case(case).worker not in ("", first)


def test_a_recategorised_case_is_rerouted_when_its_route_changes(district: District) -> None:
    case = district.report_and_register()
    district.run(c.RecategoriseCase, case_id=case, category=DEPARTMENT_WORK, reason="实为暴露垃圾")
    order = district.app.case(case)
    assert order.unit == district.app.catalogue.category(DEPARTMENT_WORK).department
    assert "改类" in dispatches(district, case)[-1].reason


def test_a_manual_dispatch_by_an_operator_overrides_the_policy_with_a_reason(district: District) -> None:
    case = district.report_and_register()
    district.run(c.ReassignCase, case_id=case, worker="W3", unit=COMMUNITY, reason="熟悉情况, 人工改派")
    order = district.app.case(case)
    assert order.worker == "W3"
    assert dispatches(district, case)[-1].policy == ""
    with pytest.raises(Exception, match="reason"):
        district.run(c.ReassignCase, case_id=case, worker="W1", unit=COMMUNITY, reason="")


def test_a_case_in_another_grid_goes_to_that_grids_worker(district: District) -> None:
    case = district.report_and_register(grid=GRID2)
    assert district.app.case(case).worker == "W3"


def test_an_unknown_policy_name_is_refused_with_the_known_ones(district: District) -> None:
    with pytest.raises(Exception, match="balanced") as refused:
        managers(district.app, dispatch="nearest")
    assert "grid-owner" in str(refused.value) and "none" in str(refused.value)
