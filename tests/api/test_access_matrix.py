"""Who may read and do what, where: every role, inside and outside its jurisdiction, through the real server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from projections.api.access import Role
from tests.api.conftest import Api, served_copy

SHOWN, HIDDEN, DENIED = "shown", "hidden", "denied"
"""A read answers with the case (shown), answers without it (hidden: outside the reader's reach), or is refused."""
INSIDE, OUTSIDE = 0, 1
READS = ("board", "case", "timeline", "queue", "summary")

S, H, D = SHOWN, HIDDEN, DENIED
READ_MATRIX: dict[Role, tuple[tuple[str, str], ...]] = {
    #                  board    case     timeline queue    summary      each (inside, outside)
    Role.DISPATCHER:  ((S, H), (S, D), (S, D), (S, H), (S, H)),
    Role.GRID_WORKER: ((S, H), (S, D), (S, D), (S, D), (S, H)),
    Role.DEPARTMENT:  ((S, H), (S, D), (S, D), (D, D), (S, H)),
    Role.SUPERVISOR:  ((S, H), (S, D), (S, D), (S, H), (S, H)),
    Role.AUDITOR:     ((S, H), (S, D), (S, D), (S, H), (S, H)),
    Role.ANALYST:     ((S, H), (S, D), (D, D), (D, D), (S, H)),
    Role.ADMIN:       ((S, H), (S, D), (S, D), (S, H), (S, H)),
    Role.REPORTER:    ((D, D), (D, D), (D, D), (D, D), (D, D)),
}  # fmt: skip
"""The case is community A's: assigned to a grid worker of A (for the department: dispatched to a unit). The queue
is that grid worker's. A department reads no worker's queue; an analyst reads no history; a reporter only reports."""

WRITE_MATRIX: list[tuple[Role, str, int, int]] = [
    #  role              command            inside outside
    (Role.DISPATCHER,  "escalate",          200,   403),
    (Role.DISPATCHER,  "suspend",           200,   403),
    (Role.GRID_WORKER, "report_handling",   200,   403),
    (Role.DEPARTMENT,  "accept",            200,   403),
    (Role.SUPERVISOR,  "escalate",          200,   403),
    (Role.AUDITOR,     "escalate",          403,   403),
    (Role.ANALYST,     "escalate",          403,   403),
    (Role.ADMIN,       "set_duty",          200,   403),
    (Role.REPORTER,    "report",            201,   403),
]  # fmt: skip
"""One command each role may (or may not) issue, on community A's case (set_duty: its grid worker; report: a grid
of A), by a principal of community A and by one of community B."""

Row = dict[str, Any]
Logs = list[MutableMapping[str, Any]]


@dataclass(frozen=True)
class Scene:
    """Community A (inside) and B (outside) of the simulated day, and the cases the matrix plays on."""

    inside: str
    outside: str
    worked: Row
    """An accepted case of A, assigned to a grid worker of A."""
    dispatched: Row
    """A case of A dispatched to a unit (no worker yet)."""
    outside_worker: str
    """A grid worker of B."""
    board: list[Row]
    """Every case on the board."""

    def case_of(self, role: Role) -> Row:
        return self.dispatched if role is Role.DEPARTMENT else self.worked

    def principal(self, role: Role, where: int) -> tuple[str, str]:
        """The jurisdiction and actor of the ``role`` principal inside (community A) or outside (community B)."""
        jurisdiction = self.inside if where == INSIDE else self.outside
        if role is Role.GRID_WORKER:
            return jurisdiction, self.worked["worker"] if where == INSIDE else self.outside_worker
        if role is Role.DEPARTMENT:
            return jurisdiction, self.dispatched["unit"]  # the same unit, working in another community
        return jurisdiction, ""

    def reaches(self, role: Role, where: int, row: Row) -> bool:
        """Whether the principal may see ``row``: its community, and for the assigned-only roles its own cases."""
        jurisdiction, actor = self.principal(role, where)
        if row["community"] != jurisdiction:
            return False
        if role is Role.GRID_WORKER:
            return bool(row["worker"] == actor)
        if role is Role.DEPARTMENT:
            return bool(row["unit"] == actor)
        return True


def choose_scene(api: Api) -> Scene:
    board = api.as_role("admin").get("/v1/board", params={"limit": 500}).json()["cases"]
    app = api.service.rt.app
    by_community: dict[str, list[Row]] = {}
    for row in board:
        by_community.setdefault(row["community"], []).append(row)

    def worked(rows: list[Row]) -> Row | None:
        return next(
            (
                r
                for r in rows
                if r["status"] == "accepted" and r["worker"] and app.worker(r["worker"]).grid == r["grid"]
            ),
            None,
        )

    def dispatched(rows: list[Row]) -> Row | None:
        return next((r for r in rows if r["status"] == "dispatched" and r["unit"] and not r["worker"]), None)

    inside = next(c for c, rows in sorted(by_community.items()) if worked(rows) and dispatched(rows))
    outside = next(c for c, rows in sorted(by_community.items()) if c != inside and worked(rows))
    a, b = worked(by_community[inside]), worked(by_community[outside])
    unit_case = dispatched(by_community[inside])
    assert a is not None and b is not None and unit_case is not None
    return Scene(inside, outside, a, unit_case, b["worker"], board)


@pytest.fixture(scope="module")
def district(district_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The district served once for all the reads of the matrix (a read records nothing)."""
    yield from served_copy(district_template, tmp_path_factory, "matrix")


@pytest.fixture(scope="module")
def scene(district: Api) -> Scene:
    return choose_scene(district)


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Every structlog line the server writes during the test."""
    with capture_logs() as captured:
        yield captured


def token_for(api: Api, scene: Scene, role: Role, where: int) -> tuple[str, str]:
    """A token of the ``role`` principal inside or outside, and the principal's name."""
    jurisdiction, actor = scene.principal(role, where)
    name = f"{role.value}-{'inside' if where == INSIDE else 'outside'}"
    return api.token(role, jurisdiction, actor, name=name), name


def assert_refused_and_logged(response: httpx.Response, logs: Logs, name: str) -> None:
    """A 403 problem, and an access_denied line naming the principal and the reason the problem gives."""
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    reason = response.json()["detail"]
    denied = [line for line in logs if line["event"] == "access_denied"]
    assert [(line["principal"], line["reason"], line["status"]) for line in denied] == [(name, reason, 403)]


def assert_no_token_logged(
    token: str, logs: Logs, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    printed = capfd.readouterr()
    for where in (repr(logs), caplog.text, printed.out, printed.err):
        assert token not in where
        assert token.removeprefix("glt_") not in where


def read(client: httpx.Client, what: str, case: Row, worker: str) -> httpx.Response:
    paths = {
        "board": "/v1/board?limit=500",
        "case": f"/v1/cases/{case['case_id']}",
        "timeline": f"/v1/cases/{case['case_id']}/timeline",
        "queue": f"/v1/workers/{worker}/queue",
        "summary": "/v1/board/summary",
    }
    return client.get(paths[what])


def assert_read(scene: Scene, role: Role, where: int, what: str, response: httpx.Response, expected: str) -> None:
    """The read shows the role's case, hides it, or was refused; what it does show is all inside the reach."""
    case = scene.case_of(role)
    assert response.status_code == (403 if expected == DENIED else 200), response.text
    if expected == DENIED:
        return
    body = response.json()
    reached = [row for row in scene.board if scene.reaches(role, where, row)]
    if what == "board":
        for row in body["cases"]:
            assert scene.reaches(role, where, row), f"{row['case_id']} is outside the reach of {role.value}"
        assert sorted(r["case_id"] for r in body["cases"]) == sorted(r["case_id"] for r in reached)
        shown = case["case_id"] in {row["case_id"] for row in body["cases"]}
    elif what == "case":
        shown = body["case"]["case_id"] == case["case_id"]
    elif what == "timeline":
        shown = bool(body["events"]) and {e["case_id"] for e in body["events"]} == {case["case_id"]}
    elif what == "queue":
        assert all(row["worker"] == case["worker"] for row in body["cases"])
        shown = case["case_id"] in {row["case_id"] for row in body["cases"]}
    else:
        assert body["by_status"] == dict(Counter(row["status"] for row in reached))
        shown = case in reached
    assert shown == (expected == SHOWN)


READ_CASES = [
    pytest.param(role, what, where, READ_MATRIX[role][READS.index(what)][where],
                 id=f"{role.value}-{what}-{'inside' if where == INSIDE else 'outside'}")
    for role in READ_MATRIX
    for what in READS
    for where in (INSIDE, OUTSIDE)
]  # fmt: skip


@pytest.mark.parametrize(("role", "what", "where", "expected"), READ_CASES)
def test_a_principal_reads_only_inside_its_reach(
    district: Api,
    scene: Scene,
    logs: Logs,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    role: Role,
    what: str,
    where: int,
    expected: str,
) -> None:
    token, name = token_for(district, scene, role, where)
    response = read(district.client(token), what, scene.case_of(role), scene.worked["worker"])
    assert_read(scene, role, where, what, response, expected)
    if expected == DENIED:
        assert_refused_and_logged(response, logs, name)
    else:
        assert not [line for line in logs if line["event"] == "access_denied"]
    assert_no_token_logged(token, logs, caplog, capfd)


def command(api: Api, scene: Scene, name: str, command_id: str) -> tuple[str, dict[str, Any]]:
    """The path and body of ``name`` on community A's case (or its grid worker, or a grid of A)."""
    case = scene.dispatched if name == "accept" else scene.worked
    worker = scene.worked["worker"]
    on_case = f"/v1/cases/{case['case_id']}/{name}"
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "escalate": (on_case, {"level": 1, "reason": "群众反复投诉"}),
        "suspend": (on_case, {"reason": "等待产权单位答复"}),
        "report_handling": (on_case, {"result": "已清理完毕"}),
        "accept": (on_case, {}),
        "set_duty": (
            "/v1/commands/set_duty",
            {"worker": worker, "on_duty": not api.service.rt.app.worker(worker).on_duty},
        ),
        "report": (
            "/v1/cases",
            {"source": "hotline", "category": "E0101", "description": "路边堆放垃圾", "grid": scene.worked["grid"]},
        ),
    }
    path, body = bodies[name]
    return path, {"command_id": command_id, **body}


def recorded_since(api: Api, position: int) -> list[tuple[str, str]]:
    """The (event name, aggregate id) of every event recorded after ``position``."""
    recorder = api.service.rt.app.recorder
    return [
        (n.topic.rsplit(".", 1)[-1], str(n.originator_id)) for n in recorder.select_notifications(position + 1, 1000)
    ]


WRITE_CASES = [
    pytest.param(role, name, where, (inside, outside)[where],
                 id=f"{role.value}-{name}-{'inside' if where == INSIDE else 'outside'}")
    for role, name, inside, outside in WRITE_MATRIX
    for where in (INSIDE, OUTSIDE)
]  # fmt: skip


@pytest.mark.parametrize(("role", "name", "where", "status"), WRITE_CASES)
def test_a_principal_acts_only_inside_its_reach(
    api: Api,
    logs: Logs,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    role: Role,
    name: str,
    where: int,
    status: int,
) -> None:
    scene = choose_scene(api)
    token, principal = token_for(api, scene, role, where)
    recorder = api.service.rt.app.recorder
    before = recorder.max_notification_id() or 0
    path, body = command(api, scene, name, f"matrix-{role.value}-{name}-{where}")

    response = api.client(token).post(path, json=body)

    if status == 403:
        assert_refused_and_logged(response, logs, principal)
        assert recorder.max_notification_id() == before
    else:
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["events"]
        recorded = recorded_since(api, before)
        assert (answer["events"][0], answer["aggregate_id"]) in recorded
        assert answer["position"] <= (recorder.max_notification_id() or 0)
        assert not [line for line in logs if line["event"] == "access_denied"]
    assert_no_token_logged(token, logs, caplog, capfd)


def test_a_missing_or_unknown_token_is_refused_and_logged_without_its_text(
    district: Api, logs: Logs, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    forged = "glt_" + "x" * 43
    for client in (district.client(), district.client(forged)):
        response = client.get("/v1/board")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    denied = [line for line in logs if line["event"] == "access_denied"]
    assert [(line["principal"], line["status"]) for line in denied] == [(None, 401), (None, 401)]
    assert all(line["reason"] for line in denied)
    assert_no_token_logged(forged, logs, caplog, capfd)
