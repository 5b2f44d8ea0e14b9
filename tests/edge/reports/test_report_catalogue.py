"""The report item catalogue: its data, LOINC check digits, and name matching with OCR confusions."""

from __future__ import annotations

import pytest

from edge.reports.catalogue import (
    LOCAL_CODE,
    CatalogueError,
    load_catalogue,
    loinc_check_digit,
    name_variants,
    parse_catalogue,
    valid_loinc,
)


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def test_shipped_catalogue_covers_the_report_kinds(cat) -> None:
    assert len(cat.items) >= 40
    codes = {i.code for i in cat.items}
    # blood count, liver/kidney, glucose/OGTT, thyroid, coagulation, urine, infection, obstetric ultrasound
    assert {"718-7", "777-3", "6690-2", "1742-6", "1920-8", "14682-9", "14771-0", "1507-3", "14995-5", "3016-3",
            "5902-2", "3255-7", "20454-5", "25428-4", "5196-1", "56888-1", "22587-0", "16128-1", "11820-8",
            "11984-2", "11979-2", "11963-6", "11627-7", "11832-3", "11948-7", "11995-8"} <= codes
    assert all(valid_loinc(c) or LOCAL_CODE.fullmatch(c) for c in codes)
    assert {c for c in codes if not valid_loinc(c)} == {"ehc:placenta-grade", "ehc:nuchal-cord"}
    assert {"cbc", "biochemistry", "ogtt", "obstetric_ultrasound", "urine", "infection", "summary"} <= set(cat.kinds)
    for kind in cat.kinds.values():
        for alternatives in kind.required:
            assert all(cat.get(code) is not None for code in alternatives)


def test_every_quantity_has_a_unit_and_sane_ranges(cat) -> None:
    for item in cat.items:
        if item.type != "quantity":
            continue
        if item.ref_low is not None and item.ref_high is not None:
            assert item.ref_low < item.ref_high, item.code
        if item.plausible and item.ref_high is not None:
            assert item.plausible[0] <= item.ref_high <= item.plausible[1], item.code


@pytest.mark.parametrize("code, ok", [("718-7", True), ("2345-7", True), ("11820-8", True), ("11820-4", False),
                                      ("718", False), ("abc-1", False)])
def test_loinc_check_digit(code: str, ok: bool) -> None:
    assert valid_loinc(code) is ok
    assert loinc_check_digit("777") == 3


@pytest.mark.parametrize("printed, code", [
    ("血红蛋白", "718-7"), ("HGB", "718-7"), ("hb", "718-7"), ("*血红蛋白(HGB)", "718-7"), ("3.血红蛋白", "718-7"),
    ("ＨＧＢ", "718-7"), ("谷丙转氨酶", "1742-6"), ("丙氨酸氨基转移酶(ALT)", "1742-6"), ("AST", "1920-8"),
    ("血小板计数 PLT", "777-3"), ("羊水指数(AFI)", "11627-7"), ("最大羊水池深度", "11832-3"), ("胎心率", "11948-7"),
    ("梅毒螺旋体抗体", "22587-0"), ("乙肝表面抗原(HBsAg)", "5196-1"), ("餐后1小时血糖", "1507-3"),
])
def test_exact_names_aliases_and_abbreviations(cat, printed: str, code: str) -> None:
    m = cat.match(printed)
    assert m is not None and m.item.code == code and m.method == "exact"


@pytest.mark.parametrize("printed, code", [
    ("谷两转氨酶", "1742-6"),   # 丙 read as 两
    ("谷两", "1742-6"),
    ("血小扳计数", "777-3"),     # 板 → 扳
    ("肌酊", "14682-9"),         # 酐 → 酊
    ("双顶经", "11820-8"),       # 径 → 经
    ("总胆红索", "14631-6"),     # 素 → 索
])
def test_ocr_confusions_are_corrected(cat, printed: str, code: str) -> None:
    m = cat.match(printed)
    assert m is not None and m.item.code == code and m.method == "ocr" and m.score < 1


def test_fuzzy_match_when_a_character_is_lost(cat) -> None:
    m = cat.match("丙氨酸氨基转移")
    assert m is not None and m.item.code == "1742-6" and m.method == "fuzzy"


def test_ambiguous_names_give_no_match(cat) -> None:
    assert cat.match("谷x转氨酶") is None   # 谷丙 (ALT) or 谷草 (AST): one unknown character, no guess
    assert cat.match("TP") is None          # 总蛋白 or 梅毒螺旋体抗体
    assert cat.match("葡萄糖") is None       # blood or urine glucose


def test_report_kind_settles_an_ambiguity(cat) -> None:
    assert cat.match("TP", kind="biochemistry").item.code == "2885-2"
    assert cat.match("TP", kind="infection").item.code == "22587-0"
    assert cat.match("葡萄糖", kind="urine").item.code == "25428-4"
    assert cat.match("白细胞", kind="cbc").item.code == "6690-2"


def test_abbreviations_are_never_fuzzy(cat) -> None:
    assert cat.match("ALX") is None
    assert cat.match("AS") is None
    assert cat.match("完全无关的文字") is None


def test_name_variants_split_parentheses() -> None:
    assert name_variants("  1. 丙氨酸氨基转移酶（ALT） ") == ["丙氨酸氨基转移酶(alt)", "丙氨酸氨基转移酶", "alt"]


def test_title_names_the_kind(cat) -> None:
    assert cat.find_kind("XX医院 血常规检验报告单") == "cbc"
    assert cat.find_kind("口服葡萄糖耐量试验(OGTT)") == "ogtt"
    assert cat.find_kind("产科超声检查报告") == "obstetric_ultrasound"
    assert cat.find_kind("出院小结") == "summary"
    assert cat.find_kind("检验报告") is None


def _one(**over):
    item = {"code": "718-7", "name": "血红蛋白", "en": "Hemoglobin", "unit": "g/L", "kinds": ["cbc"]}
    item.update(over)
    return {"kind": {"cbc": {"name": "血常规", "titles": ["血常规"], "required": ["718-7"]}}, "item": [item]}


@pytest.mark.parametrize("data, message", [
    (_one(code="718-8"), "check digit"),
    (_one(colour="red"), "unknown key"),
    (_one(kinds=["nope"]), "unknown kind"),
    (_one(type="number"), "type must be"),
    (_one(plausible=[5, 1]), "plausible"),
    (_one(units={"g/dL": 0}), "positive"),
    ({"item": [_one()["item"][0], _one()["item"][0]]}, "duplicate code"),
    ({"kind": {"cbc": {"required": ["777-3"]}}, "item": []}, "not an item"),
])
def test_malformed_catalogue_is_refused(data, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(data, "test.toml")
