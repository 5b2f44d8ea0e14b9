"""Five-colour pregnancy risk grading from report data, with the rules as data (``risk_rules.toml``).

Value rules compare facts (age, BMI, blood pressure, number of fetuses) and items (in their canonical units)
with thresholds; keyword rules look for diagnoses written in the report's findings. The grade is the highest
of green < yellow < orange < red among the rules that fired (green when none did); purple (infectious
disease) is reported alongside in ``also``. Every fired rule is listed with its clause and evidence. This
is decision support: the clinician makes the assessment.

Example::

    rules = load_rules()
    grade = grade_risk(rules, items, patient, facts, findings)
    grade.colour, grade.also, [r.id for r in grade.rules]
"""

from __future__ import annotations

import logging
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edge.reports.model import COLOURS, PURPLE, Facts, FiredRule, Item, Patient, RiskGrade

logger = logging.getLogger(__name__)

DEFAULT_RULES = "risk_rules.toml"
BASES = ("spec", "definition", "screening", "local")
PERSONAL_FACTS = frozenset({"age"})
FACTS = frozenset({"age", "bmi", "height_cm", "systolic", "diastolic", "gestational_weeks", "fetuses"})
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
_AFTER_NEGATIONS = ("阴性", "(-)", "（-）", "未检出")


class RuleError(ValueError):
    """The rules file is malformed (unknown colour, operator or fact, duplicate id …)."""


