"""KPI periods, boundaries and grades: days, ISO weeks and months in Asia/Shanghai time; A–E bands; bad input."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from engine import commands as c
from projections.kpi_queries import LEVELS, RATE_NAMES, Period, kpi_table, kpi_trend, parse_period, periods_before
from projections.kpi_rates import SCORE_WEIGHTS, grade, rates, score
from projections.store import ViewStore
from tests.projections.conftest import G1, Story, follow


def test_a_month_a_week_and_a_day_are_spans_of_local_days() -> None:
    assert parse_period("2026-11") == Period("month", date(2026, 11, 1), date(2026, 12, 1), "2026-11")
    assert parse_period("2026-12") == Period("month", date(2026, 12, 1), date(2027, 1, 1), "2026-12")
    assert parse_period("2026-W47") == Period("week", date(2026, 11, 16), date(2026, 11, 23), "2026-W47")
    assert parse_period("2026-W01") == Period("week", date(2025, 12, 29), date(2026, 1, 5), "2026-W01")
    assert parse_period("2026-W53").start == date(2026, 12, 28)  # 2026 has 53 ISO weeks
    assert parse_period("2026-11-02") == Period("day", date(2026, 11, 2), date(2026, 11, 3), "2026-11-02")


def test_the_periods_before_one_cross_years_and_month_ends() -> None:
    labels = [p.label for p in periods_before(parse_period("2027-01"), 3)]
    assert labels == ["2026-11", "2026-12", "2027-01"]
    assert [p.label for p in periods_before(parse_period("2027-W01"), 3)] == ["2026-W52", "2026-W53", "2027-W01"]
    assert [p.label for p in periods_before(parse_period("2028-03-01"), 2)] == ["2028-02-29", "2028-03-01"]
    assert periods_before(parse_period("2026-11"), 1) == [parse_period("2026-11")]


MALFORMED = ["2026-13", "2026/11", "", "2026-W54", "2025-W53", "2026-02-30", "Nov 2026", "2026-W7"]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_period_is_refused_naming_the_forms_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="allowed: a month 2026-11, an ISO week 2026-W47 or a day 2026-11-02"):
        parse_period(text)


def test_a_count_of_periods_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed: 1 or more"):
        periods_before(parse_period("2026-11"), 0)


def test_an_unknown_level_or_a_bad_division_is_refused_naming_what_is_allowed(views: ViewStore) -> None:
    with pytest.raises(ValueError, match="allowed: grid, community, street, district, department, worker"):
        kpi_table(views, "province", parse_period("2026-11"))
    with pytest.raises(ValueError, match="level 'city'"):
        kpi_trend(views, "city", "1408", [parse_period("2026-11")])
    with pytest.raises(ValueError, match="within '14%' is not a division code"):
        kpi_table(views, "grid", parse_period("2026-11"), within="14%")
    assert LEVELS == ("grid", "community", "street", "district", "department", "worker")


@pytest.mark.parametrize(
    ("value", "letter"),
    [(100.0, "A"), (90.0, "A"), (89.99, "B"), (75.0, "B"), (74.99, "C"), (60.0, "C"), (59.99, "D"), (40.0, "D"),
     (39.99, "E"), (0.0, "E"), (None, "")],
)  # fmt: skip
def test_grade_bands(value: float | None, letter: str) -> None:
    assert grade(value) == letter


def test_the_score_weights_sum_to_100_and_a_missing_rate_is_left_out() -> None:
    assert sum(SCORE_WEIGHTS.values()) == 100
    assert set(SCORE_WEIGHTS) <= set(RATE_NAMES)
    only_closure = dict.fromkeys(RATE_NAMES) | {"closure_rate": 0.8, "on_time_closure_rate": 0.6}
    assert score(only_closure) == pytest.approx(100 * (15 * 0.8 + 25 * 0.6) / 40)
    assert score(dict.fromkeys(RATE_NAMES)) is None


def test_basically_satisfied_counts_nine_tenths_and_the_three_rates_combine_10_50_40() -> None:
    counts = dict.fromkeys(
        ("closed", "due_to_close", "closed_on_time", "handled", "due_to_handle", "handled_on_time", "reworked",
         "extended", "returned", "dispatched", "accepted_on_time", "patrol_reports_valid", "patrol_reports_decided",
         "verified_on_time", "verified", "dispatched_on_time", "first_dispatched", "dispatched_accurately"),
        0,
    ) | {"callbacks": 10, "contacted": 8, "solved": 6, "satisfied": 4, "basically_satisfied": 2}  # fmt: skip
    found = rates(counts)
    assert found["satisfaction_rate"] == pytest.approx((4 + 0.9 * 2) / 10)
    assert found["callback_score"] == pytest.approx(0.1 * 0.8 + 0.5 * 0.6 + 0.4 * 0.58)
    assert found["closure_rate"] is None


def local(text: str) -> datetime:
    return datetime.fromisoformat(f"{text}+08:00")


def test_cases_near_midnight_fall_in_the_local_week_and_month_they_occurred(story: Story, views: ViewStore) -> None:
    """23:30 on Sunday 29 November is week 48 and November in Shanghai, though 15:30 UTC; 00:10 on Monday the
    30th is week 49; 00:10 on Tuesday 1 December is December, though still 30 November in UTC."""
    runner = follow(story.app, views)
    story.clock.set(local("2026-12-02T09:00"))
    for name, at in (("sun", "2026-11-29T23:30"), ("mon", "2026-11-30T00:10"), ("dec", "2026-12-01T00:10")):
        story.report(name, occurred_at=local(at))  # uploaded on the 2nd
    runner.run_until_caught_up()

    def reported(period: str) -> int:
        return sum(r.counts["reported"] for r in kpi_table(views, "grid", parse_period(period)))

    assert (reported("2026-W48"), reported("2026-W49")) == (1, 2)
    assert (reported("2026-11"), reported("2026-12")) == (2, 1)
    assert (reported("2026-11-29"), reported("2026-11-30"), reported("2026-12-01")) == (1, 1, 1)
    assert [r.counts["reported"] for r in kpi_trend(views, "grid", G1, periods_before(parse_period("2026-12"), 2))] == [
        2, 1,
    ]  # fmt: skip


def test_a_case_is_due_in_the_period_of_its_deadline_unless_closed_before(story: Story, views: ViewStore) -> None:
    """A case closed early counts where it closed; an open one where its deadline falls (month boundary)."""
    runner = follow(story.app, views)
    story.clock.set(local("2026-11-30T09:00"))
    story.report("early", category="C0102")
    story.on("early", c.RegisterCase)
    story.dispatch("early", worker="W1", hours=72)  # due 3 December
    story.on("early", c.AcceptCase, actor="W1")
    story.handle_and_close("early", "W1")  # closed 30 November
    story.report("open", category="C0102")
    story.on("open", c.RegisterCase)
    story.dispatch("open", worker="W1", hours=72)  # due 3 December, never closed
    runner.run_until_caught_up()
    november = kpi_table(views, "grid", parse_period("2026-11"))[0].counts
    december = kpi_table(views, "grid", parse_period("2026-12"))[0].counts
    assert (november["due_to_close"], november["closed_on_time"], november["registered"]) == (1, 1, 2)
    assert (december["due_to_close"], december["closed"], december["overdue"]) == (1, 0, 1)
