"""ICAO 9303 machine-readable zones: check digits, parsing, and check-digit-guided correction.

Pure functions on text; :mod:`edge.documents.mrz_ocr` finds and reads the zone in a camera frame.

Layouts (ICAO Doc 9303 parts 4-6, character positions 0-based):

* **TD1** (ID cards, 3 x 30): line 1 document code, issuing state, document number + check,
  optional data 1; line 2 birth date + check, sex, expiry + check, nationality, optional data 2,
  composite check; line 3 the name.
* **TD2** (2 x 36) and **TD3** (passports, 2 x 44): line 1 document code, issuing state, name; line 2
  document number + check, nationality, birth date + check, sex, expiry + check, optional data
  (TD3: personal number + its own check) and the composite check.

Check digits use the weights 7, 3, 1 repeating over the character values ``0-9`` = 0-9, ``A-Z`` =
10-35, ``<`` = 0, modulo 10.

**Correction** (:func:`parse_mrz` with ``correct=True``) repairs the usual OCR confusions only where
the position's character class leaves one reading:

* a letter in a digits-only position (dates, check digits) becomes its look-alike digit (``O``,
  ``Q``, ``D`` 0; ``I`` 1; ``Z`` 2; ``S`` 5; ``G`` 6; ``B`` 8; ``K`` ``<``);
* a digit in a letters-only position (document code, states, names) becomes its look-alike
  letter (0 ``O``, 1 ``I``, 2 ``Z``, 5 ``S``, 6 ``G``, 8 ``B``);
* anything in the name's trailing filler (after the first ``<<<``, which no name contains; OCR reads
  a ``<`` there as ``K`` or ``E``) becomes ``<``.

The corrected zone is returned only when every check digit then passes; otherwise the zone is returned
as read, uncorrected and not valid. Letter-digit fields (document number, optional data) are never
changed: both readings are allowed there, and a check digit cannot choose between them safely. A
look-alike swap passes a mod-10 check one time in ten when the real error lies elsewhere (tried on
600 synthetic documents with Tesseract's own second choices: one wrong document number came out
valid); ``G``/``6`` and ``K``/``<`` differ by a multiple of 10, so no check digit sees them; and the
composite repeats the document number's weights, so it adds nothing there. Reading the zone again
(another frame, another scale) is the safe remedy.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

logger = logging.getLogger(__name__)

FILLER = "<"
ALPHABET = frozenset(string.digits + string.ascii_uppercase + FILLER)
WEIGHTS = (7, 3, 1)


class MrzError(ValueError):
    """Base of the MRZ errors."""


class MrzFormatError(MrzError):
    """The text is not a machine-readable zone of a known shape (3 x 30, 2 x 36 or 2 x 44 characters)."""


class MrzFormat(enum.StrEnum):
    """The ICAO 9303 size classes: number of lines x characters per line."""

    TD1 = "TD1"  # ID cards: 3 x 30
    TD2 = "TD2"  # 2 x 36
    TD3 = "TD3"  # passports: 2 x 44

    @property
    def lines(self) -> int:
        return 3 if self is MrzFormat.TD1 else 2

    @property
    def width(self) -> int:
        return {MrzFormat.TD1: 30, MrzFormat.TD2: 36, MrzFormat.TD3: 44}[self]

    @classmethod
    def of_shape(cls, lines: int, width: int) -> MrzFormat:
        """The format with ``lines`` lines of ``width`` characters; :class:`MrzFormatError` if none."""
        for fmt in cls:
            if (fmt.lines, fmt.width) == (lines, width):
                return fmt
        raise MrzFormatError(f"{lines} lines of {width} characters is not an MRZ (3x30, 2x36 or 2x44)")


# -- check digits -----------------------------------------------------------------------------------------

def char_value(char: str) -> int:
    """The check-digit value of one MRZ character: digits 0-9, ``A``-``Z`` 10-35, ``<`` 0."""
    if char.isdigit() and char.isascii():
        return ord(char) - 48
    if "A" <= char <= "Z":
        return ord(char) - 55
    if char == FILLER:
        return 0
    raise MrzError(f"{char!r} is not an MRZ character (A-Z, 0-9, <)")


def check_digit(data: str) -> str:
    """The ICAO 9303 check digit of ``data`` (weights 7, 3, 1; modulo 10), as a character.

    >>> check_digit("L898902C3"), check_digit("740812"), check_digit("<<<<<<")
    ('6', '2', '0')
    """
    return str(sum(char_value(c) * WEIGHTS[i % 3] for i, c in enumerate(data)) % 10)


# -- layouts ----------------------------------------------------------------------------------------------

class CharClass(enum.Enum):
    """What may stand in a position."""

    DIGIT = "0123456789<"     # dates (``<`` for unknown parts) and check digits
    ALPHA = string.ascii_uppercase + FILLER
    ALNUM = string.digits + string.ascii_uppercase + FILLER
    SEX = "MFX<"


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    line: int
    start: int
    end: int
    cls: CharClass


Span = tuple[int, int, int]  # line, start, end


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    spans: tuple[Span, ...]
    digit: tuple[int, int]            # line, position of the check digit
    filler_ok: bool = False           # the digit may be ``<`` when the data is all fillers


def _f(name: str, line: int, start: int, end: int, cls: CharClass) -> _Field:
    return _Field(name, line, start, end, cls)


D, A, N, S = CharClass.DIGIT, CharClass.ALPHA, CharClass.ALNUM, CharClass.SEX

_LAYOUTS: dict[MrzFormat, tuple[_Field, ...]] = {
    MrzFormat.TD1: (
        _f("document_code", 0, 0, 2, A), _f("issuing_country", 0, 2, 5, A), _f("document_number", 0, 5, 14, N),
        _f("document_number_check", 0, 14, 15, D), _f("optional_data", 0, 15, 30, N),
        _f("birth_date", 1, 0, 6, D), _f("birth_date_check", 1, 6, 7, D), _f("sex", 1, 7, 8, S),
        _f("expiry_date", 1, 8, 14, D), _f("expiry_date_check", 1, 14, 15, D), _f("nationality", 1, 15, 18, A),
        _f("optional_data_2", 1, 18, 29, N), _f("composite_check", 1, 29, 30, D),
        _f("name", 2, 0, 30, A),
    ),
    MrzFormat.TD2: (
        _f("document_code", 0, 0, 2, A), _f("issuing_country", 0, 2, 5, A), _f("name", 0, 5, 36, A),
        _f("document_number", 1, 0, 9, N), _f("document_number_check", 1, 9, 10, D), _f("nationality", 1, 10, 13, A),
        _f("birth_date", 1, 13, 19, D), _f("birth_date_check", 1, 19, 20, D), _f("sex", 1, 20, 21, S),
        _f("expiry_date", 1, 21, 27, D), _f("expiry_date_check", 1, 27, 28, D), _f("optional_data", 1, 28, 35, N),
        _f("composite_check", 1, 35, 36, D),
    ),
    MrzFormat.TD3: (
        _f("document_code", 0, 0, 2, A), _f("issuing_country", 0, 2, 5, A), _f("name", 0, 5, 44, A),
        _f("document_number", 1, 0, 9, N), _f("document_number_check", 1, 9, 10, D), _f("nationality", 1, 10, 13, A),
        _f("birth_date", 1, 13, 19, D), _f("birth_date_check", 1, 19, 20, D), _f("sex", 1, 20, 21, S),
        _f("expiry_date", 1, 21, 27, D), _f("expiry_date_check", 1, 27, 28, D), _f("optional_data", 1, 28, 42, N),
        _f("optional_data_check", 1, 42, 43, D), _f("composite_check", 1, 43, 44, D),
    ),
}
"""Every position of each format. The TD1/TD2 document-number check holds ``<`` when a long number
continues in the optional data."""


def _field(fmt: MrzFormat, name: str) -> _Field:
    return next(f for f in _LAYOUTS[fmt] if f.name == name)


def _long_number(lines: Sequence[str], fmt: MrzFormat) -> tuple[int, int] | None:
    """For a TD1/TD2 document number longer than 9 characters: the (line, position) of its check digit.

    The number's first 9 characters fill the field, the check position holds ``<``, and the rest of the
    number follows in the optional data, then its check digit, then a filler.
    """
    if fmt is MrzFormat.TD3:
        return None
    number, opt = _field(fmt, "document_number"), _field(fmt, "optional_data")
    line = lines[number.line]
    if line[number.end] != FILLER or FILLER in line[number.start:number.end]:
        return None
    rest = line[opt.start:opt.end]
    end = rest.find(FILLER)
    if end < 2:  # at least one more character of the number and the check digit
        return None
    return number.line, opt.start + end - 1


def _checks(lines: Sequence[str], fmt: MrzFormat) -> tuple[_Check, ...]:
    """The check digits of ``lines`` (which depend on the content for long document numbers)."""
    if fmt is MrzFormat.TD1:
        checks = [_Check("document_number", ((0, 5, 14),), (0, 14)),
                  _Check("birth_date", ((1, 0, 6),), (1, 6)),
                  _Check("expiry_date", ((1, 8, 14),), (1, 14)),
                  _Check("composite", ((0, 5, 30), (1, 0, 7), (1, 8, 15), (1, 18, 29)), (1, 29))]
    else:
        w = fmt.width
        checks = [_Check("document_number", ((1, 0, 9),), (1, 9)),
                  _Check("birth_date", ((1, 13, 19),), (1, 19)),
                  _Check("expiry_date", ((1, 21, 27),), (1, 27))]
        if fmt is MrzFormat.TD3:
            checks.append(_Check("optional_data", ((1, 28, 42),), (1, 42), filler_ok=True))
            checks.append(_Check("composite", ((1, 0, 10), (1, 13, 20), (1, 21, 43)), (1, 43)))
        else:
            checks.append(_Check("composite", ((1, 0, 10), (1, 13, 20), (1, 21, w - 1)), (1, w - 1)))
    long = _long_number(lines, fmt)
    if long is not None:
        number = _field(fmt, "document_number")
        checks[0] = _Check("document_number", ((number.line, number.start, number.end),
                                               (long[0], _field(fmt, "optional_data").start, long[1])), long)
    return tuple(checks)


def _data(lines: Sequence[str], spans: Iterable[Span]) -> str:
    return "".join(lines[line][start:end] for line, start, end in spans)


def _passes(lines: Sequence[str], check: _Check) -> bool:
    data = _data(lines, check.spans)
    digit = lines[check.digit[0]][check.digit[1]]
    if digit == FILLER:
        return check.filler_ok and set(data) <= {FILLER}
    return digit == check_digit(data)


def _check_results(lines: Sequence[str], fmt: MrzFormat) -> dict[str, bool]:
    return {c.name: _passes(lines, c) for c in _checks(lines, fmt)}


def well_formed(lines: Sequence[str], fmt: MrzFormat) -> bool:
    """Whether every position holds a character its field allows (digits in dates and check digits,
    letters in states and names, ``M``/``F``/``X``/``<`` for sex). A line read one column off can pass a
    check digit by chance (a letter counts 10-35 in it); it cannot pass this."""
    return all(lines[f.line][col] in f.cls.value for f in _LAYOUTS[fmt] for col in range(f.start, f.end))


# -- text in, lines out -----------------------------------------------------------------------------------

_LOOKALIKE_FILLERS = str.maketrans({"«": "<", "‹": "<", "〈": "<", "(": "<", "[": "<", "{": "<"})


def normalise_lines(text: str | Sequence[str]) -> tuple[str, ...]:
    """MRZ lines from OCR text: upper case, blanks removed, look-alike chevrons as ``<``, empty lines dropped.

    Raises :class:`MrzFormatError` when the result is not 3 x 30, 2 x 36 or 2 x 44 MRZ characters.
    """
    raw = text.splitlines() if isinstance(text, str) else list(text)
    lines = tuple("".join(ln.split()).upper().translate(_LOOKALIKE_FILLERS) for ln in raw)
    lines = tuple(ln for ln in lines if ln)
    widths = {len(ln) for ln in lines}
    if len(widths) != 1:
        raise MrzFormatError(f"lines of unequal length {sorted(len(ln) for ln in lines)}")
    MrzFormat.of_shape(len(lines), widths.pop())
    for ln in lines:
        bad = set(ln) - ALPHABET
        if bad:
            raise MrzFormatError(f"{len(bad)} character(s) outside A-Z, 0-9, <")
    return lines


def detect_format(lines: Sequence[str]) -> MrzFormat:
    """The format of already normalised ``lines``."""
    return MrzFormat.of_shape(len(lines), len(lines[0]) if lines else 0)


# -- result -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Correction:
    """One character changed by :func:`parse_mrz`: where, from what to what, and by which rule.

    ``rule``: ``"class"`` (a letter in a digits-only position or a digit in a letters-only one) or
    ``"filler"`` (a character in the name's trailing filler, after the first ``<<<``).
    """

    line: int
    column: int
    field: str
    read: str
    corrected: str
    rule: str


@dataclass(frozen=True, slots=True, repr=False)
class MrzResult:
    """A parsed machine-readable zone. Its ``repr`` shows no personal data.

    Names use spaces between name parts (``<`` in the zone); ``document_type`` and the country fields are
    stripped of fillers (``"P"``, ``"I"``, ``"ID"``; ``"UTO"``, ``"D"``). ``sex`` is ``"M"``, ``"F"`` or
    ``"X"`` (``<`` in the zone: unspecified). Dates are ``None`` when unknown (``<``) or not a calendar
    date. ``optional_data_2`` is TD1's second optional field (empty for TD2/TD3). ``checks`` maps each
    check digit (``document_number``, ``birth_date``, ``expiry_date``, TD3 ``optional_data``,
    ``composite``) to whether it passed; ``well_formed`` says every position holds a character its field
    allows (:func:`well_formed`); ``valid`` is true when the zone is well formed and every check passed.
    ``corrections`` lists what was changed (empty when the zone was read as printed, or when the corrected
    zone would not be valid). ``lines`` is the zone as parsed (after corrections).
    """

    format: MrzFormat
    document_type: str
    issuing_country: str
    surname: str
    given_names: str
    document_number: str
    nationality: str
    birth_date: dt.date | None
    sex: str
    expiry_date: dt.date | None
    optional_data: str
    optional_data_2: str
    checks: Mapping[str, bool] = field(hash=False)
    well_formed: bool
    valid: bool
    corrections: tuple[Correction, ...]
    lines: tuple[str, ...]

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the check digits that did not pass."""
        return tuple(name for name, ok in self.checks.items() if not ok)

    def __repr__(self) -> str:
        fixed = sorted({c.field for c in self.corrections})
        return (f"MrzResult(format={self.format.value}, document_type={self.document_type!r}, "
                f"issuing_country={self.issuing_country!r}, valid={self.valid}, well_formed={self.well_formed}, "
                f"failed_checks={list(self.failed_checks)}, corrected_fields={fixed}, personal data masked)")

    __str__ = __repr__


def _date(text: str, kind: str, today: dt.date) -> dt.date | None:
    if not text.isdigit():
        return None
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:])
    if kind == "birth":
        year = 2000 + yy if 2000 + yy <= today.year else 1900 + yy
    else:
        year = 2000 + yy if 2000 + yy <= today.year + 50 else 1900 + yy
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        return None


