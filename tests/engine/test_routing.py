"""Routing: category × area rules over the catalogue, 退单 exclusion, 属地兜底, and locating a point in a grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.catalogue import GRID, Category, default_catalogue
from engine.errors import InvalidCommand, UnknownReference
from engine.routing import Area, GridLocator, Route, RoutingTable

DISTRICT, STREET, COMMUNITY, GRID_CODE = "140827", "140827100", "140827100001", "140827100001001"
HERE = Area(grid=GRID_CODE, community=COMMUNITY, street=STREET, district=DISTRICT)
NEXT_DOOR = Area(grid="140827100002001", community="140827100002", street=STREET, district=DISTRICT)
ELSEWHERE = Area(grid="140827200001001", community="140827200001", street="140827200", district=DISTRICT)

# One rule per level of specificity, each sending 违法建设 (E0301, catalogue: chengguan) somewhere else.
PRECEDENCE_RULES = f"""
[[rule]]
id = "any-any"
category = "*"
area = "*"
unit = "emergency"

[[rule]]
id = "kind-any"
category = "E"
area = "*"
unit = "market"

[[rule]]
id = "major-any"
category = "E03"
area = "*"
unit = "environment"

[[rule]]
id = "code-any"
category = "E0301"
area = "*"
unit = "housing"

[[rule]]
id = "any-district"
category = "*"
area = "{DISTRICT}"
unit = "transport"

[[rule]]
id = "code-district"
category = "E0301"
area = "{DISTRICT}"
unit = "water"

[[rule]]
id = "kind-street"
category = "E"
area = "{STREET}"
unit = "{STREET}"

[[rule]]
id = "major-street"
category = "E03"
area = "{STREET}"
unit = "landscaping"

[[rule]]
id = "any-community"
category = "*"
area = "{COMMUNITY}"
unit = "{COMMUNITY}"

