"""全县通办: accepted where the resident lives, processed where registered, completed where accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidCommand, UnknownReference
from engine.routing import Area
from engine.tongban import ServiceItem, ServiceItems, TongbanUnits, tongban_units

# The resident lives in 新城镇's 东峰山社区 and is registered (户籍) in a village of another town.
LIVES = Area(grid="140827100001001", community="140827100001", street="140827100", district="140827")
REGISTERED = Area(grid="", community="140827201003", street="140827201", district="140827")

GOOD_FILE = """
[[item]]
code = "TB01"
name = "临时救助"
name_en = "Temporary assistance"
processing_level = "street"
time_limit_days = 10
"""


def _load(tmp_path: Path, text: str) -> ServiceItems:
    path = tmp_path / "tongban.toml"
    path.write_text(text, encoding="utf-8")
    return ServiceItems.load(path)


def _item(level: str) -> ServiceItem:
    return ServiceItem("TB99", "测试事项", "Test item", level, 5, True)


def test_the_packaged_file_holds_yuanqus_fourteen_items() -> None:
    items = ServiceItems.load().items
    assert len(items) == 14
    assert all(code == item.code for code, item in items.items())
    assert {item.processing_level for item in items.values()} <= {"street", "community"}
    assert all(item.time_limit_days > 0 and item.name and item.name_en for item in items.values())


def test_only_the_items_the_article_names_are_not_illustrative() -> None:
    named = {item.name for item in ServiceItems.load().items.values() if not item.illustrative}
    assert len(named) == 3
    assert any("社会救助" in name for name in named)
    assert "临时救助" in named
    assert any("残疾人" in name and "补贴" in name for name in named)


def test_an_unknown_item_is_refused_with_the_known_codes() -> None:
    items = ServiceItems.load()
    with pytest.raises(UnknownReference) as refused:
        items.item("TB15")
    assert refused.value.kind == "service item"
    assert refused.value.allowed == tuple(sorted(items.items))


def test_a_street_item_is_accepted_and_completed_where_the_resident_lives_and_processed_where_registered() -> None:
    units = tongban_units(_item("street"), residence=LIVES, registered=REGISTERED)
    assert units == TongbanUnits(accepting="140827100", processing="140827201", completing="140827100")


def test_a_community_item_is_handled_by_communities_at_both_ends() -> None:
    units = tongban_units(_item("community"), residence=LIVES, registered=REGISTERED)
    assert units == TongbanUnits(accepting="140827100001", processing="140827201003", completing="140827100001")


def test_temporary_assistance_from_the_packaged_file_is_processed_in_the_town_of_registration() -> None:
    temporary = next(i for i in ServiceItems.load().items.values() if i.name == "临时救助")
    assert tongban_units(temporary, residence=LIVES, registered=REGISTERED).processing == "140827201"


def test_a_registration_without_the_needed_level_is_refused() -> None:
    no_street = Area(grid="", community="", street="", district="140827")
    with pytest.raises(InvalidCommand) as refused:
        tongban_units(_item("street"), residence=LIVES, registered=no_street)
    assert refused.value.field == "registered"
    assert "street" in str(refused.value)
    no_community = Area(grid="", community="", street="140827201", district="140827")
    with pytest.raises(InvalidCommand) as refused:
        tongban_units(_item("community"), residence=LIVES, registered=no_community)
    assert refused.value.field == "registered"


def test_a_residence_without_the_needed_level_is_refused() -> None:
    with pytest.raises(InvalidCommand) as refused:
        tongban_units(_item("community"), residence=Area("", "", "140827100", "140827"), registered=REGISTERED)
    assert refused.value.field == "residence"


def test_a_service_item_file_loads_and_items_are_real_unless_marked(tmp_path: Path) -> None:
    items = _load(tmp_path, GOOD_FILE)
    assert items.item("TB01") == ServiceItem("TB01", "临时救助", "Temporary assistance", "street", 10, False)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ('code = "TB01"', 'code = "T1"', "code must be 'TB' + 2 digits"),
        ('processing_level = "street"', 'processing_level = "county"', "unknown processing_level 'county'"),
        ("time_limit_days = 10", "time_limit_days = 0", "time_limit_days must be a positive whole number"),
        ("time_limit_days = 10", "time_limit_days = 2.5", "time_limit_days must be a positive whole number"),
        ('name_en = "Temporary assistance"', "", "field 'name_en' must be a non-empty string"),
        ("time_limit_days = 10", "time_limit_days = 10\nillustrative = 1", "illustrative must be true or false"),
        ("time_limit_days = 10", "time_limit_days = 10\nfee = 0", "unknown field(s) ['fee']"),
        ("[[item]]", "[[items]]", "unknown top-level key(s) ['items']"),
        ("[[item]]", "[[item]", "not valid TOML"),
    ],
)
def test_a_bad_service_item_file_is_refused_naming_the_file_and_what_is_allowed(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    with pytest.raises(ValueError) as refused:
        _load(tmp_path, GOOD_FILE.replace(old, new))
    assert complaint in str(refused.value)
    assert "tongban.toml" in str(refused.value)


def test_a_duplicate_item_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate item code"):
        _load(tmp_path, GOOD_FILE + GOOD_FILE)
