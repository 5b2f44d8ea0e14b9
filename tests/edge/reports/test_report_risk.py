"""Five-colour pregnancy risk grading: each threshold, highest colour wins, purple alongside, keyword rules,
evidence without personal values, and the rules file checks."""

from __future__ import annotations

import pytest

from edge.reports.model import Facts, Item, Patient
from edge.reports.risk import RuleError, grade_risk, load_rules, parse_rules
from edge.reports.values import RefRange


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def item(code: str, value: float | str, flag: str | None = None) -> Item:
    return Item(code=code, name=code, value=value, unit="", ref=RefRange(), flag=flag, confidence=0.9)


def fired(grade) -> set[str]:
    return {r.id for r in grade.rules}


def grade_of(rules, items=(), patient=Patient(), facts=Facts(), findings=()):
    return grade_risk(rules, list(items), patient, facts, list(findings))


def test_nothing_fires_on_normal_data(rules) -> None:
    g = grade_of(rules, [item("718-7", 125.0), item("777-3", 210.0)], Patient(age=28), Facts(bmi=22.0))
    assert (g.colour, g.also, g.rules) == ("green", None, ())
    assert "age" in g.considered and "item:718-7" in g.considered
    assert "医生" in g.notice and "Decision support" in g.notice


@pytest.mark.parametrize("hb, colour, rule", [
    (110.0, "green", None), (109.0, "yellow", "hb_60_110"), (60.0, "yellow", "hb_60_110"),
    (59.0, "orange", "hb_40_60"), (40.0, "red", "hb_40"), (35.0, "red", "hb_40"),
])
def test_haemoglobin_bands(rules, hb: float, colour: str, rule: str | None) -> None:
    g = grade_of(rules, [item("718-7", hb)])
    assert g.colour == colour
    assert fired(g) == ({rule} if rule else set())


@pytest.mark.parametrize("plt, colour, rule", [
    (101.0, "green", None), (100.0, "yellow", "plt_50_100"), (50.0, "yellow", "plt_50_100"),
    (49.0, "orange", "plt_30_50"), (30.0, "orange", "plt_30_50"), (29.0, "red", "plt_30"),
])
def test_platelet_bands(rules, plt: float, colour: str, rule: str | None) -> None:
    g = grade_of(rules, [item("777-3", plt)])
    assert g.colour == colour and fired(g) == ({rule} if rule else set())


@pytest.mark.parametrize("age, colour, rules_fired", [
    (34, "green", set()), (35, "yellow", {"age_35_or_18"}), (18, "yellow", {"age_35_or_18"}),
    (19, "green", set()), (40, "orange", {"age_35_or_18", "age_40"}),
])
def test_age(rules, age: int, colour: str, rules_fired: set[str]) -> None:
    g = grade_of(rules, patient=Patient(age=age))
    assert g.colour == colour and fired(g) == rules_fired


def test_age_evidence_never_shows_the_age(rules) -> None:
    g = grade_of(rules, patient=Patient(age=37))
    assert all("37" not in r.evidence for r in g.rules)


@pytest.mark.parametrize("bmi, colour", [(25.0, "green"), (25.1, "yellow"), (18.4, "yellow"), (18.5, "green"),
                                         (28.0, "orange")])
def test_bmi(rules, bmi: float, colour: str) -> None:
    assert grade_of(rules, facts=Facts(bmi=bmi)).colour == colour


def test_blood_pressure_and_proteinuria(rules) -> None:
    assert grade_of(rules, facts=Facts(systolic=139, diastolic=89)).colour == "green"
    g = grade_of(rules, facts=Facts(systolic=142, diastolic=85))
    assert g.colour == "yellow" and fired(g) == {"bp_140_90"} and g.rules[0].evidence == "血压 142/85 mmHg"
    assert grade_of(rules, facts=Facts(systolic=130, diastolic=90)).colour == "yellow"
    # severe-range pressure alone stays yellow; with proteinuria it points to severe pre-eclampsia
    assert grade_of(rules, facts=Facts(systolic=165, diastolic=100)).colour == "yellow"
    g = grade_of(rules, [item("20454-5", "++", "POS")], facts=Facts(systolic=165, diastolic=100))
    assert g.colour == "orange" and "bp_severe_with_proteinuria" in fired(g)


@pytest.mark.parametrize("values, gdm", [
    ({"14771-0": 5.0, "1507-3": 9.9, "14995-5": 8.4}, False),
    ({"14771-0": 5.1, "1507-3": 9.9, "14995-5": 8.4}, True),
    ({"14771-0": 4.6, "1507-3": 10.0, "14995-5": 8.4}, True),
    ({"14771-0": 4.6, "1507-3": 9.0, "14995-5": 8.5}, True),
])
def test_ogtt_thresholds(rules, values: dict[str, float], gdm: bool) -> None:
    g = grade_of(rules, [item(code, v) for code, v in values.items()])
    assert ("ogtt_gdm" in fired(g)) is gdm
    if gdm:
        (rule,) = g.rules
        assert rule.evidence.startswith("OGTT 空腹 ") and "mmol/L" in rule.evidence


def test_fasting_glucose_7_suggests_pregestational_diabetes(rules) -> None:
    assert fired(grade_of(rules, [item("14771-0", 7.2)])) == {"ogtt_gdm", "fpg_7"}


@pytest.mark.parametrize("code, value, rule", [
    ("11627-7", 5.0, "afi_oligo"), ("11627-7", 25.0, "afi_poly"), ("11832-3", 2.0, "dvp_oligo"),
    ("11832-3", 8.0, "dvp_poly"), ("11948-7", 105.0, "fhr_abnormal"), ("11948-7", 172.0, "fhr_abnormal"),
])
def test_ultrasound_values(rules, code: str, value: float, rule: str) -> None:
    g = grade_of(rules, [item(code, value)])
    assert fired(g) == {rule} and g.colour == "yellow"


