"""The category catalogue: GB/T 30428 classes, default departments, default time limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalogue import Catalogue, Category, default_catalogue
from engine.errors import UnknownReference

COMPONENT_MAJORS = {"公用设施", "道路交通", "市容环境", "园林绿化", "房屋土地", "其他"}
EVENT_MAJORS = {"市容环境", "宣传广告", "施工管理", "街面秩序", "突发事件"}

GOOD_FILE = """
[[department]]
code = "chengguan"
name = "城市管理局"
name_en = "Urban Management Bureau"

[[category]]
code = "E0101"
kind = "event"
major = "市容环境"
name = "暴露垃圾"
name_en = "Exposed rubbish"
tier = "normal"
time_limit_hours = 4
department = "chengguan"

[[category]]
code = "S0101"
kind = "service"
major = "矛盾纠纷"
name = "邻里纠纷"
name_en = "Neighbour dispute"
tier = "normal"
time_limit_hours = 40
department = "grid"
skills = ["mediation"]
"""


def _majors(kind: str) -> set[str]:
    return {c.major for c in default_catalogue().categories.values() if c.kind == kind}


def test_every_category_is_handled_by_a_known_department_or_the_grid() -> None:
    catalogue = default_catalogue()
    for category in catalogue.categories.values():
        assert category.department == "grid" or catalogue.is_unit(category.department)


def test_the_catalogue_covers_every_major_class_of_components_and_events() -> None:
    assert _majors("component") == COMPONENT_MAJORS
    assert _majors("event") == EVENT_MAJORS
    assert _majors("service")


def test_both_tiers_are_used_and_every_category_has_an_english_name() -> None:
    categories = default_catalogue().categories.values()
    assert {c.tier for c in categories} == {"emergency", "normal"}
    assert all(c.name_en and c.name for c in categories)


def test_codes_carry_the_letter_of_their_kind_and_major_and_minor_digits() -> None:
    letters = {"component": "C", "event": "E", "service": "S"}
    for code, category in default_catalogue().categories.items():
        assert code == category.code
        assert code[0] == letters[category.kind] and code[1:].isdigit() and len(code) == 5


def test_a_missing_manhole_cover_is_an_emergency_due_in_two_hours() -> None:
    cover = default_catalogue().category("C0101")
    assert (cover.name, cover.tier, cover.time_limit_hours) == ("井盖缺失", "emergency", 2.0)


def test_exposed_rubbish_and_illegal_construction_are_due_in_four_working_hours() -> None:
    by_name = {c.name: c for c in default_catalogue().categories.values()}
    assert by_name["暴露垃圾"].time_limit_hours == 4.0
    assert by_name["违法建设"].time_limit_hours == 4.0


def test_a_neighbour_dispute_goes_to_the_grid_for_mediation() -> None:
    dispute = default_catalogue().category("S0101")
    assert dispute.name == "邻里纠纷"
    assert dispute.department == "grid"
    assert dispute.skills == ("mediation",)


def test_departments_are_units_and_the_grid_is_not() -> None:
    catalogue = default_catalogue()
    assert catalogue.is_unit("chengguan")
    assert catalogue.department("civil_affairs").name == "民政局"
    assert not catalogue.is_unit("grid")


def test_an_unknown_category_is_refused_with_the_known_codes() -> None:
    catalogue = default_catalogue()
    with pytest.raises(UnknownReference) as refused:
        catalogue.category("X9999")
    assert refused.value.kind == "category"
    assert refused.value.value == "X9999"
    assert refused.value.allowed == tuple(sorted(catalogue.categories))


def test_an_unknown_department_is_refused_with_the_known_codes() -> None:
    catalogue = default_catalogue()
    with pytest.raises(UnknownReference) as refused:
        catalogue.department("fire_brigade")
    assert refused.value.allowed == tuple(sorted(catalogue.departments))
    assert "chengguan" in str(refused.value)


def test_the_default_catalogue_is_read_once() -> None:
    assert default_catalogue() is default_catalogue()


def test_a_catalogue_file_loads_and_skills_default_to_none(tmp_path: Path) -> None:
    path = tmp_path / "categories.toml"
    path.write_text(GOOD_FILE, encoding="utf-8")
    catalogue = Catalogue.load(path)
    assert catalogue.category("E0101") == Category(
        "E0101",
        "event",
        "市容环境",
        "暴露垃圾",
        "Exposed rubbish",
        "normal",
        4.0,
        "chengguan",
        (),
    )
    assert catalogue.category("S0101").skills == ("mediation",)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ('kind = "event"', 'kind = "incident"', "unknown kind 'incident'"),
        ('tier = "normal"\ntime_limit_hours = 4', 'tier = "urgent"\ntime_limit_hours = 4', "unknown tier 'urgent'"),
        (
            'department = "chengguan"',
            'department = "fire_brigade"',
            "unknown department 'fire_brigade'; allowed: grid, chengguan",
        ),
        ('code = "E0101"', 'code = "C0101"', "code must be 'E'"),
        ("time_limit_hours = 4", "time_limit_hours = 0", "positive number"),
        ('code = "S0101"', 'code = "E0101"', "code must be 'S'"),
        ('major = "矛盾纠纷"', 'major = "矛盾纠纷"\nfoo = 1', "unknown field(s) ['foo']"),
    ],
)
def test_a_malformed_entry_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(GOOD_FILE.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        Catalogue.load(path)
    message = str(refused.value)
    assert str(path) in message
    assert "[[category]] #" in message
    assert complaint in message


def test_a_duplicate_category_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.toml"
    path.write_text(
        GOOD_FILE.replace('code = "S0101"', 'code = "E0101"').replace('kind = "service"', 'kind = "event"'),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"#2 \('E0101'\): duplicate category code"):
        Catalogue.load(path)
