"""The accountability proof (事事有人办): holdings computed by hand, a simulated day without a break, corrupted logs."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.errors import InvalidCommand, UnknownReference
from ops.presets import StaffSpec, load_preset
from ops.simulator import simulate
from projections.audit import accountability_queries as accountability
from projections.audit.accountability import KINDS, CaseAccountability
from projections.runner import EmbeddedRunner
from projections.store import ViewStore, view_checksum, view_rows
from tests.projections.conftest import EAST, G3, Played, Story, follow

DESK = "desk:140827"
DAY = date(2026, 11, 2)


def _holdings(store: ViewStore, case_id: UUID) -> list[tuple[Any, ...]]:
    return [
        (h.party, h.start_at, h.end_at, h.start_event, h.end_event, h.outcome)
        for h in accountability.holdings(store, case_id)
    ]


def _violations(store: ViewStore) -> list[tuple[Any, ...]]:
    return [
        (v.kind, v.from_at, v.to_at, v.from_event, v.to_event, v.from_party, v.to_party)
        for v in accountability.violations(store)
    ]


def _positions(app: Gridloop, case_id: UUID) -> dict[int, int]:
    """The log position of each of the case's events, by version."""
    return {
        n.originator_version: n.id for n in app.recorder.select_notifications(1, 100_000) if n.originator_id == case_id
    }


class Steps:
    """The occurred time of each step of a story, by name, as the story's clock gave it."""

    def __init__(self, story: Story) -> None:
        self.story = story
        self.at: dict[str, datetime] = {}

    def __call__(self, name: str, act: Callable[[], object]) -> datetime:
        act()
        self.at[name] = self.story.clock.now()
        return self.at[name]


def _audited(story: Story, path: Path) -> ViewStore:
    """The accountability view alone, folded from the story's log into a fresh store."""
    store = ViewStore.open(path)
    EmbeddedRunner(story.app.recorder, story.app.mapper, store, [CaseAccountability()]).run_until_caught_up()
    return store


# -- the holdings of sound histories ----------------------------------------------------------------


def test_a_case_passes_from_the_desk_to_a_unit_back_to_the_desk_to_a_worker_and_is_closed(
    story: Story, views: ViewStore
) -> None:
    at = Steps(story)
    case = story.report("leak")
    reported = story.clock.now()
    at("registered", lambda: story.on("leak", c.RegisterCase))
    at("to unit", lambda: story.dispatch("leak", unit="chengguan"))
    at("returned", lambda: story.on("leak", c.ReturnCase, actor="unit:chengguan", reason="不属于本单位职责"))
    at("to W2", lambda: story.dispatch("leak", worker="W2", unit=EAST))
    at("accepted", lambda: story.on("leak", c.AcceptCase, actor="W2"))
    at("suspended", lambda: story.on("leak", c.SuspendCase, reason="等待配件"))
    at("resumed", lambda: story.on("leak", c.ResumeCase, note="配件到货"))
    handled = at("handled", lambda: story.on("leak", c.ReportHandling, actor="W2", result="已修", photos=["a.jpg"]))
    at("rework", lambda: story.on("leak", c.VerifyCase, passed=False, note="仍在漏水"))
    at("to W1", lambda: story.dispatch("leak", worker="W1", reason="返工"))
    at("accepted again", lambda: story.on("leak", c.AcceptCase, actor="W1"))
    at("handled again", lambda: story.on("leak", c.ReportHandling, actor="W1", result="已修好", photos=["b.jpg"]))
    closed = at("closed", lambda: story.on("leak", c.VerifyCase, passed=True, note="核查通过"))
    follow(story.app, views).run_until_caught_up()

    # Worked out by hand: suspension keeps the worker, the failed verification keeps the desk.
    assert _holdings(views, case) == [
        (DESK, reported, at.at["to unit"], "Reported", "Dispatched", "handed_over"),
        ("unit:chengguan", at.at["to unit"], at.at["returned"], "Dispatched", "Returned", "handed_over"),
        (DESK, at.at["returned"], at.at["to W2"], "Returned", "Dispatched", "handed_over"),
        ("worker:W2", at.at["to W2"], handled, "Dispatched", "HandlingReported", "handed_over"),
        (DESK, handled, at.at["to W1"], "HandlingReported", "Dispatched", "handed_over"),
        ("worker:W1", at.at["to W1"], at.at["handled again"], "Dispatched", "HandlingReported", "handed_over"),
        (DESK, at.at["handled again"], closed, "HandlingReported", "Verified", "ended"),
    ]
    positions = _positions(story.app, case)
    held = accountability.holdings(views, case)
    assert [(h.start_position, h.end_position) for h in held] == [
        (positions[1], positions[3]), (positions[3], positions[4]), (positions[4], positions[5]),
        (positions[5], positions[9]), (positions[9], positions[11]), (positions[11], positions[13]),
        (positions[13], positions[14]),
    ]  # fmt: skip
    assert _violations(views) == []