def test_normal_ultrasound_values(rules) -> None:
    g = grade_of(rules, [item("11627-7", 12.0), item("11832-3", 5.0), item("11948-7", 140.0)])
    assert g.colour == "green"


def test_fetal_heart_rate_rule_says_it_is_not_in_the_specification(rules) -> None:
    (rule,) = grade_of(rules, [item("11948-7", 100.0)]).rules
    assert rule.basis == "local" and "not listed" in rule.clause


def test_twins_and_triplets(rules) -> None:
    assert fired(grade_of(rules, facts=Facts(fetuses=2))) == {"twins"}
    assert grade_of(rules, facts=Facts(fetuses=3)).colour == "orange"
    assert grade_of(rules, facts=Facts(fetuses=1)).colour == "green"


def test_infection_is_purple_alongside_the_colour(rules) -> None:
    g = grade_of(rules, [item("56888-1", "阳性", "POS"), item("718-7", 125.0)])
    assert (g.colour, g.also) == ("green", "purple") and fired(g) == {"hiv_positive"}
    g = grade_of(rules, [item("22587-0", "阳性", "POS"), item("777-3", 45.0)])
    assert (g.colour, g.also) == ("orange", "purple")
    g = grade_of(rules, [item("5196-1", "阳性", "POS")])
    assert (g.colour, g.also) == ("yellow", "purple") and fired(g) == {"hbsag_positive", "hbv_carrier"}
    assert grade_of(rules, [item("16128-1", "阳性", "POS")]).also == "purple"
    assert grade_of(rules, [item("5196-1", "阴性", "NEG")]).also is None


def test_highest_colour_wins_and_every_rule_is_listed(rules) -> None:
    g = grade_of(rules, [item("718-7", 38.0), item("777-3", 80.0)], Patient(age=36), Facts(bmi=29.0))
    assert g.colour == "red"
    assert fired(g) == {"hb_40", "plt_50_100", "age_35_or_18", "bmi_25_or_18_5", "bmi_28"}
    assert [r.colour for r in g.rules][0] == "red"
    assert all(r.clause and r.evidence for r in g.rules)


@pytest.mark.parametrize("text, rule", [
    ("超声提示：宫内妊娠，单活胎，前置胎盘", "kw_placenta_previa"),
    ("诊断：1.妊娠期高血压 2.孕28周", "kw_gh"),
    ("重度子痫前期", "kw_severe_preeclampsia"),
    ("胎儿生长受限(FGR)", "kw_fgr"),
    ("羊水过少", "kw_oligohydramnios"),
    ("羊水过多", "kw_polyhydramnios"),
    ("双胎妊娠(双绒双羊)", "kw_twins"),
    ("未足月胎膜早破", "kw_prom"),
    ("凶险性前置胎盘", "kw_pernicious_previa"),
    ("妊娠合并梅毒", "kw_syphilis"),
])
def test_keyword_rules_fire_on_diagnoses(rules, text: str, rule: str) -> None:
    g = grade_of(rules, findings=[text])
    assert rule in fired(g)
    hit = next(r for r in g.rules if r.id == rule)
    assert hit.evidence.startswith("报告文字: ")


@pytest.mark.parametrize("text", [
    "胎盘位于后壁，未见前置胎盘", "无妊娠期高血压", "否认梅毒病史", "乙肝表面抗原阴性", "排除胎盘早剥",
])
def test_negated_keywords_do_not_fire(rules, text: str) -> None:
    assert grade_of(rules, findings=[text]).rules == ()


def test_malpresentation_counts_only_from_36_weeks(rules) -> None:
    assert grade_of(rules, facts=Facts(gestational_weeks=30.0), findings=["臀位"]).rules == ()
    assert fired(grade_of(rules, facts=Facts(gestational_weeks=36.0), findings=["臀位"])) == {"kw_malpresentation"}
    assert grade_of(rules, findings=["臀位"]).rules == ()


def test_every_shipped_rule_cites_a_clause_and_a_basis(rules) -> None:
    for r in (*rules.rules, *rules.keywords):
        assert r.clause and r.basis in ("spec", "definition", "screening", "local")
    assert rules.document["notice"] == "国卫办妇幼发〔2017〕35号"


def _rule(**over):
    base = {"id": "x", "colour": "yellow", "clause": "c", "when": [{"fact": "bmi", "op": ">", "value": 25}]}
    base.update(over)
    return {"rule": [base]}


@pytest.mark.parametrize("data, message", [
    (_rule(colour="pink"), "colour"),
    (_rule(basis="hunch"), "basis"),
    (_rule(clause=""), "clause"),
    (_rule(when=[{"fact": "shoe_size", "op": ">", "value": 1}]), "unknown fact"),
    (_rule(when=[{"fact": "bmi", "op": "~", "value": 1}]), "unknown op"),
    (_rule(when=[{"fact": "bmi", "op": "positive"}]), "items only"),
    (_rule(when=[]), "needs a when"),
    (_rule(when=[{"fact": "age", "op": ">", "value": 35}], evidence="年龄 {value}"), "personal"),
    ({"rule": [_rule()["rule"][0], _rule()["rule"][0]]}, "duplicate id"),
    ({"keyword": [{"id": "k", "colour": "red", "clause": "c", "patterns": []}]}, "patterns"),
])
def test_malformed_rules_are_refused(data, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(data, "test.toml")
