"""The category catalogue: GB/T 30428 classes, default departments, default time limits."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.catalogue import Allowances, Catalogue, Category, default_catalogue
from engine.errors import UnknownReference
from engine.working_time import CHINA, WorkingCalendar, china_calendar

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
        ("time_limit_hours = 4", "time_limit_hours = 4\ntime_limit_days = 1", "gives both"),
        ("time_limit_hours = 4", "", "gives neither"),
        ("time_limit_hours = 4", "time_limit_days = 1.5", "time_limit_days must be a positive whole number"),
        (
            'tier = "normal"\ntime_limit_hours = 4',
            'tier = "emergency"\ntime_limit_days = 1',
            "an emergency category counts in working hours",
        ),
        ('department = "chengguan"', 'department = "chengguan"\nkey = "yes"', "key must be true or false"),
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


MONDAY_9 = datetime(2026, 11, 23, 9, tzinfo=CHINA)

STEPS = """
[[step]]
name = "dispatch"
emergency_minutes = 10
normal_minutes = 30

[[step]]
name = "verify"
emergency_minutes = 60
normal_minutes = 60
rural_minutes = 120

[allowances]
return_within_days = 2
extension_up_to_days = 10
"""


def test_the_most_urgent_hazards_are_key_cases() -> None:
    catalogue = default_catalogue()
    assert catalogue.category("C0101").key  # 井盖缺失
    assert catalogue.category("E0503").key  # 燃气泄漏
    assert not catalogue.category("E0101").key
    assert all(c.tier == "emergency" for c in catalogue.categories.values() if c.key)


def test_emergency_categories_count_in_hours_and_some_normal_ones_in_working_days() -> None:
    categories = default_catalogue().categories.values()
    assert all(c.time_limit_hours for c in categories if c.tier == "emergency")
    in_days = [c for c in categories if c.time_limit_days is not None]
    assert in_days and all(c.tier == "normal" and c.time_limit_hours is None for c in in_days)


def test_a_missing_manhole_cover_is_due_two_working_hours_after_dispatch() -> None:
    assert default_catalogue().deadline("C0101", MONDAY_9, WorkingCalendar()) == MONDAY_9 + timedelta(hours=2)


def test_an_abandoned_vehicle_reported_before_national_day_is_due_five_working_days_after_the_break() -> None:
    catalogue = default_catalogue()
    assert catalogue.category("E0406").time_limit_days == 5
    start = datetime(2026, 9, 30, 10, tzinfo=CHINA)
    # 10-01..10-07 off; 10-08 Thu, 10-09 Fri, 10-10 Sat (worked, 调休), 10-12 Mon, 10-13 Tue.
    assert catalogue.deadline("E0406", start, china_calendar()) == datetime(2026, 10, 13, 10, tzinfo=CHINA)


def test_an_unknown_category_has_no_deadline() -> None:
    with pytest.raises(UnknownReference, match="unknown category 'X9999'"):
        default_catalogue().deadline("X9999", MONDAY_9, WorkingCalendar())


def test_registering_and_dispatching_take_ten_minutes_for_an_emergency_and_thirty_otherwise() -> None:
    catalogue = default_catalogue()
    assert catalogue.step_limit("dispatch", "emergency") == timedelta(minutes=10)
    assert catalogue.step_limit("dispatch", "normal") == timedelta(minutes=30)
    assert catalogue.step_limit("dispatch", "normal", rural=True) == timedelta(minutes=30)
    assert catalogue.step_limit("accept", "emergency") == timedelta(minutes=10)


def test_verifying_takes_an_hour_in_town_and_two_in_the_countryside() -> None:
    catalogue = default_catalogue()
    assert catalogue.step_limit("verify", "emergency") == timedelta(hours=1)
    assert catalogue.step_limit("verify", "normal", rural=True) == timedelta(hours=2)


def test_an_unknown_step_or_tier_is_refused_with_the_known_ones() -> None:
    catalogue = default_catalogue()
    with pytest.raises(UnknownReference) as refused:
        catalogue.step_limit("call_back", "normal")
    assert refused.value.allowed == ("accept", "dispatch", "verify")
    with pytest.raises(UnknownReference) as refused:
        catalogue.step_limit("dispatch", "urgent")
    assert refused.value.allowed == ("emergency", "normal")


def test_a_case_may_be_returned_within_two_working_days_and_extended_by_ten() -> None:
    catalogue = default_catalogue()
    calendar = WorkingCalendar()
    assert catalogue.allowances == Allowances(return_within_days=2, extension_up_to_days=10)
    assert catalogue.return_by(MONDAY_9, calendar) == MONDAY_9 + timedelta(days=2)
    assert catalogue.latest_extension(MONDAY_9, calendar) == MONDAY_9 + timedelta(days=14)


def test_a_file_without_steps_or_allowances_has_no_steps_and_the_default_allowances(tmp_path: Path) -> None:
    path = tmp_path / "categories.toml"
    path.write_text(GOOD_FILE, encoding="utf-8")
    catalogue = Catalogue.load(path)
    assert dict(catalogue.steps) == {}
    assert catalogue.allowances == Allowances()
    with pytest.raises(UnknownReference, match="unknown step 'dispatch'"):
        catalogue.step_limit("dispatch", "normal")


def test_a_file_with_steps_and_a_category_in_working_days_loads(tmp_path: Path) -> None:
    path = tmp_path / "categories.toml"
    path.write_text(GOOD_FILE.replace("time_limit_hours = 40", "time_limit_days = 5") + STEPS, encoding="utf-8")
    catalogue = Catalogue.load(path)
    dispute = catalogue.category("S0101")
    assert (dispute.time_limit_hours, dispute.time_limit_days, dispute.key) == (None, 5, False)
    assert catalogue.deadline("S0101", MONDAY_9, WorkingCalendar()) == MONDAY_9 + timedelta(days=7)
    assert catalogue.step_limit("verify", "normal", rural=True) == timedelta(hours=2)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("normal_minutes = 30", "normal_minutes = 0", "[[step]] #1 ('dispatch'): normal_minutes must be a positive"),
        ("rural_minutes = 120", "rural_minutes = 1.5", "[[step]] #2 ('verify'): rural_minutes must be a positive"),
        ("emergency_minutes = 10\n", "", "[[step]] #1 ('dispatch'): emergency_minutes must be a positive"),
        ('name = "verify"', 'name = "dispatch"', "[[step]] #2 ('dispatch'): duplicate step name"),
        ('name = "verify"', 'name = "verify"\nhours = 1', "unknown field(s) ['hours']; allowed: ['name'"),
        ("return_within_days = 2", "return_within_days = -2", "[allowances]: return_within_days must be a positive"),
        ("return_within_days = 2", "return_days = 2", "[allowances]: unknown field(s) ['return_days']"),
    ],
)
def test_a_malformed_step_or_allowance_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(GOOD_FILE + STEPS.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        Catalogue.load(path)
    assert str(path) in str(refused.value)
    assert complaint in str(refused.value)


def test_a_category_holds_exactly_one_kind_of_time_limit() -> None:
    with pytest.raises(ValueError, match="exactly one of time_limit_hours and time_limit_days"):
        Category("E0101", "event", "市容环境", "暴露垃圾", "Exposed rubbish", "normal", None, "chengguan")
    with pytest.raises(ValueError, match="exactly one"):
        Category("E0101", "event", "市容环境", "暴露垃圾", "Exposed rubbish", "normal", 4.0, "chengguan", (), 1)
