"""structure(): hand-built pages of every layout kind → items, missing items, checks, risk, patient apart."""

from __future__ import annotations

import json
import logging

import pytest

from edge.reports.model import Report
from edge.reports.structure import header_role, structure
from tests.support.report_pages import lines, page, table

PATIENT_LINES = ["姓名: 王丽娜  性别: 女  年龄: 36岁  门诊号: MZ20260302", "孕周: 28+3周  血压 145/92 mmHg",
                 "身高 160cm  体重 70kg"]


def by_code(report: Report) -> dict[str, dict]:
    return {i["code"]: i for i in report.to_json()["items"]}


def rule_ids(report: Report) -> set[str]:
    return {r.id for r in report.risk.rules}


def cbc_ruled(**over) -> Report:
    rows = [
        ["白细胞计数", "WBC", "8.51", None, "×10^9/L", "3.5-9.5"],
        ["红细胞计数", "RBC", "3.62", "↓", "×10^12/L", "3.8-5.1"],
        ["血红蛋白", "HGB", "98", "↓", "g/L", "115-150"],
        ["红细胞压积", "HCT", "30.1", "↓", "%", "35-45"],
        ["平均红细胞血红蛋白浓度", "MCHC", "326", None, "g/L", "316-354"],
        ["血小扳计数", "PLT", "85", "↓", "×10^9/L", "125-350"],   # OCR: 板 read as 扳
        ["中性粒细胞百分比", "NEUT%", "72.0", "↑", "%", "40-75"],   # printed arrow is wrong
    ]
    p = page(["XX市妇幼保健院检验报告单", "血常规（全血细胞分析）", *PATIENT_LINES],
             [table(["项目", "英文缩写", "结果", "提示", "单位", "参考范围"], rows)],
             more_lines=["报告日期：2026-03-02  检验者：李某"])
    return structure(p, **over)


def test_blood_count_with_a_header_row() -> None:
    r = cbc_ruled()
    assert (r.kind, r.title) == ("cbc", "血常规（全血细胞分析）")
    items = by_code(r)
    assert set(items) == {"6690-2", "789-8", "718-7", "4544-3", "786-4", "777-3", "770-8"}
    hb = items["718-7"]
    assert (hb["name"], hb["value"], hb["unit"], hb["flag"], hb["abnormal"]) == ("血红蛋白", 98.0, "g/L", "L", True)
    assert (hb["ref"]["low"], hb["ref"]["high"], hb["ref"]["source"]) == (115.0, 150.0, "report")
    assert hb["region"] == [40, 420, 950, 32] and hb["confidence"] == pytest.approx(0.92)
    plt = items["777-3"]
    assert (plt["name"], plt["value"], plt["unit"], plt["match"]) == ("血小板计数", 85.0, "10^9/L", "ocr")
    assert plt["printed"]["label"] == "血小扳计数" and plt["confidence"] < hb["confidence"]
    assert items["6690-2"]["flag"] == "N" and items["770-8"]["flag"] == "N"
    assert [c.kind for c in r.checks] == ["flag_mismatch"] and r.checks[0].code == "770-8"
    assert r.missing == () and r.report_date == "2026-03-02"


def test_patient_facts_are_apart_from_items_and_drive_the_grade() -> None:
    r = cbc_ruled()
    assert r.patient.name == "王丽娜" and r.patient.age == 36 and r.patient.record_no == "MZ20260302"
    assert (r.facts.systolic, r.facts.diastolic, r.facts.gestational_weeks) == (145, 92, pytest.approx(28.43))
    assert r.facts.bmi == pytest.approx(27.3)
    assert r.risk.colour == "yellow" and r.risk.also is None
    assert rule_ids(r) == {"age_35_or_18", "bmi_25_or_18_5", "bp_140_90", "hb_60_110", "plt_50_100"}
    clear = json.dumps(r.to_json(personal=False), ensure_ascii=False)
    assert "王丽娜" not in clear and "MZ20260302" not in clear and '"age": 36' not in clear
    assert "36岁" not in clear and "年龄: 36" not in clear
    assert "王丽娜" not in json.dumps(r.to_json()["items"], ensure_ascii=False)
    assert r.to_json()["patient"] == {"name": "王丽娜", "sex": "女", "age": 36, "record_no": "MZ20260302"}
    assert "王丽娜" not in repr(r.patient)


