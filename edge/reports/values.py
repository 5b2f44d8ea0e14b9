"""Printed values, units and reference ranges: parsing, unit conversion and the abnormal flag.

Everything here is a pure function of text (and a catalogue item). A printed ``↑``/``↓``/``H``/``L`` is kept
as :attr:`Value.printed_flag` but the flag that counts is computed by :func:`compute_flag` from the value and
the range; a disagreement is reported by the checks.

Example::

    v = parse_value("5.8 ↑")          # Value(kind="number", number=5.8, printed_flag="H")
    r = parse_range("3.9～6.1")       # RefRange(low=3.9, high=6.1)
    compute_flag(v, r)                 # "N": the arrow was wrong
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from edge.reports.catalogue import ItemDef

logger = logging.getLogger(__name__)

ValueKind = Literal["number", "bound", "qualitative", "text", "empty"]
Flag = Literal["H", "L", "N", "POS", "NEG"]


class UnitError(ValueError):
    """A value's unit cannot be converted to the item's canonical unit."""


@dataclass(frozen=True, slots=True)
class Value:
    """A parsed result cell.

    ``kind``: ``number`` (5.8), ``bound`` (``<0.05``: ``comparator`` and ``number``), ``qualitative`` (阴性, ``++``:
    ``qualitative`` is NEG / POS / TRACE with ``grade`` 0–4; a number printed beside it is kept), ``text`` or
    ``empty``. ``unit`` is a unit printed in the same cell; ``printed_flag`` an arrow or H/L as printed.
    """

    kind: ValueKind
    text: str = ""
    number: float | None = None
    comparator: str | None = None
    qualitative: str | None = None
    grade: int | None = None
    unit: str | None = None
    printed_flag: str | None = None


@dataclass(frozen=True, slots=True)
class RefRange:
    """A reference interval: ``low``/``high`` (either may be absent) with inclusiveness, or a qualitative
    expectation (``qualitative="NEG"`` for 阴性). ``source`` is ``report`` or ``catalogue``."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    qualitative: str | None = None
    text: str = ""
    source: str = "report"

    @property
    def empty(self) -> bool:
        return self.low is None and self.high is None and self.qualitative is None

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "low": self.low, "high": self.high, "source": self.source}


# ------------------------------------------------------------------------------------------------ text cleaning

_DASHES = "‐-‒–—―－~～〜至"
_NUM = r"\d+(?:\.\d+)?|\.\d+"


def clean(text: str) -> str:
    """NFKC, the OCR slips inside numbers fixed (``1O.5`` → ``10.5``, ``4,5`` → ``4.5``, ``。`` → ``.``)."""
    text = unicodedata.normalize("NFKC", text or "").replace("µ", "μ").strip()
    text = text.replace("。", ".").replace("·", ".")
    text = re.sub(r"(?<=\d)[Oo](?=[\d.])|(?<=[\d.])[Oo](?=\d)|(?<=\d\.)[Oo]|^[Oo](?=\.\d)", "0", text)
    text = re.sub(r"(?<=\d)[lI|](?=[\d.])|(?<=[\d.])[lI|](?=\d)", "1", text)
    text = re.sub(r"(?<=\d),(?=\d{1,2}(?!\d))", ".", text)   # 4,5 → 4.5 (1,200 stays a thousands separator)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(?<=\d)\s*\.\s*(?=\d)", ".", text)
    return text


# ------------------------------------------------------------------------------------------------ units

_UNIT_TABLE: dict[str, str] = {
    "g/l": "g/L", "g/dl": "g/dL", "mg/l": "mg/L", "mg/dl": "mg/dL", "μg/ml": "μg/mL", "ug/ml": "μg/mL",
    "ng/ml": "ng/mL", "ng/dl": "ng/dL", "pg/ml": "pg/mL", "mmol/l": "mmol/L", "μmol/l": "μmol/L",
    "umol/l": "μmol/L", "pmol/l": "pmol/L", "nmol/l": "nmol/L", "u/l": "U/L", "iu/l": "U/L", "μ/l": "U/L",
    "miu/l": "mIU/L", "μiu/ml": "mIU/L", "uiu/ml": "mIU/L", "miu/ml": "mIU/mL", "iu/ml": "IU/mL",
    "fl": "fL", "pg": "pg", "%": "%", "l/l": "L/L", "s": "s", "sec": "s", "秒": "s", "mm": "mm", "毫米": "mm",
    "cm": "cm", "厘米": "cm", "g": "g", "克": "g", "kg": "kg", "公斤": "kg", "千克": "kg", "mmhg": "mmHg",
    "bpm": "bpm", "次/分": "bpm", "次/分钟": "bpm", "次/min": "bpm", "b/min": "bpm", "beats/min": "bpm",
    "/min": "bpm", "s/co": "S/CO", "coi": "COI", "index": "COI",
}
_POWER = re.compile(r"^[x×*]?\s*10\s*(?:\^|\*|e|~|\*\*)?\s*(\d{1,2})\s*/\s*(l|μl|ul)$")
UNIT_WORDS = re.compile(
    r"(?:[x×*]?\s*10\s*(?:\^|\*\*|\*|e|~)?\s*\d{1,2}\s*/\s*[lLuμ]L?|[μumnpk]?mol/L|[μumnpk]?g/[dm]?L|m?[iI]?U/m?L|"
    r"[uμ]IU/mL|mmHg|fL|pg|S/CO|COI|次/分钟?|次/min|bpm|b/min|/min|sec|秒|mm|cm|kg|%)",
    re.IGNORECASE)


