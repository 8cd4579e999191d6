"""The daily flow: each day counts what occurred on it, so a phone that uploads a day late adds to yesterday."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import commands as c
from engine.lifecycle import HAND_OVER_PROCESSING
from projections.flow import COUNTS, FlowRow, daily_flow
from projections.rebuild import rebuild
from projections.replay import OCCURRED, RECORDED, replay
from projections.store import ViewStore
from projections.views import default_projections
from tests.projections.conftest import G1, G2, Story, follow

YESTERDAY, TODAY = date(2026, 11, 22), date(2026, 11, 23)  # the story starts on the 23rd at 09:00 local


def local(day: date, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day.isoformat()}T{clock}+08:00")


def counted(rows: list[FlowRow]) -> dict[tuple[date, str, str], dict[str, int]]:
    """The rows by day, grid and category, with only the counts that are not zero."""
    return {(r.day, r.grid, r.category): {k: n for k, n in r.counts.items() if n} for r in rows}


def test_a_day_counts_each_kind_of_step_that_occurred_on_it(story: Story, views: ViewStore) -> None:
    runner = follow(story.app, views)
    story.report("late")
    story.on("late", c.RegisterCase)
    story.dispatch("late", worker="W1", hours=1)
    story.on("late", c.AcceptCase, actor="W1")
    story.clock.advance(timedelta(hours=2))
    story.on("late", c.EscalateCase, actor="supervisor", level=1, reason="超期未处置")
    story.handle_and_close("late", "W1")  # after its deadline
    story.report("reopened")
    story.on("reopened", c.RegisterCase)
    story.dispatch("reopened", worker="W1")
    story.on("reopened", c.ReturnCase, actor="W1", reason="不属于本网格")
    story.dispatch("reopened", worker="W1")
    story.on("reopened", c.AcceptCase, actor="W1")
    story.handle_and_close("reopened", "W1")  # within its deadline
    story.on("reopened", c.ReopenCase, reason="居民投诉")
    story.report("rejected", grid=G2, category="C0102")
    story.on("rejected", c.RejectCase, reason_code="not_admitted", reason="物业负责")
    runner.run_until_caught_up()

    assert counted(daily_flow(views, TODAY, TODAY)) == {
        (TODAY, G1, "C0101"): {
            "reported": 2, "registered": 2, "dispatched": 3, "returned": 1, "handled": 2, "closed": 2,
            "closed_on_time": 1, "closed_overdue": 1, "reopened": 1, "escalated": 1,
        },
        (TODAY, G2, "C0102"): {"reported": 1, "rejected": 1},
    }  # fmt: skip
    assert daily_flow(views, YESTERDAY, YESTERDAY) == []
    assert set(daily_flow(views, TODAY, TODAY)[0].counts) == set(COUNTS)


def test_a_recategorised_case_is_counted_under_its_new_category_from_then_on(story: Story, views: ViewStore) -> None:
    story.report("moved", category="C0101")
    story.on("moved", c.RegisterCase, category="C0102")
    story.dispatch("moved", worker="W1")
    follow(story.app, views).run_until_caught_up()
    assert counted(daily_flow(views, TODAY, TODAY)) == {
        (TODAY, G1, "C0101"): {"reported": 1},
        (TODAY, G1, "C0102"): {"registered": 1, "dispatched": 1},
    }


def test_every_lifecycle_path_is_counted_as_the_log_has_it(story: Story, views: ViewStore) -> None:
    story.every_path().supervision_paths()
    follow(story.app, views).run_until_caught_up()
    notifications = story.app.recorder.select_notifications(1, 10_000)
    events: list[Any] = [story.app.mapper.to_domain_event(n) for n in notifications if ":WorkOrder." in n.topic]
    kinds = Counter(type(e).__name__ for e in events)
    dispatches = kinds["Dispatched"] + kinds["Reassigned"]
    hand_overs = len([e for e in events if type(e).__name__ == "HandedOver" and e.stage == HAND_OVER_PROCESSING])
    totals = Counter[str]()
    for row in daily_flow(views, YESTERDAY, TODAY + timedelta(days=1)):
        totals.update(row.counts)
    assert totals["reported"] == kinds["Reported"] == len(story.cases)
    assert totals["dispatched"] == dispatches + hand_overs and hand_overs == 1
    assert (totals["returned"], totals["escalated"], totals["rejected"]) == (1, 2, 1)
    assert totals["closed"] == totals["closed_on_time"] + totals["closed_overdue"] == 5
    assert totals["reopened"] == 3  # a failed verification, an unsatisfied call-back, a complaint


@pytest.mark.sqlite_only
def test_a_late_upload_lands_in_the_day_it_occurred_live_rebuilt_and_replayed(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    """SQLite only: the blue/green rebuild (and an as-of replay) build SQLite files beside the live store."""
    runner = follow(story.app, views)
    story.report("today")
    story.on("today", c.RegisterCase)
    runner.run_until_caught_up()  # today's events are projected before the upload comes
    before_upload = story.clock.now()
    # A grid worker's phone saw a manhole yesterday afternoon and uploads it this morning.
    story.report("seen_yesterday", actor="W1", source="patrol", occurred_at=local(YESTERDAY, "16:00"))
    runner.run_until_caught_up()
    everything = {
        (YESTERDAY, G1, "C0101"): {"reported": 1},
        (TODAY, G1, "C0101"): {"reported": 1, "registered": 1},
    }
    assert counted(daily_flow(views, YESTERDAY, TODAY)) == everything

    [flow] = rebuild(
        story.app.recorder, story.app.mapper, views, [p for p in default_projections() if p.name == "daily_flow"]
    )
    assert flow.equal and counted(daily_flow(views, YESTERDAY, TODAY)) == everything

    def replayed(as_of: datetime, by: str) -> dict[tuple[date, str, str], dict[str, int]]:
        done = replay(story.app.recorder, story.app.mapper, tmp_path / f"{by}.sqlite", default_projections(), as_of, by)
        store = ViewStore.open(done.path)
        try:
            return counted(daily_flow(store, YESTERDAY, TODAY))
        finally:
            store.close()

    # What had happened by the end of yesterday: the manhole, though nobody knew of it then.
    assert replayed(local(YESTERDAY, "23:59:59"), OCCURRED) == {(YESTERDAY, G1, "C0101"): {"reported": 1}}
    assert replayed(story.clock.now(), OCCURRED) == everything
    # What the system knew before the upload: today's case only.
    assert replayed(before_upload, RECORDED) == {(TODAY, G1, "C0101"): {"reported": 1, "registered": 1}}
    assert replayed(story.clock.now(), RECORDED) == everything


def test_a_step_of_a_case_the_view_never_saw_reported_is_refused_not_dropped(story: Story, views: ViewStore) -> None:
    runner = follow(story.app, views)
    story.report("lost")
    runner.run_until_caught_up()
    with views.transaction() as cursor:
        cursor.execute("DELETE FROM flow_case")
    story.on("lost", c.RegisterCase)
    with pytest.raises(LookupError, match="flow_case has no case"):
        runner.run_until_caught_up()