[[rule]]
id = "any-grid"
category = "*"
area = "{GRID_CODE}"
unit = "grid"
"""


def _table(tmp_path: Path, text: str) -> RoutingTable:
    path = tmp_path / "routing.toml"
    path.write_text(text, encoding="utf-8")
    return RoutingTable.load(default_catalogue(), path)


def _rule(category: str, area: str, unit: str, rule_id: str, note: str = "") -> str:
    extra = f'note = "{note}"\n' if note else ""
    return f'[[rule]]\nid = "{rule_id}"\ncategory = "{category}"\narea = "{area}"\nunit = "{unit}"\n{extra}\n'


ILLEGAL_CONSTRUCTION = default_catalogue().category("E0301")
DUST = default_catalogue().category("E0303")
ILLEGAL_PARKING = default_catalogue().category("E0403")
EXPOSED_RUBBISH = default_catalogue().category("E0101")
BROKEN_LAMP = default_catalogue().category("C0103")
NEIGHBOUR_DISPUTE = default_catalogue().category("S0101")


@pytest.mark.parametrize(
    ("category", "area", "rule"),
    [
        (ILLEGAL_CONSTRUCTION, HERE, "any-grid"),  # a grid beats every category selector
        (ILLEGAL_CONSTRUCTION, Area("", COMMUNITY, STREET, DISTRICT), "any-community"),
        (ILLEGAL_CONSTRUCTION, NEXT_DOOR, "major-street"),  # street: 大类 beats kind
        (ILLEGAL_PARKING, NEXT_DOOR, "kind-street"),  # street: the kind is the best it has
        (BROKEN_LAMP, NEXT_DOOR, "any-district"),  # neither street rule names a component
        (ILLEGAL_CONSTRUCTION, ELSEWHERE, "code-district"),  # district: 小类 beats *
        (DUST, ELSEWHERE, "any-district"),  # a district with * beats 大类 anywhere
        (ILLEGAL_CONSTRUCTION, Area("", "", "", ""), "code-any"),  # anywhere: 小类 > 大类 > kind > *
        (DUST, Area("", "", "", ""), "major-any"),
        (ILLEGAL_PARKING, Area("", "", "", ""), "kind-any"),
        (BROKEN_LAMP, Area("", "", "", ""), "any-any"),
    ],
)
def test_the_most_specific_area_wins_then_the_most_specific_category(
    tmp_path: Path, category: Category, area: Area, rule: str
) -> None:
    table = _table(tmp_path, PRECEDENCE_RULES)
    assert table.route(category, area).rule == f"rule:{rule}"


def test_a_case_no_rule_names_goes_to_the_catalogue_department(tmp_path: Path) -> None:
    table = _table(tmp_path, _rule("E0301", STREET, STREET, "illegal-construction"))
    route = table.route(EXPOSED_RUBBISH, HERE)
    assert route == Route("chengguan", "catalogue:E0101", route.reason, False)
    assert "目录默认" in route.reason


def test_an_empty_routing_file_leaves_every_category_to_the_catalogue(tmp_path: Path) -> None:
    table = _table(tmp_path, "")
    assert table.rules == ()
    assert table.route(NEIGHBOUR_DISPUTE, HERE).unit == GRID


def test_of_two_equally_specific_rules_the_first_in_the_file_wins(tmp_path: Path) -> None:
    text = _rule("E03", STREET, "housing", "first") + _rule("E03", STREET, "environment", "second")
    assert _table(tmp_path, text).route(ILLEGAL_CONSTRUCTION, HERE).unit == "housing"


def test_a_rule_without_an_id_is_named_by_its_position(tmp_path: Path) -> None:
    text = _rule("E0101", "*", "environment", "named") + '[[rule]]\ncategory = "E0301"\narea = "*"\nunit = "housing"\n'
    assert _table(tmp_path, text).route(ILLEGAL_CONSTRUCTION, HERE).rule == "rule:2"


def test_the_reason_names_the_rule_and_its_note(tmp_path: Path) -> None:
    table = _table(tmp_path, _rule("E0301", STREET, STREET, "xcz", note="新城镇统筹执法"))
    route = table.route(ILLEGAL_CONSTRUCTION, HERE)
    assert (route.unit, route.rule, route.fallback) == (STREET, "rule:xcz", False)
    assert "xcz" in route.reason and "新城镇统筹执法" in route.reason and "E0301" in route.reason


def test_a_returned_case_goes_to_the_next_best_rule_then_the_catalogue(tmp_path: Path) -> None:
    text = _rule("E0301", STREET, STREET, "street") + _rule("E03", DISTRICT, "housing", "district")
    table = _table(tmp_path, text)
    assert table.route(ILLEGAL_CONSTRUCTION, HERE, exclude=frozenset({STREET})).rule == "rule:district"
    after_two = table.route(ILLEGAL_CONSTRUCTION, HERE, exclude=frozenset({STREET, "housing"}))
    assert after_two.rule == "catalogue:E0301"
    assert STREET in after_two.reason and "housing" in after_two.reason and "退单" in after_two.reason


def test_when_every_unit_returned_the_case_its_community_takes_it(tmp_path: Path) -> None:
    table = _table(tmp_path, "")
    route = table.route(ILLEGAL_CONSTRUCTION, HERE, exclude=frozenset({"chengguan"}))
    assert (route.unit, route.rule, route.fallback) == (COMMUNITY, "fallback:community", True)
    assert "属地兜底" in route.reason


def test_the_locality_climbs_to_the_street_then_the_district(tmp_path: Path) -> None:
    table = _table(tmp_path, "")
    returned = frozenset({"chengguan", COMMUNITY})
    assert table.route(ILLEGAL_CONSTRUCTION, HERE, exclude=returned).rule == "fallback:street"
    assert table.route(ILLEGAL_CONSTRUCTION, HERE, exclude=returned | {STREET}).rule == "fallback:district"
    no_community = Area("", "", STREET, DISTRICT)
    assert table.route(ILLEGAL_CONSTRUCTION, no_community, exclude=frozenset({"chengguan"})).unit == STREET


def test_when_the_whole_locality_returned_the_case_it_is_refused(tmp_path: Path) -> None:
    table = _table(tmp_path, "")
    with pytest.raises(InvalidCommand) as refused:
        table.route(ILLEGAL_CONSTRUCTION, HERE, exclude=frozenset({"chengguan", COMMUNITY, STREET, DISTRICT}))
    assert refused.value.field == "area"
    assert "chengguan" in str(refused.value)


def test_a_grid_case_outside_every_grid_goes_to_the_community(tmp_path: Path) -> None:
    table = _table(tmp_path, "")
    route = table.route(NEIGHBOUR_DISPUTE, Area("", COMMUNITY, STREET, DISTRICT))
    assert (route.unit, route.fallback) == (COMMUNITY, True)
    assert table.route(NEIGHBOUR_DISPUTE, HERE).unit == GRID


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (_rule("E0301", "*", "fire_brigade", "x"), "unknown unit 'fire_brigade'; allowed: grid, chengguan"),
        (_rule("E9999", "*", "housing", "x"), "category 'E9999' is not in the catalogue"),
        (_rule("E09", "*", "housing", "x"), "no category of the catalogue is in 大类 'E09'"),
        (_rule("X", "*", "housing", "x"), "category 'X' is not in the catalogue; a category selector is"),
        (_rule("E0301", "新城镇", "housing", "x"), "area '新城镇' must be a grid, community, street or district code"),
        (_rule("E0301", "*", "housing", "a b"), "id must be letters, digits"),
        (_rule("E0301", "*", "housing", "x") + _rule("E0101", "*", "housing", "x"), "duplicate id 'x'"),
        ('[[rule]]\ncategory = "E0301"\narea = "*"\n', "field 'unit' must be a non-empty string"),
        ('[[rule]]\ncategory = "E0301"\narea = "*"\nunit = "housing"\nwho = 1\n', "unknown field(s) ['who']"),
        ('[[rule]]\ncategory = "E0301"\narea = "*"\nunit = "housing"\nillustrative = "yes"\n', "illustrative must"),
        ('[[rules]]\ncategory = "E0301"\n', "unknown top-level key(s) ['rules']"),
        ("rule = 3\n", "'rule' must be an array of tables"),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_a_bad_routing_file_is_refused_naming_the_file_and_what_is_allowed(
    tmp_path: Path, text: str, complaint: str
) -> None:
    with pytest.raises(ValueError) as refused:
        _table(tmp_path, text)
    assert complaint in str(refused.value)
    assert "routing.toml" in str(refused.value)


def test_a_division_code_is_accepted_as_a_unit(tmp_path: Path) -> None:
    table = _table(tmp_path, _rule("E03", STREET, "140827100", "x"))
    assert table.route(DUST, HERE).unit == "140827100"


def test_the_packaged_rules_send_illegal_construction_in_xinchengzhen_to_the_town() -> None:
    table = RoutingTable.load(default_catalogue())
    assert table.rules and all(rule.illustrative for rule in table.rules)
    route = table.route(ILLEGAL_CONSTRUCTION, HERE)
    assert (route.unit, route.rule) == (STREET, "rule:xcz-illegal-construction")
    assert table.route(ILLEGAL_CONSTRUCTION, ELSEWHERE).unit == "chengguan"


def test_the_packaged_rules_let_a_market_grid_handle_street_vending_before_the_town() -> None:
    table = RoutingTable.load(default_catalogue())
    vending = default_catalogue().category("E0401")
    assert table.route(vending, HERE).unit == GRID
    assert table.route(vending, NEXT_DOOR).unit == STREET
    assert table.route(vending, HERE, exclude=frozenset({GRID})).unit == STREET


# ---------------------------------------------------------------- locating a point in a grid


def _box(west: float, south: float, east: float, north: float) -> str:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


@pytest.fixture
def locator() -> GridLocator:
    """Two neighbouring grids: A from lon 111.60 to 111.61, B from 111.61 to 111.62, lat 35.30 to 35.31."""
    grids = GridLocator()
    grids.draw("A", _box(111.60, 35.30, 111.61, 35.31))
    grids.draw("B", _box(111.61, 35.30, 111.62, 35.31))
    return grids


def test_a_point_inside_a_grid_is_located_in_it(locator: GridLocator) -> None:
    assert locator.locate(111.605, 35.305) == "A"
    assert locator.locate(111.615, 35.305) == "B"


def test_a_point_outside_every_grid_is_located_nowhere(locator: GridLocator) -> None:
    assert locator.locate(111.70, 35.305) is None
    assert GridLocator().locate(111.605, 35.305) is None


def test_a_point_on_a_grid_boundary_counts_as_inside(locator: GridLocator) -> None:
    assert locator.locate(111.60, 35.305) == "A"
    assert locator.locate(111.605, 35.31) == "A"


def test_a_point_on_a_border_of_two_equal_grids_goes_to_the_first_code() -> None:
    grids = GridLocator()
    grids.draw("east", _box(1.0, 0.0, 2.0, 1.0))
    grids.draw("west", _box(0.0, 0.0, 1.0, 1.0))
    assert grids.locate(1.0, 0.5) == "east"


def test_of_overlapping_grids_the_smallest_takes_the_point(locator: GridLocator) -> None:
    locator.draw("0-small", _box(111.604, 35.304, 111.606, 35.306))
    assert locator.locate(111.605, 35.305) == "0-small"
    assert locator.locate(111.601, 35.301) == "A"


def test_a_point_in_a_hole_is_outside_the_grid() -> None:
    outer = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]]
    hole = [[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0], [1.0, 1.0]]
    grids = GridLocator()
    grids.draw("ring", json.dumps({"type": "Polygon", "coordinates": [outer, hole]}))
    assert grids.locate(2.0, 2.0) is None
    assert grids.locate(0.5, 0.5) == "ring"


def test_a_multipolygon_grid_holds_points_in_each_part() -> None:
    parts = [[[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]], [[[5.0, 5.0], [6.0, 5.0], [6.0, 6.0], [5.0, 5.0]]]]
    grids = GridLocator()
    grids.draw("split", json.dumps({"type": "MultiPolygon", "coordinates": parts}))
    assert grids.locate(0.9, 0.1) == "split" and grids.locate(5.9, 5.1) == "split"
    assert grids.locate(3.0, 3.0) is None


def test_a_redrawn_grid_takes_points_in_its_new_boundary_only(locator: GridLocator) -> None:
    assert locator.locate(111.605, 35.305) == "A"
    locator.redraw("A", _box(111.60, 35.32, 111.61, 35.33))
    assert locator.locate(111.605, 35.305) is None
    assert locator.locate(111.605, 35.325) == "A"


def test_a_retired_grid_takes_no_more_points(locator: GridLocator) -> None:
    assert locator.locate(111.605, 35.305) == "A"
    locator.retire("A")
    assert locator.locate(111.605, 35.305) is None
    assert locator.locate(111.61, 35.305) == "B"


def test_outside_every_grid_the_nearest_grid_is_found(locator: GridLocator) -> None:
    assert locator.nearest(111.50, 35.305) == "A"
    assert locator.nearest(111.70, 35.305) == "B"
    assert locator.nearest(111.615, 35.305) == "B"  # inside: the grid itself


def test_a_point_as_near_to_two_grids_goes_to_the_first_code() -> None:
    grids = GridLocator()
    grids.draw("north", _box(0.0, 2.0, 1.0, 3.0))
    grids.draw("south", _box(0.0, 0.0, 1.0, 1.0))
    assert grids.nearest(0.5, 1.5) == "north"
    assert grids.nearest(0.5, 1.4) == "south"


def test_with_no_grids_there_is_no_nearest_grid() -> None:
    assert GridLocator().nearest(111.6, 35.3) is None


def test_drawing_a_grid_twice_is_refused(locator: GridLocator) -> None:
    with pytest.raises(InvalidCommand) as refused:
        locator.draw("A", _box(0.0, 0.0, 1.0, 1.0))
    assert "redraw" in str(refused.value)


def test_redrawing_or_retiring_an_unknown_grid_lists_the_known_ones(locator: GridLocator) -> None:
    with pytest.raises(UnknownReference) as refused:
        locator.redraw("C", _box(0.0, 0.0, 1.0, 1.0))
    assert refused.value.allowed == ("A", "B")
    with pytest.raises(UnknownReference):
        locator.retire("C")


def test_a_malformed_boundary_or_location_is_refused(locator: GridLocator) -> None:
    with pytest.raises(InvalidCommand) as refused:
        locator.draw("C", '{"type": "Point", "coordinates": [1, 2]}')
    assert refused.value.field == "boundary"
    with pytest.raises(InvalidCommand) as refused:
        locator.locate(200.0, 35.0)
    assert refused.value.field == "lon"


def test_a_self_crossing_boundary_is_repaired_rather_than_refused() -> None:
    bowtie = [[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]
    grids = GridLocator()
    grids.draw("bowtie", json.dumps({"type": "Polygon", "coordinates": [bowtie]}))
    assert grids.locate(0.2, 1.0) == "bowtie"
    assert grids.locate(1.8, 1.0) == "bowtie"
    assert grids.locate(1.0, 0.2) is None
