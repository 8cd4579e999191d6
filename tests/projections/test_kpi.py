"""The KPI view: numbers checked against a scenario counted by hand, rebuilds, late uploads, any aggregate order."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from engine import commands as c
from engine.clock import ManualClock
from projections.kpi import KpiFacts
from projections.kpi_queries import LEVELS, KpiRow, kpi_table, kpi_trend, parse_period
from projections.rebuild import rebuild
from projections.store import ViewStore, view_rows
from projections.views import default_projections
from tests.projections.conftest import DISTRICT, EAST, G1, G2, G3, STREET, T0, WEST, Story, event_store, follow
from tests.projections.kafka_order import as_if_from_kafka, log_events

DAY1, DAY2 = date(2026, 11, 23), date(2026, 11, 24)  # a Monday and a Tuesday; the story starts at 09:00 local
NOVEMBER = parse_period("2026-11")
NORMAL = "C0102"  # a normal-tier category: 30 working minutes to dispatch and to sign for, 60 to verify


def local(day: date, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day.isoformat()}T{clock}+08:00")


def scenario(story: Story) -> Story:
    """Seven reports over two days; what each does to the KPIs is counted by hand in the tests below.

    Every command comes five minutes after the previous one (Story.do); the few that come late say so.
    """
    # A (G1): dispatched to W1, signed for, handled, verified and closed on time; the resident is satisfied.
    story.report("A", category=NORMAL)
    story.on("A", c.RegisterCase)
    story.dispatch("A", worker="W1")
    story.on("A", c.AcceptCase, actor="W1")
    story.handle_and_close("A", "W1")
    story.on("A", c.CallBack, satisfaction=5, fixed=True, note="满意")

    # B (G1): the bureau returns it (退单); W1 signs for it two hours late, gets an extension (延期), fails
    # verification (返工), is dispatched again and closes it on time; the first call-back is missed, the
    # second reaches a "basically satisfied" resident.
    story.report("B", category=NORMAL)
    story.on("B", c.RegisterCase)
    story.dispatch("B", unit="chengguan")
    story.on("B", c.ReturnCase, actor="unit:chengguan", reason="不属于本单位职责")
    story.dispatch("B", worker="W1")
    story.clock.advance(timedelta(hours=2))
    story.on("B", c.AcceptCase, actor="W1")
    story.on("B", c.RequestExtension, actor="W1", until=story.clock.now() + timedelta(days=10), reason="等待配件")
    story.on("B", c.GrantExtension, note="同意")
    story.on("B", c.ReportHandling, actor="W1", result="已更换", photos=["b.jpg"])
    story.on("B", c.VerifyCase, passed=False, note="仍在漏水")
    story.dispatch("B", worker="W1", reason="返工")
    story.on("B", c.AcceptCase, actor="W1")
    story.handle_and_close("B", "W1")
    story.on("B", c.MissCallBack, reason="no_answer")
    story.on("B", c.CallBack, satisfaction=3, fixed=True, note="基本满意")

    # C (G2): W2 has one hour and handles it after two; closed late, then the resident says it is not
    # fixed: reopened (rework of W2's handling) and not yet dispatched again.
    story.report("C", grid=G2, category=NORMAL)
    story.on("C", c.RegisterCase)
    story.dispatch("C", worker="W2", hours=1)
    story.on("C", c.AcceptCase, actor="W2")
    story.clock.advance(timedelta(hours=2))
    story.handle_and_close("C", "W2")
    story.on("C", c.CallBack, satisfaction=2, fixed=False, note="没修好")

    # D (G3): found on patrol by W3, dispatched to W3, signed for, then suspended (挂账).
    story.report("D", grid=G3, category=NORMAL, source="patrol", actor="W3", reporter="W3")
    story.on("D", c.RegisterCase)
    story.dispatch("D", worker="W3")
    story.on("D", c.AcceptCase, actor="W3")
    story.on("D", c.SuspendCase, reason="等待资金")

    # E (G3): found on patrol by W3 and not admitted (不予立案): not a valid report.
    story.report("E", grid=G3, category=NORMAL, source="patrol", actor="W3", reporter="W3")
    story.on("E", c.RejectCase, reason_code="not_admitted", reason="物业负责")

    # H (G3): closed on time; the only call-back attempt does not reach the resident.
    story.report("H", grid=G3, category=NORMAL)
    story.on("H", c.RegisterCase)
    story.dispatch("H", worker="W3")
    story.on("H", c.AcceptCase, actor="W3")
    story.handle_and_close("H", "W3")
    story.on("H", c.MissCallBack, reason="unreachable")

    # F (G2): seen at 16:00 on day 1, uploaded and registered on day 2 at 09:00.
    story.clock.set(local(DAY2, "09:00"))
    story.report("F", grid=G2, category=NORMAL, occurred_at=local(DAY1, "16:00"))
    story.on("F", c.RegisterCase)
    return story


@dataclass
class Scored:
    story: Story
    store: ViewStore


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scored]:
    """The scenario, with the views following it command by command (batches of 7)."""
    path = tmp_path_factory.mktemp("kpi")
    app = event_store(path / "events.sqlite", clock := ManualClock(T0))
    store = ViewStore.open(path / "views.sqlite")
    runner = follow(app, store, batch_size=7)
    story = Story(app, clock).world()
    story.after_each = lambda _: runner.run_until_caught_up()
    scenario(story)
    yield Scored(story, store)
    store.close()
    app.close()


def one(rows: list[KpiRow], code: str) -> KpiRow:
    [row] = [r for r in rows if r.code == code]
    return row


def test_the_district_month_matches_the_counts_made_by_hand(scored: Scored) -> None:
    row = one(kpi_table(scored.store, "district", NOVEMBER), DISTRICT)
    assert (row.name, row.period) == ("垣曲县", "2026-11")
    counts = row.counts
    # Reports: A B C D E F H; patrol reports decided: D (registered), E (rejected).
    assert (counts["reported"], counts["registered"]) == (7, 6)
    assert (counts["patrol_reports_decided"], counts["patrol_reports_valid"]) == (2, 1)
    # Due to close: A B H (closed on time), C (reopened, its deadline has passed); D is suspended, E and F
    # were never dispatched.
    assert (counts["due_to_close"], counts["closed"], counts["closed_on_time"]) == (4, 3, 3)
    assert (counts["suspended"], counts["overdue"]) == (1, 1)
    # First dispatches: A B C D H, all within 30 working minutes; B's went to a unit that returned it.
    assert (counts["first_dispatched"], counts["dispatched_on_time"], counts["dispatched_accurately"]) == (5, 5, 4)
    # Assignments: A1, B1 (bureau, returned), B2 (W1, signed for late), B3, C1, D1, H1.
    assert (counts["dispatched"], counts["accepted_on_time"], counts["returned"]) == (7, 5, 1)
    # Due to handle: A1 B2 B3 C1 H1 (B1 returned, D1 suspended); C1 late; B2 and C1 reworked; B2 extended.
    assert (counts["due_to_handle"], counts["handled"], counts["handled_on_time"]) == (5, 5, 4)
    assert (counts["reworked"], counts["extended"]) == (2, 1)
    assert (counts["verified"], counts["verified_on_time"]) == (5, 5)
    # Call-backs: A (5, fixed), B (missed, then 3 fixed), C (2, not fixed), H (missed only).
    assert (counts["callbacks"], counts["contacted"], counts["solved"]) == (4, 3, 2)
    assert (counts["satisfied"], counts["basically_satisfied"], counts["dissatisfied"]) == (1, 1, 1)

    rates = row.rates
    expected = {
        "closure_rate": 3 / 4, "on_time_closure_rate": 3 / 4, "handling_rate": 5 / 5, "on_time_handling_rate": 4 / 5,
        "rework_rate": 2 / 5, "extension_rate": 1 / 5, "return_rate": 1 / 7, "timely_accept_rate": 5 / 7,
        "response_rate": 3 / 4, "resolution_rate": 2 / 4, "satisfaction_rate": (1 + 0.9 * 1) / 4,
        "callback_score": 0.1 * 3 / 4 + 0.5 * 2 / 4 + 0.4 * 1.9 / 4,
        "valid_report_rate": 1 / 2, "on_time_verify_rate": 5 / 5, "on_time_dispatch_rate": 5 / 5,
        "accurate_dispatch_rate": 4 / 5,
    }  # fmt: skip
    assert rates == pytest.approx(expected)
    weighted = (
        25 * 3 / 4 + 15 * 3 / 4 + 15 * 4 / 5 + 5 * 1 + 10 * (1 - 2 / 5) + 5 * 5 / 7 + 5 * (1 - 1 / 7)
        + 20 * expected["callback_score"]
    )  # fmt: skip
    assert row.score == pytest.approx(weighted, abs=0.005)  # out of weights summing to 100
    assert row.grade == "C"  # 60 <= 71.16 < 75


def test_places_and_assignees_each_get_their_own_share(scored: Scored) -> None:
    grids = kpi_table(scored.store, "grid", NOVEMBER)
    assert [r.code for r in grids] == sorted([G1, G2, G3], key=lambda g: -(one(grids, g).score or 0))
    g1 = one(grids, G1)  # A and B: both closed on time
    assert (g1.counts["due_to_close"], g1.counts["closed_on_time"], g1.rates["on_time_closure_rate"]) == (2, 2, 1.0)
    g2 = one(grids, G2)  # C overdue; F registered but never dispatched
    assert (g2.counts["registered"], g2.counts["due_to_close"], g2.rates["closure_rate"]) == (2, 1, 0.0)
    communities = kpi_table(scored.store, "community", NOVEMBER)
    assert {r.code: r.counts["reported"] for r in communities} == {EAST: 4, WEST: 3}
    assert (
        one(kpi_table(scored.store, "street", NOVEMBER), STREET).counts
        == one(kpi_table(scored.store, "district", NOVEMBER), DISTRICT).counts
    )

    workers = kpi_table(scored.store, "worker", NOVEMBER)
    w1 = one(workers, "W1")  # A1, B2 (late, extended, reworked), B3
    assert (w1.counts["dispatched"], w1.counts["accepted_on_time"], w1.counts["reworked"]) == (3, 2, 1)
    assert w1.rates["valid_report_rate"] is None and w1.rates["on_time_dispatch_rate"] is None
    w3 = one(workers, "W3")  # D and E found on patrol; one of them admitted
    assert (w3.counts["reported"], w3.rates["valid_report_rate"]) == (2, 0.5)
    bureau = one(kpi_table(scored.store, "department", NOVEMBER), "chengguan")
    assert (bureau.name, bureau.counts["dispatched"], bureau.rates["return_rate"]) == ("城市管理局", 1, 1.0)
    assert (bureau.score, bureau.grade) == (0.0, "E")  # returned, never signed for: nothing else to score


def test_within_keeps_only_the_cases_of_grids_under_a_division(scored: Scored) -> None:
    assert {r.code for r in kpi_table(scored.store, "grid", NOVEMBER, within=WEST)} == {G3}
    west_workers = kpi_table(scored.store, "worker", NOVEMBER, within=WEST)
    assert {r.code for r in west_workers} == {"W3"}


def test_a_late_upload_counts_on_the_day_it_occurred(scored: Scored) -> None:
    day1 = one(kpi_table(scored.store, "grid", parse_period(DAY1.isoformat())), G2)
    day2 = one(kpi_table(scored.store, "grid", parse_period(DAY2.isoformat())), G2)
    assert (day1.counts["reported"], day1.counts["registered"]) == (2, 1)  # C, and F seen at 16:00
    assert (day2.counts["reported"], day2.counts["registered"]) == (0, 1)  # F registered on day 2


def test_a_trend_has_one_row_per_period_even_without_activity(scored: Scored) -> None:
    periods = [parse_period(p) for p in ("2026-11-22", "2026-11-23", "2026-11-24")]
    trend = kpi_trend(scored.store, "grid", G2, periods)
    assert [(r.period, r.name, r.counts["reported"]) for r in trend] == [
        ("2026-11-22", "002", 0), ("2026-11-23", "002", 2), ("2026-11-24", "002", 0),
    ]  # fmt: skip
    assert trend[0].score is None and trend[0].grade == ""


def test_a_full_rebuild_gives_the_kpis_the_live_view_gave(scored: Scored, tmp_path: Path) -> None:
    live = {level: kpi_table(scored.store, level, NOVEMBER) for level in LEVELS}
    rows_before = view_rows(scored.store, "kpi")
    projections = [p for p in default_projections() if p.name == "kpi"]
    [swapped] = rebuild(scored.story.app.recorder, scored.story.app.mapper, scored.store, projections)
    assert swapped.equal
    assert view_rows(scored.store, "kpi") == rows_before
    assert {level: kpi_table(scored.store, level, NOVEMBER) for level in LEVELS} == live


def test_the_kpis_are_the_same_whatever_order_the_aggregates_arrive_in(scored: Scored, tmp_path: Path) -> None:
    """As from Kafka: each aggregate's events in order, the aggregates interleaved at random (grids after cases)."""
    events = log_events(scored.story, KpiFacts())
    expected = {level: kpi_table(scored.store, level, NOVEMBER) for level in LEVELS}
    for seed in range(3):
        store = ViewStore.open(tmp_path / f"shuffled-{seed}.sqlite")
        try:
            view = KpiFacts()
            with store.transaction() as cursor:
                for event, position in as_if_from_kafka(events, random.Random(seed)):
                    view.process_event(event, position, cursor)
            assert {level: kpi_table(store, level, NOVEMBER) for level in LEVELS} == expected
        finally:
            store.close()