def test_patient_argument_overrides_the_header() -> None:
    r = cbc_ruled(patient={"age": 41, "bp": "120/80", "twin": True, "height_cm": 158, "weight_kg": 50})
    assert r.patient.age == 41 and (r.facts.systolic, r.facts.fetuses) == (120, 2)
    assert r.facts.bmi == pytest.approx(20.0)
    assert r.risk.colour == "orange" and {"age_40", "twins"} <= rule_ids(r) and "bp_140_90" not in rule_ids(r)


def test_nothing_personal_is_logged(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="edge.reports"):
        cbc_ruled()
    text = caplog.text
    assert "report structured: kind cbc" in text
    assert "王丽娜" not in text and "MZ20260302" not in text and "36" not in text


def test_blood_count_without_platelets_is_incomplete() -> None:
    p = page(["血常规检验报告"], [table(["检验项目", "结果", "单位", "参考值"], [
        ["白细胞计数(WBC)", "6.2", "10^9/L", "3.5-9.5"], ["红细胞计数(RBC)", "4.1", "10^12/L", "3.8-5.1"],
        ["血红蛋白(HGB)", "121", "g/L", "115-150"]])])
    r = structure(p)
    assert [m.code for m in r.missing] == ["777-3"] and r.to_json()["missing"][0]["name"] == "血小板计数"
    assert r.risk.colour == "green"


def test_plain_layout_name_with_abbreviation_and_letter_flags() -> None:
    p = page(["肝功能检验报告"], [table(["项目名称", "结果", "标志", "单位", "参考区间"], [
        ["谷两转氨酶(ALT)", "56", "H", "U/L", "7~40"], ["谷草转氨酶(AST)", "30", None, "U/L", "13~35"],
        ["总胆红素(TBIL)", "12.1", None, "μmol/L", "0.0--21.0"], ["直接胆红素(DBIL)", "15.2", "H", "μmol/L", "0.0--6.8"],
        ["总蛋白(TP)", "66.0", None, "g/L", "65.0-85.0"], ["钾(K)", "4.10", None, "mmol/L", "3.50-5.30"]])])
    r = structure(p)
    items = by_code(r)
    assert r.kind == "biochemistry"
    assert items["1742-6"]["flag"] == "H" and items["1742-6"]["name"] == "丙氨酸氨基转移酶"
    assert items["2885-2"]["name"] == "总蛋白" and items["2823-3"]["value"] == 4.1
    assert ("inconsistent", "14629-0") in {(c.kind, c.code) for c in r.checks}


def test_two_blocks_side_by_side() -> None:
    p = page(["血常规"], [table(["项目", "结果", "单位", "参考范围", "项目", "结果", "单位", "参考范围"], [
        ["WBC 白细胞计数", "5.1", "10^9/L", "3.5-9.5", "PLT 血小板计数", "45", "10^9/L", "125-350"],
        ["RBC 红细胞计数", "4.0", "10^12/L", "3.8-5.1", "HGB 血红蛋白", "130", "g/L", "115-150"]])])
    r = structure(p)
    items = by_code(r)
    assert set(items) == {"6690-2", "777-3", "789-8", "718-7"}
    assert items["777-3"]["value"] == 45.0 and items["777-3"]["region"][0] == 40 + 4 * 160
    assert r.risk.colour == "orange" and rule_ids(r) == {"plt_30_50"}


def test_roles_are_inferred_when_the_table_has_no_header() -> None:
    p = page(["尿常规检查报告"], [table(None, [
        ["尿蛋白", "PRO", "++", "阴性"], ["葡萄糖", "GLU", "阴性", "阴性"], ["酮体", "KET", "-", "阴性"],
        ["比重", "SG", "1.020", "1.003-1.030"]])], more_lines=["血压 150/100mmHg"])
    r = structure(p)
    items = by_code(r)
    assert r.kind == "urine"
    assert (items["20454-5"]["value"], items["20454-5"]["flag"], items["20454-5"]["ref"]["source"]) == \
           ("++", "POS", "report")
    assert items["25428-4"]["flag"] == "NEG"           # 葡萄糖 in a urine report is urine glucose
    assert items["5811-5"]["value"] == pytest.approx(1.02) and items["5811-5"]["flag"] == "N"
    assert rule_ids(r) == {"bp_140_90"}