def _text(lines: Sequence[str], fmt: MrzFormat, name: str) -> str:
    f = _field(fmt, name)
    return lines[f.line][f.start:f.end]


def _result(lines: tuple[str, ...], fmt: MrzFormat, corrections: tuple[Correction, ...],
            today: dt.date) -> MrzResult:
    checks = _check_results(lines, fmt)
    formed = well_formed(lines, fmt)
    name = _text(lines, fmt, "name").rstrip(FILLER)
    surname, _, given = name.partition(FILLER * 2)
    number = _text(lines, fmt, "document_number")
    optional = _text(lines, fmt, "optional_data")
    long = _long_number(lines, fmt)
    if long is not None:
        start = _field(fmt, "optional_data").start
        number += lines[long[0]][start:long[1]]
        optional = lines[long[0]][long[1] + 2:_field(fmt, "optional_data").end]
    sex = _text(lines, fmt, "sex")
    return MrzResult(
        format=fmt,
        document_type=_text(lines, fmt, "document_code").strip(FILLER),
        issuing_country=_text(lines, fmt, "issuing_country").strip(FILLER),
        surname=surname.replace(FILLER, " ").strip(),
        given_names=given.replace(FILLER, " ").strip(),
        document_number=number.replace(FILLER, ""),
        nationality=_text(lines, fmt, "nationality").strip(FILLER),
        birth_date=_date(_text(lines, fmt, "birth_date"), "birth", today),
        sex="X" if sex == FILLER else sex,
        expiry_date=_date(_text(lines, fmt, "expiry_date"), "expiry", today),
        optional_data=optional.strip(FILLER),
        optional_data_2=_text(lines, fmt, "optional_data_2").strip(FILLER) if fmt is MrzFormat.TD1 else "",
        checks=MappingProxyType(checks),
        well_formed=formed,
        valid=formed and all(checks.values()),
        corrections=corrections,
        lines=lines,
    )


