"""The overdue-and-escalation board (超期督办): what is late, escalated or lit, the most urgent first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine import commands as c
from projections.queries import escalations, find_case
from projections.runner import EmbeddedRunner
from projections.scope import Scope
from projections.store import ViewStore
from projections.views import default_projections

WARNING = {"actor": "policy:supervisor", "step": "handle", "policy": "supervisor", "policy_version": "1"}


def _catch_up(story: Any, views: ViewStore) -> None:
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()


def _warn(story: Any, name: str, threshold: int) -> None:
    story.on(name, c.WarnDeadline, threshold=threshold, due=story.clock.now(), **WARNING)


def _escalate(story: Any, name: str, level: int, **fields: object) -> None:
    story.on(name, c.EscalateCase, actor="supervisor", level=level, reason="群众催办", **fields)


def _case(story: Any, name: str, hours: float = 72, **where: str) -> None:
    """A case dispatched to W1 in the first grid, or to the worker and grid given in ``where``."""
    where.setdefault("worker", "W1")
    story.report(name, **({"grid": where["grid"]} if "grid" in where else {}))
    story.on(name, c.RegisterCase)
    story.dispatch(name, worker=where["worker"], hours=hours)


def test_escalated_first_then_red_before_yellow_then_the_soonest_deadline(story: Any, views: ViewStore) -> None:
    for name, hours in (("overdue", 1), ("yellow", 30), ("red_late", 20), ("red_soon", 10), ("green", 40)):
        _case(story, name, hours=hours)
    for name in ("level1", "level1_red", "level3", "quiet", "closed"):
        _case(story, name)
    _warn(story, "yellow", 75)
    _warn(story, "red_late", 100)
    _warn(story, "red_soon", 100)
    _warn(story, "green", 50)
    _escalate(story, "level1", 1)
    _escalate(story, "level1_red", 1)
    _warn(story, "level1_red", 100)
    due = story.clock.now() + timedelta(hours=8)
    _escalate(story, "level3", 3, due=due)
    _escalate(story, "closed", 4)
    story.on("closed", c.AcceptCase, actor="W1")
    story.handle_and_close("closed", "W1")
    story.clock.advance(timedelta(hours=2))
    _catch_up(story, views)

    rows = escalations(views, now=story.clock.now())
    by_id = {case_id: name for name, case_id in story.cases.items()}
    assert [by_id[row.case_id] for row in rows] == [
        "level3", "level1_red", "level1", "red_soon", "red_late", "yellow", "overdue",
    ]  # fmt: skip
    assert [row.light for row in rows] == ["", "red", "", "red", "red", "yellow", ""]
    assert rows[0].escalation_due == due
    assert find_case(views, str(story.cases["level1"])).escalation_due is None
    assert [by_id[row.case_id] for row in escalations(views, now=story.clock.now(), limit=2)] == [
        "level3",
        "level1_red",
    ]


def test_a_case_overdue_only_later_is_not_on_the_board_yet(story: Any, views: ViewStore) -> None:
    _case(story, "late", hours=1)
    _catch_up(story, views)
    assert escalations(views, now=story.clock.now()) == []
    assert [row.case_id for row in escalations(views, now=story.clock.now() + timedelta(hours=2))] == [
        story.cases["late"]
    ]


def test_the_escalation_board_respects_the_readers_scope(story: Any, views: ViewStore, place: Any) -> None:
    _case(story, "east", grid=place.g1)
    _case(story, "west", grid=place.g3, worker="W3")
    _escalate(story, "east", 2)
    _escalate(story, "west", 1)
    _catch_up(story, views)
    now = story.clock.now()
    assert [row.case_id for row in escalations(views, now=now, scope=Scope(division=place.west))] == [
        story.cases["west"]
    ]
    assert [row.case_id for row in escalations(views, now=now, scope=Scope(division=place.east))] == [
        story.cases["east"]
    ]
    assert [row.case_id for row in escalations(views, now=now, scope=Scope(worker="W3"))] == [story.cases["west"]]
    assert escalations(views, now=now, scope=Scope(division="0000")) == []