def test_header_titles_give_roles() -> None:
    assert [header_role(t) for t in ("序号", "检验项目", "英文缩写", "结果", "结果提示", "单位", "参考范围", "备注")] == \
           ["index", "name", "abbr", "value", "flag", "unit", "ref", None]


def test_ogtt_gestational_diabetes() -> None:
    p = page(["口服葡萄糖耐量试验(OGTT)报告", "年龄：29岁  孕周：25周"], [table(["检验项目", "结果", "单位", "参考值"], [
        ["空腹血糖", "5.3", "mmol/L", "<5.1"], ["服糖后1小时", "9.8", "mmol/L", "<10.0"],
        ["餐后2小时血糖", "153", "mg/dL", "<153"]])])
    r = structure(p)
    items = by_code(r)
    assert r.kind == "ogtt" and r.missing == ()
    assert [items[c]["flag"] for c in ("14771-0", "1507-3")] == ["H", "N"]
    assert items["14995-5"]["value"] == pytest.approx(8.49, abs=0.01) and items["14995-5"]["flag"] == "H"
    assert rule_ids(r) == {"ogtt_gdm"} and r.risk.colour == "yellow"


def test_obstetric_ultrasound_narrative() -> None:
    p = page(["产科超声检查报告", "孕周: 37+1周"], more_lines=[
        "双顶径(BPD)：9.2cm，头围(HC)：32.5cm，腹围(AC)：31.0cm，股骨长(FL)：7.1cm",
        "胎心率：142次/分，律齐", "羊水指数：AFI 4.6cm，最大羊水池深度 2.1cm",
        "胎盘：位于子宫后壁，成熟度Ⅱ级，下缘覆盖宫颈内口",
        "超声提示：宫内妊娠，单活胎，臀位，羊水过少，前置胎盘"], more_y=200)
    r = structure(p)
    items = by_code(r)
    assert r.kind == "obstetric_ultrasound" and r.missing == ()
    assert (items["11820-8"]["value"], items["11820-8"]["unit"]) == (92.0, "mm")
    assert (items["11948-7"]["value"], items["11948-7"]["unit"], items["11948-7"]["flag"]) == (142.0, "bpm", "N")
    assert (items["11627-7"]["value"], items["11627-7"]["flag"]) == (4.6, "L")
    assert items["11995-8"]["value"].startswith("位于子宫后壁") and items["11995-8"]["flag"] is None
    assert items["11820-8"]["region"] == [40, 200, 1000, 32]
    assert rule_ids(r) == {"afi_oligo", "kw_malpresentation", "kw_oligohydramnios", "kw_placenta_previa"}
    assert r.facts.fetuses == 1


def test_ultrasound_without_heart_rate_or_fluid_is_incomplete_and_twins_are_seen() -> None:
    p = page(["产科彩超报告单"], more_lines=["双顶径 BPD 85mm  股骨长 FL 66mm", "超声提示：宫内妊娠，双活胎"],
             more_y=200)
    r = structure(p)
    assert {m.code for m in r.missing} == {"11948-7", "11627-7"}
    assert r.to_json()["missing"][1]["alternatives"] == ["11832-3"]
    assert r.facts.fetuses == 2 and {"twins", "kw_twins"} <= rule_ids(r)


def test_infection_panel_is_purple_alongside() -> None:
    p = page(["感染性疾病筛查报告"], [table(["项目", "结果", "参考范围", "项目", "结果", "参考范围"], [
        ["乙肝表面抗原(HBsAg)", "阳性(+)", "阴性", "梅毒螺旋体抗体", "阴性", "阴性"],
        ["HIV抗原抗体", "阴性(-)", "阴性", "丙肝抗体", "0.05 阴性", "<1.0"]])])
    r = structure(p)
    items = by_code(r)
    assert [items[c]["flag"] for c in ("5196-1", "22587-0", "56888-1", "16128-1")] == ["POS", "NEG", "NEG", "NEG"]
    assert items["5196-1"]["value"] == "阳性" and items["5196-1"]["abnormal"] is True
    assert (r.risk.colour, r.risk.also) == ("yellow", "purple") and rule_ids(r) == {"hbsag_positive", "hbv_carrier"}
    assert r.missing == ()