def norm_unit(text: str | None) -> str:
    """The canonical spelling of a printed unit (``×10^9/L``, ``10*9/l`` → ``10^9/L``; ``umol/l`` → ``μmol/L``).

    Unknown units come back cleaned but otherwise as printed; an empty cell gives ``""``.
    """
    if not text:
        return ""
    raw = unicodedata.normalize("NFKC", text).replace("µ", "μ").strip().strip("()（）[]")
    if raw in ("G/L", "T/L"):
        return raw  # giga / tera per litre: counts, not grams; the item's units table decides
    low = re.sub(r"\s+", "", raw).lower()
    m = _POWER.match(low)
    if m:
        per = "L" if m.group(2) == "l" else "μL"
        return f"10^{int(m.group(1))}/{per}"
    if low in _UNIT_TABLE:
        return _UNIT_TABLE[low]
    return raw


_OCR_POWER = re.compile(r"^[x×*]?\s*10\s*\D?\d?(9|12)\s*/\s*[lL1I]$")


def unit_candidates(unit: str) -> list[str]:
    """Readings of an OCR'd unit worth trying when it does not fit the item as printed:
    ``*1049/L`` (×10⁹ with a lost caret) → ``10^9/L``; ``pmol/L``, ``ymol/L`` → ``μmol/L``; ``g/t`` → ``g/L``;
    ``ps``, ``PS`` → ``pg``; ``mmo1/L`` → ``mmol/L``."""
    out: list[str] = []
    t = unicodedata.normalize("NFKC", unit).replace(" ", "")
    m = _OCR_POWER.match(t)
    if m:
        out.append(f"10^{m.group(1)}/L")
    fixed = re.sub(r"(?<=[a-zA-Z])[1I](?=/|$)|(?<=/)[1I]$", "l", t)
    micro = re.sub(r"^[pny](?=mol/|g/)", "μ", fixed)  # μ is read as p, n or y
    litre = re.sub(r"(?<=/)[tI1|]$", "L", fixed)       # L is read as t, I, 1 or |
    for cand in (fixed, micro, re.sub(r"(?<=/)[tI1|]$", "L", micro), litre, re.sub(r"(?i)^p[s5]$", "pg", fixed)):
        n = norm_unit(cand)
        if n and n != unit and n not in out:
            out.append(n)
    return out


def to_canonical_read(number: float, unit: str, item: ItemDef) -> tuple[float, str, float, str | None]:
    """Like :func:`to_canonical`, trying :func:`unit_candidates` when the printed unit does not fit; the last
    value is the corrected unit (None when the unit fitted as printed)."""
    try:
        return (*to_canonical(number, unit, item), None)
    except UnitError:
        for cand in unit_candidates(unit):
            try:
                return (*to_canonical(number, cand, item), cand)
            except UnitError:
                continue
        raise


def to_canonical(number: float, unit: str, item: ItemDef) -> tuple[float, str, float]:
    """``number`` in ``unit`` expressed in the item's canonical unit: ``(value, unit, factor)``.

    An empty unit is taken as canonical. Raises :class:`UnitError` when the unit is known to differ and the
    catalogue has no factor for it.
    """
    if not unit or unit == item.unit:
        return number, item.unit, 1.0
    if unit in item.units:
        factor = item.units[unit]
        return number * factor, item.unit, factor
    if unit.lower() == item.unit.lower():
        return number, item.unit, 1.0
    raise UnitError(f"{item.name}: no conversion from {unit!r} to {item.unit!r}")


# ------------------------------------------------------------------------------------------------ values

