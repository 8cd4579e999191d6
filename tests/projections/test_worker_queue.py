"""The worker queue: a case is on a worker's list while that worker is accountable for it (事事有人办)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from engine import commands as c
from engine.lifecycle import Status
from engine.work_order import WorkOrder
from projections.projection import iso
from projections.queries import queue, view_rows
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections

WORKERS = ("W1", "W2", "W3")


def test_at_the_end_of_the_story_each_worker_has_exactly_the_cases_they_are_accountable_for(played: Any) -> None:
    names = {case_id: name for name, case_id in played.story.cases.items()}
    lists = {worker: [(names[r.case_id], r.status.value) for r in queue(played.store, worker)] for worker in WORKERS}
    assert lists == {
        "W1": [("escalated", "dispatched"), ("complaint", "dispatched")],  # soonest deadline first
        "W2": [("returned", "accepted")],
        "W3": [("suspended", "accepted")],  # not_fixed was reopened: the desk holds it, not W3
    }


def as_the_aggregate_says(order: WorkOrder) -> tuple[Any, ...]:
    deadline = iso(order.deadline) if order.deadline else None  # the views keep UTC text, so text order is time order
    suspended_from = order.suspended_from.value if order.suspended_from else None
    return order.status.value, suspended_from, order.unit, order.worker, deadline


def test_each_workers_queue_is_what_they_are_accountable_for_after_every_command(story: Any, views: ViewStore) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())

    def check(s: Any) -> None:
        runner.run_until_caught_up()
        orders = [s.app.repository.get(r.aggregate_id) for r in s.results]
        cases = {o.id: o for o in orders if isinstance(o, WorkOrder)}
        for worker in WORKERS:
            expected = {o.id for o in cases.values() if o.accountable == f"worker:{worker}"}
            assert {row.case_id for row in queue(views, worker)} == expected, worker
        # Every case's row, queued or not, holds what the aggregate holds: a return or a reopening
        # clears the assignee there too, so a later dispatch starts afresh.
        rows = {UUID(row["case_id"]): row for row in view_rows(views, "worker_queue")["queue_case"]}
        assert set(rows) == set(cases)
        for case_id, order in cases.items():
            row = rows[case_id]
            held = (row["status"], row["suspended_from"], row["unit"], row["worker"], row["deadline"])
            assert held == as_the_aggregate_says(order), order.status

    story.after_each = check
    story.every_path().supervision_paths()


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


def test_a_case_leaves_the_queue_once_handled_comes_back_when_rework_is_dispatched_and_stays_while_suspended(
    story: Any, views: ViewStore
) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())

    def on_the_queue() -> list[tuple[Status, Status | None]]:
        runner.run_until_caught_up()
        return [(row.status, row.suspended_from) for row in queue(views, "W1")]

    story.report("manhole")
    story.on("manhole", c.RegisterCase)
    story.dispatch("manhole", worker="W1")
    story.on("manhole", c.AcceptCase, actor="W1")
    story.on("manhole", c.SuspendCase, reason="等待资金")
    assert on_the_queue() == [(Status.SUSPENDED, Status.ACCEPTED)]  # the clock is paused, the case is still W1's
    story.on("manhole", c.ResumeCase, note="资金到位")
    assert on_the_queue() == [(Status.ACCEPTED, None)]
    story.on("manhole", c.ReportHandling, actor="W1", result="已更换井盖", photos=["after.jpg"])
    assert on_the_queue() == []  # handled: the desk verifies it now
    story.on("manhole", c.VerifyCase, passed=False, note="井盖松动")
    assert on_the_queue() == []  # reopened: the desk holds it until it dispatches the rework
    story.dispatch("manhole", worker="W1", reason="返工")
    assert on_the_queue() == [(Status.DISPATCHED, None)]
    (row,) = queue(views, "W1")
    assert row.assigned_at == story.clock.now()
