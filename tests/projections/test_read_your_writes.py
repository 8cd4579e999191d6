"""Read-your-writes: a command's position, and a bounded wait until the views have read it."""

from __future__ import annotations

import threading
from typing import Any

from engine import commands as c
from projections.queries import find_case, queue, wait_for
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import VIEW_NAMES, default_projections


def test_a_query_waiting_for_a_position_the_views_have_not_read_gives_up_with_false(
    story: Any, views: ViewStore
) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    runner.run_until_caught_up()
    story.report("leak")
    position = story.results[-1].position
    assert runner.position < position
    assert wait_for(views, position, timeout=0.05) is False
    assert wait_for(views, position, timeout=0) is False


def test_once_the_runner_has_caught_up_the_wait_returns_true_and_the_case_is_there(
    story: Any, views: ViewStore
) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    case = story.report("leak")
    story.on("leak", c.RegisterCase)
    story.dispatch("leak", worker="W2")
    result = story.results[-1]
    runner.run_until_caught_up()
    assert wait_for(views, result.position, timeout=0) is True
    assert find_case(views, str(case)).worker == "W2"
    assert [row.case_id for row in queue(views, "W2")] == [case]


def test_an_operator_who_just_dispatched_sees_it_once_the_background_runner_has_read_it(
    story: Any, views: ViewStore
) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    runner.run_until_caught_up()
    case = story.report("leak")
    story.on("leak", c.RegisterCase)
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, args=(stop, 0.005))
    follower.start()
    try:
        for step in range(5):
            story.on("leak", c.EscalateCase, actor="supervisor", level=step + 1, reason="督办")
            assert wait_for(views, story.results[-1].position, timeout=30)
            assert find_case(views, str(case)).escalation_level == step + 1
    finally:
        stop.set()
        follower.join(timeout=30)


def test_a_command_whose_last_event_no_view_follows_can_still_be_waited_for(story: Any, views: ViewStore) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    runner.run_until_caught_up()
    result = story.do(c.SetDuty, actor="admin", worker="W1", on_duty=False)
    assert runner.run_until_caught_up() == 0  # a worker going off duty: none of the views cares
    assert wait_for(views, result.position, timeout=0)
    assert views.positions(VIEW_NAMES) == dict.fromkeys(VIEW_NAMES, result.position)


def test_waiting_for_only_some_views_ignores_the_others(story: Any, views: ViewStore) -> None:
    board_only = [p for p in default_projections() if p.name == "case_board"]
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, board_only).run_until_caught_up()
    position = story.results[-1].position
    assert wait_for(views, position, timeout=0, names=["case_board"])
    assert not wait_for(views, position, timeout=0)
