"""Bad requests over HTTP: each answers an RFC 9457 problem that says what was wrong, and records nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from engine.lifecycle import Status, allowed_actions
from tests.api.conftest import Api

PROBLEM_JSON = "application/problem+json"
NOBODY = "00000000-0000-0000-0000-000000000000"
GRID = "140827100001001"


def report(command_id: str = "pb-report", **fields: Any) -> dict[str, Any]:
    """A report (上报) of litter in a grid of community 140827100001, with ``fields`` changed."""
    body: dict[str, Any] = {
        "command_id": command_id,
        "source": "hotline",
        "category": "E0101",
        "description": "路边堆放垃圾",
        "grid": GRID,
    }
    return {**body, **fields}


def recorded(api: Api) -> int | None:
    """How far the event store goes: unchanged means nothing was recorded."""
    return api.service.rt.app.recorder.max_notification_id()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is a problem of ``status`` and type ``slug`` with the members RFC 9457 names; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:gridloop:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


@pytest.fixture
def admin(api: Api) -> httpx.Client:
    return api.as_role("admin")


@pytest.fixture
def cases(admin: httpx.Client) -> dict[str, str]:
    """A closed case and an accepted one of the simulated day, by their status."""
    rows = admin.get("/v1/board", params={"limit": 500}).json()["cases"]
    return {
        status: next(row["case_id"] for row in rows if row["status"] == status) for status in ("closed", "accepted")
    }


BAD_REQUESTS = [
    pytest.param("POST", "/v1/cases", report(category="Z9999"), 422, "unknown-reference", id="unknown category"),
    pytest.param("POST", "/v1/cases", report(grid="", lon=999, lat=35.3), 422, "invalid-field", id="lon 999"),
    pytest.param(
        "POST", "/v1/cases", {k: v for k, v in report().items() if k != "category"}, 422, "invalid-request",
        id="missing field",
    ),
    pytest.param("POST", "/v1/cases", report(colour="red"), 422, "invalid-request", id="unknown field"),
    pytest.param(
        "POST", "/v1/cases/{accepted}/request_extension",
        {"command_id": "pb-naive", "until": "2026-11-05T09:00", "reason": "材料未到"}, 422, "invalid-request",
        id="naive datetime in a body",
    ),
    pytest.param("GET", "/v1/board?now=2026-11-05T09:00", None, 422, "invalid-request", id="naive datetime in a query"),
    pytest.param(
        "POST", "/v1/cases/not-a-case/register", {"command_id": "pb-path"}, 422, "invalid-request",
        id="malformed case id in a command's path",
    ),
    pytest.param("GET", "/v1/cases/not-a-case", None, 422, "invalid-field", id="malformed case id in a read's path"),
    pytest.param(
        "POST", f"/v1/cases/{NOBODY}/register", {"command_id": "pb-nobody"}, 404, "unknown-reference",
        id="unknown case, command",
    ),
    pytest.param("GET", f"/v1/cases/{NOBODY}", None, 404, "unknown-reference", id="unknown case, read"),
    pytest.param("GET", "/v1/nowhere", None, 404, "http", id="unknown route"),
    pytest.param("DELETE", "/v1/board", None, 405, "http", id="wrong method"),
    pytest.param("POST", "/v1/cases", "{not json", 422, "invalid-request", id="a body that is not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "slug"), BAD_REQUESTS)
def test_a_bad_request_answers_a_problem_and_records_nothing(
    api: Api, admin: httpx.Client, cases: dict[str, str], method: str, path: str, body: Any, status: int, slug: str
) -> None:
    before = recorded(api)
    url = path.format(**cases)
    if isinstance(body, str):
        response = admin.request(method, url, content=body, headers={"content-type": "application/json"})
    else:
        response = admin.request(method, url, json=body)
    assert_problem(response, status, slug)
    assert recorded(api) == before


def test_an_action_the_state_does_not_allow_answers_409_with_the_allowed_actions(
    api: Api, admin: httpx.Client, cases: dict[str, str]
) -> None:
    before = recorded(api)
    response = admin.post(f"/v1/cases/{cases['closed']}/register", json={"command_id": "pb-register-closed"})
    problem = assert_problem(response, 409, "illegal-transition")
    assert problem["state"] == "closed"
    assert problem["action"] == "register"
    assert problem["allowed_actions"] == sorted(allowed_actions(Status.CLOSED))
    assert "call_back" in problem["detail"]
    assert recorded(api) == before


def test_a_problem_names_the_field_and_what_it_expects(admin: httpx.Client) -> None:
    lon = assert_problem(admin.post("/v1/cases", json=report(grid="", lon=999, lat=35.3)), 422, "invalid-field")
    assert lon["field"] == "lon"
    assert "-180 to 180" in lon["expected"]
    category = assert_problem(admin.post("/v1/cases", json=report(category="Z9999")), 422, "unknown-reference")
    assert category["kind"] == "category"
    assert "E0101" in category["allowed"]
    extra = assert_problem(admin.post("/v1/cases", json=report(colour="red")), 422, "invalid-request")
    assert extra["errors"] == [{"field": "body.colour", "problem": "Extra inputs are not permitted"}]


def test_a_naive_time_in_a_body_is_refused_for_its_missing_offset(admin: httpx.Client, cases: dict[str, str]) -> None:
    body = {"command_id": "pb-naive", "until": "2026-11-05T09:00", "reason": "材料未到"}
    problem = assert_problem(
        admin.post(f"/v1/cases/{cases['accepted']}/request_extension", json=body), 422, "invalid-request"
    )
    assert problem["errors"][0]["field"] == "body.until"
    assert "timezone" in problem["errors"][0]["problem"]


def test_a_command_id_used_again_for_another_command_answers_409(api: Api, admin: httpx.Client) -> None:
    assert admin.post("/v1/cases", json=report("pb-twice")).status_code == 201
    before = recorded(api)
    response = admin.post("/v1/cases", json=report("pb-twice", description="另一处垃圾"))
    problem = assert_problem(response, 409, "duplicate-command-id")
    assert problem["command_id"] == "pb-twice"
    assert problem["first_command"] == "report"
    assert recorded(api) == before


def test_the_same_command_sent_again_answers_its_first_result_and_records_nothing(
    api: Api, admin: httpx.Client
) -> None:
    first = admin.post("/v1/cases", json=report("pb-retry"))
    assert first.status_code == 201
    before = recorded(api)
    again = admin.post("/v1/cases", json=report("pb-retry"))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["case_id"] == first.json()["case_id"]
    assert again.json()["position"] == first.json()["position"]
    assert recorded(api) == before


def test_an_unknown_route_and_a_wrong_method_say_what_was_asked(admin: httpx.Client) -> None:
    nowhere = assert_problem(admin.get("/v1/nowhere"), 404, "http")
    assert "/v1/nowhere" in nowhere["detail"]
    wrong = admin.delete("/v1/board")
    problem = assert_problem(wrong, 405, "http")
    assert problem["allowed_methods"] == ["GET"]
    assert wrong.headers["allow"] == "GET"


# Regressions: inputs that once made the server fail (500) instead of answering a problem.

FAR_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T23:59:59Z", "3000-01-01T00:00:00Z"]
"""Times at or past the edges: converting the first two to UTC overflows; the last two are outside the range."""


@pytest.mark.parametrize("moment", FAR_TIMES)
@pytest.mark.parametrize("path", ["/v1/board", "/v1/board/summary", "/v1/board/escalations"])
def test_a_far_time_to_judge_the_board_at_is_refused(admin: httpx.Client, path: str, moment: str) -> None:
    problem = assert_problem(admin.get(path, params={"now": moment}), 422, "invalid-request")
    assert problem["errors"][0]["field"] == "query.now"
    assert "1900-01-01 up to 3000-01-01" in problem["detail"]


@pytest.mark.parametrize("moment", FAR_TIMES)
@pytest.mark.parametrize(
    ("command", "field", "body"),
    [
        ("request_extension", "until", {"reason": "材料未到"}),
        ("suspend", "occurred_at", {"reason": "等待答复"}),
        ("escalate", "due", {"level": 2, "reason": "群众反复投诉"}),
    ],
)
def test_a_far_time_in_a_command_is_refused_and_records_nothing(
    api: Api, admin: httpx.Client, cases: dict[str, str], command: str, field: str, body: dict[str, Any], moment: str
) -> None:
    before = recorded(api)
    sent = {"command_id": f"pb-far-{command}", field: moment, **body}
    problem = assert_problem(admin.post(f"/v1/cases/{cases['accepted']}/{command}", json=sent), 422, "invalid-request")
    assert problem["errors"][0]["field"] == f"body.{field}"
    assert "out of range" in problem["detail"]
    assert recorded(api) == before


def test_a_report_in_a_grid_the_tree_does_not_hold_is_unknown_not_outside(api: Api, admin: httpx.Client) -> None:
    before = recorded(api)
    problem = assert_problem(admin.post("/v1/cases", json=report(grid="140827999999999")), 422, "unknown-reference")
    assert (problem["kind"], problem["value"]) == ("grid", "140827999999999")
    assert recorded(api) == before


def test_a_server_failure_is_a_problem_and_its_log_line_carries_no_token(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the view store went away")

    monkeypatch.setattr("projections.queries.summary", broken)
    token = api.token("admin")
    with capture_logs() as logs:
        response = api.client(token).get("/v1/board/summary")
    assert_problem(response, 500, "internal")
    assert "went away" not in response.text
    [line] = [line for line in logs if line["event"] == "api_internal_error"]
    assert "RuntimeError: the view store went away" in line["exception"]
    # No exc_info: a console renderer given one prints every frame's locals, the request's headers among them.
    assert "exc_info" not in line
    assert token not in repr(logs)
