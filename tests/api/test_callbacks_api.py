"""GET /v1/callbacks through the real server: the CLI's queue, due times and scopes, and a miss then a reopen."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from engine.work_order import CALL_BACK_MISSES, RESIDENT_SOURCES
from ops.cli import main
from projections.api.access import Role
from projections.queries import find_case

from .conftest import DISTRICT, SERVED_AT, Api


def queue(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/callbacks", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["consistency"]["reached"] is True
    tasks: list[dict[str, Any]] = body["tasks"]
    return tasks


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_desk_reads_the_queue_the_cli_prints_soonest_due_first(api: Api) -> None:
    tasks = queue(api.as_role(Role.DISPATCHER))
    # The simulated day closed residents' cases; their call-backs fall on the next working day, not simulated.
    assert len(tasks) > 5
    assert {t["source"] for t in tasks} <= set(RESIDENT_SOURCES)
    assert [t["due_at"] for t in tasks] == sorted(t["due_at"] for t in tasks)
    for task in tasks:
        # Closed on Monday 2 November: due three working days later, on Thursday, at the same time of day.
        assert moment(task["due_at"]) - moment(task["closed_at"]) == timedelta(days=3)
        assert not task["overdue"] and task["attempts"] == 0
    printed = CliRunner().invoke(
        main, ["--data-dir", str(api.settings.data_dir), "callbacks", "--json", "--now", SERVED_AT.isoformat()]
    )
    assert printed.exit_code == 0, printed.output
    assert [(t["case_id"], moment(t["due_at"])) for t in json.loads(printed.stdout)] == [
        (t["case_id"], moment(t["due_at"])) for t in tasks
    ]


def test_overdue_and_due_before_are_judged_at_the_moment_asked(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER)
    tasks = queue(desk)
    last_due = moment(tasks[-1]["due_at"])
    assert queue(desk, overdue="true") == []
    late = queue(desk, overdue="true", now=(last_due + timedelta(seconds=1)).isoformat())
    assert [t["case_id"] for t in late] == [t["case_id"] for t in tasks] and all(t["overdue"] for t in late)
    first_due = moment(tasks[0]["due_at"])
    before = queue(desk, due_before=(first_due + timedelta(microseconds=1)).isoformat())
    assert [t["case_id"] for t in before] == [t["case_id"] for t in tasks if moment(t["due_at"]) <= first_due]


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (Role.SUPERVISOR, 200), (Role.AUDITOR, 200), (Role.ADMIN, 200), (Role.ANALYST, 403),
        (Role.GRID_WORKER, 403), (Role.DEPARTMENT, 403), (Role.REPORTER, 403),
    ],
)  # fmt: skip
def test_only_the_desk_supervision_and_audit_read_residents_numbers(api: Api, role: Role, status: int) -> None:
    assert api.as_role(role).get("/v1/callbacks").status_code == status


def test_a_dispatcher_sees_the_call_backs_of_its_own_community_only(api: Api) -> None:
    views = api.service.rt.views
    everything = queue(api.as_role(Role.DISPATCHER))
    community = find_case(views, everything[0]["case_id"]).community
    mine = queue(api.as_role(Role.DISPATCHER, community))
    expected = [t["case_id"] for t in everything if find_case(views, t["case_id"]).community == community]
    assert [t["case_id"] for t in mine] == expected and len(mine) < len(everything)


def test_a_missed_call_back_counts_and_not_fixed_reopens_the_case_for_rework(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER, DISTRICT, "desk:op-7")
    case_id = queue(desk)[0]["case_id"]
    bad = desk.post(f"/v1/cases/{case_id}/miss_call_back", json={"command_id": "cb-0", "reason": "busy"})
    assert bad.status_code == 422 and all(reason in bad.json()["detail"] for reason in CALL_BACK_MISSES)
    missed = desk.post(f"/v1/cases/{case_id}/miss_call_back", json={"command_id": "cb-1", "reason": "no_answer"})
    assert missed.status_code == 200, missed.text
    [task] = [t for t in queue(desk, position=missed.json()["position"]) if t["case_id"] == case_id]
    assert (task["attempts"], task["last_reason"]) == (1, "no_answer")
    assert moment(task["last_attempt_at"]) == SERVED_AT
    answered = desk.post(
        f"/v1/cases/{case_id}/call_back",
        json={"command_id": "cb-2", "satisfaction": 2, "fixed": False, "note": "没修好"},
    )
    assert answered.status_code == 200, answered.text
    position = answered.json()["position"]
    assert case_id not in [t["case_id"] for t in queue(desk, position=position)]
    case = desk.get(f"/v1/cases/{case_id}", params={"position": position}).json()["case"]
    # Reopened (返工): back to the desk, which the dispatch policy answers at once by dispatching the rework.
    assert case["rework_count"] >= 1 and case["status"] in ("reopened", "dispatched") and case["satisfaction"] == 2
    timeline = desk.get(f"/v1/cases/{case_id}/timeline", params={"position": position}).json()["events"]
    kinds = [e["event_type"] for e in timeline]
    since = kinds[kinds.index("CallBackMissed") :]
    assert since[:2] == ["CallBackMissed", "CalledBack"] and set(since[2:]) <= {"Dispatched"}
    assert {e["actor"] for e in timeline[len(kinds) - len(since) :][:2]} == {"desk:op-7"}