_FLAG_RE = re.compile(r"(↑↑|↓↓|↑|↓|(?<![A-Za-z])[HL](?![A-Za-z/])|偏高|偏低|(?<!偏)高|(?<!偏)低)")
_FLAG_MAP = {"↑": "H", "↑↑": "H", "H": "H", "高": "H", "偏高": "H", "↓": "L", "↓↓": "L", "L": "L", "低": "L",
             "偏低": "L"}
_NEG_WORDS = ("阴性", "未检出", "negative", "neg", "阴", "无", "nonreactive", "非反应性")
_POS_WORDS = ("阳性", "检出", "positive", "pos", "阳", "reactive", "反应性")
_TRACE_WORDS = ("弱阳性", "可疑", "±", "+-", "+/-", "微量", "trace", "弱阳")
_PLUS_RE = re.compile(r"^\(?\s*(\d)\s*\+\s*\)?$|^\(?\s*(\+{1,4})\s*\)?$")
_MINUS_RE = re.compile(r"^\(?\s*[-−—]\s*\)?$")
_BOUND_RE = re.compile(r"^(<=|>=|≤|≥|<|>|＜|＞|小于|大于|低于|高于)\s*(" + _NUM + r")")
_NUMBER_RE = re.compile(r"^(" + _NUM + r")")
_COMPARATORS = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "≤": "<=", "≥": ">=", "＜": "<", "＞": ">",
                "小于": "<", "低于": "<", "大于": ">", "高于": ">"}


def _qualitative(text: str) -> tuple[str, int] | None:
    t = re.sub(r"\s+", "", text).lower().strip("()（）[]")
    if not t:
        return None
    for w in _TRACE_WORDS:
        if w in t:
            return "TRACE", 0
    m = _PLUS_RE.match(t)
    if m:
        return "POS", int(m.group(1)) if m.group(1) else len(m.group(2))
    if _MINUS_RE.match(t):
        return "NEG", 0
    for w in _NEG_WORDS:
        if w in t:
            return "NEG", 0
    for w in _POS_WORDS:
        if w in t:
            return "POS", 1
    if re.search(r"\(\s*\+{1,4}\s*\)", t):
        return "POS", t.count("+")
    if re.search(r"\(\s*-\s*\)", t):
        return "NEG", 0
    return None


def parse_value(text: str) -> Value:
    """Parse a result cell (see :class:`Value`)."""
    raw = clean(text)
    if not raw or raw in ("/", "--", "---", "未做", "未测"):
        return Value("empty", raw)
    flag = None
    body = raw
    fm = _FLAG_RE.search(body)
    if fm and (fm.start() > 0 or len(body) > len(fm.group(0))):
        tok = fm.group(0)
        # an H/L letter is a flag only when it stands apart from a number (not part of a unit like mmHg)
        flag = _FLAG_MAP.get(tok)
        body = (body[:fm.start()] + " " + body[fm.end():]).strip()
    elif fm and body in _FLAG_MAP and body in ("↑", "↓"):
        return Value("empty", raw, printed_flag=_FLAG_MAP[body])
    qual = _qualitative(body)
    if qual and _PLUS_RE.match(re.sub(r"\s+", "", body)):
        return Value("qualitative", raw, None, None, qual[0], qual[1], None, flag)
    bm = _BOUND_RE.match(body)
    if bm:
        rest = body[bm.end():].strip()
        unit = _unit_in(rest)
        q = _qualitative(rest)
        return Value("bound", raw, float(bm.group(2)), _COMPARATORS[bm.group(1)],
                     q[0] if q else None, q[1] if q else None, unit, flag)
    nm = _NUMBER_RE.match(body)
    if nm:
        rest = body[nm.end():].strip()
        number = float(nm.group(1))
        q = _qualitative(rest) if rest else None
        unit = _unit_in(rest)
        if q and not unit:
            return Value("qualitative", raw, number, None, q[0], q[1], None, flag)
        return Value("number", raw, number, None, None, None, unit, flag)
    if qual:
        return Value("qualitative", raw, None, None, qual[0], qual[1], None, flag)
    return Value("text", raw, printed_flag=flag)


def _unit_in(text: str) -> str | None:
    m = UNIT_WORDS.search(text)
    return norm_unit(m.group(0)) if m else None


# ------------------------------------------------------------------------------------------------ ranges

_RANGE_RE = re.compile(r"(" + _NUM + r")\s*(?:[" + re.escape(_DASHES) + r"]{1,2}|\s+)\s*(" + _NUM + r")")


