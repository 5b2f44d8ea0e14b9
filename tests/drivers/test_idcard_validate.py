"""Identity number validation: GB 11643 / ISO 7064 MOD 11-2, regions, birth dates, foreigner formats."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.idcard.card import CardType, IdCard, Sex
from drivers.idcard.validate import (
    PROVINCE_CODES,
    Scheme,
    ValidationResult,
    check_digit,
    detect_scheme,
    validate_card,
    validate_id_number,
)
from tests.hw_sim.idcard_reader import sample_cards

TODAY = dt.date(2026, 6, 1)


def v(number: object, **kw: object) -> ValidationResult:
    return validate_id_number(number, today=TODAY, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", ["11010519491231002X", "110105194912310029"[:-1] + "X", "440524188001010014",
                                    "11010519491231002x", " 11010519491231002X "])
def test_known_valid_resident_numbers(number: str) -> None:
    r = v(number)
    assert r.valid and r.code == "ok" and r.scheme == Scheme.RESIDENT18


@pytest.mark.parametrize("first17,expected", [("11010519491231002", "X"), ("44052418800101001", "4"),
                                              ("93158619800101002", "8"), ("00000000000000000", "1"),
                                              ("11010120000101000", "2")])
def test_check_digit_vectors(first17: str, expected: str) -> None:
    assert check_digit(first17) == expected


def test_check_digit_rejects_bad_input() -> None:
    for bad in ("", "1234", "1101051949123100X", "١١٠١٠٥١٩٤٩١٢٣١٠٠٢"):
        with pytest.raises(ValueError):
            check_digit(bad)


@pytest.mark.parametrize("number,code", [
    ("110105194912310021", "bad_check_digit"),
    ("11010519491231002", "bad_length"),
    ("11010519491231002X1", "bad_length"),
    ("1101051949123100XX", "bad_characters"),
    ("11010519491231002Y", "bad_characters"),
    ("1101051949123１002X", "bad_characters"),           # full-width digit
    ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "bad_characters"),           # Arabic-Indic digits
    ("", "empty"),
    ("   ", "empty"),
    ("100105194912310020", "bad_region"),
    ("160105194912310020", "bad_region"),
    ("990105194912310020", "bad_region"),
    ("110105194902300020", "bad_birth_date"),           # 30 February
    ("110105190002290020", "bad_birth_date"),           # 1900 is not a leap year
    ("110105203001010020", "bad_birth_date"),           # in the future
    ("110105170001010020", "bad_birth_date"),           # before 1850
])
def test_invalid_numbers(number: str, code: str) -> None:
    r = v(number)
    assert not r.valid and r.code == code and r.reason
    assert number.strip() == "" or number not in r.reason


def test_leap_day_2000_is_a_real_date() -> None:
    n = "11010520000229001"
    assert v(n + check_digit(n)).valid


@pytest.mark.parametrize("code", sorted(PROVINCE_CODES))
def test_every_province_code_accepted(code: int) -> None:
    n = f"{code:02d}010519800101001"
    r = v(n + check_digit(n))
    assert r.valid, r


def test_province_codes_are_the_published_list() -> None:
    expected = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54,
                61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
    assert expected == PROVINCE_CODES


def test_birth_date_must_match_card() -> None:
    assert v("11010519491231002X", birth_date=dt.date(1949, 12, 31)).valid
    r = v("11010519491231002X", birth_date=dt.date(1949, 12, 30))
    assert r.code == "birth_date_mismatch"


def test_sex_parity() -> None:
    assert v("11010519491231002X", sex=Sex.FEMALE).valid          # 002: even → female
    assert v("11010519491231002X", sex=Sex.MALE).code == "sex_mismatch"
    assert v("11010519491231002X", sex=Sex.UNKNOWN).valid


def test_hmt_numbers() -> None:
    for prefix in ("81", "82", "83"):
        n = f"{prefix}000019900101123"
        r = v(n + check_digit(n), card_type=CardType.HMT_RESIDENCE)
        assert r.valid and r.scheme == Scheme.HMT18
    r = v("11010519491231002X", card_type=CardType.HMT_RESIDENCE)
    assert r.code == "wrong_scheme"


def test_foreigner_2023_numbers() -> None:
    r = v("931586198001010028", card_type=CardType.FOREIGNER_2023, sex=Sex.FEMALE,
          birth_date=dt.date(1980, 1, 1))
    assert r.valid and r.scheme == Scheme.FOREIGNER2023
    assert v("931586198001010021", card_type=CardType.FOREIGNER_2023).code == "bad_check_digit"
    assert v("11010519491231002X", card_type=CardType.FOREIGNER_2023).code == "wrong_scheme"
    n = "91058619800101002"                                      # province 10 does not exist
    assert v(n + check_digit(n), card_type=CardType.FOREIGNER_2023).code == "bad_region"
    assert v("93158619800101002", card_type=CardType.FOREIGNER_2023).code == "bad_length"


def test_foreigner_2017_numbers() -> None:
    r = v("USA310080010110", card_type=CardType.FOREIGNER_2017, birth_date=dt.date(1980, 1, 1))
    assert r.valid and r.scheme == Scheme.FOREIGNER2017
    assert v("USA310080010110").valid                              # scheme guessed from the length
    assert v("USA310080010110", birth_date=dt.date(1981, 1, 1)).code == "birth_date_mismatch"
    assert v("US3310080010110").code == "bad_characters"
    assert v("usa310080010110").valid                              # typed in lower case
    assert v("USA31008001011", card_type=CardType.FOREIGNER_2017).code == "bad_length"
    assert v("USA100080010110").code == "bad_region"
    assert v("USA310080023010").code == "bad_birth_date"           # 30 February in any century
    assert v("USA3100991231101", card_type=CardType.FOREIGNER_2017).code == "bad_length"


@pytest.mark.parametrize("number,scheme", [("USA310080010110", Scheme.FOREIGNER2017),
                                           ("931586198001010028", Scheme.FOREIGNER2023),
                                           ("810000199001011234", Scheme.HMT18),
                                           ("11010519491231002X", Scheme.RESIDENT18)])
def test_detect_scheme(number: str, scheme: str) -> None:
    assert detect_scheme(number) == scheme


@pytest.mark.parametrize("thing", [None, 110105194912310020, b"11010519491231002X", ["1"], 3.5, object()])
def test_non_text_input_is_a_result_not_a_crash(thing: object) -> None:
    r = v(thing)
    assert not r.valid and r.code == "bad_characters"


def test_sample_cards() -> None:
    cards = sample_cards()
    for name, card in cards.items():
        r = validate_card(card, today=TODAY)
        assert r.valid == (name != "bad_check_digit"), (name, r)
    assert validate_card(cards["bad_check_digit"], today=TODAY).code == "bad_check_digit"
    assert validate_card(cards["hmt"], today=TODAY).warnings == ("card expired",)
    assert validate_card(cards["resident"], today=TODAY).warnings == ()


def test_card_checks() -> None:
    card = sample_cards()["resident"]
    assert validate_card(replace(card, birth_date=None), today=TODAY).code == "bad_card_birth_date"
    assert validate_card(replace(card, birth_date=dt.date(1950, 1, 1)), today=TODAY).code == "birth_date_mismatch"
    assert validate_card(replace(card, sex=Sex.MALE), today=TODAY).code == "sex_mismatch"
    assert validate_card(replace(card, id_number=""), today=TODAY).code == "empty"
    r = validate_card(replace(card, valid_from=dt.date(2027, 1, 1), permanent=False), today=TODAY)
    assert r.valid and r.warnings == ("card not yet valid", "card expiry date unreadable")
    assert validate_card(replace(card, card_type=CardType.FOREIGNER_2017), today=TODAY).code == "bad_length"
    assert validate_card(IdCard(CardType.RESIDENT), today=TODAY).code == "bad_card_birth_date"


def test_result_to_dict() -> None:
    assert v("110105194912310021").to_dict() == {
        "valid": False, "code": "bad_check_digit", "scheme": "resident18", "warnings": [],
        "reason": "the check character does not match (mistyped or forged number)"}


# --- properties -----------------------------------------------------------------------------------------

birth = st.dates(dt.date(1900, 1, 1), TODAY)
region = st.sampled_from(sorted(PROVINCE_CODES))
seq = st.integers(0, 999)


def make(region_code: int, born: dt.date, sequence: int, county: str = "0105") -> str:
    first17 = f"{region_code:02d}{county}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_digit(first17)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(region, birth, seq, st.text(alphabet="0123456789", min_size=4, max_size=4))
def test_generated_numbers_are_valid(region_code: int, born: dt.date, sequence: int, county: str) -> None:
    n = make(region_code, born, sequence, county)
    sex = Sex.MALE if sequence % 2 else Sex.FEMALE
    r = v(n, birth_date=born, sex=sex)
    assert r.valid, (n, r)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(region, birth, seq, st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_substitution_is_caught(region_code: int, born: dt.date, sequence: int, pos: int,
                                           char: str) -> None:
    n = make(region_code, born, sequence)
    assume(n[pos] != char and (char != "X" or pos == 17))
    mutated = n[:pos] + char + n[pos + 1:]
    assert not v(mutated).valid


@settings(max_examples=300, deadline=None, derandomize=True)
@given(region, birth, seq, st.integers(0, 15))
def test_any_adjacent_transposition_is_caught(region_code: int, born: dt.date, sequence: int, pos: int) -> None:
    n = make(region_code, born, sequence)
    assume(n[pos] != n[pos + 1])
    mutated = n[:pos] + n[pos + 1] + n[pos] + n[pos + 2:]
    assert not v(mutated).valid


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=40), st.text(alphabet="0123456789Xx ", max_size=20)),
       st.sampled_from([None, *CardType]), st.none() | st.dates(), st.none() | st.sampled_from(list(Sex)))
def test_never_raises(number: str, card_type: CardType | None, born: dt.date | None, sex: Sex | None) -> None:
    r = validate_id_number(number, card_type=card_type, birth_date=born, sex=sex, today=TODAY)
    assert isinstance(r, ValidationResult) and r.reason
    if r.valid:
        assert r.code == "ok"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dates(dt.date(1900, 1, 1), TODAY), st.integers(0, 999), st.sampled_from(["004", "586", "840", "156"]),
       region)
def test_generated_foreigner_2023_numbers_are_valid(born: dt.date, sequence: int, nation: str, region_code: int) -> None:
    first17 = f"9{region_code:02d}{nation}{born:%Y%m%d}{sequence:03d}"
    n = first17 + check_digit(first17)
    assert v(n, card_type=CardType.FOREIGNER_2023, birth_date=born).valid