def test_a_suspended_case_keeps_its_party_and_a_reopened_one_goes_back_to_the_desk_without_a_gap(
    story: Story, views: ViewStore
) -> None:
    parked = story.report("parked")
    parked_at = story.clock.now()
    story.on("parked", c.RegisterCase)
    story.on("parked", c.SuspendCase, reason="涉诉, 等待判决")
    worked = story.report("worked", grid=G3)
    story.on("worked", c.RegisterCase)
    story.dispatch("worked", worker="W3")
    dispatched = story.clock.now()
    story.on("worked", c.AcceptCase, actor="W3")
    story.on("worked", c.SuspendCase, reason="等待资金")
    story.on("worked", c.ResumeCase, note="资金到位")
    story.on("worked", c.RequestExtension, actor="W3", until=dispatched + timedelta(days=10), reason="等待配件")
    story.on("worked", c.GrantExtension, note="同意")
    story.handle_and_close("worked", "W3")
    closed = story.clock.now()
    story.on("worked", c.ReopenCase, reason="居民投诉")
    reopened = story.clock.now()
    follow(story.app, views).run_until_caught_up()

    assert _holdings(views, parked) == [(DESK, parked_at, None, "Reported", None, None)]
    handled = closed - timedelta(minutes=5)
    assert [h[:3] for h in _holdings(views, worked)] == [
        (DESK, dispatched - timedelta(minutes=10), dispatched),
        ("worker:W3", dispatched, handled),
        (DESK, handled, closed),
        (DESK, reopened, None),  # nobody held the closed case; that is no gap, it was not open
    ]
    assert _violations(views) == []


def test_every_lifecycle_path_leaves_each_open_case_with_the_board_s_party_and_no_violation(
    story: Story, views: ViewStore
) -> None:
    story.city().every_path().supervision_paths()  # 全县通办 too: the processing unit holds the case, then the desk
    follow(story.app, views).run_until_caught_up()
    assert accountability.summary(views).violations == dict.fromkeys(KINDS, 0)
    assert _current_parties(views) == _board_parties(views)
    tongban = story.app.case(story.cases["tongban"])
    held = [(h.party, h.start_event) for h in accountability.holdings(views, tongban.id)]
    assert held == [
        (f"desk:{tongban.desk}", "Reported"), (f"unit:{tongban.unit}", "HandedOver"),
        (f"desk:{tongban.desk}", "HandlingReported"),
    ]  # fmt: skip


def test_a_rebuild_of_the_view_equals_the_live_one(played: Played, tmp_path: Path) -> None:
    live = view_checksum(played.store, "accountability")
    assert len(view_rows(played.store, "accountability")["accountability_interval"]) > 20
    app = played.story.app
    fresh = _audited(played.story, tmp_path / "fresh.sqlite")
    assert view_checksum(fresh, "accountability") == live
    runner = EmbeddedRunner(app.recorder, app.mapper, fresh, [CaseAccountability()], batch_size=3)
    runner.rebuild("accountability")
    assert view_checksum(fresh, "accountability") == live
    fresh.close()


# -- a simulated district -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewStore]:
    """Two seeded days of part of Yuanqu, every view folded from its log."""
    clock = ManualClock(datetime(2026, 11, 1, 16, 0, tzinfo=UTC))  # local midnight of DAY
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}, clock=clock)
    yuanqu = load_preset("yuanqu")
    # Three of its fifteen communities and a share of the staff: returns, suspensions, call-backs, in seconds.
    staff = StaffSpec(grid_leaders=3, grid_workers=20, grid_assistants=40, mediators=1)
    district = dataclasses.replace(yuanqu, name="yuanqu-3", communities=yuanqu.communities[:3], staff=staff)
    simulate(app, clock, district, days=2, start=DAY, seed=7)
    store = ViewStore.open(tmp_path_factory.mktemp("simulated") / "views.sqlite")
    follow(app, store).run_until_caught_up()
    yield store
    store.close()
    app.close()


def test_simulated_days_break_the_rule_nowhere(simulated: ViewStore) -> None:
    summary = accountability.summary(simulated)
    assert summary.violations == dict.fromkeys(KINDS, 0)
    assert accountability.violations(simulated) == []
    assert summary.cases > 50 and 0 < summary.open_cases < summary.cases
    assert summary.current_holdings == summary.open_cases
    assert summary.hand_overs > summary.cases  # each case was passed on at least once, most more
    assert summary.mean_hand_over_seconds == 0


