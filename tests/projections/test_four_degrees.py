"""四度: a grid worker's familiarity, trust, delivery and satisfaction, computed by hand and from the log."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from engine import commands as c
from engine.working_time import china_calendar
from projections.evaluation.four_degrees import FourDegrees, satisfaction_band
from projections.evaluation.scoring import DEGREES, INPUTS, WEIGHTS, Degree, degrees, overall, weighted
from projections.evaluation.workers import evaluate_workers, workdays
from projections.kpi_queries import parse_period
from projections.rebuild import rebuild
from projections.store import ViewStore
from projections.views import default_projections
from tests.projections.conftest import EAST, G1, G2, G3, Story, follow
from tests.projections.kafka_order import same_in_any_order

MONDAY = parse_period("2026-11-23")  # the story's day: a working Monday


def _patrol(story: Story, worker: str, grid: str, checkpoints: int, findings: int, **when: datetime) -> None:
    patrol = story.do(c.StartPatrol, actor=worker, worker=worker, grid=grid, **when).aggregate_id
    for n in range(checkpoints):
        story.do(c.VisitCheckpoint, actor=worker, patrol_id=patrol, lon=111.61, lat=35.31 + n / 1000, **when)
    for n in range(findings):
        story.do(
            c.ReportFinding, actor=worker, patrol_id=patrol, category="C0101", description=f"发现 {n}", **when
        )  # fmt: skip
    story.do(c.EndPatrol, actor=worker, patrol_id=patrol, **when)


def _close(story: Story, name: str, worker: str, satisfaction: int | None = None) -> None:
    story.on(name, c.AcceptCase, actor=worker)
    story.handle_and_close(name, worker)
    if satisfaction is not None:
        story.on(name, c.CallBack, satisfaction=satisfaction, fixed=True, note="回访")


def _monday(story: Story) -> None:
    """W1's day, every input of 四度 once: a patrol, residents' requests by each channel, four cases handled."""
    _patrol(story, "W1", G1, checkpoints=2, findings=1)  # one case found by patrol in G1
    story.report("A", grid=G1, source="resident")
    story.report("B", grid=G1, source="hotline", actor="hotline:12345")
    story.report("C", grid=G1, source="app")
    story.report("D", grid=G2, source="resident")  # W2's grid, but W1 handles it
    for name in "ABCD":
        story.on(name, c.RegisterCase)
    story.dispatch("A", worker="W1")
    _close(story, "A", "W1", satisfaction=5)  # on time, passed, 满意
    story.dispatch("B", worker="W1")
    story.on("B", c.ReturnCase, actor="W1", reason="不属于本网格")  # 退单
    story.dispatch("C", worker="W1", hours=1)
    story.on("C", c.AcceptCase, actor="W1")
    story.clock.advance(timedelta(hours=2))
    story.on("C", c.ReportHandling, actor="W1", result="处置完毕", photos=[])  # late
    story.on("C", c.VerifyCase, passed=False, note="仍未修好")  # 返工
    story.dispatch("D", worker="W1")
    _close(story, "D", "W1", satisfaction=3)  # on time, passed, 基本满意


def test_four_degrees_of_a_day_match_the_hand_computed_figures(story: Story, views: ViewStore) -> None:
    _monday(story)
    follow(story.app, views).run_until_caught_up()

    found = {e.worker: e for e in evaluate_workers(views, MONDAY)}
    w1 = found["W1"]
    assert w1.grids == (G1,) and w1.period == "2026-11-23"
    # 熟悉度: patrolled on 1 of 1 working day; found 1 of the 4 problems of G1 (1 patrol + 3 residents').
    assert w1.familiarity.inputs == {
        "workdays": 1, "patrol_days": 1, "patrols": 1, "checkpoints": 2,
        "patrol_cases": 1, "resident_cases": 1, "app_cases": 1, "hotline_cases": 1,
    }  # fmt: skip
    assert w1.familiarity.score == 100 * (0.5 * 1 + 0.5 * 1 / 4) == 62.5
    # 信任度: 2 of G1's 3 requests came to the grid, not the hotline; both call-backs found the case fixed.
    assert w1.trust.parts == {"direct_share": pytest.approx(2 / 3), "fixed_share": 1.0}
    assert w1.trust.score == pytest.approx(100 * (0.6 * 2 / 3 + 0.4 * 1), abs=0.005)
    # 落实度: 4 dispatched, 1 returned; 3 handled, 2 by the deadline; 3 verified, 2 passed first time.
    assert w1.delivery.inputs == {
        "dispatched": 4, "returned": 1, "handled": 3, "handled_on_time": 2, "verified": 3, "verified_passed": 2,
    }  # fmt: skip
    assert w1.delivery.score == pytest.approx(100 * (0.5 * 2 / 3 + 0.3 * 2 / 3 + 0.2 * 3 / 4), abs=0.005)
    # 满意度: one 满意 (5) and one 基本满意 (3) of 2 call-backs.
    assert w1.satisfaction.inputs == {"called_back": 2, "satisfied": 1, "basically_satisfied": 1}
    assert w1.satisfaction.score == 100 * (1 + 0.9) / 2 == 95.0
    expected = (62.5 + 80.0 + 68.33 + 95.0) / 4
    assert w1.score == pytest.approx(expected, abs=0.01) and w1.grade == "B"

    # W2: no patrol, G2's one request came in person; nothing handled: scored on what they had occasion for.
    w2 = found["W2"]
    assert (w2.familiarity.score, w2.trust.score, w2.delivery.score, w2.satisfaction.score) == (0.0, 100.0, None, None)
    assert (w2.score, w2.grade) == (50.0, "D")
    # W3: nothing at all in G3 but a working day without a patrol.
    w3 = found["W3"]
    assert (w3.familiarity.score, w3.trust.score, w3.score, w3.grade) == (0.0, None, 0.0, "E")
    assert [e.worker for e in evaluate_workers(views, MONDAY)] == ["W1", "W2", "W3"]  # best first


def test_workers_are_chosen_by_the_place_of_their_grids(story: Story, views: ViewStore) -> None:
    follow(story.app, views).run_until_caught_up()
    assert [e.worker for e in evaluate_workers(views, MONDAY, within=EAST)] == ["W1", "W2"]
    assert [e.worker for e in evaluate_workers(views, MONDAY, within=G3)] == ["W3"]
    assert evaluate_workers(views, MONDAY, within="999") == []


def test_a_grid_posted_by_staff_assignment_is_the_workers_too(story: Story, views: ViewStore) -> None:
    story.do(c.AssignStaff, actor="admin", grid=G3, role="grid_worker", worker="W1")
    story.do(c.AssignStaff, actor="admin", grid=G2, role="grid_assistant", worker="W3")  # not a grid worker's post
    follow(story.app, views).run_until_caught_up()
    found = {e.worker: e.grids for e in evaluate_workers(views, MONDAY)}
    assert found == {"W1": (G1, G3), "W2": (G2,), "W3": (G3,)}


def test_a_late_patrol_upload_counts_on_the_day_it_happened(story: Story, views: ViewStore) -> None:
    sunday = datetime.fromisoformat("2026-11-22T15:00:00+08:00")
    _patrol(story, "W1", G1, checkpoints=3, findings=1, occurred_at=sunday)  # uploaded on Monday
    follow(story.app, views).run_until_caught_up()
    [w1] = [e for e in evaluate_workers(views, parse_period("2026-11-22")) if e.worker == "W1"]
    assert (w1.familiarity.inputs["patrols"], w1.familiarity.inputs["checkpoints"]) == (1, 3)
    assert w1.familiarity.inputs["patrol_cases"] == 1
    assert w1.familiarity.inputs["workdays"] == 0  # a Sunday: the patrol-day part has no denominator
    assert w1.familiarity.parts["patrol_day_rate"] is None and w1.familiarity.score == 100.0
    [monday] = [e for e in evaluate_workers(views, MONDAY) if e.worker == "W1"]
    assert monday.familiarity.inputs["patrols"] == 0


@pytest.mark.sqlite_only
def test_rebuilt_equals_live_and_any_kafka_order_gives_the_same_rows(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    """SQLite only: the blue/green rebuild (and an as-of replay) build SQLite files beside the live store."""
    runner = follow(story.app, views, batch_size=3)
    story.after_each = lambda _: runner.run_until_caught_up()
    _monday(story)
    story.every_path()
    story.after_each = None
    runner.run_until_caught_up()
    live = evaluate_workers(views, parse_period("2026-11"))
    [result] = rebuild(
        story.app.recorder, story.app.mapper, views, [p for p in default_projections() if p.name == "four_degrees"]
    )
    assert result.equal
    assert evaluate_workers(views, parse_period("2026-11")) == live
    rows = same_in_any_order(story, FourDegrees(), tmp_path)
    assert len(rows["fd_case"]) == len(story.cases) + 1  # and the finding of _monday's patrol


def test_a_running_period_counts_its_working_days_up_to_today() -> None:
    november = parse_period("2026-11")
    calendar = china_calendar()
    assert workdays(november, calendar) == 21
    assert workdays(november, calendar, today=date(2026, 11, 23)) == 16  # 2–6, 9–13, 16–20, 23
    assert workdays(parse_period("2026-W48"), calendar) == 5


def test_each_degrees_weights_sum_to_one_and_undefined_parts_are_left_out() -> None:
    assert all(sum(w.values()) == pytest.approx(1.0) for w in WEIGHTS.values())
    assert weighted({"a": 0.5, "b": None}, {"a": 0.3, "b": 0.7}) == 50.0
    assert weighted({"a": None}, {"a": 1.0}) is None
    nothing = degrees(dict.fromkeys(INPUTS, 0))
    assert all(d.score is None for d in nothing.values()) and overall(nothing) == (None, "")
    assert set(nothing) == set(DEGREES) and all(isinstance(d, Degree) for d in nothing.values())


def test_call_back_scores_fall_in_the_bands_of_the_kpis() -> None:
    assert [satisfaction_band(s) for s in (5, 4, 3, 2, 1)] == [
        "satisfied", "satisfied", "basically_satisfied", "dissatisfied", "dissatisfied",
    ]  # fmt: skip
