"""The case board: one row per case that agrees with the aggregate, after every single command."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import pytest

from engine import lifecycle
from engine.application import Gridloop
from engine.lifecycle import ASSIGNEE_STATES, DESK_STATES, OPEN, Status
from engine.work_order import WorkOrder, event_names
from projections import projection
from projections.queries import CaseRow, find_case
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections


def board_row(store: ViewStore, case_id: UUID) -> CaseRow:
    return find_case(store, str(case_id))


def as_the_aggregate_says(order: WorkOrder) -> dict[str, Any]:
    return {
        "status": order.status,
        "suspended_from": order.suspended_from,
        "accountable": order.accountable,
        "category": order.category,
        "grid": order.grid,
        "desk": order.desk,
        "unit": order.unit,
        "worker": order.worker,
        "deadline": order.deadline,
        "escalation_level": order.escalation_level,
        "reported_at": order.reported_at,
        "last_occurred_at": order.last_occurred_at,
        "rework_count": order.rework_count,
        "return_count": order.return_count,
        "duplicate_count": len(order.duplicates),
        "merged_into": order.merged_into,
        "satisfaction": getattr(order, "satisfaction", None),
        "version": order.version,
    }


def assert_board_agrees_with_the_event_store(app: Gridloop, store: ViewStore, case_ids: list[UUID]) -> None:
    for case_id in case_ids:
        order = app.case(case_id)
        row = board_row(store, case_id)
        expected = as_the_aggregate_says(order)
        assert {key: getattr(row, key) for key in expected} == expected, order.status


def test_the_accountability_rule_covers_every_open_state() -> None:
    # The board's SQL is built from these sets; a new open state must land in one of them.
    assert DESK_STATES | ASSIGNEE_STATES | {Status.SUSPENDED} == OPEN
    assert not DESK_STATES & ASSIGNEE_STATES


def test_after_every_command_each_case_row_matches_the_aggregate_including_who_is_accountable(
    story: Any, views: ViewStore
) -> None:
    runner = EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections())
    cases_seen: list[int] = []

    def check(s: Any) -> None:
        runner.run_until_caught_up()
        case_ids = {r.aggregate_id for r in s.results if isinstance(s.app.repository.get(r.aggregate_id), WorkOrder)}
        assert_board_agrees_with_the_event_store(s.app, views, sorted(case_ids))
        cases_seen.append(len(case_ids))

    story.after_each = check
    setup = len(story.results)
    story.every_path().supervision_paths()
    assert len(cases_seen) == len(story.results) - setup
    assert cases_seen[-1] == len(story.cases) == 15


def test_the_board_at_the_end_of_the_story(played: Any, place: Any) -> None:
    store, cases, now = played.store, played.story.cases, played.story.clock.now()
    rows = {name: board_row(store, case_id) for name, case_id in cases.items()}
    assert {name: row.status.value for name, row in rows.items()} == {
        "rejected": "rejected", "original": "evaluated", "duplicate": "merged", "returned": "accepted",
        "reassigned": "closed", "suspended": "accepted", "parked": "suspended", "not_fixed": "reopened",
        "complaint": "dispatched", "escalated": "dispatched", "late_upload": "reported", "waiting": "reported",
    }  # fmt: skip
    assert {name: row.accountable for name, row in rows.items()} == {
        "rejected": None, "original": None, "duplicate": None, "returned": "worker:W2", "reassigned": None,
        "suspended": "worker:W3", "parked": place.desk, "not_fixed": place.desk, "complaint": "worker:W1",
        "escalated": "worker:W1", "late_upload": place.desk, "waiting": place.desk,
    }  # fmt: skip
    assert [name for name, row in rows.items() if row.is_overdue(now)] == ["escalated"]
    assert rows["escalated"].escalation_level == 3
    assert rows["parked"].suspended_from is Status.REGISTERED
    assert rows["original"].duplicate_count == 1 and rows["original"].satisfaction == 5
    assert rows["duplicate"].merged_into == cases["original"]
    assert rows["returned"].return_count == 1 and rows["returned"].category == "C0102"
    assert rows["returned"].category_name and rows["returned"].category_name != rows["waiting"].category_name
    assert rows["reassigned"].rework_count == 1 and rows["reassigned"].closed_at is not None
    assert rows["not_fixed"].rework_count == 1 and rows["not_fixed"].closed_at is None
    assert rows["not_fixed"].satisfaction == 2
    assert rows["complaint"].rework_count == 1
    assert rows["rejected"].accountable is None and rows["rejected"].closed_at is None


def test_a_case_is_placed_in_its_grids_community_and_street(played: Any, place: Any) -> None:
    store, cases = played.store, played.story.cases
    waiting = board_row(store, cases["waiting"])
    assert (waiting.grid, waiting.community, waiting.street) == (place.g2, place.east, place.street)
    late = board_row(store, cases["late_upload"])
    assert (late.grid, late.community, late.street) == (place.g3, place.west, place.street)
    assert late.source == "patrol"


def test_each_row_knows_the_last_log_position_that_changed_it(played: Any) -> None:
    app = played.story.app
    for case_id in played.story.cases.values():
        order = app.case(case_id)
        assert board_row(played.store, case_id).position == app.position_of(case_id, order.version)


def test_the_board_and_the_queue_ask_engine_lifecycle_where_every_case_event_leads(
    story: Any, views: ViewStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One state machine: neither view has a copy of which status each event leads to.
    asked: Counter[str] = Counter()

    def status_after(event_name: str, *args: Any, **kwargs: Any) -> Status:
        asked[event_name] += 1
        return lifecycle.status_after(event_name, *args, **kwargs)

    monkeypatch.setattr(projection, "status_after", status_after)
    story.every_path().supervision_paths()
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()
    topics = [n.topic for n in story.app.recorder.select_notifications(1, 10_000)]
    case_events = Counter(topic.rsplit(".", 1)[1] for topic in topics if ":WorkOrder." in topic)
    # Every kind of case event is in the story (Created is the library's default, never recorded: Reported creates).
    assert set(case_events) == set(event_names()) - {"Created"}
    assert asked == {name: 2 * count for name, count in case_events.items()}  # once by each view
