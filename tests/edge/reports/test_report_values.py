"""Parsing printed values, units and ranges; unit conversion; the abnormal flag from value and range."""

from __future__ import annotations

import pytest

from edge.reports.catalogue import load_catalogue
from edge.reports.values import (
    RefRange,
    UnitError,
    catalogue_range,
    compute_flag,
    convert_range,
    is_abnormal,
    norm_unit,
    parse_range,
    parse_value,
    to_canonical,
    to_canonical_read,
)


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


@pytest.mark.parametrize("text, kind, number, comparator, qualitative, grade, unit, flag", [
    ("128", "number", 128.0, None, None, None, None, None),
    ("5.8 ↑", "number", 5.8, None, None, None, None, "H"),
    ("↓ 3.2", "number", 3.2, None, None, None, None, "L"),
    ("12 H", "number", 12.0, None, None, None, None, "H"),
    ("1O.5", "number", 10.5, None, None, None, None, None),      # O read for 0
    ("4,5", "number", 4.5, None, None, None, None, None),         # decimal comma
    ("1,200", "number", 1200.0, None, None, None, None, None),    # thousands
    ("142次/分", "number", 142.0, None, None, None, "bpm", None),
    ("9.2cm", "number", 9.2, None, None, None, "cm", None),
    ("<0.05", "bound", 0.05, "<", None, None, None, None),
    ("≥1000", "bound", 1000.0, ">=", None, None, None, None),
    ("阴性", "qualitative", None, None, "NEG", 0, None, None),
    ("阴性(-)", "qualitative", None, None, "NEG", 0, None, None),
    ("未检出", "qualitative", None, None, "NEG", 0, None, None),
    ("阳性(+)", "qualitative", None, None, "POS", 1, None, None),
    ("++", "qualitative", None, None, "POS", 2, None, None),
    ("2+", "qualitative", None, None, "POS", 2, None, None),
    ("±", "qualitative", None, None, "TRACE", 0, None, None),
    ("弱阳性", "qualitative", None, None, "TRACE", 0, None, None),
    ("0.02 阴性", "qualitative", 0.02, None, "NEG", 0, None, None),
    ("", "empty", None, None, None, None, None, None),
    ("见附页", "text", None, None, None, None, None, None),
])
def test_parse_value(text, kind, number, comparator, qualitative, grade, unit, flag) -> None:
    v = parse_value(text)
    assert (v.kind, v.number, v.comparator, v.qualitative, v.grade, v.unit, v.printed_flag) == \
           (kind, number, comparator, qualitative, grade, unit, flag)


@pytest.mark.parametrize("text, low, high, high_inclusive, qualitative", [
    ("3.5-9.5", 3.5, 9.5, True, None),
    ("3.9～6.1", 3.9, 6.1, True, None),
    ("0--40", 0.0, 40.0, True, None),
    ("115 — 150", 115.0, 150.0, True, None),
    ("115 150", 115.0, 150.0, True, None),     # the dash lost by OCR
    ("<5.1", None, 5.1, False, None),
    ("≤40", None, 40.0, True, None),
    ("阴性", None, None, True, "NEG"),
    ("", None, None, True, None),
])
def test_parse_range(text, low, high, high_inclusive, qualitative) -> None:
    r = parse_range(text)
    assert (r.low, r.high, r.high_inclusive, r.qualitative) == (low, high, high_inclusive, qualitative)
    assert parse_range(">1.0").low == 1.0 and not parse_range(">1.0").low_inclusive


@pytest.mark.parametrize("printed, canonical", [
    ("×10^9/L", "10^9/L"), ("10*9/l", "10^9/L"), ("x10E9/L", "10^9/L"), ("10^12/L", "10^12/L"), ("umol/L", "μmol/L"),
    ("µmol/l", "μmol/L"), ("IU/L", "U/L"), ("次/分", "bpm"), ("uIU/ml", "mIU/L"), ("mIU/mL", "mIU/mL"), ("fl", "fL"),
    ("秒", "s"), ("G/L", "G/L"), ("g/l", "g/L"), ("", ""), ("furlongs", "furlongs"),
])
def test_norm_unit(printed: str, canonical: str) -> None:
    assert norm_unit(printed) == canonical


