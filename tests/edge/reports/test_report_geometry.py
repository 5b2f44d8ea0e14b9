"""Structuring from text lines: each layout rule of edge/reports/geometry.py and edge/reports/anchored.py on
text lines built here (boxes and character positions as a recogniser gives them)."""

from __future__ import annotations

import math
import unicodedata

import pytest

from edge.reports.anchored import cell_kind, tokens
from edge.reports.catalogue import load_catalogue
from edge.reports.geometry import build_page_from_lines, column_lean, cut_line, group_rows
from edge.reports.model import Report
from edge.reports.page import Box, TextLine
from edge.reports.publish import summary_fields
from edge.reports.structure import structure, structure_pages

H = 28  # text height in pixels


def _w(ch: str) -> float:
    return H if unicodedata.east_asian_width(ch) in ("W", "F") else 0.55 * H


def tl(text: str, x: float, y: float, conf: float = 0.96, chars: bool = True, skew: float = 0.0) -> TextLine:
    """A text line starting at (x, y); ``skew`` degrees turn the page about its top left corner."""
    xs, at = [], x
    for ch in text:
        xs.append(at + _w(ch) / 2)
        at += _w(ch)
    dy = math.tan(math.radians(skew)) * x
    return TextLine(text, conf, Box(int(x), int(y + dy), int(at - x), H), char_x=tuple(xs) if chars else ())


def read(lines: list[TextLine], **kw) -> Report:
    cat = load_catalogue()
    return structure(build_page_from_lines(lines, 1240, 1754, cell_kind(cat)), **kw)


def items(report: Report) -> dict[str, dict]:
    return {i["code"]: i for i in report.to_json()["items"]}


def table(rows: list[list[str]], xs: list[int], y0: int = 300, pitch: int = 44, skew: float = 0.0,
          title: str = "血常规检验报告单") -> list[TextLine]:
    out = [tl(title, 420, 60)]
    for r, row in enumerate(rows):
        for text, x in zip(row, xs):
            if text:
                out.append(tl(text, x, y0 + r * pitch, skew=skew))
    return out


CBC = [["白细胞计数", "11.2", "↑", "10^9/L", "3.5-9.5"],
       ["红细胞计数", "3.62", "↓", "10^12/L", "3.8-5.1"],
       ["血红蛋白", "98", "↓", "g/L", "115-150"],
       ["血小板计数", "210", "", "10^9/L", "125-350"]]
XS = [80, 420, 560, 640, 860]


def test_rows_and_columns_without_a_header() -> None:
    got = items(read(table(CBC, XS)))
    assert got["6690-2"]["value"] == 11.2 and got["6690-2"]["flag"] == "H"
    assert got["789-8"]["value"] == 3.62 and got["789-8"]["flag"] == "L"
    assert got["718-7"]["value"] == 98.0 and got["777-3"]["value"] == 210.0 and got["777-3"]["flag"] == "N"
    assert got["6690-2"]["source"].startswith("白细胞计数") and "3.5-9.5" in got["6690-2"]["source"]


@pytest.mark.parametrize("skew", [-2.0, 1.5, 2.5])
def test_rows_survive_residual_skew(skew: float) -> None:
    got = items(read(table(CBC, XS, skew=skew)))
    assert {c: got[c]["value"] for c in got} == {"6690-2": 11.2, "789-8": 3.62, "718-7": 98.0, "777-3": 210.0}


def test_header_in_english_or_none_gives_the_same_items() -> None:
    english = [["Item 项目", "Result", "Flag", "Unit", "Reference"], *CBC]
    chinese = [["项目", "结果", "提示", "单位", "参考范围"], *CBC]
    for rows in (english, chinese, CBC):
        assert {c: i["value"] for c, i in items(read(table(rows, XS))).items()} == \
            {"6690-2": 11.2, "789-8": 3.62, "718-7": 98.0, "777-3": 210.0}


