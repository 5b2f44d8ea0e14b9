"""Identity number checks for every card layout. Never raises: a bad number is a :class:`ValidationResult`.

Schemes (:class:`Scheme`):

* ``resident18`` — GB 11643-1999 citizen identity number on the resident card: 6-digit region code (the
  first two digits a province-level code, :data:`PROVINCE_CODES`), birth date ``YYYYMMDD``, 3-digit
  sequence (odd for men, even for women), check character by ISO 7064 MOD 11-2 (``X`` stands for 10).
* ``hmt18`` — the Hong Kong / Macau / Taiwan residence permit: the same rules, region 81 / 82 / 83.
* ``foreigner2023`` — the 2023 foreigner permanent residence card: 18 characters, ``9``, province code of
  the accepting office (2), nationality numeric code (3), birth date (8), sequence (3), MOD 11-2 check.
* ``foreigner2017`` — the 2017 card: 15 characters, nationality (3 letters), office code (4 digits, the
  first two a province code), birth date ``YYMMDD``, sequence (1), check (1). Its check digit algorithm is
  not in the public sources we could verify, so it is not checked; the format, province and birth date are.

>>> validate_id_number("11010519491231002X").valid
True
>>> validate_id_number("110105194912310021").code
'bad_check_digit'
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from drivers.idcard.card import CardType, IdCard, Sex

logger = logging.getLogger(__name__)

PROVINCE_CODES = frozenset([*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55),
                            *range(61, 66), 71, 81, 82, 83, 91])
"""Province-level codes allowed as the first two digits of a citizen identity number."""

HMT_CODES = frozenset({81, 82, 83})
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH_YEAR = 1850

_RE18 = re.compile(r"[0-9]{17}[0-9X]")
_RE15 = re.compile(r"[A-Z]{3}[0-9]{12}")


class Scheme:
    """Names of the number schemes."""

    RESIDENT18 = "resident18"
    HMT18 = "hmt18"
    FOREIGNER2023 = "foreigner2023"
    FOREIGNER2017 = "foreigner2017"


_SCHEME_OF_TYPE = {CardType.RESIDENT: Scheme.RESIDENT18, CardType.HMT_RESIDENCE: Scheme.HMT18,
                   CardType.FOREIGNER_2023: Scheme.FOREIGNER2023, CardType.FOREIGNER_2017: Scheme.FOREIGNER2017}


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of a check. ``code`` is stable and machine-readable (``ok``, ``bad_check_digit``, …); ``reason``
    is a sentence for the operator that never repeats the number itself. ``warnings`` are facts that do not
    make the number invalid (for instance an expired card)."""

    valid: bool
    code: str
    reason: str
    scheme: str = ""
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"valid": self.valid, "code": self.code, "reason": self.reason, "scheme": self.scheme,
                "warnings": list(self.warnings)}


def _bad(code: str, reason: str, scheme: str = "") -> ValidationResult:
    return ValidationResult(False, code, reason, scheme)


