"""The closed loop over HTTP: report → register (the policy dispatches) → accept → handle → verify → call back."""

from __future__ import annotations

from typing import Any

import httpx

from projections.api.access import Role

from .conftest import DISTRICT, Api

GRID = "140827100001001"


def posted(client: httpx.Client, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    return data


def seen(client: httpx.Client, case_id: str, position: int) -> dict[str, Any]:
    """The case as the board shows it once the views include ``position`` (read-your-writes)."""
    response = client.get(f"/v1/cases/{case_id}", params={"position": position})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["consistency"]["reached"] is True
    assert body["consistency"]["position"] >= position
    return body["case"]


def handler_token(api: Api, case: dict[str, Any]) -> httpx.Client:
    """Whoever the policy assigned the case to: its grid worker, else its unit (a department)."""
    if case["worker"]:
        return api.as_role(Role.GRID_WORKER, case["grid"], case["worker"])
    return api.as_role(Role.DEPARTMENT, DISTRICT, case["unit"])


def test_a_case_goes_round_the_whole_loop_over_http(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER, DISTRICT, "desk:op-1")
    report = posted(
        desk,
        "/v1/cases",
        {
            "command_id": "loop-1",
            "source": "hotline",
            "category": "S0203",
            "description": "困境儿童需要关爱",
            "grid": GRID,
        },
        201,
    )
    case_id = report["case_id"]
    assert report["events"] == ["Reported"]
    assert seen(desk, case_id, report["position"])["status"] == "reported"

    registered = posted(desk, f"/v1/cases/{case_id}/register", {"command_id": "loop-2", "note": "核实"})
    # The dispatch policy answers the registration before the command returns, naming itself and its reason.
    assert [p["event"] for p in registered["policies"]] == ["Dispatched"]
    assert registered["policies"][0]["actor"].startswith("policy:dispatch/")
    dispatched_position = max(registered["position"], 0)
    case = seen(desk, case_id, dispatched_position)
    assert case["status"] == "dispatched"
    assert case["accountable"] in (f"worker:{case['worker']}", f"unit:{case['unit']}")
    assert case["deadline"] is not None

    assignee = handler_token(api, case)
    accepted = posted(assignee, f"/v1/cases/{case_id}/accept", {"command_id": "loop-3"})
    assert seen(assignee, case_id, accepted["position"])["status"] == "accepted"
    handled = posted(
        assignee, f"/v1/cases/{case_id}/report_handling", {"command_id": "loop-4", "result": "已上门走访", "photos": []}
    )
    assert seen(desk, case_id, handled["position"])["status"] == "handled"

    verified = posted(desk, f"/v1/cases/{case_id}/verify", {"command_id": "loop-5", "passed": True, "note": "属实"})
    closed = seen(desk, case_id, verified["position"])
    assert closed["status"] == "closed"
    assert closed["accountable"] is None
    called = posted(
        desk,
        f"/v1/cases/{case_id}/call_back",
        {"command_id": "loop-6", "satisfaction": 5, "fixed": True, "note": "满意"},
    )
    evaluated = seen(desk, case_id, called["position"])
    assert evaluated["status"] == "evaluated"
    assert evaluated["satisfaction"] == 5

    timeline = desk.get(f"/v1/cases/{case_id}/timeline", params={"position": called["position"]}).json()
    kinds = [event["event_type"] for event in timeline["events"]]
    assert kinds == ["Reported", "Registered", "Dispatched", "Accepted", "HandlingReported", "Verified", "CalledBack"]
    # The actor of each step is the principal that issued it, never what a body could claim.
    actors = {event["event_type"]: event["actor"] for event in timeline["events"]}
    assert actors["Reported"] == "desk:op-1"
    assert actors["Accepted"] == (case["worker"] or case["unit"])


def test_a_repeated_command_id_returns_the_first_result_and_records_nothing(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER)
    body = {"command_id": "again-1", "source": "hotline", "category": "E0101", "description": "暴露垃圾", "grid": GRID}
    first = posted(desk, "/v1/cases", body, 201)
    before = api.service.rt.app.recorder.max_notification_id()
    second = posted(desk, "/v1/cases", body, 200)
    assert second["duplicate"] is True
    assert (second["case_id"], second["position"]) == (first["case_id"], first["position"])
    assert api.service.rt.app.recorder.max_notification_id() == before


def test_the_board_pages_with_a_cursor_and_filters_without_losing_or_repeating_a_case(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER)
    everything = desk.get("/v1/board", params={"limit": 500}).json()["cases"]
    seen_ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = desk.get("/v1/board", params=params).json()
        seen_ids += [case["case_id"] for case in page["cases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen_ids == [case["case_id"] for case in everything]
    assert len(seen_ids) == len(set(seen_ids)) > 7

    accepted = desk.get("/v1/board", params={"status": "accepted", "limit": 500}).json()["cases"]
    assert accepted and {case["status"] for case in accepted} == {"accepted"}
    overdue = desk.get("/v1/board", params={"overdue": "true", "limit": 500}).json()["cases"]
    assert all(case["overdue"] for case in overdue)
    community = "140827100001"
    mine = desk.get("/v1/board", params={"community": community, "limit": 500}).json()["cases"]
    assert mine and {case["community"] for case in mine} == {community}


def test_the_escalation_board_puts_the_most_urgent_first(api: Api) -> None:
    rows = api.as_role(Role.SUPERVISOR).get("/v1/board/escalations").json()["cases"]
    assert rows, "the simulated day has late cases"
    levels = [case["escalation_level"] for case in rows]
    assert levels == sorted(levels, reverse=True)
    assert all(case["overdue"] or case["escalation_level"] > 0 or case["light"] in ("yellow", "red") for case in rows)


def test_the_openapi_document_lists_every_command_and_view(api: Api) -> None:
    paths = httpx.get(api.url + "/openapi.json").json()["paths"]
    assert "/v1/cases" in paths and "/v1/cases/{case_id}/dispatch" in paths
    assert "/v1/board" in paths and "/v1/cases/{case}/timeline" in paths
    assert "/v1/commands/set_duty" in paths
