"""Read-your-writes over HTTP: a read given a command's position sees that command, or says it could not."""

from __future__ import annotations

from projections.api.access import Role

from .conftest import Api


def test_a_dispatcher_sees_its_reassignment_on_the_board_at_once(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER)
    board = desk.get("/v1/board", params={"status": "dispatched,accepted", "limit": 500}).json()["cases"]
    assert len(board) >= 20
    # Two grid workers put on duty through the API itself: the morning after, the simulated staff are off duty.
    admin = api.as_role(Role.ADMIN)
    workers = sorted({case["worker"] for case in board if case["worker"]})[:2]
    for worker in workers:
        duty = admin.post(
            "/v1/commands/set_duty", json={"command_id": f"duty-{worker}", "worker": worker, "on_duty": True}
        )
        assert duty.status_code == 200, duty.text
    for number, case in enumerate(board[:20]):
        other = next(w for w in workers if w != case["worker"])
        response = desk.post(
            f"/v1/cases/{case['case_id']}/reassign",
            json={
                "command_id": f"ryw-{number}",
                "worker": other,
                "unit": case["unit"],
                "deadline": "2026-11-05T17:30:00+08:00",
                "reason": "就近调整",
            },
        )
        assert response.status_code == 200, response.text
        position = response.json()["position"]
        # Immediately, no sleeping: the read waits (bounded) until the views have this position.
        page = desk.get("/v1/board", params={"grid": case["grid"], "limit": 500, "position": position})
        assert page.status_code == 200
        consistency = page.json()["consistency"]
        assert consistency["reached"] is True and consistency["requested"] == position
        assert int(page.headers["X-Gridloop-Position"]) >= position
        row = next(c for c in page.json()["cases"] if c["case_id"] == case["case_id"])
        assert row["worker"] == other
        assert row["status"] == "dispatched"


def test_a_read_that_cannot_reach_its_position_answers_the_current_state_and_says_so(api: Api) -> None:
    desk = api.as_role(Role.DISPATCHER)
    beyond = api.service.rt.app.recorder.max_notification_id() + 1_000
    page = desk.get("/v1/board", params={"limit": 5, "position": beyond, "wait": 0.05})
    assert page.status_code == 200
    assert page.json()["consistency"]["reached"] is False
    assert page.json()["consistency"]["requested"] == beyond
    assert page.headers["X-Gridloop-Stale"] == "true"
    assert len(page.json()["cases"]) == 5


def test_a_read_without_a_position_does_not_wait_and_reports_where_the_views_stand(api: Api) -> None:
    page = api.as_role(Role.AUDITOR).get("/v1/board/summary")
    assert page.status_code == 200
    consistency = page.json()["consistency"]
    assert consistency["requested"] is None and consistency["reached"] is True
    assert consistency["position"] == api.service.backend.view_position()
