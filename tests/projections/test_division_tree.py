"""The division tree: cities, districts, streets, communities, grids; the same whatever order aggregates come in."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from engine import commands as c
from engine.errors import InvalidCommand
from projections.divisions import DivisionRow, DivisionTree, division, divisions
from projections.queries import view_rows
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections
from tests.projections.kafka_order import as_if_from_kafka, log_events


def redraw_and_retire(story: Any, place: Any) -> Any:
    story.do(c.RedrawGrid, code=place.g2, households=520, boundary=place.square, reason="新建小区", actor="admin")
    story.do(c.RetireGrid, code=place.g3, successors=[place.g1], reason="并入 001 网格", actor="admin")
    return story


def _apply(events: list[tuple[Any, int]], path: Path) -> dict[str, list[dict[str, Any]]]:
    store = ViewStore.open(path)
    tree = DivisionTree()
    with store.transaction() as cursor:
        for event, position in events:
            tree.process_event(event, position, cursor)
    rows = view_rows(store, "division_tree")
    store.close()
    return rows


def test_the_tree_holds_every_division_and_grid_with_what_its_own_events_say(
    story: Any, views: ViewStore, place: Any
) -> None:
    redraw_and_retire(story.city(), place)
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()

    assert division(views, place.city) == DivisionRow(
        place.city, "运城市", "city", None, None, None, None, None, None, False
    )
    assert division(views, place.district) == DivisionRow(
        place.district, "垣曲县", "district", None, None, None, None, None, None, False
    )
    assert division(views, place.street) == DivisionRow(
        place.street, "新城镇", "street", place.district, place.district, None, None, None, None, False
    )
    # A community names its street, not its district: its own event does not carry one.
    assert division(views, place.east) == DivisionRow(
        place.east, "东峰山社区", "community", place.street, None, place.street, None, None, None, False
    )
    g1 = division(views, place.g1)
    assert g1 is not None
    assert (g1.level, g1.parent, g1.district, g1.street, g1.community) == (
        "grid",
        place.east,
        place.district,
        place.street,
        place.east,
    )
    assert (g1.households, g1.retired) == (480, False) and g1.boundary is not None and "Polygon" in g1.boundary
    g2, g3 = division(views, place.g2), division(views, place.g3)
    assert g2 is not None and (g2.households, g2.boundary) == (520, place.square)
    assert g3 is not None and g3.retired
    assert division(views, "999") is None


def test_the_tree_is_the_same_whatever_order_the_aggregates_arrive_in(story: Any, tmp_path: Path, place: Any) -> None:
    redraw_and_retire(story.city(), place)
    events = log_events(story, DivisionTree())
    in_log_order = _apply(events, tmp_path / "log-order.sqlite")
    assert len(in_log_order["division"]) == 12
    rng = random.Random(20261123)
    orders = [as_if_from_kafka(events, rng) for _ in range(8)]
    assert any(order != events for order in orders)  # the grids' events before their communities', and so on
    for i, order in enumerate(orders):
        assert _apply(order, tmp_path / f"order-{i}.sqlite") == in_log_order


def test_a_grid_redrawn_before_its_drawing_was_applied_is_refused(story: Any, tmp_path: Path, place: Any) -> None:
    redraw_and_retire(story, place)
    redrawn = [
        (event, position) for event, position in log_events(story, DivisionTree()) if type(event).__name__ == "Redrawn"
    ]
    with pytest.raises(LookupError, match="its Drawn event was never applied"):
        _apply(redrawn, tmp_path / "views.sqlite")


def test_divisions_lists_one_level_or_one_parents_children_in_code_order(
    story: Any, views: ViewStore, place: Any
) -> None:
    story.city()
    EmbeddedRunner(story.app.recorder, story.app.mapper, views, default_projections()).run_until_caught_up()
    assert [d.code for d in divisions(views, level="district")] == [place.district, place.county]
    assert [d.code for d in divisions(views, level="grid")] == [place.g1, place.g2, place.g3, place.g4]
    assert [d.code for d in divisions(views, parent=place.street)] == [place.east, place.west]
    assert [d.code for d in divisions(views, parent=place.east)] == [place.g1, place.g2]
    assert [d.code for d in divisions(views, level="grid", parent=place.west)] == [place.g3]
    assert [d.code for d in divisions(views, level="community", parent=place.east)] == []
    assert len(divisions(views)) == 12


def test_a_level_the_tree_does_not_have_is_refused_with_the_levels_it_has(views: ViewStore) -> None:
    with pytest.raises(InvalidCommand, match="city, district, street, community, grid"):
        divisions(views, level="province")
