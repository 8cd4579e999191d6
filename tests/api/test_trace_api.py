"""GET /v1/cases/{case}/trace: the trace as JSON or as the HTML export, read-your-writes, the timeline's access rule."""

from __future__ import annotations

import re
from typing import Any

from projections.api.access import Role
from tests.api.conftest import Api


def busiest_case(api: Api) -> dict[str, Any]:
    """The simulated day's case with the most events that an assignee holds (dispatched or accepted)."""
    board = api.as_role(Role.ADMIN).get("/v1/board", params={"status": "dispatched,accepted", "limit": 500})
    cases: list[dict[str, Any]] = board.json()["cases"]
    return max(cases, key=lambda case: (case["version"], case["case_id"]))


def test_the_trace_has_every_event_of_the_timeline_judged(api: Api) -> None:
    case = busiest_case(api)
    desk = api.as_role(Role.DISPATCHER)
    trace = desk.get(f"/v1/cases/{case['short_id']}/trace")
    assert trace.status_code == 200, trace.text
    assert trace.headers["content-type"] == "application/json"
    body = trace.json()
    events = desk.get(f"/v1/cases/{case['case_id']}/timeline").json()["events"]
    assert [(s["version"], s["event_type"], s["actor"]["id"]) for s in body["steps"]] == [
        (e["version"], e["event_type"], e["actor"]) for e in events
    ]
    assert body["case"]["case_id"] == case["case_id"] and body["case"]["accountable"] == case["accountable"]
    assert body["steps"][-1]["state_after"] == case["status"]
    assert body["totals"][-1]["ongoing"] and body["as_of"] is not None  # the served clock counts the last state
    assert body["consistency"]["reached"] is True and "X-Gridloop-Position" in trace.headers


def test_the_html_export_is_chosen_by_the_format_or_by_accept(api: Api) -> None:
    case = busiest_case(api)
    desk = api.as_role(Role.DISPATCHER)
    by_format = desk.get(f"/v1/cases/{case['case_id']}/trace", params={"format": "html"})
    by_accept = desk.get(f"/v1/cases/{case['case_id']}/trace", headers={"Accept": "text/html,*/*;q=0.8"})
    for page in (by_format, by_accept):
        assert page.status_code == 200, page.text
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "X-Gridloop-Position" in page.headers
        assert page.text.startswith("<!DOCTYPE html>") and case["short_id"] in page.text
        assert re.findall(r"<[^>]*\b(?:src|href)\s*=", page.text) == [] and "<script" not in page.text
    assert by_format.text == by_accept.text


def test_a_trace_read_at_a_commands_position_shows_that_step(api: Api) -> None:
    case = busiest_case(api)
    desk = api.as_role(Role.DISPATCHER)
    escalated = desk.post(
        f"/v1/cases/{case['case_id']}/escalate",
        json={"command_id": "trace-escalate", "level": 5, "reason": "<b>市级督办</b>"},
    )
    assert escalated.status_code == 200, escalated.text
    position = escalated.json()["position"]
    body = desk.get(f"/v1/cases/{case['case_id']}/trace", params={"position": position}).json()
    assert body["consistency"]["reached"] is True and body["consistency"]["requested"] == position
    last = body["steps"][-1]
    assert (last["event_type"], last["action_name"], last["why"]) == ("Escalated", "督办", "<b>市级督办</b>")
    assert last["actor"]["id"] == f"{Role.DISPATCHER.value}:140827" and last["position"] <= position  # then its receipt
    html = desk.get(f"/v1/cases/{case['case_id']}/trace", params={"format": "html", "position": position}).text
    assert "&lt;b&gt;市级督办&lt;/b&gt;" in html and "<b>" not in html


def test_the_trace_is_refused_where_the_timeline_is(api: Api) -> None:
    case = busiest_case(api)
    path = f"/v1/cases/{case['case_id']}/trace"
    other_district = api.as_role(Role.DISPATCHER, jurisdiction="140828")
    other_community = next(
        code
        for code in (row["community"] for row in api.as_role(Role.ADMIN).get("/v1/board?limit=500").json()["cases"])
        if code != case["community"]
    )
    for client in (
        other_district,
        api.as_role(Role.AUDITOR, jurisdiction=other_community),
        api.as_role(Role.ANALYST),  # reads the board, never a case's history
        api.as_role(Role.GRID_WORKER, actor="W-not-assigned"),
    ):
        timeline = client.get(f"/v1/cases/{case['case_id']}/timeline")
        trace = client.get(path)
        assert trace.status_code == timeline.status_code == 403, trace.text
        assert trace.headers["content-type"] == "application/problem+json"
    assert api.as_role(Role.AUDITOR).get(path).status_code == 200
    assert api.client().get(path).status_code == 401
    unknown = api.as_role(Role.AUDITOR).get("/v1/cases/ffffffffffff/trace")
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("unknown-reference")