def test_implausible_values_are_reported_with_a_likely_cause() -> None:
    p = page(["血常规"], [table(["项目", "结果", "单位", "参考范围"], [
        ["血红蛋白", "12.8", "g/L", "115-150"],          # printed in g/dL but labelled g/L
        ["血小板计数", "2150", "10^9/L", "125-350"],      # decimal point lost (215.0)
        ["白细胞计数", "6.2", "mmol/L", "3.5-9.5"]])])     # a unit the item cannot have
    r = structure(p)
    checks = {(c.kind, c.code): c for c in r.checks}
    assert checks[("unit_mixup", "718-7")].suggestion == pytest.approx(128.0)
    assert checks[("decimal_error", "777-3")].suggestion == pytest.approx(215.0)
    assert ("unit_unknown", "6690-2") in checks
    assert by_code(r)["6690-2"]["unit"] == "mmol/L"        # kept as printed, not silently converted


def test_unmatched_rows_are_counted_not_guessed() -> None:
    p = page(["血常规"], [table(["项目", "结果", "单位"], [
        ["血红蛋白", "128", "g/L"], ["某某未知指标", "3.3", "U/L"], ["谷x转氨酶", "40", "U/L"]])])
    r = structure(p)
    assert set(by_code(r)) == {"718-7"}
    assert any(c.kind == "unmatched" and c.message.startswith("2 ") for c in r.checks)


def test_catalogue_range_is_used_when_none_is_printed() -> None:
    p = page(["血常规"], [table(["项目", "结果", "单位"], [["血红蛋白", "108", "g/L"]])])
    hb = by_code(structure(p))["718-7"]
    assert (hb["ref"]["text"], hb["ref"]["source"], hb["flag"]) == ("115-150", "catalogue", "L")


def test_discharge_summary_diagnoses_grade_the_risk() -> None:
    p = page(["出院小结", "年龄: 33岁"], more_lines=[
        "出院诊断：1.孕34+2周 G2P1 2.重度子痫前期 3.妊娠期糖尿病", "4.瘢痕子宫", "否认乙肝、梅毒病史",
        "血压 168/112mmHg"], more_y=200)
    r = structure(p)
    assert r.kind == "summary" and r.items == () and r.missing == ()
    assert rule_ids(r) == {"kw_severe_preeclampsia", "kw_preeclampsia", "kw_gdm", "kw_scar_uterus", "bp_140_90"}
    assert r.risk.colour == "orange" and r.risk.also is None
    assert r.facts.gestational_weeks == pytest.approx(34.29)


def test_json_contract() -> None:
    j = cbc_ruled().to_json()
    assert {"kind", "items", "missing", "checks", "risk", "patient", "facts"} <= set(j)
    for it in j["items"]:
        assert {"code", "name", "value", "unit", "ref", "flag", "confidence", "region"} <= set(it)
    assert {"colour", "also", "rules", "notice"} <= set(j["risk"])
    assert {"id", "clause", "colour", "evidence"} <= set(j["risk"]["rules"][0])
    json.dumps(j)  # plain JSON types only


def test_an_empty_page() -> None:
    r = structure(page([], []))
    assert (r.kind, r.items, r.missing, r.risk.colour) == ("unknown", (), (), "green")


def test_lines_helper_spacing() -> None:
    assert [ln.box.y for ln in lines(["a", "b"], y0=10)] == [10, 50]


def test_a_lost_decimal_point_within_plausible_limits_is_pointed_out() -> None:
    p = page(["血常规"], [table(["项目", "结果", "单位", "参考范围"], [["单核细胞百分比", "43", "%", "3.0-10.0"]])])
    (check,) = [c for c in structure(p).checks if c.kind == "decimal_error"]
    assert check.code == "5905-5" and check.suggestion == pytest.approx(4.3) and check.severity == "info"


def test_ocr_slips_in_units_and_headers_are_recovered() -> None:
    p = page(["血常规检验报告单", "年龄:415"], [table(["检验项目", "英文缩写", "结", "提示单位", "参考区间"], [
        ["白细胞计数", "WBC", "4.90", "*1049/L", "3.50~9.50"], ["红细胞计数", "RBC", "4.24", "*10412/L", "3.80~5.10"],
        ["平均红细胞血红蛋白含量", "MCH", "28.8", "ps", "27.0~34.0"], ["血小板计数", "PLT", "79", "*1049/L", "125~350"]])])
    r = structure(p)
    items = by_code(r)
    assert (items["6690-2"]["value"], items["6690-2"]["unit"]) == (4.9, "10^9/L")
    assert items["789-8"]["unit"] == "10^12/L" and items["785-6"]["unit"] == "pg"
    assert sum(c.kind == "unit_corrected" for c in r.checks) == 4
    assert r.patient.age is None and any(c.kind == "unreadable_fact" for c in r.checks)
    assert rule_ids(r) == {"plt_50_100"}