# -- correction -------------------------------------------------------------------------------------------

TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "I": "1", "Z": "2", "S": "5", "G": "6", "B": "8", "K": FILLER}
"""Letters read in a digits-only position and the digit (or filler) they stand for."""
TO_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"}
"""Digits read in a letters-only position and the letter they stand for."""


def _class_fixes(lines: list[list[str]], fmt: MrzFormat) -> list[Correction]:
    fixes = []
    for f in _LAYOUTS[fmt]:
        table = TO_DIGIT if f.cls is D else TO_LETTER if f.cls is A else {}
        for col in range(f.start, f.end):
            char = lines[f.line][col]
            if char not in f.cls.value and char in table:
                lines[f.line][col] = table[char]
                fixes.append(Correction(f.line, col, f.name, char, table[char], "class"))
    return fixes


def _filler_fixes(lines: list[list[str]], fmt: MrzFormat) -> list[Correction]:
    f = _field(fmt, "name")
    text = "".join(lines[f.line][f.start:f.end])
    tail = text.find(FILLER * 3)
    fixes = []
    if tail >= 0:
        for col in range(f.start + tail, f.end):
            char = lines[f.line][col]
            if char != FILLER:
                lines[f.line][col] = FILLER
                fixes.append(Correction(f.line, col, f.name, char, FILLER, "filler"))
    return fixes


