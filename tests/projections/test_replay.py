"""As-of replays: by recorded time a prefix of the log, by occurred time each aggregate's prefix; in a store apart."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.dispatch import singledispatchmethod

from engine import commands as c
from engine.clock import ManualClock
from engine.errors import InvalidCommand, UnknownReference
from engine.work_order import WorkOrder
from projections.projection import Cursor, Projection, ViewTable, chosen, event_class
from projections.queries import find_case, timeline, view_checksum, view_rows
from projections.replay import OCCURRED, RECORDED, Replay, replay
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import VIEW_NAMES, default_projections
from tests.projections.conftest import G1, Story, event_store


@contextmanager
def opened(path: Path) -> Iterator[ViewStore]:
    store = ViewStore.open(path)
    try:
        yield store
    finally:
        store.close()


def replayed(story: Story, folder: Path, as_of: datetime, by: str, views: list[Projection] | None = None) -> Replay:
    projections = views if views is not None else default_projections()
    return replay(story.app.recorder, story.app.mapper, folder / f"{by}.sqlite", projections, as_of, by)


def test_by_recorded_time_the_views_are_the_log_folded_up_to_the_first_event_recorded_later(
    story: Story, tmp_path: Path
) -> None:
    story.report("before")
    registered = story.on("before", c.RegisterCase)
    instant = story.clock.now()  # the registration is stamped at this very instant: it is in
    story.report("after")
    story.on("after", c.RegisterCase)

    done = replayed(story, tmp_path, instant, RECORDED)

    assert registered.position <= done.position < story.results[-2].position
    assert done.late_stamped == () and done.passed_over == 0
    with opened(done.path) as store:
        assert find_case(store, str(story.cases["before"])).status == "registered"
        with pytest.raises(UnknownReference):
            find_case(store, str(story.cases["after"]))
        # The same as any runner folding the log up to that position.
        prefix = ViewStore.open(tmp_path / "prefix.sqlite")
        EmbeddedRunner(
            story.app.recorder, story.app.mapper, prefix, default_projections(), stop=done.position
        ).run_until_caught_up()
        assert [view_checksum(store, n) for n in VIEW_NAMES] == [view_checksum(prefix, n) for n in VIEW_NAMES]
        assert {v.name: v.checksum for v in done.views} == {n: view_checksum(prefix, n) for n in VIEW_NAMES}
        prefix.close()


def a_late_acceptance(story: Story) -> dict[str, datetime]:
    """Dispatched at 10:00, escalated at 11:00; the worker accepted at 10:30 offline, uploaded at 12:00 (local)."""
    day = datetime(2026, 11, 24, tzinfo=UTC) - timedelta(hours=8)  # local midnight, the 24th
    at = {
        hhmm: day + timedelta(hours=int(hhmm[:2]), minutes=int(hhmm[3:]))
        for hhmm in ("09:00", "10:00", "10:30", "11:00", "12:00")
    }
    story.clock.set(at["09:00"] - timedelta(minutes=5))
    story.report("late")
    story.on("late", c.RegisterCase)
    story.clock.set(at["10:00"] - timedelta(minutes=5))
    story.dispatch("late", worker="W1", hours=48)
    story.clock.set(at["11:00"] - timedelta(minutes=5))
    story.on("late", c.EscalateCase, actor="supervisor", level=1, reason="居民催办")
    story.clock.set(at["12:00"] - timedelta(minutes=5))
    story.on("late", c.AcceptCase, actor="W1", occurred_at=at["10:30"])
    return at


def test_by_occurred_time_an_aggregate_stops_at_its_first_event_that_occurred_after_the_instant(
    story: Story, tmp_path: Path
) -> None:
    at = a_late_acceptance(story)
    case = str(story.cases["late"])

    done = replayed(story, tmp_path, at["10:30"] + timedelta(minutes=15), OCCURRED)

    with opened(done.path) as store:
        row = find_case(store, case)
        # Accepted at 10:30, but it came after the 11:00 escalation (version 4): the case stops at version 3.
        assert (row.status, row.escalation_level, row.version) == ("dispatched", 0, 3)
        assert [s.version for s in timeline(store, row.case_id)] == [1, 2, 3]
    assert done.passed_over == 2  # the escalation and the acceptance
    assert done.position == story.app.recorder.max_notification_id()


def test_by_occurred_time_a_late_upload_is_in_once_the_events_before_it_are(story: Story, tmp_path: Path) -> None:
    at = a_late_acceptance(story)
    case = str(story.cases["late"])
    half_past_eleven = at["11:00"] + timedelta(minutes=30)

    with opened(replayed(story, tmp_path, half_past_eleven, OCCURRED).path) as store:
        row = find_case(store, case)
        assert (row.status, row.escalation_level) == ("accepted", 1)  # it had happened by then
    with opened(replayed(story, tmp_path, half_past_eleven, RECORDED).path) as store:
        row = find_case(store, case)
        assert (row.status, row.escalation_level) == ("dispatched", 1)  # nobody knew yet


def test_an_event_stamped_before_the_instant_but_committed_after_a_later_one_is_named_and_left_out(
    story: Story, tmp_path: Path
) -> None:
    story.report("first")
    instant = story.clock.now() + timedelta(minutes=1)
    story.report("second")  # stamped five minutes after the report of the first: after the instant
    # A second writer whose clock is behind: its event is stamped before the instant, committed after "second".
    behind = event_store(tmp_path / "events.sqlite", ManualClock(instant - timedelta(minutes=3)))
    late = behind.execute(
        c.ReportCase(
            command_id="behind-1",
            actor="resident:1",
            source="resident",
            category="C0101",
            grid=G1,
            description="路灯不亮",
        )
    )
    behind.close()

    done = replayed(story, tmp_path, instant, RECORDED)

    late_events = story.app.recorder.select_notifications(late.position - 1, 2)
    assert set(done.late_stamped) & {n.id for n in late_events}
    with opened(done.path) as store:
        assert [r["case_id"] for r in view_rows(store, "case_board")["board_case"]] == [str(story.cases["first"])]


def test_a_replay_of_one_view_folds_that_view_and_creates_the_others_empty(story: Story, tmp_path: Path) -> None:
    story.report("only")
    done = replayed(story, tmp_path, story.clock.now(), RECORDED, chosen(default_projections(), "case_board"))
    assert [v.name for v in done.views] == ["case_board"]
    with opened(done.path) as store:
        assert len(view_rows(store, "case_board")["board_case"]) == 1
        assert view_rows(store, "case_timeline") == {"timeline_event": []}


class Tripwire(Projection):
    """A view that fails on the first case reported."""

    name = "tripwire"
    tables = (ViewTable("tripwire", ("case_id",)),)
    schema = ("CREATE TABLE IF NOT EXISTS tripwire (case_id TEXT PRIMARY KEY)",)

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Nothing."""

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        raise RuntimeError("tripped")


def test_a_replay_replaces_the_store_whole_and_one_that_fails_leaves_none(story: Story, tmp_path: Path) -> None:
    story.report("one")
    first = replayed(story, tmp_path, story.clock.now(), RECORDED)
    story.report("two")
    again = replayed(story, tmp_path, story.clock.now(), RECORDED)
    assert again.path == first.path
    with opened(again.path) as store:
        assert len(view_rows(store, "case_board")["board_case"]) == 2

    broken = tmp_path / "broken.sqlite"
    with pytest.raises(RuntimeError, match="tripped"):
        replay(story.app.recorder, story.app.mapper, broken, [Tripwire()], story.clock.now(), RECORDED)
    assert not broken.exists()


@pytest.mark.parametrize(
    ("as_of", "by", "field"),
    [(datetime(2026, 11, 23, 12), RECORDED, "as_of"), (datetime(2026, 11, 23, 12, tzinfo=UTC), "written", "by")],
)
def test_a_naive_instant_or_an_unknown_kind_of_time_is_refused(
    story: Story, tmp_path: Path, as_of: datetime, by: str, field: str
) -> None:
    with pytest.raises(InvalidCommand, match=field):
        replayed(story, tmp_path, as_of, by)