def test_cells_the_reader_left_as_separate_lines_form_a_table() -> None:
    from edge.reports.page import Box, Line, PageText
    texts = [("血常规检验报告单", 40, 120), ("结", 300, 297), ("单位", 520, 297), ("参考区间", 700, 293)]
    for n, (name, value, unit, ref) in enumerate([("中性粒细胞百分比(NEUT%)", "69.8", "%", "40.0-75.0"),
                                                  ("红细胞计数(RBC)", "4.95", "x10412/L", "3.80-5.10"),
                                                  ("血红蛋白(HGB)", "102", "g/L", "115-150")]):
        y = 331 + 40 * n
        texts += [(name, 40, y), (value, 300, y + 5), (unit, 520, y + 5), (ref, 700, y + 5)]
    lines = tuple(Line(t, 88.0, Box(x, y, 14 * len(t) + 20, 30)) for t, x, y in texts)
    r = structure(PageText(lines, (), 1240, 1754))
    items = by_code(r)
    assert set(items) == {"770-8", "789-8", "718-7"} and r.kind == "cbc"
    assert (items["718-7"]["value"], items["718-7"]["flag"], items["718-7"]["ref"]["text"]) == (102.0, "L", "115-150")
    assert rule_ids(r) == {"hb_60_110"}


def test_staff_names_stay_out_of_the_findings() -> None:
    p = page(["产科超声检查报告"], more_lines=["超声提示：宫内妊娠，单活胎", "报告医生：李某某  审核者：孙某", "联系电话 0571-1234567"],
             more_y=200)
    findings = structure(p).findings
    assert findings == ("超声提示:宫内妊娠", "单活胎")


def test_a_name_split_over_two_cells_and_an_untitled_name_column() -> None:
    split = page(["血常规"], [table(["检验项目", None, "结果", "提示", "单位", "参考区间"], [
        ["平均红细胞血红", "蛋白含量", "32.8", None, "pg", "27.0-34.0"],
        ["血红蛋白", None, "131", None, "g/L", "115-150"]])])
    items = by_code(structure(split))
    assert items["785-6"]["value"] == 32.8 and items["718-7"]["value"] == 131.0
    untitled = page(["肝功能"], [table([None, "英文缩写", "结果", "提示", "单位", "参考区间"], [
        ["ASA", "ALB", "47.1", None, "g/L", "40.0~55.0"], ["REA", "GLB", "26.3", None, "g/L", "20.0~40.0"]])])
    items = by_code(structure(untitled))
    assert (items["1751-7"]["value"], items["10834-0"]["value"]) == (47.1, 26.3)


def test_coagulation_times_in_free_lines() -> None:
    p = page(["凝血功能检查", "采样时间: 2026-03-02 08:10"], more_lines=[
        "凝血酶原时间(PT) 11.8 秒 (9.4-12.5)", "活化部分凝血活酶时间(APTT) 45.0 s (25-37)", "纤维蛋白原(FIB) 4.6 g/L"],
        more_y=200)
    r = structure(p)
    items = by_code(r)
    assert r.kind == "coagulation" and r.missing == ()
    assert (items["5902-2"]["value"], items["5902-2"]["unit"], items["5902-2"]["flag"]) == (11.8, "s", "N")
    assert (items["3173-2"]["flag"], items["3173-2"]["ref"]["text"]) == ("H", "25-37")
    assert items["3255-7"]["ref"]["source"] == "catalogue" and items["3255-7"]["flag"] == "H"


def test_word_path_items_carry_their_source_and_low_confidence_ones_are_marked() -> None:
    p = page(["血常规检验报告单"], [table(["项目", "结果", "单位", "参考范围"], [["血红蛋白", "98", "g/L", "115-150"]],
                                          conf=40.0)])
    item = structure(p).to_json()["items"][0]
    assert item["source"] == "血红蛋白  98  g/L  115-150" and item["review"] is True
    sure = by_code(cbc_ruled())["718-7"]
    assert sure["review"] is False and sure["source"].startswith("血红蛋白")
