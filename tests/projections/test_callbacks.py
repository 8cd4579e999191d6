"""回访任务: a resident's closed case awaits a call-back by a due time; the call-back or a reopening ends it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine import commands as c
from engine.lifecycle import Status
from projections.callbacks import CallbackTask, callback_queue
from projections.queries import find_case
from projections.scope import Scope
from projections.store import ViewStore
from tests.projections.conftest import G1, G3, WEST, Story, follow


def local(text: str) -> datetime:
    return datetime.fromisoformat(f"{text}+08:00")


def close(story: Story, name: str, worker: str = "W1", **report: Any) -> None:
    """A case reported (by a resident unless told otherwise), dispatched to ``worker``, handled and closed."""
    story.report(name, **report)
    story.on(name, c.RegisterCase)
    story.dispatch(name, worker=worker)
    story.on(name, c.AcceptCase, actor=worker)
    story.handle_and_close(name, worker)


def tasks(story: Story, views: ViewStore, **filters: Any) -> dict[str, CallbackTask]:
    follow(story.app, views).run_until_caught_up()
    names = {case_id: name for name, case_id in story.cases.items()}
    filters.setdefault("now", story.clock.now())
    return {names[t.case_id]: t for t in callback_queue(views, **filters)}


def test_a_residents_closed_case_is_due_for_a_call_back_three_working_days_after_closing(
    story: Story, views: ViewStore
) -> None:
    close(story, "hotline", source="hotline", reporter="13800000001")
    close(story, "patrol", source="patrol", actor="W1")  # a worker's own finding: nobody to call back
    close(story, "department", source="department", actor="dept:chengguan")
    queue = tasks(story, views)
    assert set(queue) == {"hotline"}
    task = queue["hotline"]
    # Story time: Monday 2026-11-23, 10:35 local when the hotline case is verified and closed.
    assert task.closed_at == local("2026-11-23T10:35")
    assert task.due_at == local("2026-11-26T10:35")  # Thursday, same time of day
    assert (task.reporter, task.source, task.grid, task.category) == ("13800000001", "hotline", G1, "C0101")
    assert (task.attempts, task.last_attempt_at, task.last_reason, task.overdue) == (0, None, "", False)
    assert not tasks(story, views, now=local("2026-11-26T10:35"))["hotline"].overdue
    assert tasks(story, views, now=local("2026-11-26T10:36"))["hotline"].overdue
    assert tasks(story, views, overdue=True) == {}
    assert set(tasks(story, views, overdue=True, now=local("2026-11-26T10:36"))) == {"hotline"}


def test_a_case_closed_on_friday_is_due_on_wednesday(story: Story, views: ViewStore) -> None:
    story.clock.advance(timedelta(days=4))  # Friday 2026-11-27
    close(story, "friday")
    task = tasks(story, views)["friday"]
    assert task.closed_at == local("2026-11-27T10:35")
    assert task.due_at == local("2026-12-02T10:35")  # Monday, Tuesday, Wednesday


def test_missed_call_backs_are_counted_and_the_call_back_ends_the_task(story: Story, views: ViewStore) -> None:
    close(story, "unreachable")
    story.on("unreachable", c.MissCallBack, reason="no_answer")
    story.on("unreachable", c.MissCallBack, reason="wrong_number")
    task = tasks(story, views)["unreachable"]
    assert (task.attempts, task.last_reason, task.last_attempt_at) == (2, "wrong_number", local("2026-11-23T10:45"))
    assert task.due_at == local("2026-11-26T10:35")  # a miss does not move the due time
    story.on("unreachable", c.CallBack, satisfaction=4, fixed=True)
    assert tasks(story, views) == {}
    assert find_case(views, str(story.cases["unreachable"])).status is Status.EVALUATED


def test_not_fixed_reopens_the_case_and_its_next_closing_makes_a_new_task(story: Story, views: ViewStore) -> None:
    close(story, "leaky")
    story.on("leaky", c.MissCallBack, reason="no_answer")
    story.on("leaky", c.CallBack, satisfaction=2, fixed=False, note="还在漏")
    assert tasks(story, views) == {}
    row = find_case(views, str(story.cases["leaky"]))
    assert (row.status, row.rework_count, row.accountable) == (Status.REOPENED, 1, f"desk:{row.desk}")
    story.clock.advance(timedelta(days=1))  # Tuesday
    story.dispatch("leaky", worker="W1", reason="返工")
    story.on("leaky", c.AcceptCase, actor="W1")
    story.handle_and_close("leaky", "W1")
    task = tasks(story, views)["leaky"]
    assert (task.attempts, task.closed_at, task.due_at) == (0, local("2026-11-24T11:05"), local("2026-11-27T11:05"))
    story.on("leaky", c.CallBack, satisfaction=5, fixed=True)
    assert tasks(story, views) == {}
    assert find_case(views, str(story.cases["leaky"])).status is Status.EVALUATED


def test_a_case_reopened_on_a_complaint_leaves_the_queue(story: Story, views: ViewStore) -> None:
    close(story, "complaint")
    assert set(tasks(story, views)) == {"complaint"}
    story.on("complaint", c.ReopenCase, reason="居民投诉仍未修好")
    assert tasks(story, views) == {}


def test_the_queue_is_read_soonest_due_first_within_the_readers_scope(story: Story, views: ViewStore) -> None:
    close(story, "first")
    story.clock.advance(timedelta(days=1))
    close(story, "west", worker="W3", grid=G3)
    everything = tasks(story, views)
    assert list(everything) == ["first", "west"]
    assert list(tasks(story, views, due_before=everything["west"].due_at)) == ["first"]
    assert list(tasks(story, views, scope=Scope(division=WEST))) == ["west"]
    assert list(tasks(story, views, scope=Scope(division=G1))) == ["first"]
    assert tasks(story, views, scope=Scope(worker="W3")) == {}  # call-backs are the desk's, never a worker's
    assert list(tasks(story, views, limit=1)) == ["first"]


def test_after_every_lifecycle_path_only_the_closed_resident_case_not_yet_called_back_waits(played: Any) -> None:
    names = {case_id: name for name, case_id in played.story.cases.items()}
    queue = callback_queue(played.store, now=played.story.clock.now())
    assert [names[t.case_id] for t in queue] == ["reassigned"]