def correct_lines(lines: Sequence[str], fmt: MrzFormat) -> tuple[tuple[str, ...], tuple[Correction, ...]]:
    """``lines`` with the look-alike corrections applied (see the module docstring), and what changed.

    The returned lines need not be valid; :func:`parse_mrz` keeps them only when they are.
    """
    grid = [list(ln) for ln in lines]
    fixes = _class_fixes(grid, fmt)
    fixes += _filler_fixes(grid, fmt)
    return tuple("".join(ln) for ln in grid), tuple(fixes)


def _valid(lines: Sequence[str], fmt: MrzFormat) -> bool:
    return well_formed(lines, fmt) and all(_passes(lines, c) for c in _checks(lines, fmt))


def parse_mrz(text: str | Sequence[str], *, correct: bool = True, today: dt.date | None = None) -> MrzResult:
    """Parse a TD1, TD2 or TD3 zone (one string with line breaks, or the lines) and check every check digit.

    With ``correct``, look-alike OCR errors are repaired where the layout and the check digits leave one
    reading; the repaired zone is returned only if it is then fully valid. ``today`` decides the century
    of two-digit years (a birth year is not in the future; an expiry year is at most 50 years ahead).
    Raises :class:`MrzFormatError` when the text has no MRZ shape.

    >>> r = parse_mrz(["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6",
    ...                "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"])
    >>> r.valid, r.surname, r.given_names, r.document_number
    (True, 'ERIKSSON', 'ANNA MARIA', 'D23145890')
    """
    today = today or dt.date.today()
    lines = normalise_lines(text)
    fmt = detect_format(lines)
    if correct:
        fixed, corrections = correct_lines(lines, fmt)
        if corrections and _valid(fixed, fmt):
            logger.debug("MRZ %s corrected: %s", fmt.value, sorted({c.field for c in corrections}))
            return _result(fixed, fmt, corrections, today)
    return _result(lines, fmt, (), today)