def test_columns_in_another_order_and_flag_in_any_column() -> None:
    rows = [["白细胞计数", "H", "10^9/L", "11.2", "3.5-9.5"],
            ["血红蛋白", "", "g/L", "98 ↓", "115-150"]]
    got = items(read(table(rows, [60, 400, 560, 760, 900])))
    assert got["6690-2"]["value"] == 11.2 and got["6690-2"]["ref"]["low"] == 3.5
    assert got["718-7"]["value"] == 98.0 and got["718-7"]["flag"] == "L"
    assert got["718-7"]["printed"]["flag"] == "L" and got["6690-2"]["printed"]["flag"] == "H"


def test_twin_and_triple_tables_side_by_side() -> None:
    twin = [["白细胞计数", "5.6", "3.5-9.5", "血红蛋白", "128", "115-150"],
            ["红细胞计数", "4.1", "3.8-5.1", "血小板计数", "", "125-350"],
            ["红细胞压积", "38.0", "35-45", "平均红细胞体积", "90.1", "82-100"]]
    got = items(read(table(twin, [40, 300, 400, 640, 900, 1000])))
    assert got["6690-2"]["value"] == 5.6 and got["718-7"]["value"] == 128.0 and got["787-2"]["value"] == 90.1
    assert "777-3" not in got  # no value printed: no item, and nothing borrowed from a neighbour
    triple = [["白细胞计数", "5.6", "3.5-9.5", "血红蛋白", "128", "115-150", "总蛋白", "70.1", "65-85"],
              ["红细胞计数", "4.1", "3.8-5.1", "血小板计数", "200", "125-350", "白蛋白", "41.0", "40-55"]]
    got = items(read(table(triple, [20, 170, 240, 420, 560, 630, 820, 960, 1040])))
    assert {c: i["value"] for c, i in got.items()} == {"6690-2": 5.6, "718-7": 128.0, "2885-2": 70.1,
                                                        "789-8": 4.1, "777-3": 200.0, "1751-7": 41.0}


@pytest.mark.parametrize("name,code", [
    ("白细胞计数(WBC)", "6690-2"), ("单核细胞百分比(MO%)", "5905-5"), ("淋巴细胞#", "731-0"),
    ("中性粒细胞%", "770-8"), ("中性粒细胞绝对值", "751-8"), ("淋巴细胞比率", "736-9"), ("嗜碱性粒细胞%", "706-2"),
    ("Hemoglobin", "718-7"), ("HGB", "718-7"), ("Platelet count", "777-3"), ("White blood cell count", "6690-2"),
])
def test_names_with_abbreviations_suffixes_and_in_english(name: str, code: str) -> None:
    cat = load_catalogue()
    if cat.get(code) is None:
        pytest.skip(f"{code} is not in the catalogue")
    got = items(read(table([[name, "2.50", "", "1.0-100.0"]], [80, 500, 600, 800])))
    assert list(got) == [code] and got[code]["value"] == 2.5


@pytest.mark.parametrize("number", ["10.", "10、", "No.10", "No. 10"])
def test_row_numbers_are_never_values(number: str) -> None:
    rows = [[number, "红细胞压积", "34.7", "%", "35-45"], ["11.", "平均红细胞体积", "", "fL", "82-100"]]
    got = items(read(table(rows, [60, 160, 500, 640, 800])))
    assert got["4544-3"]["value"] == 34.7 and got["4544-3"]["flag"] == "L"
    assert "787-2" not in got  # its value cell is empty; "11." is its row number, not a value
    merged = items(read(table([[f"{number}红细胞压积", "34.7", "%", "35-45"]], [60, 500, 640, 800])))
    assert merged["4544-3"]["value"] == 34.7


def test_a_name_printed_over_two_lines() -> None:
    rows = [["平均红细胞血", "", "", ""], ["红蛋白含量", "29.5", "pg", "27-34"], ["血红蛋白", "128", "g/L", "115-150"]]
    got = items(read(table(rows, [80, 500, 640, 800], pitch=34)))
    assert got["785-6"]["value"] == 29.5 and got["718-7"]["value"] == 128.0


