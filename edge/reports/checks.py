"""Checks on a structured report: missing items, implausible values (unit mix-ups, decimal slips), printed
flags that disagree with the computed ones, and internal inconsistencies.

Each check is a pure function of the items (and the catalogue); :func:`run_checks` runs them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from edge.reports.catalogue import Catalogue, ItemDef
from edge.reports.model import Check, Item, Missing

logger = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.6
DIFFERENTIAL_PERCENTS = ("770-8", "736-9", "5905-5", "713-8", "706-2")


def missing_items(cat: Catalogue, kind: str, items: Sequence[Item]) -> tuple[Missing, ...]:
    """The items a complete report of ``kind`` holds that were not read."""
    spec = cat.kinds.get(kind)
    if spec is None:
        return ()
    present = {i.code for i in items}
    out = []
    for alternatives in spec.required:
        if not present.intersection(alternatives):
            first = cat.item(alternatives[0])
            names = "/".join(cat.item(c).name for c in alternatives)
            out.append(Missing(first.code, names, alternatives[1:]))
    return tuple(out)


def _within(x: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= x <= bounds[1]


def _in_ref(x: float, d: ItemDef) -> bool:
    lo = d.ref_low if d.ref_low is not None else float("-inf")
    hi = d.ref_high if d.ref_high is not None else float("inf")
    return lo <= x <= hi


def plausibility(item: Item, d: ItemDef) -> list[Check]:
    """Implausible numbers, with a likely cause: another unit of the item, or a decimal point slip."""
    if not isinstance(item.value, float) or d.plausible is None or item.comparator is not None:
        return []
    x = item.value
    if _within(x, d.plausible):
        return []
    for unit, factor in d.units.items():
        for candidate in (x * factor, x / factor):
            if _within(candidate, d.plausible) and _in_ref(candidate, d):
                return [Check("unit_mixup", f"{d.name} {x:g} {item.unit} is implausible; the value looks like "
                              f"one in {unit} (would be {candidate:g} {d.unit})", d.code, "warning", candidate)]
    for shift in (10.0, 100.0, 0.1, 0.01):
        candidate = x / shift
        if _within(candidate, d.plausible) and _in_ref(candidate, d):
            return [Check("decimal_error", f"{d.name} {x:g} {item.unit} is implausible; a misread decimal point "
                          f"would give {candidate:g}", d.code, "warning", candidate)]
    return [Check("implausible", f"{d.name} {x:g} {item.unit} is outside the plausible range "
                  f"{d.plausible[0]:g}-{d.plausible[1]:g}", d.code)]


def decimal_slip(item: Item) -> list[Check]:
    """A plausible value far outside its range that a shifted decimal point would put inside it (``43`` for
    ``4.3`` when the point was not read)."""
    ref = item.ref
    if (not isinstance(item.value, float) or item.comparator is not None or item.flag not in ("H", "L")
            or ref.low is None or ref.high is None or ref.low <= 0):
        return []
    x = item.value
    if ref.low / 3 <= x <= ref.high * 3:
        return []
    for shift in (10.0, 100.0, 0.1, 0.01):
        if ref.low <= x / shift <= ref.high:
            return [Check("decimal_error", f"{item.name} {x:g} is far outside {ref.text or 'its range'}; "
                          f"a misread decimal point would give {x / shift:g}", item.code, "info", x / shift)]
    return []


def flag_agreement(item: Item) -> list[Check]:
    """A printed ↑/↓/H/L that disagrees with the flag computed from value and range."""
    printed = item.printed_flag
    if printed is None or item.flag is None or item.flag in ("POS", "NEG"):
        return []
    if printed != item.flag and not (printed in ("H", "L") and item.flag == "N" and item.ref.source == "catalogue"):
        return [Check("flag_mismatch", f"{item.name}: printed flag {printed} but value {item.printed} against "
                      f"range {item.ref.text or '-'} gives {item.flag}", item.code, "info")]
    return []


def consistency(items: Sequence[Item]) -> list[Check]:
    """Relations that must hold between items of one report."""
    by = {i.code: i for i in items if isinstance(i.value, float) and i.comparator is None}
    out: list[Check] = []
    tbil, dbil = by.get("14631-6"), by.get("14629-0")
    if tbil and dbil and isinstance(dbil.value, float) and isinstance(tbil.value, float) and dbil.value > tbil.value:
        out.append(Check("inconsistent", f"直接胆红素 {dbil.value:g} exceeds 总胆红素 {tbil.value:g}", dbil.code))
    tp, alb = by.get("2885-2"), by.get("1751-7")
    if tp and alb and isinstance(alb.value, float) and isinstance(tp.value, float) and alb.value > tp.value:
        out.append(Check("inconsistent", f"白蛋白 {alb.value:g} exceeds 总蛋白 {tp.value:g}", alb.code))
    parts = [by[c].value for c in DIFFERENTIAL_PERCENTS if c in by]
    if len(parts) == len(DIFFERENTIAL_PERCENTS):
        total = sum(float(p) for p in parts if isinstance(p, float))
        if abs(total - 100.0) > 3.0:
            out.append(Check("inconsistent", f"white cell differential adds up to {total:g}% (expected 100%)",
                             "770-8"))
    hb, hct, mchc = by.get("718-7"), by.get("4544-3"), by.get("786-4")
    if hb and hct and mchc and all(isinstance(i.value, float) for i in (hb, hct, mchc)) and float(hct.value) > 0:
        derived = float(hb.value) / float(hct.value) * 100.0  # type: ignore[arg-type]
        if abs(derived - float(mchc.value)) > 0.1 * float(mchc.value):  # type: ignore[arg-type]
            out.append(Check("inconsistent", f"MCHC {float(mchc.value):g} disagrees with Hb/HCT "  # type: ignore[arg-type]
                             f"({derived:.0f} g/L)", mchc.code, "info"))
    return out


def run_checks(cat: Catalogue, items: Sequence[Item], extra: Sequence[Check] = ()) -> tuple[Check, ...]:
    """All item checks (plausibility, printed flags, low confidence) and the consistency checks."""
    out: list[Check] = list(extra)
    for item in items:
        d = cat.get(item.code)
        if d is None:
            continue
        implausible = plausibility(item, d)
        out.extend(implausible or decimal_slip(item))
        out.extend(flag_agreement(item))
        if item.confidence < LOW_CONFIDENCE:
            out.append(Check("low_confidence", f"{item.name}: read with low confidence ({item.confidence:.2f}); "
                             "check against the paper", item.code, "info"))
    out.extend(consistency(items))
    return tuple(out)