def test_a_step_of_a_case_the_view_never_saw_reported_is_refused_not_dropped(story: Story, views: ViewStore) -> None:
    runner = follow(story.app, views)
    story.report("lost", category=NORMAL)
    runner.run_until_caught_up()
    with views.transaction() as cursor:
        cursor.execute("DELETE FROM kpi_case")
    story.on("lost", c.RegisterCase)
    with pytest.raises(LookupError, match="kpi_case has no case"):
        runner.run_until_caught_up()


def test_names_come_from_the_tree_and_enrolments(scored: Scored) -> None:
    assert {r.code: r.name for r in kpi_table(scored.store, "community", NOVEMBER)} == {
        EAST: "东峰山社区", WEST: "西峰山社区",
    }  # fmt: skip
    assert one(kpi_table(scored.store, "worker", NOVEMBER), "W2").name == "W2"


def test_within_a_city_or_a_province_holds_the_grids_of_every_district_under_it(scored: Scored) -> None:
    # 140827 (垣曲县) lies in the city 140800 (运城) and the province 140000 (山西): GB/T 2260 codes.
    district = kpi_table(scored.store, "grid", NOVEMBER, within=DISTRICT)
    assert district, "the scenario has grids with activity"
    assert kpi_table(scored.store, "grid", NOVEMBER, within="140800") == district
    assert kpi_table(scored.store, "grid", NOVEMBER, within="140000") == district
    assert kpi_table(scored.store, "grid", NOVEMBER, within="140900") == []  # another city of the province
