"""MRZ text: check digits, TD1/TD2/TD3 parsing, look-alike correction, composing (pure, no OCR).

Specimens are the ICAO Doc 9303 "Utopia" examples (parts 4, 5 and 6).
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.documents.mrz import (
    FILLER,
    TO_DIGIT,
    TO_LETTER,
    MrzError,
    MrzFormat,
    MrzFormatError,
    char_value,
    check_digit,
    compose_mrz,
    correct_lines,
    normalise_lines,
    parse_mrz,
)

TD3 = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
       "L898902C36UTO7408122F1204159ZE184226B<<<<<10")
TD2 = ("I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<",
       "D231458907UTO7408122F1204159<<<<<<<6")
TD1 = ("I<UTOD231458907<<<<<<<<<<<<<<<",
       "7408122F1204159UTO<<<<<<<<<<<6",
       "ERIKSSON<<ANNA<MARIA<<<<<<<<<<")
TD1_LONG_NUMBER = ("I<UTOD23145890<7349<<<<<<<<<<<",
                   "7408122F1204159UTO<<<<<<<<<<<6",
                   "ERIKSSON<<ANNA<MARIA<<<<<<<<<<")
TODAY = dt.date(2025, 6, 1)


def _replace(lines: tuple[str, ...], line: int, col: int, char: str) -> tuple[str, ...]:
    out = list(lines)
    out[line] = out[line][:col] + char + out[line][col + 1:]
    return tuple(out)


# -- check digits -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, digit", [
    ("L898902C3", "6"), ("740812", "2"), ("120415", "9"), ("ZE184226B<<<<<", "1"), ("D23145890", "7"),
    ("D23145890734", "9"), ("<<<<<<", "0"),
    ("L898902C36" + "7408122" + "1204159ZE184226B<<<<<1", "0"),          # TD3 composite
    ("D231458907<<<<<<<<<<<<<<<" + "7408122" + "1204159" + "<<<<<<<<<<<", "6"),  # TD1 composite
])
def test_check_digits_of_the_specimens(data: str, digit: str) -> None:
    assert check_digit(data) == digit


def test_character_values() -> None:
    assert [char_value(c) for c in "09AZ<"] == [0, 9, 10, 35, 0]
    with pytest.raises(MrzError):
        char_value("a")
    with pytest.raises(MrzError):
        check_digit("AB-12")


# -- parsing ----------------------------------------------------------------------------------------------

def test_td3_specimen() -> None:
    r = parse_mrz(TD3, today=TODAY)
    assert r.format is MrzFormat.TD3 and r.valid and not r.corrections
    assert (r.document_type, r.issuing_country, r.surname, r.given_names) == ("P", "UTO", "ERIKSSON", "ANNA MARIA")
    assert (r.document_number, r.nationality, r.sex) == ("L898902C3", "UTO", "F")
    assert (r.birth_date, r.expiry_date) == (dt.date(1974, 8, 12), dt.date(2012, 4, 15))
    assert r.optional_data == "ZE184226B" and r.optional_data_2 == ""
    assert dict(r.checks) == {"document_number": True, "birth_date": True, "expiry_date": True,
                              "optional_data": True, "composite": True}
    assert r.lines == TD3


def test_td2_specimen() -> None:
    r = parse_mrz("\n".join(TD2), today=TODAY)
    assert r.format is MrzFormat.TD2 and r.valid
    assert (r.document_type, r.document_number, r.surname, r.given_names) == ("I", "D23145890", "ERIKSSON",
                                                                              "ANNA MARIA")
    assert set(r.checks) == {"document_number", "birth_date", "expiry_date", "composite"}


def test_td1_specimen() -> None:
    r = parse_mrz(TD1, today=TODAY)
    assert r.format is MrzFormat.TD1 and r.valid
    assert (r.document_type, r.issuing_country, r.document_number, r.nationality) == ("I", "UTO", "D23145890", "UTO")
    assert (r.surname, r.given_names, r.sex) == ("ERIKSSON", "ANNA MARIA", "F")
    assert (r.birth_date, r.expiry_date) == (dt.date(1974, 8, 12), dt.date(2012, 4, 15))


def test_td1_long_document_number_continues_in_the_optional_data() -> None:
    r = parse_mrz(TD1_LONG_NUMBER, today=TODAY)
    assert r.valid and r.document_number == "D23145890734" and r.optional_data == ""
    broken = _replace(TD1_LONG_NUMBER, 0, 18, "8")  # the long number's check digit
    assert not parse_mrz(broken).checks["document_number"]


def test_empty_personal_number_may_have_a_filler_check_digit() -> None:
    lines = compose_mrz(MrzFormat.TD3, document_type="P", issuing_country="UTO", surname="Eriksson",
                        given_names="Anna Maria", document_number="L898902C3", nationality="UTO",
                        birth_date="740812", sex="F", expiry_date="120415")
    assert lines[1][28:43] == "<" * 15
    assert parse_mrz(lines).valid
    assert parse_mrz(_replace(lines, 1, 42, "0")).checks["optional_data"]  # "0" is right as well
    # a filler check digit over data that is not all fillers is wrong
    assert not parse_mrz(_replace(TD3, 1, 42, FILLER)).checks["optional_data"]


def test_each_failed_check_is_named() -> None:
    r = parse_mrz(_replace(TD3, 1, 15, "9"))  # birth 749812: birth date check and composite fail
    assert not r.valid and r.failed_checks == ("birth_date", "composite")
    assert r.birth_date is None  # not a calendar date


def test_a_letter_in_a_date_is_not_valid_even_when_the_check_digits_pass() -> None:
    """A line read one column off can put a letter in a date whose check digit then passes by chance."""
    lines = compose_mrz(MrzFormat.TD1, document_type="I", issuing_country="UTO", surname="Eriksson",
                        given_names="Anna", document_number="D23145890", nationality="UTO", birth_date="740812",
                        sex="F", expiry_date="F28122")
    r = parse_mrz(lines)
    assert all(r.checks.values()) and not r.well_formed and not r.valid
    assert r.expiry_date is None and "well_formed=False" in repr(r)


def test_centuries_follow_today() -> None:
    lines = compose_mrz(MrzFormat.TD1, document_type="I", issuing_country="D", surname="X", given_names="",
                        document_number="T22000129", nationality="D", birth_date="150101", sex="<",
                        expiry_date="350101")
    r = parse_mrz(lines, today=dt.date(2025, 1, 1))
    assert (r.birth_date, r.expiry_date, r.sex) == (dt.date(2015, 1, 1), dt.date(2035, 1, 1), "X")
    assert parse_mrz(lines, today=dt.date(2014, 1, 1)).birth_date == dt.date(1915, 1, 1)
    assert parse_mrz(_replace(lines, 1, 0, "<"), correct=False).birth_date is None  # unknown part


def test_normalising_ocr_text() -> None:
    text = "  p<uto ERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\nL898902C36UTO7408122F1204159ZE184226B«<<<<10 \n"
    assert normalise_lines(text) == TD3
    assert parse_mrz(text).valid


@pytest.mark.parametrize("text", [
    "", "P<UTO", TD3[0], "\n".join([TD3[0], TD3[1][:-1]]), "\n".join([TD3[0], TD3[1] + "<"]),
    "\n".join(TD1[:2]), "\n".join([TD3[0], TD3[1].replace("L", "-")]), "\n".join(TD1 + TD1[:1]),
])
def test_text_without_zone_shape_is_refused(text: str) -> None:
    with pytest.raises(MrzFormatError):
        parse_mrz(text)


def test_repr_shows_no_personal_data() -> None:
    r = parse_mrz(_replace(TD3, 1, 15, "O"))
    shown = repr(r) + str(r)
    for secret in ("ERIKSSON", "ANNA", "L898902C3", "740812", "1974", "ZE184226B", TD3[1]):
        assert secret not in shown
    assert "TD3" in shown and "valid=True" in shown and "birth_date" in shown


# -- correction -------------------------------------------------------------------------------------------

def test_letters_in_digit_fields_are_corrected_when_the_check_digits_then_pass() -> None:
    read = _replace(_replace(_replace(TD3, 1, 15, "O"), 1, 25, "I"), 1, 43, "O")  # 74O812, 1204I5, composite O
    r = parse_mrz(read)
    assert r.valid and r.lines == TD3
    assert {(c.field, c.read, c.corrected, c.rule) for c in r.corrections} == {
        ("birth_date", "O", "0", "class"), ("expiry_date", "I", "1", "class"), ("composite_check", "O", "0", "class")}


def test_digits_in_letter_fields_are_corrected_when_the_zone_is_valid() -> None:
    read = _replace(_replace(TD3, 0, 4, "0"), 0, 9, "5")  # UT0, ERIK5SON
    r = parse_mrz(read)
    assert r.valid and r.issuing_country == "UTO" and r.surname == "ERIKSSON"
    assert {c.field for c in r.corrections} == {"issuing_country", "name"}


def test_filler_read_as_letters_after_the_name() -> None:
    read = _replace(_replace(TD1, 2, 24, "K"), 2, 27, "E")
    r = parse_mrz(read)
    assert r.valid and r.lines == TD1 and {c.rule for c in r.corrections} == {"filler"}
    inside = _replace(TD1, 2, 14, "K")  # ANNA<MARIA -> ANNAKMARIA: a K inside the name stays
    assert parse_mrz(inside).given_names == "ANNAKMARIA"


def test_no_correction_into_an_invalid_zone() -> None:
    read = _replace(_replace(TD3, 1, 15, "O"), 1, 16, "9")  # 74O912: O->0 still fails the check
    r = parse_mrz(read)
    assert not r.valid and not r.corrections and r.lines == read


def test_letter_digit_fields_are_never_changed() -> None:
    read = _replace(TD3, 1, 5, "O")  # L8989O2C3: both readings are allowed in a document number
    r = parse_mrz(read)
    assert not r.valid and not r.checks["document_number"] and r.document_number == "L8989O2C3"
    assert correct_lines(read, MrzFormat.TD3)[1] == ()


def test_correction_can_be_turned_off() -> None:
    read = _replace(TD3, 1, 15, "O")
    assert not parse_mrz(read, correct=False).valid


# -- composing --------------------------------------------------------------------------------------------

def test_compose_reproduces_the_specimens() -> None:
    common = dict(issuing_country="UTO", surname="Eriksson", given_names="Anna Maria", nationality="UTO",
                  birth_date="740812", sex="F", expiry_date="120415")
    assert compose_mrz(MrzFormat.TD3, document_type="P", document_number="L898902C3", optional_data="ZE184226B",
                       **common) == TD3
    assert compose_mrz(MrzFormat.TD2, document_type="I", document_number="D23145890", **common) == TD2
    assert compose_mrz(MrzFormat.TD1, document_type="I", document_number="D23145890", **common) == TD1
    assert compose_mrz(MrzFormat.TD1, document_type="I", document_number="D23145890734", **common) == TD1_LONG_NUMBER


def test_compose_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(MrzError):
        compose_mrz(MrzFormat.TD3, document_type="P", issuing_country="UTOPIA", surname="A", given_names="B",
                    document_number="1", nationality="UTO", birth_date="740812", sex="F", expiry_date="120415")
    with pytest.raises(MrzError):
        compose_mrz(MrzFormat.TD3, document_type="P", issuing_country="UTO", surname="A", given_names="B",
                    document_number="1", nationality="UTO", birth_date="740812", sex="Q", expiry_date="120415")


# -- properties -------------------------------------------------------------------------------------------

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LOOKALIKE_LETTERS = "".join(TO_DIGIT)


@st.composite
def zones(draw: st.DrawFn) -> tuple[str, ...]:
    fmt = draw(st.sampled_from(list(MrzFormat)))
    name = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ ", min_size=1, max_size=20).map(str.strip).filter(bool)
    room = {MrzFormat.TD1: 15, MrzFormat.TD2: 7, MrzFormat.TD3: 14}[fmt]
    return compose_mrz(
        fmt,
        document_type=draw(st.sampled_from(["P", "I", "ID", "AC"])),
        issuing_country=draw(st.sampled_from(["UTO", "D", "FRA", "CHN"])),
        surname=draw(name), given_names=draw(name),
        document_number=draw(st.text(ALNUM, min_size=1, max_size=9)),
        nationality=draw(st.sampled_from(["UTO", "D", "GBR", "XXA"])),
        birth_date=draw(st.dates(dt.date(1920, 1, 1), dt.date(2019, 12, 31))).strftime("%y%m%d"),
        sex=draw(st.sampled_from("MFX<")),
        expiry_date=draw(st.dates(dt.date(2000, 1, 1), dt.date(2060, 12, 31))).strftime("%y%m%d"),
        optional_data=draw(st.text(ALNUM, max_size=room)),
    )


@given(zones())
def test_composed_zones_are_valid_and_parse_back(lines: tuple[str, ...]) -> None:
    r = parse_mrz(lines)
    assert r.valid and r.lines == lines and not r.corrections
    assert parse_mrz(r.lines).lines == lines


@given(st.text("0123456789", min_size=1, max_size=20), st.data())
def test_check_digit_sees_every_single_digit_change(data: str, draw: st.DataObject) -> None:
    i = draw.draw(st.integers(0, len(data) - 1))
    other = draw.draw(st.sampled_from("0123456789").filter(lambda c: c != data[i]))
    assert check_digit(data[:i] + other + data[i + 1:]) != check_digit(data)


def _digit_positions(lines: tuple[str, ...]) -> list[tuple[int, int]]:
    """Positions of dates and check digits (digits-only positions) of a zone."""
    if len(lines) == 3:
        return [(0, 14)] + [(1, c) for c in [*range(0, 7), *range(8, 15), 29]]
    w = len(lines[0])
    cols = [9, *range(13, 20), *range(21, 28), w - 1] + ([42] if w == 44 else [])
    return [(1, c) for c in cols]


@given(zones(), st.data())
def test_a_look_alike_letter_in_a_digit_position_is_put_right(lines: tuple[str, ...], data: st.DataObject) -> None:
    line, col = data.draw(st.sampled_from(_digit_positions(lines)))
    original = lines[line][col]
    assume(original != FILLER)
    letter = data.draw(st.sampled_from([k for k, v in TO_DIGIT.items() if v == original] or ["X"]))
    assume(letter != "X")
    r = parse_mrz(_replace(lines, line, col, letter))
    assert r.valid and r.lines == lines


@given(zones(), st.data())
def test_a_single_misread_never_gives_a_different_valid_zone(lines: tuple[str, ...], data: st.DataObject) -> None:
    """Any one character misread where a check digit covers it: the result is the printed zone or not valid.

    Excluded: swaps between characters whose values differ by a multiple of 10 (``K``/``<``, ``G``/``6``,
    ``A``/``0``), which ICAO's check digits cannot see.
    """
    line, col = data.draw(st.sampled_from(_covered_positions(lines)))
    original = lines[line][col]
    char = data.draw(st.sampled_from(ALNUM + FILLER).filter(
        lambda c: (char_value(c) - char_value(original)) % 10 != 0))
    r = parse_mrz(_replace(lines, line, col, char))
    assert r.lines == lines or not r.valid


def _covered_positions(lines: tuple[str, ...]) -> list[tuple[int, int]]:
    if len(lines) == 3:
        return [(0, c) for c in range(5, 30)] + [(1, c) for c in [*range(0, 7), *range(8, 15), *range(18, 30)]]
    w = len(lines[0])
    return [(1, c) for c in [*range(0, 10), *range(13, 20), *range(21, w)]]


@settings(max_examples=50)
@given(zones(), st.data())
def test_a_digit_in_a_name_is_put_right_only_in_a_valid_zone(lines: tuple[str, ...], data: st.DataObject) -> None:
    name_line, start = (2, 0) if len(lines) == 3 else (0, 5)
    letters = [c for c in range(start, len(lines[0])) if lines[name_line][c] in TO_LETTER.values()]
    assume(letters)
    col = data.draw(st.sampled_from(letters))
    digit = next(d for d, letter in TO_LETTER.items() if letter == lines[name_line][col])
    misread = _replace(lines, name_line, col, digit)
    assert parse_mrz(misread).lines == lines
    line, c = _digit_positions(lines)[-1]  # break the composite as well: nothing is corrected
    wrong = "1" if lines[line][c] != "1" else "2"
    broken = _replace(misread, line, c, wrong)
    r = parse_mrz(broken)
    assert not r.valid and r.lines == broken and not r.corrections


def test_look_alike_tables_are_consistent() -> None:
    assert all(d in "0123456789<" for d in TO_DIGIT.values())
    assert all(letter.isalpha() for letter in TO_LETTER.values())
    assert LOOKALIKE_LETTERS.isalpha()