def test_every_open_simulated_case_has_one_current_party_the_board_s(simulated: ViewStore) -> None:
    parties = _current_parties(simulated)
    assert parties == _board_parties(simulated)
    with simulated.reading() as cursor:
        cursor.execute("SELECT case_id, COUNT(*) FROM accountability_interval WHERE end_at IS NULL GROUP BY case_id")
        current = {row[0]: row[1] for row in cursor.fetchall()}
    assert current == dict.fromkeys((case for case, party in parties.items() if party), 1)
    assert {p.split(":")[0] for p in parties.values() if p} == {"desk", "unit", "worker"}


def _current_parties(store: ViewStore) -> dict[str, str | None]:
    with store.reading() as cursor:
        cursor.execute("SELECT case_id, party FROM accountability_case")
        return {row[0]: row[1] for row in cursor.fetchall()}


def _board_parties(store: ViewStore) -> dict[str, str | None]:
    with store.reading() as cursor:
        cursor.execute("SELECT case_id, accountable FROM board")
        return {row[0]: row[1] for row in cursor.fetchall()}


# -- corrupted logs: rows deleted or rewritten in the event store's file, behind the aggregate's back -------------


def _event_file(story: Story) -> Path:
    return Path(story.app.env["SQLITE_DBNAME"])


def _rewrite(story: Story, case_id: UUID, event: str, **changes: Any) -> None:
    """Change fields of one recorded event of the case in the SQLite file (times as datetimes)."""
    with sqlite3.connect(_event_file(story)) as db:
        rowid, state = db.execute(
            "SELECT rowid, state FROM stored_events WHERE originator_id = ? AND topic = ?",
            (case_id.hex, f"engine.work_order:WorkOrder.{event}"),
        ).fetchone()
        fields = json.loads(state)
        for name, value in changes.items():
            fields[name] = (
                {"_type_": "datetime_iso", "_data_": value.isoformat()} if isinstance(value, datetime) else value
            )
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (json.dumps(fields).encode(), rowid))
    db.close()


def _delete(story: Story, case_id: UUID, event: str) -> None:
    with sqlite3.connect(_event_file(story)) as db:
        db.execute(
            "DELETE FROM stored_events WHERE originator_id = ? AND topic = ?",
            (case_id.hex, f"engine.work_order:WorkOrder.{event}"),
        )
    db.close()


def _dispatched_and_accepted(story: Story) -> tuple[UUID, Steps]:
    at = Steps(story)
    at("reported", lambda: story.report("leak"))
    case = story.cases["leak"]
    at("registered", lambda: story.on("leak", c.RegisterCase))
    at("dispatched", lambda: story.dispatch("leak", worker="W1"))
    at("accepted", lambda: story.on("leak", c.AcceptCase, actor="W1"))
    return case, at


def test_a_deleted_dispatch_leaves_the_accepted_case_unowned_until_the_desk_takes_it_back(
    story: Story, tmp_path: Path
) -> None:
    case, at = _dispatched_and_accepted(story)
    at("handled", lambda: story.on("leak", c.ReportHandling, actor="W1", result="已修", photos=["a.jpg"]))
    at("closed", lambda: story.on("leak", c.VerifyCase, passed=True, note="核查通过"))
    positions = _positions(story.app, case)
    _delete(story, case, "Dispatched")
    store = _audited(story, tmp_path / "views.sqlite")

    t = at.at
    assert _holdings(store, case) == [
        (DESK, t["reported"], t["accepted"], "Reported", "Accepted", "released"),
        (DESK, t["handled"], t["closed"], "HandlingReported", "Verified", "ended"),
    ]
    assert _violations(store) == [
        ("unowned", t["accepted"], t["handled"], "Accepted", "HandlingReported", DESK, DESK),
        ("gap", t["accepted"], t["handled"], "Accepted", "HandlingReported", DESK, DESK),
    ]
    unowned, gap = accountability.violations(store)
    assert (
        (unowned.from_position, unowned.to_position)
        == (gap.from_position, gap.to_position)
        == (positions[4], positions[5])
    )
    assert "neither a unit nor a worker" in unowned.message and "took it over" in unowned.message
    assert gap.message.endswith("nobody held it for 0h05m00s")
    store.close()


