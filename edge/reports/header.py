"""Patient header and clinical facts: ``年龄: 29岁``, ``血压 135/88 mmHg``, ``孕28+3周``, ``双活胎`` …

Reads the free lines of a page (and any ``key: value`` text in table cells) into the personal part
(:class:`~edge.reports.model.Patient`) and the clinical part (:class:`~edge.reports.model.Facts`); the caller's
``patient`` dict fills gaps and overrides what was read. Nothing read here is logged.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.reports.model import Facts, Patient

logger = logging.getLogger(__name__)

_DATE = r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})"
_PATTERNS: dict[str, re.Pattern[str]] = {
    "name": re.compile(r"(?:患者|病人)?姓\s*名\s*[:：]?\s*([\u4e00-\u9fa5·]{2,6}|[A-Za-z][A-Za-z .'-]{1,30}?)"
                       r"(?=\s|$|性|年|[,，;；])"),
    "sex": re.compile(r"性\s*[别別]\s*[:：]?\s*(男|女)"),
    "age": re.compile(r"年\s*[龄齡令]\s*[:：]?\s*(\d{1,3})\s*(?:周?岁|[Yy])?"),
    "birth_date": re.compile(r"出生(?:日期|年月日?)?\s*[:：]?\s*" + _DATE),
    "id_number": re.compile(r"(?:身份证号?码?|证件号码?)\s*[:：]?\s*(\d{6}[\d*]{8,11}[\dXx*])"),
    "record_no": re.compile(r"(?:门诊号|住院号|病历号|病案号|登记号|就诊卡号|卡号|ID号|患者ID|条码号?|标本号|样本号|"
                            r"申请单号|检查号|超声号)\s*[:：]?\s*([A-Za-z0-9-]{3,24})"),
    "report_date": re.compile(r"(?:报告日期|报告时间|检验日期|检查日期|采样时间|采集时间|送检日期|审核日期|审核时间|"
                              r"出院日期|检查时间)\s*[:：]?\s*" + _DATE),
    "height": re.compile(r"身\s*高\s*[:：]?\s*(\d{1,3}(?:\.\d+)?)\s*(cm|厘米|m|米)?", re.IGNORECASE),
    "weight": re.compile(r"体\s*重\s*[:：]?\s*(\d{2,3}(?:\.\d+)?)\s*(kg|公斤|千克)?", re.IGNORECASE),
    "bp": re.compile(r"血\s*压\s*[:：]?\s*(\d{2,3})\s*/\s*(\d{2,3})"),
    "bmi": re.compile(r"BMI\s*[:：]?\s*(\d{2}(?:\.\d+)?)", re.IGNORECASE),
}
_GA = (
    re.compile(r"孕\s*周\s*[:：]?\s*(\d{1,2})\s*(?:\+\s*(\d)|周\s*(?:(\d)\s*天)?)?"),
    re.compile(r"(?:宫内)?(?:妊娠|孕)\s*(\d{1,2})\s*(?:\+\s*(\d)\s*周|周\s*(?:\+?\s*(\d)\s*天)?)"),
    re.compile(r"\bGA\s*[:：]?\s*(\d{1,2})\s*w\s*(?:(\d)\s*d)?", re.IGNORECASE),
)
_FETUSES = ((re.compile(r"三胎|三活胎"), 3), (re.compile(r"双胎|双活胎|双绒|单绒双羊|两个胎儿|胎儿\s*[AB]\b"), 2),
            (re.compile(r"单胎|单活胎"), 1))
_NEGATED = re.compile(r"(?:无|未见|否认|排除)\s*$")


@dataclass
class Header:
    """What the header lines gave: personal fields, clinical facts, the report date, the lines used."""

    personal: dict[str, Any] = field(default_factory=dict)
    clinical: dict[str, Any] = field(default_factory=dict)
    report_date: str | None = None
    used: set[int] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)


def has_personal(text: str) -> bool:
    """True when ``text`` holds a personal header field (name, age, birth date, ID or record number)."""
    t = unicodedata.normalize("NFKC", text)
    return any(_PATTERNS[k].search(t) for k in ("name", "sex", "age", "birth_date", "id_number", "record_no"))


def _date(m: re.Match[str], first: int = 1) -> str:
    y, mo, d = (int(m.group(first + i)) for i in range(3))
    return f"{y:04d}-{mo:02d}-{d:02d}"


def read_header(texts: Iterable[str]) -> Header:
    """Scan ``texts`` (in reading order); the first value of each field wins. ``used`` holds the indexes of
    texts that gave a personal or clinical field."""
    h = Header()
    for idx, raw in enumerate(texts):
        text = unicodedata.normalize("NFKC", raw)
        got = False
        for key in ("name", "sex", "age", "birth_date", "id_number", "record_no"):
            m = _PATTERNS[key].search(text)
            if m and key not in h.personal:
                if key == "age":
                    age = int(m.group(1))
                    if not 10 <= age <= 65:
                        h.unreadable.add("age")
                        continue
                    h.personal[key] = age
                elif key == "birth_date":
                    h.personal[key] = _date(m)
                else:
                    h.personal[key] = m.group(1).strip()
                got = True
        m = _PATTERNS["report_date"].search(text)
        if m and h.report_date is None:
            h.report_date = _date(m)
            got = True
        got |= _clinical(text, h.clinical)
        if got:
            h.used.add(idx)
    return h


def _clinical(text: str, out: dict[str, Any]) -> bool:
    got = False
    m = _PATTERNS["bp"].search(text)
    if m and "systolic" not in out:
        sys_, dia = int(m.group(1)), int(m.group(2))
        if 50 <= sys_ <= 260 and 30 <= dia <= 160 and sys_ > dia:
            out["systolic"], out["diastolic"] = sys_, dia
            got = True
    m = _PATTERNS["height"].search(text)
    if m and "height_cm" not in out:
        v = float(m.group(1))
        unit = (m.group(2) or "").lower()
        if unit in ("m", "米") or v < 3:
            v *= 100
        if 100 <= v <= 220:
            out["height_cm"] = v
            got = True
    m = _PATTERNS["weight"].search(text)
    if m and "weight_kg" not in out and "胎" not in text[max(0, m.start() - 3):m.start()]:
        v = float(m.group(1))
        if 25 <= v <= 250:
            out["weight_kg"] = v
            got = True
    m = _PATTERNS["bmi"].search(text)
    if m and "bmi" not in out:
        out["bmi"] = float(m.group(1))
        got = True
    if "gestational_weeks" not in out:
        for pat in _GA:
            m = pat.search(text)
            if m:
                weeks = int(m.group(1))
                days = next((int(g) for g in m.groups()[1:] if g), 0)
                if 4 <= weeks <= 44 and days <= 6:
                    out["gestational_weeks"] = round(weeks + days / 7, 2)
                    got = True
                    break
    if "fetuses" not in out:
        for pat, n in _FETUSES:
            m = pat.search(text)
            if m and not _NEGATED.search(text[:m.start()]):
                out["fetuses"] = n
                got = True
                break
    return got


_PERSONAL_KEYS = ("name", "sex", "age", "birth_date", "id_number", "record_no")


def combine(h: Header, given: Mapping[str, Any] | None) -> tuple[Patient, Facts]:
    """The patient and facts from the header, with ``given`` (the caller's dict) taking precedence.

    ``given`` may hold the personal keys, ``height_cm``, ``weight_kg``, ``bmi``, ``systolic``/``diastolic`` or
    ``bp`` ("135/88"), ``gestational_weeks``, ``fetuses`` or ``twin`` (bool).
    """
    personal = dict(h.personal)
    clinical = dict(h.clinical)
    for key, value in (given or {}).items():
        if value is None:
            continue
        if key in _PERSONAL_KEYS:
            personal[key] = value
        elif key == "bp":
            m = re.match(r"\s*(\d{2,3})\s*/\s*(\d{2,3})", str(value))
            if m:
                clinical["systolic"], clinical["diastolic"] = int(m.group(1)), int(m.group(2))
        elif key == "twin":
            if value:
                clinical["fetuses"] = max(2, int(clinical.get("fetuses") or 2))
        elif key in ("height_cm", "weight_kg", "bmi", "gestational_weeks"):
            clinical[key] = float(value)
        elif key in ("systolic", "diastolic", "fetuses"):
            clinical[key] = int(value)
        else:
            logger.debug("patient key %s not used", key)
    if personal.get("age") is not None:
        personal["age"] = int(personal["age"])
    if clinical.get("bmi") is None and clinical.get("height_cm") and clinical.get("weight_kg"):
        metres = float(clinical["height_cm"]) / 100.0
        clinical["bmi"] = round(float(clinical["weight_kg"]) / (metres * metres), 1)
    patient = Patient(**{k: personal.get(k) for k in _PERSONAL_KEYS})
    facts = Facts(**{k: clinical.get(k) for k in ("gestational_weeks", "height_cm", "weight_kg", "bmi", "systolic",
                                                   "diastolic", "fetuses")})
    return patient, facts
