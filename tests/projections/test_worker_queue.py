"""The worker queue: a case is on a worker's list while it is open and assigned to that worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine import commands as c
from engine.lifecycle import Status
from engine.work_order import WorkOrder
from projections.queries import queue
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections

WORKERS = ("W1", "W2", "W3")


def test_at_the_end_of_the_story_each_worker_has_exactly_the_open_cases_assigned_to_them(played: Any) -> None:
    names = {case_id: name for name, case_id in played.story.cases.items()}
    lists = {worker: [(names[r.case_id], r.status.value) for r in queue(played.store, worker)] for worker in WORKERS}
    assert lists == {
        "W1": [("escalated", "dispatched"), ("complaint", "dispatched")],  # soonest deadline first
        "W2": [("returned", "accepted")],
        "W3": [("suspended", "accepted"), ("not_fixed", "reopened")],
    }


def test_the_queue_matches_the_event_store_after_every_command(story: Any, views: ViewStore) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())

    def check(s: Any) -> None:
        runner.run_until_caught_up()
        orders = [s.app.repository.get(r.aggregate_id) for r in s.results]
        cases = {o.id: o for o in orders if isinstance(o, WorkOrder)}
        for worker in WORKERS:
            expected = {o.id for o in cases.values() if o.is_open and o.worker == worker}
            listed = queue(views, worker)
            assert {row.case_id for row in listed} == expected, worker
            for row in listed:
                assert (row.status, row.deadline, row.unit) == (
                    cases[row.case_id].status,
                    cases[row.case_id].deadline,
                    cases[row.case_id].unit,
                )

    story.after_each = check
    story.every_path()


def test_a_reassigned_case_leaves_the_first_workers_queue_and_enters_the_seconds(story: Any, views: ViewStore) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    case = story.report("pothole")
    story.on("pothole", c.RegisterCase)
    story.dispatch("pothole", worker="W1")
    runner.run_until_caught_up()
    assert [r.case_id for r in queue(views, "W1")] == [case] and queue(views, "W2") == []

    story.on("pothole", c.ReassignCase, worker="W2", reason="W1 请假")
    runner.run_until_caught_up()
    assert queue(views, "W1") == []
    (row,) = queue(views, "W2")
    assert (row.case_id, row.status, row.category, row.grid) == (
        case,
        Status.DISPATCHED,
        "C0101",
        story.app.case(case).grid,
    )
    assert row.category_name and row.assigned_at == story.clock.now()

    story.on("pothole", c.ReturnCase, actor="W2", reason="不属于网格职责")
    runner.run_until_caught_up()
    assert queue(views, "W2") == []


def test_a_granted_extension_moves_the_deadline_and_a_closed_case_leaves_the_queue(
    story: Any, views: ViewStore
) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    story.report("streetlight")
    story.on("streetlight", c.RegisterCase)
    story.dispatch("streetlight", worker="W1", hours=4)
    story.on("streetlight", c.AcceptCase, actor="W1")
    until = story.clock.now() + timedelta(days=3)
    story.on("streetlight", c.RequestExtension, actor="W1", until=until, reason="等待配件")
    story.on("streetlight", c.GrantExtension)
    runner.run_until_caught_up()
    (row,) = queue(views, "W1")
    assert (row.status, row.deadline) == (Status.ACCEPTED, until)

    story.handle_and_close("streetlight", "W1")
    runner.run_until_caught_up()
    assert queue(views, "W1") == []
