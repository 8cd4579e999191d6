"""Community burden (社区减负): what departments push onto a community, and what the admission catalogue refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import commands as c
from engine.admission import AdmissionCatalogue
from projections.evaluation.burden import KINDS, BurdenRow, CommunityBurden, KindBurden, burden
from projections.kpi_queries import parse_period
from projections.rebuild import rebuild
from projections.store import ViewStore
from projections.views import default_projections
from tests.projections.conftest import DISTRICT, EAST, G1, G2, G3, STREET, WEST, Story, follow
from tests.projections.kafka_order import same_in_any_order

MONDAY = parse_period("2026-11-23")
NOTHING = KindBurden(0, 0, 0, 0, 0, 0)


def _push(story: Story, item: str, grid: str = G1, department: str = "消防救援大队") -> None:
    """A department pushes an item of work onto the grid's community (部门交办)."""
    story.report(
        f"{item}@{grid}", grid=grid, source="department", actor=department, admission_item=item,
        description=f"部门交办 {item}",
    )  # fmt: skip


def test_the_admission_catalogue_cuts_huayuans_inspections_33_to_21_and_reports_40_to_29(
    story: Story, views: ViewStore
) -> None:
    """Zhongshan's 花苑社区 (seeds/002): before the catalogue 33 kinds of inspection and 40 report forms."""
    catalogue = AdmissionCatalogue.load("zhongshan")
    inspections = [f"I{n:03d}" for n in range(1, 34)]
    reports = [f"R{n:03d}" for n in range(1, 41)]
    for item in inspections + reports:
        _push(story, item)
    follow(story.app, views).run_until_caught_up()

    [east] = burden(views, MONDAY)
    admitted_inspections = sum(catalogue.admit(i, department="x").admitted for i in inspections)
    admitted_reports = sum(catalogue.admit(r, department="x").admitted for r in reports)
    assert (admitted_inspections, admitted_reports) == (21, 29)
    assert east.kinds["inspection"] == KindBurden(
        pushed=33, refused=12, refused_by_rule=12, rejected_other=0, items_pushed=33, items_borne=21
    )
    assert east.kinds["report"] == KindBurden(
        pushed=40, refused=11, refused_by_rule=11, rejected_other=0, items_pushed=40, items_borne=29
    )
    assert (east.code, east.pushed, east.refused, east.borne) == (EAST, 73, 23, 50)
    assert all(east.kinds[k] == NOTHING for k in ("task", "service", "certificate"))


def test_refusals_by_the_desk_and_other_rejections_are_told_apart(story: Story, views: ViewStore) -> None:
    _push(story, "T001")  # an admitted task, done twice by two departments: the second is a duplicate
    _push(story, "T001", department="民政局")
    story.on("T001@" + G1, c.RejectCase, reason_code="duplicate", reason="重复交办")
    story.report("untyped", grid=G1, source="department", actor="城管局", description="部门交办: 清理小广告")
    story.on("untyped", c.RejectCase, reason_code="not_admitted", reason="城管执法职责")  # by the desk
    story.report("stamp", grid=G3, source="resident", certificate="Z001", description="开具亲属关系证明")  # abolished
    story.report("kept", grid=G3, source="resident", certificate="Z027", description="开具证明")  # retained
    story.report("ordinary", grid=G3, source="resident", description="路灯不亮")  # a resident's request: no burden
    follow(story.app, views).run_until_caught_up()

    rows = {r.code: r for r in burden(views, MONDAY)}
    assert set(rows) == {EAST, WEST}
    assert rows[EAST].kinds["task"] == KindBurden(
        pushed=3, refused=1, refused_by_rule=0, rejected_other=1, items_pushed=1, items_borne=1
    )
    assert rows[WEST].kinds["certificate"] == KindBurden(
        pushed=2, refused=1, refused_by_rule=1, rejected_other=0, items_pushed=2, items_borne=1
    )
    assert (rows[EAST].borne, rows[WEST].borne) == (1, 1)


def test_burden_is_summed_at_each_level_and_within_a_division(story: Story, views: ViewStore) -> None:
    for item, grid in (("I001", G1), ("I002", G2), ("I001", G3), ("I022", G3)):
        _push(story, item, grid)
    follow(story.app, views).run_until_caught_up()
    by_grid = burden(views, MONDAY, level="grid")
    assert [(r.code, r.pushed, r.borne) for r in by_grid] == [(G3, 2, 1), (G1, 1, 1), (G2, 1, 1)]  # most borne, pushed
    [street] = burden(views, MONDAY, level="street")
    assert (street.code, street.kinds["inspection"].items_pushed, street.kinds["inspection"].items_borne) == (
        STREET, 3, 2,
    )  # fmt: skip
    assert [r.code for r in burden(views, MONDAY, level="district")] == [DISTRICT]
    assert [r.code for r in burden(views, MONDAY, level="grid", within=EAST)] == [G1, G2]
    assert burden(views, parse_period("2026-11-24")) == []
    assert list(by_grid[0].kinds) == list(KINDS)


@pytest.mark.sqlite_only
def test_rebuilt_equals_live_and_any_kafka_order_gives_the_same_rows(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    """SQLite only: the blue/green rebuild (and an as-of replay) build SQLite files beside the live store."""
    runner = follow(story.app, views, batch_size=3)
    story.after_each = lambda _: runner.run_until_caught_up()
    for item in ("I001", "I022", "R030", "T016"):  # admitted, refused, refused, unfunded (费随事转)
        _push(story, item, G2)
    story.every_path()
    story.after_each = None
    live = burden(views, parse_period("2026-11"))
    [result] = rebuild(
        story.app.recorder, story.app.mapper, views, [p for p in default_projections() if p.name == "community_burden"]
    )
    assert result.equal and burden(views, parse_period("2026-11")) == live
    assert live == [
        BurdenRow(
            "community", EAST, "2026-11",
            {
                "task": KindBurden(1, 1, 1, 0, 1, 0),
                "inspection": KindBurden(2, 1, 1, 0, 2, 1),
                "report": KindBurden(1, 1, 1, 0, 1, 0),
                "service": NOTHING,
                "certificate": NOTHING,
            },
        )
    ]  # fmt: skip
    rows = same_in_any_order(story, CommunityBurden(), tmp_path)
    assert len(rows["burden_case"]) == 4
