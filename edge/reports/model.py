"""The structured report: items, missing items, checks, the risk grade, patient and clinical facts.

Personal facts (name, sex, age, birth date, ID and record numbers) live only in :class:`Patient`, which
``Report.to_json(personal=False)`` leaves out and whose ``repr`` is masked, so they never reach a log or an
item. Clinical context that identifies nobody (gestational age, height, weight, BMI, blood pressure, number
of fetuses) is in :class:`Facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from edge.reports.page import Box
from edge.reports.values import RefRange

NOTICE = ("辅助决策提示：本结果由机器从纸质报告识别并按《孕产妇妊娠风险评估与管理工作规范》(2017) 规则初筛，"
          "须由医生核对原始报告后评估确定。 Decision support only: machine-read from a paper report and "
          "screened against the 2017 specification; a clinician must verify the report and make the assessment.")
COLOURS = ("green", "yellow", "orange", "red")
PURPLE = "purple"


@dataclass(frozen=True, slots=True)
class Item:
    """One result: LOINC ``code``, canonical ``name``, ``value`` in the canonical ``unit`` (a number, or the
    qualitative text such as 阴性 / ``++``), the reference range, the computed flag and where it was read.

    ``source`` is the text line (or table row) the item was read from; ``review`` is True when a person
    should check it against the paper (low confidence, a fuzzy name match, a value that is not a value)."""

    code: str
    name: str
    value: float | str | None
    unit: str
    ref: RefRange
    flag: str | None
    confidence: float
    region: Box | None = None
    comparator: str | None = None
    abnormal: bool = False
    printed: str = ""
    printed_unit: str = ""
    printed_flag: str | None = None
    label: str = ""
    match: str = "exact"
    category: str = "laboratory"
    source: str = ""
    review: bool = False

    def to_json(self) -> dict[str, Any]:
        value: Any = self.value
        if isinstance(value, float):
            value = round(value, 4)
        return {
            "code": self.code, "name": self.name, "value": value, "comparator": self.comparator,
            "unit": self.unit, "ref": self.ref.to_json(), "flag": self.flag, "abnormal": self.abnormal,
            "confidence": round(self.confidence, 3),
            "region": [self.region.x, self.region.y, self.region.w, self.region.h] if self.region else None,
            "printed": {"label": self.label, "value": self.printed, "unit": self.printed_unit,
                        "flag": self.printed_flag},
            "match": self.match, "source": self.source, "review": self.review,
        }


@dataclass(frozen=True, slots=True)
class Missing:
    """An item a complete report of this kind would hold (``alternatives``: any one of them would do)."""

    code: str
    name: str
    alternatives: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "name": self.name}
        if self.alternatives:
            out["alternatives"] = list(self.alternatives)
        return out


@dataclass(frozen=True, slots=True)
class Check:
    """A finding about the reading: ``kind`` is a stable name (implausible, unit_mixup, decimal_error,
    flag_mismatch, unit_unknown, duplicate, inconsistent, low_confidence, unmatched)."""

    kind: str
    message: str
    code: str | None = None
    severity: str = "warning"
    suggestion: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "code": self.code, "severity": self.severity,
                               "message": self.message}
        if self.suggestion is not None:
            out["suggestion"] = round(self.suggestion, 4)
        return out


@dataclass(frozen=True, slots=True)
class FiredRule:
    """A risk rule that fired: its id, the clause it cites, its colour and the evidence that triggered it."""

    id: str
    clause: str
    colour: str
    evidence: str
    basis: str = "spec"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "clause": self.clause, "colour": self.colour, "evidence": self.evidence,
                "basis": self.basis}


@dataclass(frozen=True, slots=True)
class RiskGrade:
    """The five-colour grade: the highest of green / yellow / orange / red, and ``also`` = purple when an
    infectious disease rule fired. ``considered`` lists the facts that were available to the rules."""

    colour: str
    also: str | None
    rules: tuple[FiredRule, ...]
    considered: tuple[str, ...] = ()
    notice: str = NOTICE

    def to_json(self) -> dict[str, Any]:
        return {"colour": self.colour, "also": self.also, "rules": [r.to_json() for r in self.rules],
                "considered": list(self.considered), "notice": self.notice}


@dataclass(frozen=True, slots=True)
class Patient:
    """Personal facts read from the header or given by the caller. Never logged: ``repr`` is masked."""

    name: str | None = None
    sex: str | None = None
    age: int | None = None
    birth_date: str | None = None
    id_number: str | None = None
    record_no: str | None = None

    def __repr__(self) -> str:
        present = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return f"Patient(<{', '.join(present) or 'empty'}>)"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class Facts:
    """Clinical context for the checks and the risk rules (identifies nobody)."""

    gestational_weeks: float | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    bmi: float | None = None
    systolic: int | None = None
    diastolic: int | None = None
    fetuses: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class Report:
    """One structured page. ``to_json()`` gives the result body; ``personal=False`` leaves the patient out."""

    kind: str
    title: str
    items: tuple[Item, ...]
    missing: tuple[Missing, ...]
    checks: tuple[Check, ...]
    risk: RiskGrade
    patient: Patient = field(default_factory=Patient)
    facts: Facts = field(default_factory=Facts)
    report_date: str | None = None
    findings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def item(self, code: str) -> Item | None:
        """The item with LOINC ``code``, if read."""
        return next((i for i in self.items if i.code == code), None)

    def to_json(self, *, personal: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "title": self.title, "report_date": self.report_date,
            "items": [i.to_json() for i in self.items],
            "missing": [m.to_json() for m in self.missing],
            "checks": [c.to_json() for c in self.checks],
            "risk": self.risk.to_json(),
            "facts": self.facts.to_json(),
            "findings": list(self.findings),
            "notes": list(self.notes),
        }
        if personal:
            out["patient"] = self.patient.to_json()
        return out
