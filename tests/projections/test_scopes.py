"""Scopes (辖区): a reader sees the cases inside its node of the five-level tree, or assigned to it, and no others."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from engine import commands as c
from engine.errors import InvalidCommand
from projections.queries import board, in_scope, queue, summary
from projections.runner import EmbeddedRunner
from projections.scope import EVERYWHERE, Scope
from projections.store import ViewStore
from projections.views import default_projections


@pytest.fixture
def spread(story: Any, views: ViewStore, place: Any) -> Any:
    """Cases a (g1, W1), b (g2, unit chengguan), c (g3, W3), d (g4 in the city's district, W4), e (g1, reported)."""
    story.city()
    for name, grid in (("a", place.g1), ("b", place.g2), ("c", place.g3), ("d", place.g4), ("e", place.g1)):
        story.report(name, grid=grid)
    for name, worker, unit in (("a", "W1", ""), ("b", "", "chengguan"), ("c", "W3", ""), ("d", "W4", "")):
        story.on(name, c.RegisterCase)
        story.dispatch(name, worker=worker, unit=unit, hours=1)
    story.clock.advance(timedelta(hours=2))
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()
    return story


def _seen(story: Any, views: ViewStore, scope: Scope) -> set[str]:
    by_id = {case_id: name for name, case_id in story.cases.items()}
    return {by_id[row.case_id] for row in board(views, scope=scope, now=story.clock.now())}


@pytest.mark.parametrize(
    ("level", "division", "cases"),
    [
        ("grid", "g1", {"a", "e"}),
        ("community", "east", {"a", "b", "e"}),
        ("community", "west", {"c"}),
        ("street", "street", {"a", "b", "c", "e"}),
        ("district", "district", {"a", "b", "c", "e"}),
        ("grid", "g4", {"d"}),
        ("community", "village", {"d"}),
        ("street", "town", {"d"}),
        ("district", "county", {"d"}),
        ("city", "city", {"d"}),
    ],
)
def test_a_division_scope_admits_the_cases_inside_it_at_every_level(
    spread: Any, views: ViewStore, place: Any, level: str, division: str, cases: set[str]
) -> None:
    assert _seen(spread, views, Scope(division=getattr(place, division))) == cases


def test_a_code_the_tree_does_not_hold_admits_nothing(spread: Any, views: ViewStore) -> None:
    assert _seen(spread, views, Scope(division="0000")) == set()


def test_everywhere_admits_every_case(spread: Any, views: ViewStore) -> None:
    assert _seen(spread, views, EVERYWHERE) == {"a", "b", "c", "d", "e"}


def test_a_worker_or_unit_scope_admits_only_the_cases_assigned_to_it(spread: Any, views: ViewStore) -> None:
    assert _seen(spread, views, Scope(worker="W1")) == {"a"}
    assert _seen(spread, views, Scope(unit="chengguan")) == {"b"}
    assert _seen(spread, views, Scope(worker="W9")) == set()


def test_a_grid_worker_sees_only_the_cases_assigned_to_it_inside_its_division(
    spread: Any, views: ViewStore, place: Any
) -> None:
    assert _seen(spread, views, Scope(division=place.east, worker="W1")) == {"a"}
    assert _seen(spread, views, Scope(division=place.west, worker="W1")) == set()


def test_a_scope_and_a_filter_both_hold(spread: Any, views: ViewStore, place: Any) -> None:
    assert board(views, scope=Scope(division=place.street), grid=place.g4, now=spread.clock.now()) == []
    rows = board(views, scope=Scope(division=place.district), overdue=True, now=spread.clock.now())
    assert {row.case_id for row in rows} == {spread.cases["a"], spread.cases["b"], spread.cases["c"]}


def test_in_scope_says_whether_a_reader_may_see_one_case(spread: Any, views: ViewStore, place: Any) -> None:
    assert in_scope(views, spread.cases["a"], Scope(division=place.east))
    assert not in_scope(views, spread.cases["a"], Scope(division=place.west))
    assert in_scope(views, spread.cases["d"], Scope(division=place.city))
    assert not in_scope(views, spread.cases["a"], Scope(division="0000"))
    assert in_scope(views, spread.cases["b"], Scope(unit="chengguan"))
    assert not in_scope(views, spread.cases["b"], Scope(worker="W1"))
    assert not in_scope(views, uuid4(), EVERYWHERE)


def test_a_queue_shows_only_what_the_scope_admits(spread: Any, views: ViewStore, place: Any) -> None:
    a, d = [spread.cases["a"]], [spread.cases["d"]]
    for division in (place.g1, place.east, place.street, place.district):
        assert [row.case_id for row in queue(views, "W1", Scope(division=division))] == a, division
    for division in (place.g2, place.west, place.town, place.county, place.city, "0000"):
        assert queue(views, "W1", Scope(division=division)) == [], division
    for division in (place.g4, place.village, place.town, place.county, place.city):
        assert [row.case_id for row in queue(views, "W4", Scope(division=division))] == d, division
    assert queue(views, "W1", Scope(worker="W3")) == []
    assert [row.case_id for row in queue(views, "W1")] == a


def test_a_summary_counts_only_what_the_scope_admits(spread: Any, views: ViewStore, place: Any) -> None:
    east = summary(views, spread.clock.now(), scope=Scope(division=place.east))
    assert (east.open, east.overdue) == (3, 2)
    assert east.by_status == {"dispatched": 2, "reported": 1}
    assert {load.grid for load in east.top_grids} == {place.g1, place.g2}
    city = summary(views, spread.clock.now(), scope=Scope(division=place.city))
    assert (city.open, city.overdue, [load.grid for load in city.top_grids]) == (1, 1, [place.g4])
    nowhere = summary(views, spread.clock.now(), scope=Scope(division="0000"))
    assert (nowhere.open, nowhere.by_status, nowhere.top_grids) == (0, {}, ())
    assert summary(views, spread.clock.now()).open == 5


def test_an_empty_code_is_refused_rather_than_matching_every_unassigned_case() -> None:
    with pytest.raises(InvalidCommand, match=r"scope\.worker: is empty"):
        Scope(worker="")