@pytest.mark.parametrize("unit", ["10^9/L", "10~9/L", "×10⁹/L", "10*9/L", "x10^9/L", "G/L"])
def test_units_in_every_spelling(unit: str) -> None:
    got = items(read(table([["白细胞计数", "5.60", unit, "3.5-9.5"]], [80, 500, 640, 860])))
    assert got["6690-2"]["unit"] == "10^9/L" and got["6690-2"]["value"] == 5.6


@pytest.mark.parametrize("ref,value,flag", [("4.0-10.0", "11.0", "H"), ("4.0～10.0", "3.0", "L"),
                                            ("4.0~~10.0", "5.0", "N"), ("<8", "9.1", "H"), ("≤8.0", "7.0", "N")])
def test_ranges_in_every_spelling(ref: str, value: str, flag: str) -> None:
    got = items(read(table([["白细胞计数", value, "10^9/L", ref]], [80, 500, 640, 860])))
    assert got["6690-2"]["flag"] == flag


def test_bounds_in_the_result_column_stay_values() -> None:
    rows = [["乙肝表面抗原", "<0.05", "IU/mL", "<0.05"], ["乙肝e抗原", "0.32", "S/CO", "<1.0"],
            ["丙肝抗体", "<0.02", "S/CO", "<1.0"]]
    got = items(read(table(rows, [80, 500, 640, 800], title="传染病筛查报告")))
    assert got["5196-1"]["printed"]["value"] == "<0.05" and got["16128-1"]["printed"]["value"] == "<0.02"


def test_qualitative_value_and_range() -> None:
    rows = [["乙肝表面抗原", "阴性", "阴性"], ["梅毒螺旋体抗体", "阳性", "阴性"]]
    got = items(read(table(rows, [80, 500, 800], title="传染病筛查报告")))
    assert got["5196-1"]["flag"] == "NEG" and got["22587-0"]["flag"] == "POS"


@pytest.mark.parametrize("cell", ["11.2↑ (3.5-9.5)", "11.2 ↑ 3.5-9.5", "11.2H 3.5～9.5"])
def test_value_and_range_in_one_cell(cell: str) -> None:
    got = items(read(table([["白细胞计数", cell, "10^9/L"]], [80, 500, 860])))
    assert got["6690-2"]["value"] == 11.2 and got["6690-2"]["ref"]["high"] == 9.5 and got["6690-2"]["flag"] == "H"


@pytest.mark.parametrize("chars", [True, False])
def test_dotted_leaders(chars: bool) -> None:
    lines = [tl("血常规检验报告单", 420, 60),
             tl("白细胞计数(WBC)..............11.2 ↑", 80, 300, chars=chars), tl("10^9/L", 640, 300),
             tl("3.5-9.5", 860, 300),
             tl("血红蛋白 · · · · · · · · · 128", 80, 344, chars=chars), tl("g/L", 640, 344), tl("115-150", 860, 344)]
    got = items(read(lines))
    assert got["6690-2"]["value"] == 11.2 and got["6690-2"]["flag"] == "H" and got["718-7"]["value"] == 128.0


def test_a_line_across_two_cells_is_cut_at_the_gap() -> None:
    line = TextLine("白细胞计数 5.6", 0.9, Box(80, 300, 500, H),
                    char_x=tuple([94 + 28 * i for i in range(5)] + [400, 540, 548, 556]))
    pieces = cut_line(line, H)
    assert [p.text for p in pieces] == ["白细胞计数", "5.6"]
    assert pieces[1].box.x > pieces[0].box.x + pieces[0].box.w


def test_tokens() -> None:
    assert tokens("5.31↑  10~12/L  3.80--5.10") == [("number", "5.31"), ("flag", "↑"), ("unit", "10~12/L"),
                                                    ("range", "3.80--5.10")]
    assert tokens("<0.5 阴性") == [("bound", "<0.5"), ("qual", "阴性")]


ULTRASOUND_PROSE = ("超声所见：宫内可见一胎儿，胎位：头位。双顶径(BPD)约8.6cm，头围(HC)约33.3cm，腹围(AC)约32.1cm，"
                    "股骨长(FL)约6.8cm，估计胎儿体重约3150g。胎心率约172次/分，律齐。胎盘位于子宫后壁，成熟度II级。"
                    "羊水最大深度约1.8cm。胎儿颈部可见脐带绕颈一周。")


