"""From a read page (:class:`~edge.reports.page.PageText`) to a typed :class:`~edge.reports.model.Report`.

Steps: the header lines give the patient and the clinical facts (:mod:`edge.reports.header`); the title names
the report kind; each table's columns get roles (name, abbreviation, result, flag, unit, range) from the
header row or, without one, from what the cells hold; each row, and each ``key: value`` segment of the free
lines, becomes an item when its name matches the catalogue; values are parsed, converted to the canonical
unit and flagged against the printed range (the catalogue's typical range when none is printed). Then the
checks, the missing items and the risk grade.

Example::

    report = structure(page, patient={"age": 36, "bp": "135/88"})
    print(report.to_json()["risk"]["colour"])
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.reports import anchored
from edge.reports.catalogue import Catalogue, ItemDef, Match, load_catalogue, normalise
from edge.reports.checks import LOW_CONFIDENCE, missing_items, run_checks
from edge.reports.geometry import stack_pages
from edge.reports.header import combine, has_personal, read_header
from edge.reports.model import Check, Item, Report
from edge.reports.page import Box, Cell, Line, PageText, Row, Table
from edge.reports.risk import RuleSet, grade_risk, load_rules
from edge.reports.values import (
    UNIT_WORDS,
    RefRange,
    UnitError,
    Value,
    catalogue_range,
    compute_flag,
    convert_range,
    is_abnormal,
    norm_unit,
    parse_range,
    parse_value,
    to_canonical_read,
)

__all__ = ["Report", "structure", "structure_pages"]

logger = logging.getLogger(__name__)

# Tried in this order: "项目代号" is an abbreviation column, "结果提示" a flag column.
_ROLE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("index", ("序号", "编号", "no")),
    ("abbr", ("英文缩写", "缩写", "代号", "英文", "简称", "代码")),
    ("flag", ("提示", "标志", "标识", "高低", "状态", "异常")),
    ("ref", ("参考", "正常值", "正常范围", "范围", "区间")),
    ("unit", ("单位",)),
    ("value", ("结果", "测定值", "测量值", "数值", "检测值", "结")),
    ("name", ("项目", "名称", "检验", "检查", "测定")),
)
_FLAG_CELL = {"↑": "H", "↑↑": "H", "h": "H", "高": "H", "偏高": "H", "↓": "L", "↓↓": "L", "l": "L", "低": "L",
              "偏低": "L"}
_SEGMENT_SPLIT = re.compile(r"[，,；;。]|\s{2,}")
_VALUE_START = re.compile(r"(?<![A-Za-z\d.#%])[<>≤≥]?\s*\d|阴性|阳性|弱阳性|未检出|[(（]?\s*[+\-±]")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_OCR_UNIT = re.compile(r"^[x×*]?\s*10\s*\D?\d?(?:9|12)\s*/\s*[lL]$")
_HEADER_KEYS = ("姓名", "性别", "年龄", "出生", "身份证", "门诊号", "住院号", "病历号", "科室", "床号", "医生", "日期",
                "时间", "样本", "标本", "条码", "诊断", "备注", "审核", "检验者", "报告")
_STAFF_KEYS = ("医生", "医师", "检验者", "审核", "报告人", "操作者", "记录者", "签名", "签字", "电话", "地址", "联系")
_FINDING_KEYS = ("诊断", "提示", "印象", "结论", "意见", "超声所见", "检查所见", "所见", "建议")


@dataclass
class _Raw:
    """One candidate item before its name is resolved."""

    label: str
    abbr: str = ""
    value: str = ""
    unit: str = ""
    ref: str = ""
    flag: str = ""
    conf: float = 100.0
    region: Box | None = None
    cells: list[Cell] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ tables

def header_role(text: str) -> str | None:
    """The role a header title gives its column (None when unknown)."""
    t = normalise(text)
    if not t:
        return None
    for role, words in _ROLE_WORDS:
        if any(w in t for w in words):
            return role
    return None


def _cell_role_groups(header: Row) -> list[dict[int, str]]:
    """Column → role maps, one per side-by-side block (a repeated role starts the next block)."""
    groups: list[dict[int, str]] = [{}]
    for cell in sorted(header.cells, key=lambda c: c.col):
        role = header_role(cell.text)
        if role is None:
            continue
        current = groups[-1]
        if role in current.values() and role != "index":
            groups.append({})
            current = groups[-1]
        current[cell.col] = role
    return [g for g in groups if any(r in ("name", "abbr") for r in g.values())]


def _looks_range(text: str) -> bool:
    t = unicodedata.normalize("NFKC", text)
    return bool(re.search(r"\d\s*[-~～—–至]{1,2}\s*\d", t) or re.match(r"^\s*[<>≤≥]\s*\d", t))


def _looks_unit(text: str) -> bool:
    t = text.strip()
    if not t or re.search(r"\d\s*[-~～]\s*\d", t):
        return False
    m = UNIT_WORDS.fullmatch(unicodedata.normalize("NFKC", t).replace(" ", ""))
    return m is not None


def _looks_flag(text: str) -> bool:
    return normalise(text) in _FLAG_CELL


def _looks_value(text: str) -> bool:
    v = parse_value(text)
    return v.kind in ("number", "bound", "qualitative") and not _looks_range(text)


def _column_scores(rows: Sequence[Row], cat: Catalogue) -> dict[int, dict[str, float]]:
    """Per column, the share of cells that look like a name, a value, a range, a unit or a flag."""
    cols: dict[int, list[str]] = {}
    for row in rows:
        for cell in row.cells:
            cols.setdefault(cell.col, []).append(cell.text)
    scores: dict[int, dict[str, float]] = {}
    for col, texts in cols.items():
        n = len(texts)
        scores[col] = {
            "name": sum(1 for t in texts if not _VALUE_START.match(t) and cat.match(t) is not None) / n,
            "value": sum(1 for t in texts if _looks_value(t)) / n,
            "ref": sum(1 for t in texts if _looks_range(t)) / n,
            "unit": sum(1 for t in texts if _looks_unit(t) or _OCR_UNIT.match(t.strip())) / n,
            "flag": sum(1 for t in texts if _looks_flag(t)) / max(1, sum(1 for t in texts if t.strip())),
        }
    return scores


def _refine(groups: list[dict[int, str]], rows: Sequence[Row], cat: Catalogue) -> list[dict[int, str]]:
    """Header roles checked against the cells: a column whose cells plainly hold something else takes that
    role (``提示单位`` over a column of units is the unit column), and a block without a result column gets
    the unassigned column that holds values."""
    scores = _column_scores(rows, cat)
    starts = [min(g) for g in groups]
    if scores:
        starts[0] = min(starts[0], min(scores))
    out = []
    for n, g in enumerate(groups):
        g = dict(g)
        end = starts[n + 1] if n + 1 < len(starts) else max(scores, default=0) + 1
        for col, role in list(g.items()):
            s = scores.get(col)
            if s is None or role in ("name", "abbr", "index"):
                continue
            best = max(("value", "ref", "unit", "flag"), key=lambda r: s[r])
            if best != role and s[best] >= 0.6 and s[role] < 0.3 and best not in g.values():
                g[col] = best
        for col in sorted(c for c in scores if starts[n] <= c < end and c not in g):
            s = scores[col]
            textual = max(s["value"], s["ref"], s["unit"], s["flag"]) < 0.5
            value_col = min((c for c, r in g.items() if r == "value"), default=end)
            names = [c for c, r in g.items() if r == "name"]
            if textual and col < value_col and (not names or col > min(names)):
                g[col] = "name"   # a name the reader split over two cells, or a name column without a title
                continue
            for role in ("value", "ref", "unit"):
                if role not in g.values() and s[role] >= 0.5:
                    g[col] = role
                    break
        out.append(g)
    return out


def _infer_groups(rows: Sequence[Row], cat: Catalogue) -> list[dict[int, str]]:
    """Column roles from cell contents when there is no header row."""
    scores = _column_scores(rows, cat)
    if not scores:
        return []
    cols = scores
    order = sorted(cols)
    name_cols = [c for c in order if scores[c]["name"] >= 0.3]
    if not name_cols:
        return []
    starts: list[int] = []
    for c in name_cols:
        # an abbreviation column right after a name column belongs to the same block
        if starts and not any(scores[x]["value"] >= 0.5 for x in order if starts[-1] < x < c):
            continue
        starts.append(c)
    groups: list[dict[int, str]] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else max(order) + 1
        g: dict[int, str] = {start: "name"}
        for c in (x for x in order if start < x < end):
            s = scores[c]
            have = set(g.values())
            if c in name_cols and "value" not in have:
                g[c] = "abbr"
            elif s["unit"] >= 0.5:
                g[c] = "unit"
            elif s["flag"] >= 0.3 and s["value"] < 0.5:
                g[c] = "flag"
            elif "value" not in have and s["value"] >= 0.5 and s["ref"] < 0.5:
                g[c] = "value"
            elif "ref" not in have and (s["ref"] >= 0.3 or ("value" in have and s["value"] >= 0.5)):
                g[c] = "ref"
        groups.append(g)
    return groups


def _nearest_col(cell: Cell, header: Row | None) -> int:
    if header is None:
        return cell.col
    cx = cell.box.x + cell.box.w / 2
    best = min(header.cells, key=lambda h: abs(h.box.x + h.box.w / 2 - cx), default=None)
    return best.col if best is not None else cell.col


def _table_raws(table: Table, cat: Catalogue) -> tuple[list[_Raw], list[str]]:
    """Candidate items of one table, and the texts of rows that gave none."""
    header, rows = table.header, list(table.rows)
    groups = _cell_role_groups(header) if header is not None else []
    if not groups and rows:
        first = _cell_role_groups(rows[0])
        if first and sum(len(g) for g in first) >= 3:
            header, rows, groups = rows[0], rows[1:], first
    if groups:
        groups = _refine(groups, rows, cat)
    else:
        header = None
        groups = _infer_groups(rows, cat)
    leftovers: list[str] = []
    raws: list[_Raw] = []
    if not groups:
        leftovers.extend(" ".join(c.text for c in r.cells) for r in rows)
        return raws, leftovers
    header_cols = {c.col for c in header.cells} if header is not None else set()
    all_cols = {c for g in groups for c in g}
    for row in rows:
        produced = False
        for g in groups:
            parts: dict[str, list[Cell]] = {}
            for cell in row.cells:
                role = g.get(cell.col)
                if role is None and header is not None and cell.col not in header_cols and cell.col not in all_cols:
                    role = g.get(_nearest_col(cell, header))
                if role is not None:
                    parts.setdefault(role, []).append(cell)
            if not parts.get("name") and not parts.get("abbr"):
                continue
            used = [c for cs in parts.values() for c in cs]
            raw = _Raw(label=" ".join(c.text for c in parts.get("name", [])),
                       abbr=" ".join(c.text for c in parts.get("abbr", [])),
                       value=" ".join(c.text for c in parts.get("value", [])),
                       unit=" ".join(c.text for c in parts.get("unit", [])),
                       ref=" ".join(c.text for c in parts.get("ref", [])),
                       flag=" ".join(c.text for c in parts.get("flag", [])),
                       conf=min(c.conf for c in used), cells=used)
            if not raw.value.strip():
                merged = _split_merged(raw.label, cat)
                if merged is None:
                    continue
                raw.label, raw.value = merged
            raw.region = _union(c.box for c in used)
            raws.append(raw)
            produced = True
        if not produced:
            leftovers.append(" ".join(c.text for c in row.cells))
    return raws, leftovers


def split_key(text: str, cat: Catalogue, kind: str | None) -> tuple[str, str, Match | None]:
    """Split ``key: value`` / ``key value`` text into (key, rest, match of the key).

    A colon splits first; without one, each place where a value could start is tried in turn and the first
    whose left part names a catalogue item wins (``服糖后1小时 9.8`` splits before 9.8, not before 1).
    """
    t = text.strip()
    m = re.match(r"^([^:：]{1,30}?)\s*[:：]\s*(.*)$", t)
    if m:
        key, rest = m.group(1).strip(), m.group(2).strip()
        return key, rest, _match_key(key, cat, kind)
    first: tuple[str, str] | None = None
    for vm in _VALUE_START.finditer(t):
        key, rest = t[:vm.start()].strip(), t[vm.start():].strip()
        if not key:
            continue
        first = first or (key, rest)
        got = _match_key(key, cat, kind)
        if got is not None:
            return key, rest, got
    if first is not None:
        return first[0], first[1], None
    return t, "", _match_key(t, cat, kind)


def _match_key(key: str, cat: Catalogue, kind: str | None) -> Match | None:
    """Match a key, also as its Chinese part and its trailing abbreviation (``双顶径BPD``)."""
    if not key or key.startswith(_HEADER_KEYS):
        return None
    got = cat.match(key, kind=kind)
    if got is None:
        m = re.match(r"^(.*[\u4e00-\u9fff])\s*([A-Za-z][A-Za-z0-9%#/-]*)$", key)
        if m:
            got = cat.match(m.group(1), kind=kind) or cat.match(m.group(2), kind=kind)
    return got


def _split_merged(text: str, cat: Catalogue) -> tuple[str, str] | None:
    """``血红蛋白 128 g/L`` in one cell → (name, value part)."""
    key, rest, _ = split_key(text, cat, None)
    if not rest or not _VALUE_START.match(rest):
        return None
    return key, rest


def _union(boxes: Iterable[Box]) -> Box | None:
    out: Box | None = None
    for b in boxes:
        out = b if out is None else out.union(b)
    return out


def _span_of(b: Box, spans: Sequence[Sequence[float]]) -> int:
    """The index of the column span a box starts in."""
    return next((n for n, (x0, x1) in enumerate(spans) if x0 <= b.x < x1 or b.x < x0), len(spans) - 1)


def tables_from_lines(lines: Sequence[Line]) -> list[tuple[Table, list[int]]]:
    """Free lines that sit side by side on shared baselines, row after row, as a table the reader did not
    form (each line becomes a cell; columns are where the cells' horizontal extents overlap).

    Returns each table with the indexes of the lines it was made of.
    """
    order = sorted(range(len(lines)), key=lambda i: (lines[i].box.y + lines[i].box.h / 2, lines[i].box.x))
    groups: list[list[int]] = []
    for i in order:
        b = lines[i].box
        if groups:
            first = lines[groups[-1][0]].box
            if abs((first.y + first.h / 2) - (b.y + b.h / 2)) <= 0.6 * max(first.h, b.h, 1):
                groups[-1].append(i)
                continue
        groups.append([i])
    blocks: list[list[list[int]]] = []
    previous = False
    for g in groups:
        is_row = len(g) >= 3
        if is_row and previous:
            blocks[-1].append(g)
        elif is_row:
            blocks.append([g])
        previous = is_row
    out: list[tuple[Table, list[int]]] = []
    for block in blocks:
        if len(block) < 2:
            continue
        members = [i for g in block for i in g]
        spans: list[list[float]] = []
        for i in sorted(members, key=lambda k: lines[k].box.x):
            b = lines[i].box
            if spans and b.x < spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b.x + b.w)
            else:
                spans.append([b.x, b.x + b.w])
        rows = []
        for g in block:
            cells = tuple(sorted((Cell(lines[i].text, lines[i].conf, lines[i].box, _span_of(lines[i].box, spans))
                                  for i in g), key=lambda c: c.box.x))
            box = _union(c.box for c in cells)
            assert box is not None
            rows.append(Row(cells, box))
        box = _union(r.box for r in rows)
        assert box is not None
        out.append((Table(None, tuple(rows), box), members))
    return out


# ------------------------------------------------------------------------------------------------ free lines

def _segments(text: str) -> list[str]:
    return [s.strip() for s in _SEGMENT_SPLIT.split(unicodedata.normalize("NFKC", text)) if s.strip()]


def _line_raws(line: Line, cat: Catalogue, kind: str | None) -> tuple[list[_Raw], list[str]]:
    """Items written as ``key: value unit`` segments in a free line, and the segments that gave none."""
    segs = _segments(line.text)
    raws: list[_Raw] = []
    rest_segments: list[str] = []
    i = 0
    while i < len(segs):
        seg = segs[i]
        key, rest, match = split_key(seg, cat, kind)
        if match is not None and match.item.code in anchored.SENTENCE_ONLY:
            match = None  # read from sentences only (edge.reports.anchored), never as "key: value" here
        if match is None:
            if raws and _VALUE_START.match(seg) and not _VALUE_START.match(raws[-1].value):
                raws[-1].value = seg
            else:
                rest_segments.append(seg)
            i += 1
            continue
        if match.item.type == "text":
            parts = [rest] if rest else []
            j = i + 1
            while j < len(segs) and split_key(segs[j], cat, kind)[2] is None:
                parts.append(segs[j])
                j += 1
            raws.append(_Raw(label=key, value="，".join(parts), conf=line.conf, region=line.box))
            i = j
            continue
        vm = _VALUE_START.search(rest)
        value = rest[vm.start():] if vm else rest
        ref = ""
        rm = re.search(r"[(（]\s*(?:参考(?:值|范围)?\s*[:：]?)?\s*([^)）]*\d[^)）]*)[)）]\s*$", value)
        if rm and _looks_range(rm.group(1)):
            ref, value = rm.group(1), value[:rm.start()]
        raws.append(_Raw(label=key, value=value, ref=ref, conf=line.conf, region=line.box))
        i += 1
    return raws, rest_segments


# ------------------------------------------------------------------------------------------------ items

_QUAL_TEXT = {"NEG": "阴性", "POS": "阳性", "TRACE": "弱阳性"}


def _printed_flag(value: Value, flag_text: str) -> str | None:
    if value.printed_flag:
        return value.printed_flag
    t = normalise(flag_text)
    return _FLAG_CELL.get(t)


def _resolve(raw: _Raw, cat: Catalogue, kind: str | None) -> Match | None:
    by_name = cat.match(raw.label, kind=kind) if raw.label.strip() else None
    by_abbr = cat.match(raw.abbr, kind=kind) if raw.abbr.strip() else None
    if by_name and by_abbr and by_name.item.code != by_abbr.item.code:
        if kind and (kind in by_name.item.kinds) != (kind in by_abbr.item.kinds):
            return by_name if kind in by_name.item.kinds else by_abbr
        return by_name if by_name.score >= by_abbr.score else by_abbr
    return by_name or by_abbr


def build_item(raw: _Raw, match: Match, checks: list[Check]) -> Item | None:
    """Parse, convert and flag one candidate; None when its result cell is empty."""
    d = match.item
    v = parse_value(raw.value)
    if v.kind == "empty":
        return None
    printed_flag = _printed_flag(v, raw.flag)
    printed_unit = norm_unit(raw.unit) if raw.unit.strip() else (v.unit or "")
    if not printed_unit:
        um = UNIT_WORDS.search(unicodedata.normalize("NFKC", raw.ref))
        printed_unit = norm_unit(um.group(0)) if um else ""
    ref_text = UNIT_WORDS.sub("", raw.ref).strip() if raw.ref else ""
    ref = parse_range(ref_text)
    conf = max(0.0, min(1.0, raw.conf / 100.0)) * match.score
    common = dict(code=d.code, name=d.name, confidence=conf, region=raw.region, printed=v.text,
                  printed_unit=printed_unit, printed_flag=printed_flag, label=(raw.label or raw.abbr).strip(),
                  match=match.method, category=d.category)
    if d.type == "text":
        return Item(value=raw.value.strip(), unit="", ref=RefRange(source="none"), flag=None, **common)
    if v.kind == "qualitative" and v.number is None or (v.kind == "qualitative" and d.type == "qualitative"):
        if ref.empty:
            ref = catalogue_range(d)
        flag = compute_flag(v, ref, d)
        plus = re.fullmatch(r"[(（]?\s*(\++|±)\s*[)）]?", v.text.replace(" ", ""))
        value = plus.group(1) if plus else _QUAL_TEXT.get(v.qualitative or "", v.text)
        return Item(value=value, unit="", ref=ref, flag=flag, abnormal=is_abnormal(flag, d), **common)
    if v.number is None:
        checks.append(Check("unparsed", f"{d.name}: result {v.text!r} is not a value", d.code, "info"))
        return Item(value=v.text, unit="", ref=ref if not ref.empty else catalogue_range(d), flag=None, **common)
    try:
        number, unit, factor, corrected = to_canonical_read(v.number, printed_unit, d)
        if corrected is not None:
            checks.append(Check("unit_corrected", f"{d.name}: unit read as {printed_unit!r} taken as {corrected!r}",
                                d.code, "info"))
    except UnitError:
        checks.append(Check("unit_unknown", f"{d.name}: unit {printed_unit!r} is not one the catalogue converts "
                            f"to {d.unit!r}; value kept as printed", d.code))
        number, unit, factor = v.number, printed_unit, 1.0
    ref = convert_range(ref, factor) if not ref.empty else catalogue_range(d)
    flag = compute_flag(dataclasses.replace(v, number=number), ref, d)
    return Item(value=float(number), unit=unit, ref=ref, flag=flag, comparator=v.comparator,
                abnormal=is_abnormal(flag, d), **common)


# ------------------------------------------------------------------------------------------------ kind

def _title(page: PageText, cat: Catalogue) -> tuple[str, str | None]:
    """The title line and the kind it names (lines in the top third of the page)."""
    limit = page.height / 3 if page.height else float("inf")
    for line in page.lines:
        if line.box.y > limit:
            break
        kind = cat.find_kind(line.text)
        if kind:
            return line.text.strip(), kind
    first = next((ln.text.strip() for ln in page.lines if ln.text.strip()), "")
    return first, None


def _vote(matches: Iterable[ItemDef]) -> str | None:
    votes: Counter[str] = Counter()
    for d in matches:
        for k in d.kinds:
            votes[k] += 1
    if not votes:
        return None
    (best, n), *rest = votes.most_common()
    return best if not rest or rest[0][1] < n else None


def _choose_kind(title_kind: str | None, voted: str | None, defs: Sequence[ItemDef]) -> str:
    if title_kind and (not defs or any(title_kind in d.kinds for d in defs)):
        return title_kind
    return voted or title_kind or "unknown"


# ------------------------------------------------------------------------------------------------ entry point

def structure(page: PageText, *, patient: Mapping[str, Any] | None = None, catalogue: Catalogue | None = None,
              rules: RuleSet | None = None) -> Report:
    """Structure one read page into a :class:`Report` (items, missing, checks, risk, patient, facts).

    ``patient`` overrides or completes what the header says (see :func:`edge.reports.header.combine`).
    """
    cat = catalogue or load_catalogue()
    rules = rules or load_rules()
    if page.source == "lines":
        return _structure_lines(page, cat, rules, patient)
    title, title_kind = _title(page, cat)

    table_raws: list[_Raw] = []
    leftovers: list[str] = []
    for table in page.tables:
        raws, rest = _table_raws(table, cat)
        table_raws.extend(raws)
        leftovers.extend(rest)
    free = list(page.lines)
    in_tables: set[int] = set()
    for table, members in tables_from_lines(free):
        raws, rest = _table_raws(table, cat)
        if raws:
            table_raws.extend(raws)
            leftovers.extend(rest)
            in_tables.update(members)
    free_lines = [ln for i, ln in enumerate(free) if i not in in_tables]

    first_pass = [m.item for r in table_raws if (m := _resolve(r, cat, title_kind))]
    for line in free_lines:
        for raw in _line_raws(line, cat, title_kind)[0]:
            m = _resolve(raw, cat, title_kind)
            if m:
                first_pass.append(m.item)
    kind = _choose_kind(title_kind, _vote(first_pass), first_pass)
    ctx_kind = kind if kind in cat.kinds else None

    header_texts = [ln.text for ln in page.lines] + leftovers
    hdr = read_header(header_texts)
    pat, facts = combine(hdr, patient)

    checks: list[Check] = []
    items: list[Item] = []
    findings: list[str] = []
    unmatched = 0
    for raw in table_raws:
        m = _resolve(raw, cat, ctx_kind)
        if m is None:
            unmatched += 1
            continue
        item = build_item(raw, m, checks)
        if item is not None:
            items.append(_sourced(item, "  ".join(c.text for c in raw.cells), m))
    for line in free_lines:
        raws, rest = _line_raws(line, cat, ctx_kind)
        for raw in raws:
            m = _resolve(raw, cat, ctx_kind)
            item = build_item(raw, m, checks) if m else None
            if item is not None and m is not None:
                items.append(_sourced(item, line.text.strip(), m))
        if line.text.strip() == title:
            continue
        findings.extend(s for s in rest if _is_finding(s))
    items = _dedupe(items, checks)
    for fact in sorted(hdr.unreadable - set(pat.to_json())):
        checks.append(Check("unreadable_fact", f"patient {fact} on the page could not be read as a plausible value",
                            None, "info"))
    if unmatched:
        checks.append(Check("unmatched", f"{unmatched} table row(s) did not match a catalogue item", None, "info"))

    missing = missing_items(cat, kind, items)
    all_checks = run_checks(cat, items, checks)
    risk = grade_risk(rules, items, pat, facts, findings)
    logger.info("report structured: kind %s, %d items, %d missing, %d checks, risk %s%s", kind, len(items),
                len(missing), len(all_checks), risk.colour, "+purple" if risk.also else "")
    return Report(kind=kind, title=title, items=tuple(items), missing=missing, checks=all_checks, risk=risk,
                  patient=pat, facts=facts, report_date=hdr.report_date, findings=tuple(findings),
                  notes=tuple(page.notes))


def _sourced(item: Item, source: str, match: Match) -> Item:
    """``item`` with the text it was read from, marked for a person to check when read with low confidence,
    by a fuzzy name, or as a quantity whose value is not a number."""
    d = match.item
    review = item.confidence < LOW_CONFIDENCE or match.method == "fuzzy" or \
        (d.type == "quantity" and not isinstance(item.value, float))
    return dataclasses.replace(item, source=source, review=review)


def structure_pages(pages: Sequence[PageText], **kw: Any) -> Report:
    """:func:`structure` for several pages of one report (photographed one by one): the pages are stacked
    (:func:`edge.reports.geometry.stack_pages`) and structured once, so the title on the first page names the
    kind of every item and an item printed on two pages is reported once."""
    return structure(stack_pages(pages), **kw)


def _structure_lines(page: PageText, cat: Catalogue, rules: RuleSet,
                     patient: Mapping[str, Any] | None) -> Report:
    """:func:`structure` for a page laid out from text lines: rows and sentences read by their catalogue
    anchors (:mod:`edge.reports.anchored`), whatever the layout."""
    title, title_kind = _title(page, cat)

    def read(kind: str | None) -> tuple[list[anchored.Raw], list[str], list[anchored.ProseItem]]:
        raws: list[anchored.Raw] = []
        leftovers: list[str] = []
        for table in page.tables:
            got, rest = anchored.table_raws(table, cat, kind)
            raws.extend(got)
            leftovers.extend(rest)
        return raws, leftovers, anchored.prose_items(page.lines, cat, kind)

    raws, leftovers, prose = read(title_kind)
    first = [r.match.item for r in raws] + [cat.item(p.code) for p in prose if cat.get(p.code) is not None]
    kind = _choose_kind(title_kind, _vote(first), first)
    ctx_kind = kind if kind in cat.kinds else None
    if ctx_kind != title_kind:
        raws, leftovers, prose = read(ctx_kind)

    hdr = read_header([ln.text for ln in page.lines] + leftovers)
    pat, facts = combine(hdr, patient)
    checks: list[Check] = []
    items: list[Item] = []
    for raw in raws + [p.raw for p in prose if p.raw is not None]:
        m = cat.match(raw.label, kind=ctx_kind) if raw.abbr else None
        match = m if m is not None and m.item.code == raw.match.item.code else raw.match
        item = build_item(raw, match, checks)  # type: ignore[arg-type]
        if item is not None:
            items.append(_sourced(item, raw.source, match))
    for p in prose:
        if p.raw is not None:
            continue
        d = cat.get(p.code)
        if d is None or (kind != "obstetric_ultrasound" and d.code == "18185-9"):
            continue
        conf = max(0.0, min(1.0, p.line.conf / 100.0))
        value: float | str = p.number if p.number is not None else p.value
        items.append(Item(code=d.code, name=d.name, value=value, unit=p.unit, ref=RefRange(source="none"),
                          flag=None, confidence=conf, region=p.line.box, printed=p.value, label=d.name,
                          match="exact", category=d.category, source=p.source, review=conf < LOW_CONFIDENCE))
    ga = next((i for i in items if i.code == "18185-9" and isinstance(i.value, float)), None)
    if ga is not None and facts.gestational_weeks is None:
        facts = dataclasses.replace(facts, gestational_weeks=ga.value)
    items = _dedupe(items, checks)
    findings: list[str] = []
    for line in page.lines:
        if line.text.strip() == title:
            continue
        findings.extend(s for s in _segments(line.text) if _is_finding(s))
    findings.extend(str(i.value) for i in items if i.code in anchored.MULTI_CODES)
    for fact in sorted(hdr.unreadable - set(pat.to_json())):
        checks.append(Check("unreadable_fact", f"patient {fact} on the page could not be read as a plausible value",
                            None, "info"))
    missing = missing_items(cat, kind, items)
    all_checks = run_checks(cat, items, checks)
    risk = grade_risk(rules, items, pat, facts, findings)
    logger.info("report structured from lines: kind %s, %d items (%d to check), %d missing, risk %s%s", kind,
                len(items), sum(i.review for i in items), len(missing), risk.colour, "+purple" if risk.also else "")
    return Report(kind=kind, title=title, items=tuple(items), missing=missing, checks=all_checks, risk=risk,
                  patient=pat, facts=facts, report_date=hdr.report_date, findings=tuple(findings),
                  notes=tuple(page.notes))


def _is_finding(text: str) -> bool:
    """Free text worth the keyword rules: not a header field, and holding some Chinese or a diagnosis word."""
    t = text.strip()
    if not t or not _CJK.search(t) or has_personal(t):
        return False
    if any(k in t for k in _STAFF_KEYS):
        return False  # staff names, signatures, contact details
    if any(t.startswith(k) for k in ("科室", "床号", "报告日期", "采样时间", "标本", "样本", "孕周")):
        return any(k in t for k in _FINDING_KEYS)
    return True


def _dedupe(items: list[Item], checks: list[Check]) -> list[Item]:
    """One item per code: the most confident reading; differing values are reported."""
    best: dict[str, Item] = {}
    order: list[str] = []
    for item in items:
        key = f"{item.code}\n{item.value}" if item.code in anchored.MULTI_CODES else item.code
        prev = best.get(key)
        if prev is None:
            best[key] = item
            order.append(key)
            continue
        if prev.value != item.value:
            checks.append(Check("duplicate", f"{item.name} read twice with different values "
                                f"({prev.printed} / {item.printed})", item.code))
        if item.confidence > prev.confidence:
            best[key] = item
    return [best[c] for c in order]
