"""The board's filters: status, place, category by code, 大类 or kind, assignee, case ids, report time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from engine import commands as c
from engine.errors import InvalidCommand
from projections.queries import CaseRow, board, find_case
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections


@pytest.fixture
def four(story: Any, views: ViewStore, place: Any) -> Any:
    """Four cases: p (C0101, g1, W1, overdue), q (C0201, g2, unit chengguan), r (E0101, g3, reported), s (S0101, g1)."""
    story.report("p", grid=place.g1, category="C0101")
    story.on("p", c.RegisterCase)
    story.dispatch("p", worker="W1", hours=1)
    story.report("q", grid=place.g2, category="C0201")
    story.on("q", c.RegisterCase)
    story.dispatch("q", unit="chengguan")
    story.report("r", grid=place.g3, category="E0101")
    story.report("s", grid=place.g1, category="S0101")
    story.on("s", c.RegisterCase)
    story.clock.advance(timedelta(hours=2))
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()
    return story


def _names(story: Any, rows: Sequence[CaseRow]) -> list[str]:
    by_id = {case_id: name for name, case_id in story.cases.items()}
    return [by_id[row.case_id] for row in rows]


def _board(story: Any, views: ViewStore, **filters: Any) -> list[str]:
    return _names(story, board(views, now=story.clock.now(), **filters))


def test_status_takes_one_state_or_several(four: Any, views: ViewStore) -> None:
    assert _board(four, views, status="dispatched") == ["p", "q"]
    assert _board(four, views, status=["reported", "registered"]) == ["r", "s"]
    assert _board(four, views, status=[]) == []


def test_a_status_that_is_not_one_is_refused_with_the_states_there_are(four: Any, views: ViewStore) -> None:
    with pytest.raises(InvalidCommand, match=r"'open' is not a case status \(expected reported, registered, "):
        board(views, status=["dispatched", "open"], now=four.clock.now())


def test_grid_community_and_street_each_narrow_the_board(four: Any, views: ViewStore, place: Any) -> None:
    assert _board(four, views, grid=place.g1) == ["p", "s"]
    assert _board(four, views, community=place.east) == ["p", "q", "s"]
    assert _board(four, views, community=place.west) == ["r"]
    assert _board(four, views, street=place.street) == ["p", "q", "r", "s"]
    assert _board(four, views, street=place.town) == []
    assert _board(four, views, street=place.street, grid=place.g3) == ["r"]


def test_a_category_is_a_full_code_a_major_class_or_a_kind_letter(four: Any, views: ViewStore) -> None:
    assert _board(four, views, category="C0101") == ["p"]
    assert _board(four, views, category="C01") == ["p"]
    assert _board(four, views, category="C") == ["p", "q"]
    assert _board(four, views, category=["E", "S01"]) == ["r", "s"]
    assert _board(four, views, category="C0102") == []
    assert _board(four, views, category=[]) == []


@pytest.mark.parametrize("bad", ["c01", "C010", "C01011", "01", "C*", ""])
def test_a_category_that_is_no_code_is_refused_with_what_a_code_looks_like(
    four: Any, views: ViewStore, bad: str
) -> None:
    with pytest.raises(InvalidCommand, match=r"a code \(E0101\), a 大类 \(E01\) or a kind letter \(E\)"):
        board(views, category=["C", bad], now=four.clock.now())


def test_overdue_is_judged_at_the_time_asked_about(four: Any, views: ViewStore) -> None:
    assert _board(four, views, overdue=True) == ["p"]
    assert _board(four, views, overdue=False) == ["q", "r", "s"]
    early = find_case(views, str(four.cases["p"])).reported_at
    assert board(views, overdue=True, now=early) == []


def test_the_assignee_is_the_cases_worker_or_its_unit(four: Any, views: ViewStore) -> None:
    assert _board(four, views, assignee="W1") == ["p"]
    assert _board(four, views, assignee="chengguan") == ["q"]
    assert _board(four, views, assignee="W3") == []


def test_case_ids_pick_those_cases_in_report_order(four: Any, views: ViewStore) -> None:
    assert _board(four, views, case_ids=[four.cases["r"], four.cases["p"], uuid4()]) == ["p", "r"]
    assert _board(four, views, case_ids=[]) == []


def test_report_time_is_a_half_open_range(four: Any, views: ViewStore) -> None:
    reported = {name: find_case(views, str(case)).reported_at for name, case in four.cases.items()}
    assert _board(four, views, reported_from=reported["q"]) == ["q", "r", "s"]
    assert _board(four, views, reported_to=reported["r"]) == ["p", "q"]
    assert _board(four, views, reported_from=reported["q"], reported_to=reported["s"]) == ["q", "r"]


def test_filters_and_pages_combine(four: Any, views: ViewStore, place: Any) -> None:
    first = board(views, community=place.east, category="C", now=four.clock.now(), limit=1)
    assert _names(four, first) == ["p"]
    rest = board(views, community=place.east, category="C", now=four.clock.now(), limit=1, after=first[-1].case_id)
    assert _names(four, rest) == ["q"]
    assert board(views, community=place.east, category="C", now=four.clock.now(), after=rest[-1].case_id) == []


def test_the_existing_callers_way_of_asking_still_works(four: Any, views: ViewStore, place: Any) -> None:
    rows = board(
        views, status="dispatched", grid=place.g1, community=place.east, overdue=True, now=four.clock.now(), limit=5
    )
    assert _names(four, rows) == ["p"]


def test_every_column_of_the_board_is_a_field_of_a_case_row(views: ViewStore) -> None:
    # CaseRows are made from the board's columns without calling __init__ (queries._case): none may be missing.
    with views.reading() as cursor:
        cursor.execute("SELECT * FROM board LIMIT 0")
        columns = {column[0] for column in cursor.description}
    assert columns == {field.name for field in fields(CaseRow)}
    assert not hasattr(CaseRow, "__post_init__")