def parse_range(text: str) -> RefRange:
    """Parse a printed reference range: ``3.5-9.5``, ``3.9～6.1``, ``<5.1``, ``≤40``, ``>1.0``, ``阴性``, ``0-40``."""
    raw = clean(text)
    if not raw:
        return RefRange(text="")
    body = raw
    bm = _BOUND_RE.match(body)
    if bm:
        cmp_ = _COMPARATORS[bm.group(1)]
        n = float(bm.group(2))
        if cmp_ in ("<", "<="):
            return RefRange(high=n, high_inclusive=cmp_ == "<=", text=raw)
        return RefRange(low=n, low_inclusive=cmp_ == ">=", text=raw)
    rm = _RANGE_RE.search(body)
    if rm:
        lo, hi = float(rm.group(1)), float(rm.group(2))
        if lo <= hi:
            return RefRange(low=lo, high=hi, text=raw)
    q = _qualitative(body)
    if q:
        return RefRange(qualitative=q[0] if q[0] != "TRACE" else "NEG", text=raw)
    return RefRange(text=raw)


def catalogue_range(item: ItemDef) -> RefRange:
    """The catalogue's typical range for ``item`` (used when the report prints none)."""
    if item.type == "qualitative":
        return RefRange(qualitative="NEG" if item.positive_abnormal else None, text=item.ref_text or "阴性",
                        source="catalogue")
    text = item.ref_text
    if not text:
        if item.ref_low is not None and item.ref_high is not None:
            text = f"{_fmt(item.ref_low)}-{_fmt(item.ref_high)}"
        elif item.ref_high is not None:
            text = f"<{_fmt(item.ref_high)}"
        elif item.ref_low is not None:
            text = f">{_fmt(item.ref_low)}"
    # a catalogue "<10.0" (OGTT thresholds) is exclusive; a plain interval is inclusive at both ends
    exclusive_high = item.ref_low is None and item.ref_high is not None
    return RefRange(low=item.ref_low, high=item.ref_high, high_inclusive=not exclusive_high, text=text,
                    source="catalogue")


def convert_range(ref: RefRange, factor: float) -> RefRange:
    """A printed range expressed in the canonical unit (the same factor as the value)."""
    if factor == 1.0 or ref.qualitative is not None:
        return ref
    return RefRange(None if ref.low is None else ref.low * factor, None if ref.high is None else ref.high * factor,
                    ref.low_inclusive, ref.high_inclusive, ref.qualitative, ref.text, ref.source)


def _fmt(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------------------------ flags

def compute_flag(value: Value, ref: RefRange, item: ItemDef | None = None) -> Flag | None:
    """The flag from value and range: H / L / N for quantities, POS / NEG for qualitative results.

    A bound (``<0.05``) gets a flag only when the bound decides it. None when nothing can be said.
    """
    qualitative_item = item is not None and item.type == "qualitative"
    if value.kind == "qualitative" and value.qualitative is not None:
        return "NEG" if value.qualitative == "NEG" else "POS"
    if value.kind == "number" and value.number is not None:
        side = _side(value.number, ref)
        if side is None:
            return None
        if qualitative_item:
            return "POS" if side == "H" else "NEG"
        return side
    if value.kind == "bound" and value.number is not None:
        if value.qualitative is not None:
            return "NEG" if value.qualitative == "NEG" else "POS"
        n, c = value.number, value.comparator
        flag: Flag | None = None
        if c in ("<", "<="):
            if ref.low is not None and n <= ref.low:
                flag = "L"
            elif ref.high is not None and n <= ref.high and (ref.low is None or ref.low <= 0):
                flag = "N"
        elif c in (">", ">="):
            if ref.high is not None and n >= ref.high:
                flag = "H"
            elif ref.low is not None and n >= ref.low and ref.high is None:
                flag = "N"
        if flag is not None and qualitative_item:
            return "POS" if flag == "H" else "NEG"
        return flag
    return None


def _side(x: float, ref: RefRange) -> Flag | None:
    if ref.low is None and ref.high is None:
        return None
    if ref.low is not None and (x < ref.low or (x == ref.low and not ref.low_inclusive)):
        return "L"
    if ref.high is not None and (x > ref.high or (x == ref.high and not ref.high_inclusive)):
        return "H"
    return "N"


def is_abnormal(flag: str | None, item: ItemDef | None) -> bool:
    """True for H / L, and for POS unless the item says a positive result is expected (anti-HBs)."""
    if flag in ("H", "L"):
        return True
    if flag == "POS":
        return item is None or item.positive_abnormal
    return False
