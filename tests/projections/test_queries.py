"""Queries over the views: finding a case by its short id, filtering the board, the summary in numbers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from engine import commands as c
from engine.errors import InvalidCommand, UnknownReference
from projections.queries import BoardSummary, GridLoad, board, find_case, summary, view_checksum
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections


def test_a_case_is_found_by_its_full_id_its_short_id_or_any_unambiguous_prefix(played: Any) -> None:
    case_id = played.story.cases["escalated"]
    short = case_id.hex[:8]
    for text in (str(case_id), case_id.hex, case_id.hex.upper(), short, f" {short} ", str(case_id)[:13]):
        assert find_case(played.store, text).case_id == case_id, text


def test_an_ambiguous_prefix_is_refused_with_the_matching_short_ids(story: Any, views: ViewStore) -> None:
    # Seventeen cases: at least two share a first hex digit.
    for number in range(17):
        story.report(f"case-{number}")
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()
    digit, _ = Counter(case_id.hex[0] for case_id in story.cases.values()).most_common(1)[0]
    sharing = sorted(case_id.hex[:8] for case_id in story.cases.values() if case_id.hex[0] == digit)
    with pytest.raises(InvalidCommand, match="matches more than one case") as refused:
        find_case(views, digit)
    assert all(short in str(refused.value) for short in sharing[:10])
    assert refused.value.expected == "a longer prefix"


def test_an_unknown_or_malformed_case_id_gets_a_clear_error(played: Any) -> None:
    with pytest.raises(UnknownReference, match="unknown case '00000000'"):
        find_case(played.store, "00000000")
    for junk in ("", "xyz", "12345678-zz", "0" * 33):
        with pytest.raises(InvalidCommand, match="is not a case id"):
            find_case(played.store, junk)


def test_the_board_filters_by_status_grid_community_and_overdue(played: Any, place: Any) -> None:
    store, cases, now = played.store, played.story.cases, played.story.clock.now()
    names = {case_id: name for name, case_id in cases.items()}

    def listed(**filters: Any) -> list[str]:
        filters.setdefault("now", now)
        return [names[row.case_id] for row in board(store, **filters)]

    assert listed(status="reported") == ["late_upload", "waiting"]  # in the order they happened
    assert listed(grid=place.g3) == ["suspended", "parked", "not_fixed", "late_upload"]
    assert set(listed(community=place.east)) == set(cases) - {"suspended", "parked", "not_fixed", "late_upload"}
    assert listed(overdue=True) == ["escalated"]
    assert listed(overdue=False) == [name for name in cases if name != "escalated"]
    assert listed(status="dispatched", grid=place.g1) == ["complaint", "escalated"]
    assert listed(overdue=True, now=now - timedelta(hours=3)) == []  # before its deadline it was not late
    with pytest.raises(InvalidCommand, match="'lost' is not a case status"):
        board(store, now=now, status="lost")


def test_the_board_pages_through_every_case_once_in_report_order(played: Any) -> None:
    store, now = played.store, played.story.clock.now()
    pages, after = [], None
    while page := board(store, now=now, limit=5, after=after):
        pages.append(page)
        after = page[-1].case_id
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [row.case_id for p in pages for row in p] == list(played.story.cases.values())


def test_the_summary_counts_a_small_hand_checked_district(story: Any, views: ViewStore, place: Any) -> None:
    # g1: waiting (reported), late (dispatched, past deadline, escalated), on_time (dispatched)
    # g3: parked (dispatched, suspended past its deadline: not overdue), done (closed), refused (rejected)
    story.report("waiting")
    for name in ("late", "on_time"):
        story.report(name)
        story.on(name, c.RegisterCase)
    story.dispatch("late", worker="W1", hours=1)
    story.dispatch("on_time", worker="W1", hours=10)
    story.on("late", c.EscalateCase, actor="supervisor", level=1, reason="督办")
    for name in ("parked", "done", "refused"):
        story.report(name, grid=place.g3)
    story.on("refused", c.RejectCase, reason_code="duplicate", reason="重复上报")
    for name in ("parked", "done"):
        story.on(name, c.RegisterCase)
        story.dispatch(name, worker="W3", hours=1)
    story.on("parked", c.SuspendCase, reason="等待资金")
    story.on("done", c.AcceptCase, actor="W3")
    story.handle_and_close("done", "W3")
    story.clock.advance(timedelta(hours=2))
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()

    assert summary(views, story.clock.now()) == BoardSummary(
        by_status={"reported": 1, "dispatched": 2, "suspended": 1, "closed": 1, "rejected": 1},
        open=4,
        overdue=1,
        closed=1,
        escalated=1,
        top_grids=(
            GridLoad(place.g1, place.east, open=3, overdue=1),
            GridLoad(place.g3, place.west, open=1, overdue=0),
        ),
    )
    late_deadline = find_case(views, str(story.cases["late"])).deadline
    assert late_deadline is not None
    just_before = summary(views, late_deadline - timedelta(seconds=1))
    assert (just_before.overdue, just_before.open, just_before.top_grids[0].overdue) == (0, 4, 0)


def test_an_unknown_view_has_no_checksum(played: Any) -> None:
    with pytest.raises(UnknownReference, match="unknown view 'nope'"):
        view_checksum(played.store, "nope")


def test_only_a_case_an_assignee_holds_can_be_overdue(story: Any, views: ViewStore, place: Any) -> None:
    # Every case gets a one-hour deadline; two hours later only those an assignee still holds are late.
    for name in ("late", "asked", "handled", "parked", "returned", "reworked"):
        story.report(name)
        story.on(name, c.RegisterCase)
        story.dispatch(name, worker="W1", hours=1)
    for name in ("asked", "handled", "reworked"):
        story.on(name, c.AcceptCase, actor="W1")
    story.on("asked", c.RequestExtension, actor="W1", until=story.clock.now() + timedelta(days=2), reason="等待配件")
    for name in ("handled", "reworked"):
        story.on(name, c.ReportHandling, actor="W1", result="处置完毕", photos=[])
    story.on("reworked", c.VerifyCase, passed=False, note="仍未修好")
    story.on("parked", c.SuspendCase, reason="等待资金")
    story.on("returned", c.ReturnCase, actor="W1", reason="不属于网格职责")
    story.clock.advance(timedelta(hours=2))
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()
    now = story.clock.now()
    names = {case_id: name for name, case_id in story.cases.items()}

    rows = board(views, now=now)
    assert {names[r.case_id]: r.status.value for r in rows} == {
        "late": "dispatched", "asked": "extension_requested", "handled": "handled", "parked": "suspended",
        "returned": "returned", "reworked": "reopened",
    }  # fmt: skip
    assert [names[r.case_id] for r in board(views, now=now, overdue=True)] == ["late", "asked"]
    assert [names[r.case_id] for r in rows if r.is_overdue(now)] == ["late", "asked"]
    assert summary(views, now).overdue == 2
    assert summary(views, now).top_grids == (GridLoad(place.g1, place.east, open=6, overdue=2),)
    # The desk holds a returned or reopened case: no assignee, no deadline, as on the aggregate.
    for name in ("returned", "reworked"):
        row = find_case(views, str(story.cases[name]))
        assert (row.unit, row.worker, row.deadline, row.accountable) == ("", "", None, place.desk)