def check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for 17 ASCII digits (``0``-``9`` or ``X``)."""
    if len(first17) != 17 or not all("0" <= c <= "9" for c in first17):
        raise ValueError("check_digit needs 17 ASCII digits")
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def _date8(s: str) -> dt.date | None:
    try:
        return dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None


def _check_birth(born: dt.date | None, card_birth: dt.date | None, today: dt.date,
                 scheme: str) -> ValidationResult | None:
    if born is None:
        return _bad("bad_birth_date", "the birth date inside the number is not a real calendar date", scheme)
    if born > today:
        return _bad("bad_birth_date", "the birth date inside the number is in the future", scheme)
    if born.year < EARLIEST_BIRTH_YEAR:
        return _bad("bad_birth_date", f"the birth date inside the number is before {EARLIEST_BIRTH_YEAR}", scheme)
    if card_birth is not None and card_birth != born:
        return _bad("birth_date_mismatch", "the birth date inside the number differs from the card's birth date",
                    scheme)
    return None


def _check18(n: str, scheme: str, card_birth: dt.date | None, sex: Sex | None, today: dt.date) -> ValidationResult:
    if len(n) != 18:
        return _bad("bad_length", f"the number has {len(n)} characters, expected 18", scheme)
    if not _RE18.fullmatch(n):
        return _bad("bad_characters", "the number must be 17 digits followed by a digit or X", scheme)
    region = int(n[0:2]) if scheme != Scheme.FOREIGNER2023 else int(n[1:3])
    if scheme == Scheme.FOREIGNER2023 and n[0] != "9":
        return _bad("wrong_scheme", "a 2023 foreigner permanent residence number starts with 9", scheme)
    if region not in PROVINCE_CODES:
        return _bad("bad_region", f"province code {region:02d} does not exist", scheme)
    if scheme == Scheme.HMT18 and region not in HMT_CODES:
        return _bad("wrong_scheme", "a Hong Kong/Macau/Taiwan residence permit number starts with 81, 82 or 83",
                    scheme)
    bad = _check_birth(_date8(n[6:14]), card_birth, today, scheme)
    if bad:
        return bad
    if check_digit(n[:17]) != n[17]:
        return _bad("bad_check_digit", "the check character does not match (mistyped or forged number)", scheme)
    if sex in (Sex.MALE, Sex.FEMALE) and (int(n[16]) % 2 == 1) != (sex is Sex.MALE):
        return _bad("sex_mismatch", "the sequence digit's parity does not match the card's sex", scheme)
    return ValidationResult(True, "ok", "number is well formed and consistent with the card", scheme)


def _check15(n: str, card_birth: dt.date | None, today: dt.date) -> ValidationResult:
    scheme = Scheme.FOREIGNER2017
    if len(n) != 15:
        return _bad("bad_length", f"the number has {len(n)} characters, expected 15", scheme)
    if not _RE15.fullmatch(n):
        return _bad("bad_characters", "the number must be 3 capital letters followed by 12 digits", scheme)
    region = int(n[3:5])
    if region not in PROVINCE_CODES:
        return _bad("bad_region", f"province code {region:02d} does not exist", scheme)
    yymmdd = n[7:13]
    if card_birth is not None:
        if card_birth.strftime("%y%m%d") != yymmdd:
            return _bad("birth_date_mismatch", "the birth date inside the number differs from the card's birth date",
                        scheme)
        bad = _check_birth(card_birth, None, today, scheme)
        if bad:
            return bad
    else:
        candidates = [d for d in (_date8(c + yymmdd) for c in ("19", "20")) if d is not None and d <= today]
        if not candidates:
            return _bad("bad_birth_date", "the birth date inside the number is not a real past date", scheme)
    return ValidationResult(True, "ok", "number is well formed and consistent with the card (check digit not "
                            "verified for 2017 cards)", scheme)


def detect_scheme(number: str) -> str:
    """Guess the scheme from the number alone: 15 characters → 2017 foreigner, 18 starting with 9 → 2023
    foreigner, 81/82/83 → HMT permit, else resident. (A citizen number of region 91 also starts with 9:
    :func:`validate_id_number` without a card type accepts it under either scheme.)"""
    n = number.strip().upper()
    if len(n) == 15:
        return Scheme.FOREIGNER2017
    if n.startswith("9"):
        return Scheme.FOREIGNER2023
    if n[:2] in ("81", "82", "83"):
        return Scheme.HMT18
    return Scheme.RESIDENT18


def validate_id_number(number: object, *, card_type: CardType | None = None, birth_date: dt.date | None = None,
                       sex: Sex | None = None, today: dt.date | None = None) -> ValidationResult:
    """Check an identity number, optionally against the card's type, birth date and sex. Never raises.

    ``card_type`` fixes the scheme (else it is guessed with :func:`detect_scheme`); ``birth_date`` and
    ``sex`` (from the card) are compared with what the number encodes.
    """
    try:
        if not isinstance(number, str):
            return _bad("bad_characters", "the number is not text")
        n = number.strip().upper()
        if not n:
            return _bad("empty", "the card carries no number")
        scheme = _SCHEME_OF_TYPE[card_type] if card_type is not None else detect_scheme(n)
        today = today or dt.date.today()
        if scheme == Scheme.FOREIGNER2017:
            return _check15(n, birth_date, today)
        result = _check18(n, scheme, birth_date, sex, today)
        if card_type is None and not result.valid and n.startswith("91"):
            # region 91 of a citizen number looks like a 2023 foreigner number; without the card, try both
            resident = _check18(n, Scheme.RESIDENT18, birth_date, sex, today)
            if resident.valid:
                return resident
        return result
    except Exception:  # a validator must never take the check-in flow down
        logger.exception("identity number validation failed unexpectedly")
        return _bad("internal_error", "the number could not be checked")


def validate_card(card: IdCard, *, today: dt.date | None = None) -> ValidationResult:
    """Check a card's number against its own layout, birth date and sex; note an expired card as a warning."""
    today = today or dt.date.today()
    if card.birth_date is None:
        return _bad("bad_card_birth_date", "the card's birth date field is missing or not a real date",
                    _SCHEME_OF_TYPE[card.card_type])
    result = validate_id_number(card.id_number, card_type=card.card_type, birth_date=card.birth_date,
                                sex=card.sex, today=today)
    warnings: list[str] = []
    if card.expired(today):
        warnings.append("card expired")
    if card.valid_from is not None and card.valid_from > today:
        warnings.append("card not yet valid")
    if card.valid_to is None and not card.permanent:
        warnings.append("card expiry date unreadable")
    if warnings:
        return ValidationResult(result.valid, result.code, result.reason, result.scheme, tuple(warnings))
    return result