@dataclass(frozen=True, slots=True)
class Condition:
    fact: str
    op: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class ValueRule:
    id: str
    colour: str
    clause: str
    basis: str
    evidence: str
    when: tuple[Condition, ...]
    any: tuple[Condition, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class KeywordRule:
    id: str
    colour: str
    clause: str
    basis: str
    patterns: tuple[str, ...]
    min_weeks: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The parsed rules file."""

    rules: tuple[ValueRule, ...]
    keywords: tuple[KeywordRule, ...]
    negations: tuple[str, ...]
    document: Mapping[str, Any]


def _condition(raw: Mapping[str, Any], where: str) -> Condition:
    fact, op = raw.get("fact"), raw.get("op")
    if not isinstance(fact, str) or not (fact in FACTS or fact.startswith("item:")):
        raise RuleError(f"{where}: unknown fact {fact!r}")
    if op == "positive":
        if not fact.startswith("item:"):
            raise RuleError(f"{where}: 'positive' applies to items only")
        return Condition(fact, op)
    if op not in _OPS:
        raise RuleError(f"{where}: unknown op {op!r}")
    value = raw.get("value")
    if not isinstance(value, (int, float)):
        raise RuleError(f"{where}: value must be a number")
    return Condition(fact, op, float(value))


def _common(raw: Mapping[str, Any], where: str, seen: set[str]) -> tuple[str, str, str, str]:
    rid, colour, clause, basis = raw.get("id"), raw.get("colour"), raw.get("clause"), raw.get("basis", "spec")
    if not isinstance(rid, str) or not rid:
        raise RuleError(f"{where}: id is required")
    if rid in seen:
        raise RuleError(f"{where}: duplicate id {rid!r}")
    seen.add(rid)
    if colour not in (*COLOURS[1:], PURPLE):
        raise RuleError(f"{where} ({rid}): colour must be yellow, orange, red or purple")
    if not isinstance(clause, str) or not clause:
        raise RuleError(f"{where} ({rid}): clause is required")
    if basis not in BASES:
        raise RuleError(f"{where} ({rid}): basis must be one of {', '.join(BASES)}")
    return rid, colour, clause, basis


def parse_rules(data: Mapping[str, Any], source: str = "rules") -> RuleSet:
    """Build a :class:`RuleSet`; raises :class:`RuleError` naming ``source``."""
    seen: set[str] = set()
    rules: list[ValueRule] = []
    for i, raw in enumerate(data.get("rule", []), 1):
        where = f"{source}: rule {i}"
        unknown = set(raw) - {"id", "colour", "clause", "basis", "evidence", "when", "any", "note"}
        if unknown:
            raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        rid, colour, clause, basis = _common(raw, where, seen)
        when = tuple(_condition(c, f"{where} ({rid})") for c in raw.get("when", []))
        any_ = tuple(_condition(c, f"{where} ({rid})") for c in raw.get("any", []))
        if not when and not any_:
            raise RuleError(f"{where} ({rid}): needs a when or any condition")
        evidence = raw.get("evidence", "")
        if "{value}" in evidence and any(c.fact in PERSONAL_FACTS for c in (*when, *any_)):
            raise RuleError(f"{where} ({rid}): evidence must not show a personal fact's value")
        rules.append(ValueRule(rid, colour, clause, basis, evidence, when, any_, raw.get("note", "")))
    keywords: list[KeywordRule] = []
    for i, raw in enumerate(data.get("keyword", []), 1):
        where = f"{source}: keyword {i}"
        unknown = set(raw) - {"id", "colour", "clause", "basis", "patterns", "min_weeks", "note"}
        if unknown:
            raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        rid, colour, clause, basis = _common(raw, where, seen)
        patterns = tuple(raw.get("patterns", ()))
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise RuleError(f"{where} ({rid}): patterns must be non-empty text")
        keywords.append(KeywordRule(rid, colour, clause, basis, patterns, raw.get("min_weeks"), raw.get("note", "")))
    document = data.get("document", {})
    negations = tuple(document.get("negations", ()))
    return RuleSet(tuple(rules), tuple(keywords), negations, document)


@lru_cache(maxsize=2)
def _load_default() -> RuleSet:
    text = resources.files(__package__).joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
    return parse_rules(tomllib.loads(text), DEFAULT_RULES)


def load_rules(path: Path | None = None) -> RuleSet:
    """The shipped rules, or those at ``path``."""
    if path is None:
        return _load_default()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{path}: cannot read: {exc}") from None
    return parse_rules(data, str(path))


# ------------------------------------------------------------------------------------------------ evaluation

class _Facts:
    """Fact lookup over patient, facts and items."""

    def __init__(self, items: Sequence[Item], patient: Patient, facts: Facts) -> None:
        self.items = {i.code: i for i in items}
        self.values: dict[str, float | None] = {
            "age": patient.age, "bmi": facts.bmi, "height_cm": facts.height_cm, "systolic": facts.systolic,
            "diastolic": facts.diastolic, "gestational_weeks": facts.gestational_weeks, "fetuses": facts.fetuses}

    def number(self, fact: str) -> float | None:
        if fact.startswith("item:"):
            item = self.items.get(fact[5:])
            if item is None or not isinstance(item.value, (int, float)) or item.comparator is not None:
                return None
            return float(item.value)
        v = self.values.get(fact)
        return None if v is None else float(v)

    def holds(self, c: Condition) -> bool:
        if c.op == "positive":
            item = self.items.get(c.fact[5:])
            return item is not None and item.flag == "POS"
        x = self.number(c.fact)
        return x is not None and c.value is not None and _OPS[c.op](x, c.value)

    def available(self) -> list[str]:
        out = [k for k, v in self.values.items() if v is not None]
        return out + [f"item:{code}" for code in self.items]


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:g}" if x != int(x) else str(int(x))


def _evidence(rule: ValueRule, f: _Facts) -> str:
    fired = [c for c in (*rule.when, *rule.any) if f.holds(c)]
    first_numeric = next((c for c in fired if c.op != "positive" and c.fact not in PERSONAL_FACTS), None)

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "value":
            return _fmt(f.number(first_numeric.fact)) if first_numeric else "?"
        if key in PERSONAL_FACTS:
            return "?"
        return _fmt(f.number(key))

    return re.sub(r"\{([a-z_]+(?::[0-9-]+)?)\}", sub, rule.evidence) if rule.evidence else rule.clause


def _keyword_hits(rule: KeywordRule, texts: Iterable[str], negations: Sequence[str]) -> str | None:
    for text in texts:
        for pattern in rule.patterns:
            for m in re.finditer(re.escape(pattern), text, flags=re.IGNORECASE):
                before = re.split(r"[，,；;。\n]", text[:m.start()])[-1]  # the clause up to the match
                after = re.split(r"[，,；;。\n]", text[m.end():m.end() + 10])[0]
                if any(n in before for n in negations):
                    continue  # 未见前置胎盘, 否认乙肝、梅毒病史
                if any(n in after for n in _AFTER_NEGATIONS):
                    continue  # 乙肝表面抗原阴性: a test result, not a diagnosis
                lo, hi = max(0, m.start() - 8), min(len(text), m.end() + 8)
                return text[lo:hi].strip()
    return None


def grade_risk(rules: RuleSet, items: Sequence[Item], patient: Patient, facts: Facts,
               findings: Iterable[str] = ()) -> RiskGrade:
    """Evaluate every rule; the grade, the rules that fired (with evidence) and the facts considered."""
    f = _Facts(items, patient, facts)
    fired: list[FiredRule] = []
    for rule in rules.rules:
        if all(f.holds(c) for c in rule.when) and (not rule.any or any(f.holds(c) for c in rule.any)):
            fired.append(FiredRule(rule.id, rule.clause, rule.colour, _evidence(rule, f), rule.basis))
    texts = [t for t in findings if t]
    for kw in rules.keywords:
        if kw.min_weeks is not None and (facts.gestational_weeks is None or facts.gestational_weeks < kw.min_weeks):
            continue
        hit = _keyword_hits(kw, texts, rules.negations)
        if hit is not None:
            fired.append(FiredRule(kw.id, kw.clause, kw.colour, f"报告文字: {hit}", kw.basis))
    rank = {c: i for i, c in enumerate(COLOURS)}
    colour = max((r.colour for r in fired if r.colour in rank), key=rank.__getitem__, default="green")
    also = PURPLE if any(r.colour == PURPLE for r in fired) else None
    fired.sort(key=lambda r: (-rank.get(r.colour, -1), r.id))  # red … yellow, then purple
    logger.debug("risk grade %s (also %s) from %d rules", colour, also, len(fired))
    return RiskGrade(colour, also, tuple(fired), tuple(f.available()))
