"""Task admission (事务准入) and certificate control (万能章治理): Zhongshan's and Shizuishan's figures as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.admission import DUTIES, KINDS, STATUSES, AdmissionCatalogue, packaged
from engine.errors import InvalidCommand, UnknownReference

SMALL_FILE = """
source = "测试街道社区工作事项准入清单"

[[item]]
code = "T001"
duty = "autonomy"
kind = "task"
name = "调解民间纠纷"
name_en = "mediating neighbour disputes"
funded = false
illustrative = true

[[item]]
code = "I001"
duty = "assisting"
kind = "inspection"
name = "消防安全隐患巡查"
name_en = "fire-hazard patrol"
funded = true
illustrative = true

[[refused_example]]
code = "I002"
kind = "inspection"
name = "占道经营巡查"
name_en = "street-vending enforcement patrol"
reason = "城管执法部门的执法职责"
illustrative = true

[[certificate]]
code = "Z001"
status = "abolished"
name = "亲属关系证明"
alternative = "公安机关依户籍信息核查"
illustrative = true

[[certificate]]
code = "Z002"
status = "retained"
name = "居民居住情况证明"
alternative = ""
illustrative = true

[rules]
admitted = "准入清单 {code} {name} ({duty})"
unfunded = "费随事转: {code} 须由{department}转拨经费"
outside = "准入清单之外的事项不得转嫁社区"
abolished = "证明事项清单 {code} {name}: 已取消"
retained = "证明事项清单 {code} {name}: 保留"
transferred = "证明事项清单 {code} {name}: 改由主管部门核查"
"""


@pytest.fixture(scope="module")
def zhongshan() -> AdmissionCatalogue:
    return AdmissionCatalogue.load("zhongshan")


@pytest.fixture(scope="module")
def shizuishan() -> AdmissionCatalogue:
    return AdmissionCatalogue.load("shizuishan")


def _write(tmp_path: Path, text: str, name: str = "street.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_zhongshan_and_shizuishan_are_packaged_and_zhongshan_is_the_default() -> None:
    assert packaged() == ("shizuishan", "zhongshan")
    assert AdmissionCatalogue.load().name == "zhongshan"


def test_zhongshan_examined_50_certificates_abolished_26_and_retained_4(zhongshan: AdmissionCatalogue) -> None:
    counts = zhongshan.counts()
    assert len(zhongshan.certificates) == 50
    assert (counts["abolished"], counts["retained"], counts["transferred"]) == (26, 4, 20)


def test_huayuan_keeps_21_of_33_inspections_and_29_of_40_reports_under_the_admission_rules(
    zhongshan: AdmissionCatalogue,
) -> None:
    counts = zhongshan.counts()
    refused = [e.kind for e in zhongshan.refused_examples.values()]
    assert (counts["inspection"], refused.count("inspection")) == (21, 12)
    assert (counts["report"], refused.count("report")) == (29, 11)
    kept = [i for i in zhongshan.items.values() if i.kind in ("inspection", "report")]
    assert all(zhongshan.admit(i.code, department="东区街道办事处").admitted for i in kept)


def test_shizuishan_lists_6_autonomy_14_assisting_and_4_supervisory_duties(shizuishan: AdmissionCatalogue) -> None:
    counts = shizuishan.counts()
    assert (counts["autonomy"], counts["assisting"], counts["supervisory"]) == (6, 14, 4)
    assert len(shizuishan.items) == 24


def test_shizuishan_abolished_39_certificates_and_kept_a_few(shizuishan: AdmissionCatalogue) -> None:
    counts = shizuishan.counts()
    assert counts["abolished"] == 39
    assert 1 <= counts["retained"] <= 5
    assert counts["transferred"] == 0


def test_counts_name_every_duty_kind_and_status(zhongshan: AdmissionCatalogue) -> None:
    counts = zhongshan.counts()
    assert set(counts) == {*DUTIES, *KINDS, *STATUSES}
    assert sum(counts[d] for d in DUTIES) == sum(counts[k] for k in KINDS) == len(zhongshan.items)


def test_an_item_in_the_catalogue_is_admitted_citing_the_catalogue_and_the_item(
    zhongshan: AdmissionCatalogue,
) -> None:
    decision = zhongshan.admit("I001", department="消防救援大队")
    assert decision.admitted
    assert decision.item is zhongshan.items["I001"]
    assert (
        "社区工作事项准入管理办法" in decision.rule
        and "I001 消防安全隐患巡查" in decision.rule
        and "协助事项" in decision.rule
    )
    assert "费随事转" in decision.reason and "消防救援大队" in decision.reason


def test_work_outside_the_catalogue_is_refused_with_the_rule_not_an_exception(zhongshan: AdmissionCatalogue) -> None:
    decision = zhongshan.admit("T999", department="统计局")
    assert not decision.admitted and decision.item is None
    assert "准入清单之外的事项不得转嫁社区" in decision.rule
    assert "'T999'" in decision.reason and "统计局" in decision.reason


def test_a_missing_item_code_is_refused_like_any_work_outside_the_catalogue(zhongshan: AdmissionCatalogue) -> None:
    decision = zhongshan.admit("", department="统计局")
    assert not decision.admitted and decision.item is None
    assert "准入清单之外" in decision.rule
    assert decision.reason.startswith("no item code given by 统计局")


def test_an_inspection_huayuan_dropped_is_refused_naming_whose_duty_it_is(zhongshan: AdmissionCatalogue) -> None:
    decision = zhongshan.admit("I022", department="城市管理和综合执法局")
    assert not decision.admitted and decision.item is None
    assert "占道经营巡查" in decision.reason and "城管执法部门的执法职责" in decision.reason


@pytest.mark.parametrize("name", ["zhongshan", "shizuishan"])
def test_an_assisting_duty_without_funding_is_refused_citing_funding_follows_the_task(name: str) -> None:
    catalogue = AdmissionCatalogue.load(name)
    unfunded = [i for i in catalogue.items.values() if i.duty == "assisting" and not i.funded]
    assert unfunded
    for item in unfunded:
        decision = catalogue.admit(item.code, department="统计局")
        assert not decision.admitted and decision.item is item
        assert "费随事转" in decision.rule and item.code in decision.rule and "统计局" in decision.rule


def test_an_autonomy_duty_needs_no_funding_from_a_department(zhongshan: AdmissionCatalogue) -> None:
    mediation = zhongshan.items["T004"]
    assert (mediation.duty, mediation.funded) == ("autonomy", False)
    decision = zhongshan.admit("T004", department="司法局")
    assert decision.admitted and "自治事项" in decision.rule


def test_a_push_without_a_department_is_an_invalid_command(zhongshan: AdmissionCatalogue) -> None:
    with pytest.raises(InvalidCommand, match="department: is empty"):
        zhongshan.admit("I001", department=" ")


def test_a_request_for_an_abolished_certificate_is_answered_with_the_rule_and_the_alternative(
    zhongshan: AdmissionCatalogue,
) -> None:
    kinship = zhongshan.certificate("Z001")
    assert (kinship.name, kinship.status) == ("亲属关系证明", "abolished")
    assert "第一批" in kinship.rule and "已取消" in kinship.rule and "Z001 亲属关系证明" in kinship.rule
    assert "公安机关" in kinship.alternative


def test_the_residence_to_shop_certificate_moved_to_market_regulation_as_the_article_says(
    zhongshan: AdmissionCatalogue,
) -> None:
    shop = zhongshan.certificate("Z031")
    assert (shop.name, shop.status, shop.illustrative) == ("住改商证明", "transferred", False)
    assert "街道市场监管分局" in shop.rule and "街道市场监管分局" in shop.alternative


def test_only_names_the_articles_give_are_marked_real(
    zhongshan: AdmissionCatalogue, shizuishan: AdmissionCatalogue
) -> None:
    real = [c.name for c in zhongshan.certificates.values() if not c.illustrative]
    assert real == ["住改商证明"]
    for catalogue in (zhongshan, shizuishan):
        assert all(i.illustrative for i in catalogue.items.values())
        assert all(e.illustrative for e in catalogue.refused_examples.values())


def test_retained_certificates_are_still_stamped_and_others_say_what_to_do_instead(
    zhongshan: AdmissionCatalogue, shizuishan: AdmissionCatalogue
) -> None:
    for catalogue in (zhongshan, shizuishan):
        for certificate in catalogue.certificates.values():
            assert (certificate.status == "retained") == (certificate.alternative == "")
            assert certificate.rule


def test_an_unknown_certificate_is_refused_with_the_known_codes(zhongshan: AdmissionCatalogue) -> None:
    with pytest.raises(UnknownReference) as refused:
        zhongshan.certificate("Z999")
    assert (refused.value.kind, refused.value.value) == ("certificate", "Z999")
    assert refused.value.allowed == tuple(sorted(zhongshan.certificates))
    assert str(refused.value).startswith("unknown certificate 'Z999'; known: Z001, Z002,")
    assert "… and 38 more" in str(refused.value)


def test_an_unknown_catalogue_name_is_refused_with_the_packaged_ones() -> None:
    with pytest.raises(UnknownReference) as refused:
        AdmissionCatalogue.load("wuchang")
    assert refused.value.kind == "admission catalogue"
    assert refused.value.allowed == packaged()


def test_a_missing_catalogue_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ValueError) as refused:
        AdmissionCatalogue.load(str(missing))
    assert str(missing) in str(refused.value) and "shizuishan, zhongshan" in str(refused.value)


def test_a_catalogue_file_loads_with_its_stem_as_name(tmp_path: Path) -> None:
    catalogue = AdmissionCatalogue.load(_write(tmp_path, SMALL_FILE))
    assert catalogue.name == "street"
    assert catalogue.source == "测试街道社区工作事项准入清单"
    assert catalogue.admit("I001", department="消防救援大队").rule == "准入清单 I001 消防安全隐患巡查 (协助事项)"
    assert catalogue.certificate("Z002").rule == "证明事项清单 Z002 居民居住情况证明: 保留"
    assert not catalogue.admit("I002", department="城管局").admitted


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ('duty = "autonomy"', 'duty = "self-rule"', "[[item]] #1 ('T001'): unknown duty 'self-rule'"),
        ('kind = "task"', 'kind = "chore"', "unknown kind 'chore'; allowed: task, inspection, report, service"),
        ('code = "T001"', 'code = "I009"', "code must be 'T' (kind task) + 3 digits"),
        ('code = "I001"', 'code = "T001"\nduty2 = 1', "unknown field(s) ['duty2']"),
        ("funded = true", 'funded = "yes"', "funded must be true or false, got 'yes'"),
        ("funded = false\n", "", "missing field(s) ['funded']"),
        ('status = "abolished"', 'status = "cancelled"', "unknown status 'cancelled'"),
        ('alternative = ""', 'alternative = "到派出所"', "a retained certificate is still stamped"),
        ('alternative = "公安机关依户籍信息核查"', 'alternative = ""', "an abolished certificate needs an alternative"),
        ('code = "Z002"', 'code = "Z001"', "[[certificate]] #2 ('Z001'): duplicate code"),
        ('code = "Z002"', 'code = "C002"', "code must be 'Z' + 3 digits"),
        ('code = "I002"', 'code = "I001"', "the code is an admitted item"),
        ("({duty})", "({grid})", "admitted uses unknown placeholder(s) ['grid']; allowed: {code}, {name}"),
        ("{department}转拨", "{department转拨", "unfunded is not a valid rule text"),
        ('outside = "准入清单之外的事项不得转嫁社区"\n', "", "[rules]: missing field(s) ['outside']"),
        ('source = "测试街道社区工作事项准入清单"', 'source = ""', "source must be a non-empty string"),
        (
            'source = "测试街道社区工作事项准入清单"',
            'source = "x"\nversion = 2',
            "unknown top-level key(s) ['version']",
        ),
        ("[rules]", "[rules", "not valid TOML"),
    ],
)
def test_a_malformed_catalogue_is_refused_naming_the_file_the_entry_and_what_is_allowed(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    text = SMALL_FILE.replace(old, new, 1)
    assert text != SMALL_FILE
    path = _write(tmp_path, text, "broken.toml")
    with pytest.raises(ValueError) as refused:
        AdmissionCatalogue.load(path)
    assert str(path) in str(refused.value)
    assert complaint in str(refused.value)