# -- composing (tests, simulators, specimen documents) ----------------------------------------------------

def mrz_name(surname: str, given_names: str, width: int) -> str:
    """The name field: ``SURNAME<<GIVEN<NAMES`` padded or cut to ``width`` (spaces and hyphens as ``<``)."""
    def clean(s: str) -> str:
        s = s.upper().replace(" ", FILLER).replace("-", FILLER)
        return "".join(c for c in s if c in ALPHABET)
    text = clean(surname) + (FILLER * 2 + clean(given_names) if given_names else "")
    return text[:width].ljust(width, FILLER)


def _pad(value: str, width: int) -> str:
    if len(value) > width or set(value) - ALPHABET:
        raise MrzError(f"a value of {len(value)} characters does not fit a field of {width} MRZ characters")
    return value.ljust(width, FILLER)


def compose_mrz(fmt: MrzFormat, *, document_type: str, issuing_country: str, surname: str, given_names: str,
                document_number: str, nationality: str, birth_date: str, sex: str, expiry_date: str,
                optional_data: str = "", optional_data_2: str = "") -> tuple[str, ...]:
    """The zone's lines for the given values, with every check digit computed.

    Dates are ``YYMMDD``; ``sex`` is ``M``, ``F``, ``X`` or ``<``. Document numbers longer than 9
    characters (TD1 and TD2) continue in the optional data as ICAO 9303 prescribes.

    >>> compose_mrz(MrzFormat.TD3, document_type="P", issuing_country="UTO", surname="Eriksson",
    ...             given_names="Anna Maria", document_number="L898902C3", nationality="UTO",
    ...             birth_date="740812", sex="F", expiry_date="120415", optional_data="ZE184226B")[1]
    'L898902C36UTO7408122F1204159ZE184226B<<<<<10'
    """
    code, state, nat = _pad(document_type, 2), _pad(issuing_country, 3), _pad(nationality, 3)
    birth, expiry, sex = _pad(birth_date, 6), _pad(expiry_date, 6), "<" if sex == "X" else sex
    if len(sex) != 1 or sex not in CharClass.SEX.value:
        raise MrzError("sex must be M, F, X or <")
    w = fmt.width
    if len(document_number) > 9 and fmt is not MrzFormat.TD3:
        number = document_number[:9] + FILLER
        optional_data = document_number[9:] + check_digit(document_number) + FILLER + optional_data
    else:
        number = _pad(document_number, 9) + check_digit(_pad(document_number, 9))
    birth += check_digit(birth)
    expiry += check_digit(expiry)
    if fmt is MrzFormat.TD1:
        line1 = code + state + number + _pad(optional_data, 15)
        line2 = birth + sex + expiry + nat + _pad(optional_data_2, 11)
        line2 += check_digit(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
        return line1, line2, mrz_name(surname, given_names, 30)
    line1 = code + state + mrz_name(surname, given_names, w - 5)
    if fmt is MrzFormat.TD3:
        personal = _pad(optional_data, 14)
        tail = personal + ("<" if set(personal) == {FILLER} else check_digit(personal))
    else:
        tail = _pad(optional_data, 7)
    line2 = number + nat + birth + sex + expiry + tail
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:w - 1])
    return line1, line2