def _prose(text: str, width: int = 34, title: str = "产科彩超检查报告单") -> list[TextLine]:
    out = [tl(title, 420, 60)]
    for k in range(0, len(text), width):
        out.append(tl(text[k:k + width], 100, 300 + (k // width) * 48))
    return out


def test_ultrasound_prose_measurements_and_findings() -> None:
    r = read(_prose(ULTRASOUND_PROSE + "超声提示：宫内妊娠，单活胎，如孕35+2周。"))
    got = items(r)
    assert got["11820-8"]["value"] == 86.0 and got["11820-8"]["printed"]["value"] == "8.6"  # cm → mm
    assert got["11984-2"]["value"] == 333.0 and got["11979-2"]["value"] == 321.0 and got["11963-6"]["value"] == 68.0
    assert got["11727-5"]["value"] == 3150.0 and got["11948-7"]["value"] == 172.0
    assert got["11832-3"]["value"] == 1.8
    assert got["11995-8"]["value"] == "后壁" and got["ehc:placenta-grade"]["value"] == "II"
    assert got["ehc:nuchal-cord"]["value"] == "1周" and got["11875-2"]["value"] == "头位"
    assert got["18185-9"]["value"] == pytest.approx(35.29) and r.facts.gestational_weeks == pytest.approx(35.29)
    assert "双顶径(BPD)约8.6cm" in got["11820-8"]["source"]
    assert r.kind == "obstetric_ultrasound" and r.missing == ()
    # the prose figures drive the grade: fetal tachycardia and oligohydramnios (DVP ≤ 2)
    fired = {f.id for f in r.risk.rules}
    assert any("fhr" in f for f in fired) and any("dvp" in f or "oligo" in f for f in fired), fired


def test_prose_never_makes_up_an_item() -> None:
    got = items(read(_prose("羊水透声好，未见脐带绕颈。胎心搏动规律。胎盘成熟度待定。D-二聚体未查。宫内孕2+1周。")))
    assert set(got) == {"ehc:nuchal-cord"} and got["ehc:nuchal-cord"]["value"] == "未见"


def test_discharge_diagnoses_are_text_items_and_grade_the_risk() -> None:
    lines = [tl("出院记录", 500, 60), tl("入院情况：孕妇因停经38+2周入院，血红蛋白98g/L。", 80, 200),
             tl("出院诊断：", 80, 300), tl("1. 宫内孕38+2周 G2P1 已产", 100, 348), tl("2. 妊娠期糖尿病", 100, 396),
             tl("3. 瘢痕子宫", 100, 444), tl("出院医嘱：产后42天复查。", 80, 540)]
    r = read(lines)
    got = r.to_json()["items"]
    dx = [i["value"] for i in got if i["code"] == "11535-2"]
    assert dx == ["宫内孕38+2周 G2P1 已产", "妊娠期糖尿病", "瘢痕子宫"]
    assert {i["code"]: i["value"] for i in got if i["code"] != "11535-2"} == {"718-7": 98.0}
    assert r.kind == "summary" and {"kw_gdm", "kw_scar_uterus"} <= {f.id for f in r.risk.rules}


def test_an_item_absent_from_the_page_is_never_reported() -> None:
    rows = [*CBC, ["D-二聚体", "", "", "", "<0.5"], ["凝血酶原时间", "", "", "s", "11-14"]]
    got = items(read(table(rows, XS)))
    assert set(got) == {"6690-2", "789-8", "718-7", "777-3"}


def test_low_confidence_items_are_marked_for_a_person() -> None:
    lines = table(CBC, XS)
    lines = [ln if not ln.text.startswith("98") else TextLine(ln.text, 0.4, ln.box, char_x=ln.char_x) for ln in lines]
    r = read(lines)
    got = items(r)
    assert got["718-7"]["review"] is True and got["6690-2"]["review"] is False
    assert got["718-7"]["confidence"] < 0.6
    assert any(c.kind == "low_confidence" and c.code == "718-7" for c in r.checks)
    assert summary_fields(r)["review"] == [{"name": "血红蛋白 98"}]


def test_fuzzy_names_are_marked_for_a_person() -> None:
    got = items(read(table([["血小版计数", "210", "10^9/L", "125-350"]], [80, 500, 640, 860])))
    assert got["777-3"]["review"] is True and got["777-3"]["match"] == "fuzzy"


def test_several_pages_of_one_report() -> None:
    cat = load_catalogue()
    first = build_page_from_lines(table(CBC[:2], XS), 1240, 1754, cell_kind(cat))
    second = build_page_from_lines([tl(r[0], 80, 120 + 44 * k) for k, r in enumerate(CBC[2:])] +
                                   [tl(r[1], 420, 120 + 44 * k) for k, r in enumerate(CBC[2:])] +
                                   [tl(r[4], 860, 120 + 44 * k) for k, r in enumerate(CBC[2:])] +
                                   [tl("第2页 共2页", 560, 1700)], 1240, 1754, cell_kind(cat))
    r = structure_pages([first, second])
    assert r.kind == "cbc" and {i.code for i in r.items} == {"6690-2", "789-8", "718-7", "777-3"}
    assert r.missing == () and r.item("718-7").flag == "L"


def test_prose_names_with_look_alike_characters() -> None:
    got = items(read(_prose("双顶径(BPD)约7.3cm，头固(HC)约29.4cm，腹国约23.6cm。")))
    assert got["11984-2"]["value"] == 294.0 and got["11820-8"]["value"] == 73.0
    assert "11979-2" not in got  # 国 is no look-alike of 围: no name, no item


@pytest.mark.parametrize("printed,grade", [("II", "II"), ("Ⅱ", "II"), ("ll", "II"), ("I|", "II"), ("3", "III"), ("川", "III"),
                                           ("0", "0"), ("I", "I")])
def test_placenta_grade_as_a_recogniser_reads_it(printed: str, grade: str) -> None:
    got = items(read(_prose(f"胎盘位于子宫前壁，成熟度{printed}级。")))
    assert got["ehc:placenta-grade"]["value"] == grade


def test_a_name_keeping_only_the_first_dots_of_its_leader() -> None:
    """The detector often keeps a name and the first few dots of its leader, and the recogniser reads a
    round dot as ``o`` or a stop as a comma now and then."""
    rows = [["钾。。", "5.18", "mmol/L", "3.50~5.30"], ["氯。", "99.8", "mmol/L", "99.0~110.0"],
            ["肌酐 · ·", "89", "μmol/L", "41~73"], ["中性粒细胞数。o", "5.38", "10^9/L", "1.80~6.30"],
            ["y-谷氨酰转移酶,", "60", "U/L", "7~45"], ["嗜酸性粒细胞% .：·：", "2.0", "%", "0.4~8.0"],
            ["单核细胞比率。α", "9.3", "%", "3.0~10.0"], ["钙-", "2.48", "mmol/L", "2.11~2.52"]]
    got = items(read(table(rows, [80, 620, 800, 980])))
    assert {c: got[c]["value"] for c in got} == {"2823-3": 5.18, "2075-0": 99.8, "14682-9": 89.0, "751-8": 5.38,
                                                 "2324-2": 60.0, "713-8": 2.0, "5905-5": 9.3, "2000-8": 2.48}


def test_stray_leader_dots_and_specks_neither_split_a_row_nor_become_values() -> None:
    lines = table([["谷丙转氨酶", "12", "U/L", "7~40"], ["谷草转氨酶", "26", "U/L", "13~35"],
                   ["碱性磷酸酶", "64", "U/L", "35~100"]], [80, 620, 800, 980])
    lines.append(TextLine("··", 0.48, Box(230, 312, 46, 18)))               # dots found apart, over the name
    lines.append(TextLine("0", 0.59, Box(560, 398, 19, 12), char_x=(569.5,)))  # a dot read as a digit
    got = items(read(lines))
    assert {c: got[c]["value"] for c in got} == {"1742-6": 12.0, "1920-8": 26.0, "6768-6": 64.0}


LEAN_ROWS = [["白细胞计数", "9.01", "10^9/L", "3.50~9.50"], ["中性粒细胞百分比", "58.3", "%", "40.0~75.0"],
             ["淋巴细胞%", "40.8", "%", "20.0~50.0"], ["单核细胞百分比", "4.5", "%", "3.0~10.0"],
             ["红细胞数", "4.54", "x10^12/L", "3.80~5.10"], ["血红蛋白(HGB)", "140", "g/L", "115~150"],
             ["红细胞压积", "40.6", "%", "35.0~45.0"], ["平均红细胞体积", "92.9", "fL", "82.0~100.0"],
             ["红细胞分布宽度", "16.0 ↑", "%", "11.5~14.5"], ["血小板计数", "215", "10^9/L", "125~350"],
             ["嗜酸性粒细胞百分比", "6.9", "%", "0.4~8.0"], ["中性粒细胞绝对值", "5.90", "10~9/L", "1.80~6.30"],
             ["淋巴细胞绝对值", "3.03", "x10^9/L", "1.10~3.20"], ["平均红细胞血红蛋白含量", "33.3", "pg", "27.0~34.0"],
             ["平均红细胞血红蛋白浓度", "319", "g/L", "316~354"], ["平均血小板体积", "8.1", "fL", "7.4~10.4"],
             ["血小板压积", "0.17", "%", "0.11~0.28"]]


def _leaning(rows: list[list[str]], lean: float) -> list[TextLine]:
    """A table whose columns drift ``lean`` pixels sideways per pixel down (rows level), patient lines above."""
    out = [tl("血常规检验报告", 420, 60), tl("姓名: 郭某梅", 80, 190), tl("性别: 女", 380, 190),
           tl("年龄: 22岁", 700, 190), tl("标本号: 829810", 1000, 190)]
    for r, row in enumerate(rows):
        y = 240 + r * 56
        for text, x in zip(row, [80, 470, 590, 760]):
            out.append(tl(text, x + lean * (y - 240), y))
    return out


@pytest.mark.parametrize("lean", [0.0, 0.05, 0.09, -0.07])
def test_columns_that_lean_still_give_one_value_per_name(lean: float) -> None:
    """A page corrected from a wrong corner keeps its rows level but leans its columns: ~90 px of drift
    over a table, more than the gutter between the value and unit columns."""
    page = build_page_from_lines(_leaning(LEAN_ROWS, lean), 1240, 1754, cell_kind(load_catalogue()))
    body = [r for t in page.tables for r in t.rows if r.cells[0].text in {row[0] for row in LEAN_ROWS}]
    assert len(body) == len(LEAN_ROWS)
    assert all([c.col for c in r.cells] == [0, 1, 2, 3] for r in body)  # four printed columns, four found
    got = items(read(_leaning(LEAN_ROWS, lean)))
    assert len(got) == len(LEAN_ROWS)
    assert got["6690-2"]["value"] == 9.01 and got["777-3"]["value"] == 215.0 and got["788-0"]["flag"] == "H"
    assert got["718-7"]["region"][0] < 520  # cells keep their place on the page


def test_column_lean_is_found_and_none_on_a_level_table() -> None:
    def lean_of(lines: list[TextLine]) -> float:
        pieces = [p for ln in lines[5:] for p in cut_line(ln, H)]
        return column_lean(group_rows(pieces, H), H)

    assert lean_of(_leaning(LEAN_ROWS, 0.0)) == 0.0
    assert lean_of(_leaning(LEAN_ROWS, 0.09)) == pytest.approx(0.09, abs=0.006)


def test_an_abbreviation_whose_letter_o_was_read_as_zero() -> None:
    got = items(read(table([["E0%", "8.5 ↑", "%", "0.4~8.0"], ["RBC", "3.91", "10^12/L", "3.80~5.10"],
                            ["C0", "12", "U/L", "7~40"]], [80, 420, 640, 860])))
    assert got["713-8"]["value"] == 8.5 and got["713-8"]["flag"] == "H" and "789-8" in got
    assert len(got) == 2  # C0 names nothing the catalogue knows, and is not a value either
