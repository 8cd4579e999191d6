"""Simulator presets reproduce the figures of the source articles."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import UnknownReference
from ops.presets import Preset, available_presets, load_preset, load_preset_file

SMALL_PRESET = """
title = "test"
seed = 1
sources = ["made up"]

[region]
code = "100000"
name = "测试市"
level = "city"
center = [110.0, 30.0]

[[division]]
code = "100100"
name = "测试区"
level = "district"
parent = "100000"

[staff]
grid_leaders = 1
grid_workers = 3
grid_assistants = 0
mediators = 1

[rates]
resident_requests_per_1000_households_per_day = 1.0
patrols_per_worker_per_day = 1.0
checkpoints_per_patrol = 6
finding_probability_per_checkpoint = 0.08
reject_rate = 0.04
merge_rate = 0.03
return_rate = 0.05
extension_rate = 0.04
suspend_rate = 0.02
rework_rate = 0.04
not_fixed_callback_rate = 0.05
escalation_rate = 0.05

[[street]]
code = "100100001"
name = "一街"
parent = "100100"

[[street.community]]
name = "甲社区"
households = 900
grids = 3
"""


def _streets(preset: Preset) -> list[str]:
    return [d.code for d in preset.divisions if d.level == "street"]


def test_the_three_article_districts_are_packaged() -> None:
    assert available_presets() == ("shizuishan", "wuchang", "yuanqu")


def test_yuanqu_has_fifteen_communities_averaging_3479_households_after_the_reform() -> None:
    yuanqu = load_preset("yuanqu")
    assert yuanqu.top().name == "垣曲县"
    assert len(yuanqu.communities) == 15
    assert abs(yuanqu.total_households() / 15 - 3479) <= 1
    largest = max(yuanqu.communities, key=lambda c: c.households)
    assert (largest.name, largest.households) == ("东峰山社区", 4864)
    assert not largest.illustrative_name


def test_yuanqu_has_one_grid_per_grid_worker_and_the_reform_staff() -> None:
    yuanqu = load_preset("yuanqu")
    assert yuanqu.total_grids() == 99
    staff = yuanqu.staff
    assert (staff.grid_leaders, staff.grid_workers) == (15, 99)
    assert (staff.grid_assistants, staff.mediators) == (729, 6)
    assert [d.name for d in yuanqu.divisions if d.level == "street"] == ["新城镇"]


def test_wuchang_has_142_communities_of_ten_300_household_grids_over_14_streets() -> None:
    wuchang = load_preset("wuchang")
    assert len(wuchang.communities) == 142
    assert wuchang.total_grids() == 1420
    assert wuchang.staff.grid_workers == 1420
    assert len(_streets(wuchang)) == 14
    assert {c.households // c.grids for c in wuchang.communities} == {300}


def test_shizuishan_has_119_communities_547_grids_and_1_plus_4_staffing() -> None:
    shizuishan = load_preset("shizuishan")
    assert len(shizuishan.communities) == 119
    assert shizuishan.total_grids() == 547
    assert shizuishan.staff.grid_workers == 547
    assert shizuishan.staff.grid_assistants == 2188
    assert round(shizuishan.total_households() / 547) == 500


def test_shizuishan_runs_city_to_county_units_to_sixteen_streets() -> None:
    shizuishan = load_preset("shizuishan")
    assert shizuishan.top().level == "city"
    counties = [d for d in shizuishan.divisions if d.level == "district"]
    assert {d.name for d in counties} == {"大武口区", "惠农区", "平罗县"}
    assert all(d.parent == "640200" for d in counties)
    assert len(_streets(shizuishan)) == 16
    county_codes = {d.code for d in counties}
    assert all(d.parent in county_codes for d in shizuishan.divisions if d.level == "street")


@pytest.mark.parametrize("name", ["yuanqu", "wuchang", "shizuishan"])
def test_every_preset_lists_parents_before_children_and_codes_nest(name: str) -> None:
    preset = load_preset(name)
    assert preset.top().parent is None and preset.divisions[0] == preset.top()
    seen: set[str] = set()
    for division in preset.divisions[1:]:
        assert division.parent in seen | {preset.top().code}
        seen.add(division.code)
    streets = set(_streets(preset))
    codes = [c.code for c in preset.communities]
    assert len(set(codes)) == len(codes)
    for community in preset.communities:
        assert community.street in streets
        assert community.code[:-3] == community.street and community.code[-3:].isdigit()
    assert preset.sources and preset.seed >= 0


@pytest.mark.parametrize("name", ["yuanqu", "wuchang", "shizuishan"])
def test_every_preset_states_rates_that_are_shares_of_cases(name: str) -> None:
    rates = load_preset(name).rates
    assert 1.0 <= rates.resident_requests_per_1000_households_per_day <= 1.5
    assert rates.checkpoints_per_patrol > 0
    for share in (
        rates.reject_rate,
        rates.merge_rate,
        rates.return_rate,
        rates.extension_rate,
        rates.suspend_rate,
        rates.rework_rate,
        rates.not_fixed_callback_rate,
        rates.escalation_rate,
        rates.finding_probability_per_checkpoint,
    ):
        assert 0.0 <= share <= 1.0


def test_each_preset_names_the_admission_catalogue_its_communities_follow(tmp_path: Path) -> None:
    assert {name: load_preset(name).admission for name in available_presets()} == {
        "shizuishan": "shizuishan",
        "wuchang": "zhongshan",
        "yuanqu": "zhongshan",
    }
    path = tmp_path / "tiny.toml"
    path.write_text(SMALL_PRESET, encoding="utf-8")
    assert load_preset_file(path).admission is None


def test_counted_communities_get_illustrative_names_after_their_street() -> None:
    wuchang = load_preset("wuchang")
    third = [c for c in wuchang.communities if c.name == "徐家棚街第3社区"]
    assert len(third) == 1 and third[0].illustrative_name
    assert all(c.illustrative_name for c in wuchang.communities)


def test_an_unknown_preset_is_refused_with_the_available_ones() -> None:
    with pytest.raises(UnknownReference) as refused:
        load_preset("zhongshan")
    assert refused.value.kind == "preset"
    assert refused.value.allowed == available_presets()


def test_a_preset_file_loads_with_its_stem_as_name(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(SMALL_PRESET, encoding="utf-8")
    preset = load_preset_file(path)
    assert preset.name == "tiny"
    assert [d.code for d in preset.divisions] == ["100000", "100100", "100100001"]
    assert preset.communities[0].code == "100100001001"
    assert preset.center == (110.0, 30.0)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("households = 900", "households = 0", "households must be an integer >= 1"),
        ("grids = 3", "grids = -1", "grids must be an integer >= 1"),
        ('parent = "100100"', 'parent = "999999"', "unknown parent '999999'"),
        ('code = "100100001"', 'code = "100100"', "duplicate code"),
        ('level = "district"', 'level = "province"', "unknown level 'province'"),
        ("reject_rate = 0.04", "reject_rate = 1.5", "reject_rate is a share in [0, 1]"),
        ('parent = "100100"\n', 'parent = "100100"\ncommunities = 2\n', "not both"),
        ("seed = 1", 'seed = 1\nadmission = "wuhan"', "admission must name a packaged admission catalogue"),
    ],
)
def test_a_malformed_preset_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    path = tmp_path / "broken.toml"
    text = SMALL_PRESET.replace(old, new, 1)
    assert text != SMALL_PRESET
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        load_preset_file(path)
    assert str(path) in str(refused.value)
    assert complaint in str(refused.value)