def test_a_hand_over_recorded_as_occurring_before_the_holding_it_ends_began_is_an_overlap(
    story: Story, tmp_path: Path
) -> None:
    at = Steps(story)
    at("reported", lambda: story.report("leak"))
    case = story.cases["leak"]
    story.on("leak", c.RegisterCase)
    at("dispatched", lambda: story.dispatch("leak", unit="chengguan"))
    story.on("leak", c.ReturnCase, actor="unit:chengguan", reason="不属于本单位职责")
    early = at.at["dispatched"] - timedelta(minutes=3)
    _rewrite(story, case, "Returned", occurred_at=early)  # the unit's phone says it returned it before it had it
    positions = _positions(story.app, case)
    store = _audited(story, tmp_path / "views.sqlite")

    t = at.at
    assert _holdings(store, case) == [
        (DESK, t["reported"], t["dispatched"], "Reported", "Dispatched", "handed_over"),
        ("unit:chengguan", t["dispatched"], early, "Dispatched", "Returned", "handed_over"),
        (DESK, early, None, "Returned", None, None),
    ]
    assert _violations(store) == [("overlap", early, t["dispatched"], "Returned", None, DESK, DESK)]
    (overlap,) = accountability.violations(store)
    assert (overlap.from_position, overlap.to_position) == (positions[4], positions[3])
    assert "two holdings at once for 0h03m00s" in overlap.message
    store.close()


def test_a_dispatch_to_neither_unit_nor_worker_leaves_the_case_unowned_to_this_day(
    story: Story, tmp_path: Path
) -> None:
    case, at = _dispatched_and_accepted(story)
    _rewrite(story, case, "Dispatched", unit="", worker="")
    store = _audited(story, tmp_path / "views.sqlite")

    t = at.at
    assert _holdings(store, case) == [(DESK, t["reported"], t["dispatched"], "Reported", "Dispatched", "released")]
    assert _violations(store) == [("unowned", t["dispatched"], None, "Dispatched", None, DESK, None)]
    summary = accountability.summary(store)
    assert (summary.open_cases, summary.current_holdings, summary.violations["unowned"]) == (1, 0, 1)
    store.close()


def test_a_case_reported_to_an_empty_desk_is_unowned_until_its_first_dispatch_and_that_is_no_gap(
    story: Story, tmp_path: Path
) -> None:
    case, at = _dispatched_and_accepted(story)
    _rewrite(story, case, "Reported", desk="")
    store = _audited(story, tmp_path / "views.sqlite")

    t = at.at
    assert _holdings(store, case) == [("worker:W1", t["dispatched"], None, "Dispatched", None, None)]
    assert _violations(store) == [
        ("unowned", t["reported"], t["dispatched"], "Reported", "Dispatched", None, "worker:W1")
    ]
    assert "the case has no desk" in accountability.violations(store)[0].message
    store.close()


def test_events_of_a_case_whose_reported_is_missing_are_one_unknown_case(story: Story, tmp_path: Path) -> None:
    case, at = _dispatched_and_accepted(story)
    story.report("sound")
    positions = _positions(story.app, case)
    _delete(story, case, "Reported")
    store = _audited(story, tmp_path / "views.sqlite")

    t = at.at
    assert accountability.holdings(store, case) == []
    assert _violations(store) == [
        ("unknown_case", t["registered"], t["accepted"], "Registered", "Accepted", None, None)
    ]
    (unknown,) = accountability.violations(store)
    assert (unknown.from_position, unknown.to_position) == (positions[2], positions[4])
    assert unknown.message.startswith("no Reported event for this case: 3 event(s)")
    summary = accountability.summary(store)
    assert (summary.cases, summary.unknown_cases, summary.violations["unknown_case"]) == (1, 1, 1)
    assert accountability.audited_case(store, case.hex[:8]) == case  # found, though no other view holds it
    store.close()


# -- the queries ----------------------------------------------------------------------------------------------


def test_violations_are_filtered_by_kind_and_case_and_limited(story: Story, tmp_path: Path) -> None:
    first, _ = _dispatched_and_accepted(story)
    story.cases["first"] = first
    second = story.report("second")
    story.on("second", c.RegisterCase)
    story.dispatch("second", worker="W2")
    story.on("second", c.ReturnCase, actor="W2", reason="不在本网格")
    _delete(story, first, "Dispatched")  # first: unowned from its acceptance, still
    _rewrite(story, second, "Reported", desk="")  # second: unowned, a gap-less take-over by W2, then the empty desk
    store = _audited(story, tmp_path / "views.sqlite")

    assert [(v.case_id, v.kind) for v in accountability.violations(store)] == [
        (first, "unowned"), (second, "unowned"), (second, "unowned"),
    ]  # fmt: skip
    assert [v.case_id for v in accountability.violations(store, case_id=second)] == [second, second]
    assert accountability.violations(store, kind="gap") == []
    assert len(accountability.violations(store, limit=1)) == 1
    assert accountability.count_violations(store, "unowned", second) == 2
    with pytest.raises(UnknownReference, match="unknown violation kind 'late'; known: unowned, overlap, gap"):
        accountability.violations(store, kind="late")
    with pytest.raises(InvalidCommand, match="is not a case id"):
        accountability.audited_case(store, "xyz")
    with pytest.raises(UnknownReference, match="unknown case 'ffff"):
        accountability.audited_case(store, "ffff" * 8)
    store.close()