def test_conversion_to_the_canonical_unit(cat) -> None:
    glucose, hb, cr, bpd = cat.item("14771-0"), cat.item("718-7"), cat.item("14682-9"), cat.item("11820-8")
    assert to_canonical(90, "mg/dL", glucose)[0] == pytest.approx(4.995)
    assert to_canonical(12.8, "g/dL", hb) == (pytest.approx(128.0), "g/L", 10.0)
    assert to_canonical(0.8, "mg/dL", cr)[0] == pytest.approx(70.72)
    assert to_canonical(9.2, "cm", bpd)[:2] == (pytest.approx(92.0), "mm")
    assert to_canonical(128, "", hb) == (128, "g/L", 1.0)          # no unit printed: taken as canonical
    assert to_canonical(85, "G/L", cat.item("777-3"))[1] == "10^9/L"
    with pytest.raises(UnitError, match="no conversion"):
        to_canonical(5, "mmol/L", hb)
    r = convert_range(parse_range("0.5-1.1"), 88.4)
    assert (r.low, r.high) == (pytest.approx(44.2), pytest.approx(97.24)) and r.text == "0.5-1.1"


def test_flag_is_computed_from_value_and_range_not_the_printed_arrow() -> None:
    ref = parse_range("3.9-6.1")
    v = parse_value("5.8 ↑")
    assert v.printed_flag == "H" and compute_flag(v, ref) == "N"
    assert compute_flag(parse_value("6.2"), ref) == "H"
    assert compute_flag(parse_value("3.8"), ref) == "L"
    assert compute_flag(parse_value("3.9"), ref) == "N" and compute_flag(parse_value("6.1"), ref) == "N"
    assert compute_flag(parse_value("5.1"), parse_range("<5.1")) == "H"      # exclusive bound
    assert compute_flag(parse_value("5.09"), parse_range("<5.1")) == "N"
    assert compute_flag(parse_value("5"), RefRange()) is None                # no range: nothing to say


def test_flag_of_bounds_only_when_decided() -> None:
    assert compute_flag(parse_value("<0.5"), parse_range("0-5")) == "N"
    assert compute_flag(parse_value(">1000"), parse_range("0-500")) == "H"
    assert compute_flag(parse_value("<100"), parse_range("115-150")) == "L"
    assert compute_flag(parse_value("<200"), parse_range("115-150")) is None


def test_qualitative_flags(cat) -> None:
    hbsag = cat.item("5196-1")
    assert compute_flag(parse_value("阳性"), parse_range("阴性"), hbsag) == "POS"
    assert compute_flag(parse_value("阴性(-)"), parse_range("阴性"), hbsag) == "NEG"
    assert compute_flag(parse_value("±"), parse_range("阴性"), hbsag) == "POS"
    # a number on a qualitative item is judged against the cut-off
    assert compute_flag(parse_value("125.6"), parse_range("<0.05"), hbsag) == "POS"
    assert compute_flag(parse_value("0.01"), parse_range("<0.05"), hbsag) == "NEG"
    assert is_abnormal("POS", hbsag) and not is_abnormal("POS", cat.item("16935-9"))  # anti-HBs positive is fine
    assert is_abnormal("H", None) and not is_abnormal("N", None)


def test_catalogue_range_when_none_is_printed(cat) -> None:
    r = catalogue_range(cat.item("718-7"))
    assert (r.low, r.high, r.text, r.source) == (115, 150, "115-150", "catalogue")
    ogtt = catalogue_range(cat.item("14995-5"))
    assert ogtt.high == 8.5 and not ogtt.high_inclusive
    assert catalogue_range(cat.item("5196-1")).qualitative == "NEG"


@pytest.mark.parametrize("printed, code, canonical", [
    ("ymol/L", "14682-9", "μmol/L"),   # creatinine: μ read as y
    ("pmol/L", "14682-9", "μmol/L"),
    ("g/t", "718-7", "g/L"),           # haemoglobin: L read as t
    ("g/I", "718-7", "g/L"),
    ("PS", "785-6", "pg"),             # MCH: pg read as PS
])
def test_misread_units_are_tried_only_as_readings_of_the_items_unit(cat, printed: str, code: str,
                                                                     canonical: str) -> None:
    item = cat.item(code)
    value, unit, _, corrected = to_canonical_read(10.0, printed, item)
    assert (value, unit, corrected) == (10.0, item.unit, canonical) and item.unit == canonical
    with pytest.raises(UnitError):  # a misread that fits no reading of the item's unit stays an error
        to_canonical_read(10.0, "ymol/L", cat.item("718-7"))
