"""Catalogue-anchored reading of rows and sentences: what the structuring stage does with a page read as
text lines (:mod:`edge.reports.geometry`), whatever its layout.

**Rows.** Each cell of a row is either an item name the catalogue knows (an *anchor*: ``白细胞计数(WBC)``,
``淋巴细胞#``, ``Hemoglobin``, ``HGB``, after a leading row number ``10.`` / ``10、`` / ``No.10`` is dropped),
or a field of the anchor to its left. The fields are cut into tokens by what they look like, never by the
column they stand in: a range (``4.0-10.0``, ``4.0～10.0``, ``(3.5-9.5)``), a unit in any spelling
(``10^9/L``, ``10~9/L``, ``×10⁹/L``, ``10*9/L``), a flag (``↑ ↓ H L 高 低``), a bound (``<8``, ``≤5.0``), a
number or a qualitative result (``阴性``, ``+``). The first number, bound or qualitative result is the value;
the next bound or qualitative result, the range. So a value and its range in one cell, a flag in its own
column or after the value, columns in any order and two or three tables in one row all read the same way.
A name split over two lines is joined when neither half names an item alone. Cells left of the first anchor
(row numbers, codes) are never values.

**Sentences.** In free text (ultrasound findings, 病历, 出院记录) an item name the catalogue knows, followed
(after ``约``, ``为``, ``:`` or its abbreviation in brackets) by a number, is a measurement:
``双顶径(BPD)约8.6cm，头围(HC)约33.3cm`` gives two. Placenta position and grade, cord around the neck,
gestational age and fetal position have their own patterns; the lines under ``出院诊断`` are text items,
one per numbered diagnosis.

Nothing is made up: an item exists only where its name and its value are both on the page, and carries the
text it came from (``source``).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge.reports.catalogue import Catalogue, Match
from edge.reports.page import Box, Cell, Line, Row, Table
from edge.reports.values import UNIT_WORDS

logger = logging.getLogger(__name__)

INDEX = re.compile(r"^(?:(?:No|NO|no)\.?\s*)?\d{1,3}\s*[.、)）]$|^(?:No|NO|no)\.?\s*\d{1,3}$")
"""A row number printed before the name (``10.``, ``10、``, ``No.10``)."""
_LEADING_INDEX = re.compile(r"^\s*(?:(?:No|NO|no)\.?\s*)?\d{1,3}\s*[.、)）]\s*(?=\D)|^\s*(?:No|NO|no)\.?\s*\d{1,3}(?:\s+|(?=[^\d.\s]))")
_NUM = r"\d+(?:\.\d+)?"
_RANGE = re.compile(r"(?:参考(?:值|范围|区间)?\s*[:：]?\s*)?[(（\[]?\s*(" + _NUM + r")\s*(?:[-~—–－]{1,2}|至)\s*(" + _NUM
                    + r")\s*[)）\]]?")
_POWER_UNIT = re.compile(r"[x×*]?\s*10\s*(?:\^|\*\*|\*|e|~)?\s*\d{1,2}\s*/\s*[lLuμ]L?", re.IGNORECASE)
_BOUND = re.compile(r"[(（]?\s*(?:<=|>=|≤|≥|<|>)\s*" + _NUM + r"\s*[)）]?")
_NUMBER = re.compile(_NUM)
_QUAL = re.compile(r"弱阳性|阳性|阴性|未检出|检出|[(（]\s*[+\-±]{1,4}\s*[)）]|\+{1,4}|±|(?<![\d.])[-−](?![\d.])")
_FLAG = re.compile(r"↑↑|↓↓|↑|↓|偏高|偏低|(?<![A-Za-z])[HL](?![A-Za-z/])|高|低")
_FILLER = re.compile(r"[)）\]]?[\s:：]*(?:大约|约为|约|为|是|测得|测值|值|径线)?[\s:：]*")
_BRACKET = re.compile(r"\s*[(（\[]\s*[A-Za-z][A-Za-z0-9%#/+\-]*\s*[)）\]]")
_CJK = re.compile(r"[\u4e00-\u9fff]")

MULTI_CODES = frozenset({"11535-2"})
"""Items a page may hold several of (one per discharge diagnosis)."""
SPECIAL_CODES = frozenset({"11995-8", "ehc:placenta-grade", "ehc:nuchal-cord", "18185-9", "11875-2", "11535-2"})
"""Text items read by their own sentence patterns, not as ``name value``."""
SENTENCE_ONLY = frozenset({"ehc:placenta-grade", "ehc:nuchal-cord", "18185-9", "11535-2"})
"""Items only the sentence patterns read (the word path's ``key: value`` lines leave them alone)."""


@dataclass
class Raw:
    """One candidate item: the printed name, its fields, where it was read and the text it came from."""

    label: str
    match: Match
    abbr: str = ""
    value: str = ""
    unit: str = ""
    ref: str = ""
    flag: str = ""
    conf: float = 100.0
    region: Box | None = None
    source: str = ""
    cells: list[Cell] = field(default_factory=list)


def nfkc(text: str) -> str:
    """NFKC with the micro sign as μ (``×10⁹/L`` → ``×109/L``, ``4.0～10.0`` → ``4.0~10.0``)."""
    return unicodedata.normalize("NFKC", text).replace("µ", "μ")


# ------------------------------------------------------------------------------------------------ tokens

def tokens(text: str) -> list[tuple[str, str]]:
    """``text`` cut into (kind, text) tokens: range, unit, bound, number, qual, flag (other text dropped)."""
    t = nfkc(text)
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(t):
        if t[i].isspace():
            i += 1
            continue
        for kind, rx in (("unit", _POWER_UNIT), ("range", _RANGE), ("bound", _BOUND), ("number", _NUMBER),
                         ("unit", UNIT_WORDS), ("qual", _QUAL), ("flag", _FLAG)):
            m = rx.match(t, i)
            if m and m.end() > i:
                if kind == "unit" and rx is UNIT_WORDS and i > 0 and t[i - 1].isalpha() and t[i - 1].isascii():
                    continue  # the middle of a word
                if kind == "flag" and m.end() < len(t) and t[m.end()].isascii() and t[m.end()].isalpha():
                    continue
                out.append((kind, m.group(0).strip()))
                i = m.end()
                break
        else:
            i += 1
    return out


def assign(toks: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Value, range, unit and flag from the tokens of one item's fields (see the module documentation)."""
    got: dict[str, str] = {}
    for kind, text in toks:
        if kind in ("number", "bound", "qual"):
            if "value" not in got:
                got["value"] = text
            elif kind in ("bound", "qual") and "ref" not in got:
                got["ref"] = text
        elif kind == "range":
            got.setdefault("ref", text)
        elif kind == "unit":
            got.setdefault("unit", text)
        elif kind == "flag":
            got.setdefault("flag", text)
    return got


_LETTERS_ZERO = re.compile(r"^[A-Za-z]{1,4}0(?![.\d])")


def is_value_text(text: str) -> bool:
    """Whether a cell holds only value-like tokens (no name)."""
    t = nfkc(text).strip()
    if not t or _CJK.search(t) and not re.fullmatch(r"[阴阳性弱未检出高低偏次分钟秒克厘毫米/\s\d.]+", t):
        return False
    if _LETTERS_ZERO.match(t):  # E0%: an abbreviation whose O was read as 0
        return False
    toks = tokens(t)
    covered = sum(len(x) for _, x in toks)
    return bool(toks) and covered >= 0.6 * len(t.replace(" ", ""))


# ------------------------------------------------------------------------------------------------ names

def strip_index(text: str) -> str:
    """A cell's text without a leading row number."""
    return _LEADING_INDEX.sub("", text, count=1)


def name_of(text: str, cat: Catalogue, kind: str | None) -> tuple[Match, str, str] | None:
    """The item a cell names, the name as printed and the rest of the cell (``白细胞计数 5.6`` → rest
    ``5.6``; ``双顶径(BPD): 92 mm`` → rest ``92 mm``), or None."""
    t = strip_index(nfkc(text)).strip()
    if not t or INDEX.match(t) or is_value_text(t):
        return None
    cm = re.match(r"^([^:：]{1,40}?)\s*[:：]\s*(.*)$", t)
    if cm and "value" in assign(tokens(cm.group(2))):
        key = re.sub(r"(?:约为|约|为)$", "", cm.group(1).strip())
        m = cat.match(key, kind=kind)
        if m is not None and _plausible_name(key, m):
            return m, key, cm.group(2)
    for vm in re.finditer(r"(?<![A-Za-z\d.#%^*~/])(?:[<>≤≥]\s*)?\d|阴性|阳性|弱阳性|未检出", t):
        key = t[:vm.start()].strip()
        if not key or "value" not in assign(tokens(t[vm.start():])):
            continue
        key = re.sub(r"[\s:：]*(?:约为|约|为)?[\s:：]*$", "", key)
        m = cat.match(key, kind=kind)
        if m is not None and _plausible_name(key, m):
            return m, key, t[vm.start():]
    m = cat.match(t, kind=kind)
    if m is not None and _plausible_name(t, m):
        return m, t, ""
    return None


def _plausible_name(text: str, m: Match) -> bool:
    """Items read from sentences only are no row names; a fuzzy match is taken only for a mostly Chinese
    name of three characters or more."""
    if m.item.code in SPECIAL_CODES:
        return False
    if m.method != "fuzzy":
        return True
    cjk = len(_CJK.findall(text))
    return cjk >= 3 and cjk >= 0.6 * len(text.replace(" ", "")) and m.score >= 0.8


def _is_abbr(text: str) -> bool:
    t = nfkc(text).strip()
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9%#/+\-]{0,11}", t)) and not _FLAG.fullmatch(t)


def cell_kind(cat: Catalogue) -> Callable[[str], str]:
    """What a cell holds, for :func:`edge.reports.geometry.build_page_from_lines`: ``index`` (a row number with
    its dot), ``value`` (values, ranges, units, flags), ``name`` (an item the catalogue knows) or ``text``."""

    def kind_of(text: str) -> str:
        t = nfkc(text).strip()
        if INDEX.match(t):
            return "index"
        if is_value_text(t):
            return "value"
        return "name" if name_of(t, cat, None) is not None else "text"

    return kind_of


# ------------------------------------------------------------------------------------------------ rows

def _row_text(cells: Sequence[Cell]) -> str:
    return "  ".join(c.text for c in sorted(cells, key=lambda c: c.box.x))


def _union(boxes: Sequence[Box]) -> Box | None:
    out: Box | None = None
    for b in boxes:
        out = b if out is None else out.union(b)
    return out


def join_multiline(rows: Sequence[Row], cat: Catalogue, kind: str | None) -> list[Row]:
    """Rows with a name printed over two lines joined: a row holding only text (no value, no name the
    catalogue knows) is joined to the row below or above whose name cell, alone, names nothing either — or,
    below, has no name cell at all."""
    out: list[Row] = list(rows)
    i = 0
    while i < len(out):
        row = out[i]
        lone = [c for c in row.cells if not is_value_text(c.text)]
        if (len(row.cells) == len(lone) and len(lone) == 1 and _CJK.search(lone[0].text)
                and name_of(lone[0].text, cat, kind) is None):
            frag = lone[0]
            for j in (i + 1, i - 1):
                if not 0 <= j < len(out) or j == i:
                    continue
                other = out[j]
                below = [c for c in other.cells if abs(c.box.x - frag.box.x) < max(frag.box.h, 20) * 1.5]
                if not below:
                    continue
                c = below[0]
                if is_value_text(c.text):
                    continue
                joined = (frag.text + c.text) if j > i else (c.text + frag.text)
                if name_of(c.text, cat, kind) is None and name_of(joined, cat, kind) is not None:
                    merged = Cell(joined, min(frag.conf, c.conf), frag.box.union(c.box), c.col)
                    cells = tuple(merged if x is c else x for x in other.cells)
                    box = _union([x.box for x in cells])
                    assert box is not None
                    out[j] = Row(cells, box)
                    del out[i]
                    i -= 1
                    break
        i += 1
    return out


REF_WORDS = ("参考", "正常值", "正常范围", "范围", "区间", "reference", "ref.", "range", "normal")


def ref_columns(rows: Sequence[Row], cat: Catalogue, kind: str | None) -> set[int]:
    """Columns that hold reference ranges: right of a column of values (right of the names), and most of
    their cells start with a range or a bound (``3.5-9.5``, ``<0.5``), or a header cell names them (参考范围,
    Reference). A bound or a qualitative word in such a column is a range, never a value (a row whose result
    cell is empty gives no item)."""
    counts: dict[int, list[int]] = {}
    titled: set[int] = set()
    for row in rows:
        for cell in row.cells:
            toks = tokens(cell.text)
            n = counts.setdefault(cell.col, [0, 0, 0, 0])
            n[0] += 1
            n[1] += bool(toks) and toks[0][0] in ("range", "bound")
            n[2] += bool(toks) and toks[0][0] in ("number", "bound", "qual") and not INDEX.match(cell.text.strip())
            n[3] += name_of(cell.text, cat, kind) is not None
            if any(w in cell.text.lower() for w in REF_WORDS) and not toks:
                titled.add(cell.col)
    names = [c for c, n in counts.items() if n[3] >= 0.5 * n[0]]
    if not names:
        return set()
    values = [c for c, n in counts.items() if c > min(names) and n[2] >= 0.5 * n[0]]
    out = {c for c, n in counts.items() if n[0] >= 2 and n[1] >= 0.6 * n[0]} | titled
    return {c for c in out if any(v < c for v in values)}


def row_raws(row: Row, cat: Catalogue, kind: str | None, ref_cols: set[int] = frozenset()) -> list[Raw]:  # type: ignore[assignment]
    """The items of one table row (see the module documentation); ``ref_cols``: :func:`ref_columns`."""
    cells = sorted(row.cells, key=lambda c: c.box.x)
    anchors: list[tuple[int, Match, str, str]] = []
    for i, cell in enumerate(cells):
        got = name_of(cell.text, cat, kind)
        if got is None:
            continue
        m, label, rest = got
        if anchors and anchors[-1][0] == i - 1 and not anchors[-1][3].strip() and _is_abbr(cell.text):
            continue  # an abbreviation column right after the name
        anchors.append((i, m, label, rest))
    raws = []
    for k, (i, m, label, rest) in enumerate(anchors):
        end = anchors[k + 1][0] if k + 1 < len(anchors) else len(cells)
        fields = cells[i + 1:end]
        abbr = ""
        if fields and _is_abbr(fields[0].text) and not rest.strip():
            abbr = fields[0].text
            by_abbr = cat.match(abbr, kind=kind)
            if by_abbr is not None and by_abbr.item.code != m.item.code and m.method == "fuzzy":
                m = by_abbr  # the name misread, the abbreviation exact
            fields = fields[1:]
        if k + 1 < len(anchors) and fields and INDEX.match(nfkc(fields[-1].text).strip()):
            fields = fields[:-1]  # the next table's row number
        toks = tokens(rest)
        for c in fields:
            toks += [("range" if c.col in ref_cols and k in ("bound", "qual") else k, x) for k, x in tokens(c.text)
                     if not (c.col in ref_cols and k == "number")]
        got = assign(toks)
        if "value" not in got:
            continue
        used = [cells[i], *fields]
        raws.append(Raw(label=label, match=m, abbr=abbr, value=got["value"], unit=got.get("unit", ""),
                        ref=got.get("ref", ""), flag=got.get("flag", ""), conf=min(c.conf for c in used),
                        region=_union([c.box for c in used]), source=_row_text(used), cells=used))
    return raws


def table_raws(table: Table, cat: Catalogue, kind: str | None) -> tuple[list[Raw], list[str]]:
    """Candidate items of one table and the texts of rows that gave none."""
    raws: list[Raw] = []
    leftovers: list[str] = []
    rows = ([table.header] if table.header is not None else []) + list(table.rows)
    refs = ref_columns(rows, cat, kind)
    for row in join_multiline(rows, cat, kind):
        got = row_raws(row, cat, kind, refs)
        if got:
            raws.extend(got)
        else:
            leftovers.append(_row_text(row.cells))
    return raws, leftovers


# ------------------------------------------------------------------------------------------------ sentences

@dataclass(frozen=True)
class Paragraph:
    """Free lines joined where a sentence runs on to the next line; ``spans`` maps text offsets to lines."""

    text: str
    spans: tuple[tuple[int, int, Line], ...]

    def line_at(self, pos: int) -> Line:
        for a, b, line in self.spans:
            if a <= pos < b:
                return line
        return self.spans[-1][2]


_SENTENCE_END = ("。", "：", ":", "；", ";", "!", "！", "?", "？")


def paragraphs(lines: Sequence[Line]) -> list[Paragraph]:
    """Free lines in reading order, a line that does not end a sentence joined to the next one when that
    one starts at about the same left edge and follows closely."""
    order = sorted(lines, key=lambda ln: (ln.box.y + ln.box.h / 2, ln.box.x))
    out: list[Paragraph] = []
    text = ""
    spans: list[tuple[int, int, Line]] = []
    prev: Line | None = None
    for ln in order:
        t = nfkc(ln.text).strip()
        joins = (prev is not None and not text.endswith(_SENTENCE_END) and abs(ln.box.x - prev.box.x) < 3 * ln.box.h
                 and 0 < ln.box.y - prev.box.y < 2.2 * max(ln.box.h, prev.box.h)
                 and len(text) > 12 and not re.match(r"^\s*\d{1,2}[.、)）](?!\d)", t))
        if prev is not None and not joins:
            out.append(Paragraph(text, tuple(spans)))
            text, spans = "", []
        start = len(text)
        text += t
        spans.append((start, len(text), ln))
        prev = ln
    if spans:
        out.append(Paragraph(text, tuple(spans)))
    return out


def _clause(text: str, pos: int) -> tuple[int, int]:
    a = max(text.rfind(ch, 0, pos) for ch in "，,；;。\n") + 1
    ends = [i for i in (text.find(ch, pos) for ch in "，,；;。\n") if i >= 0]
    return a, min(ends) if ends else len(text)


class _Keys:
    """The catalogue's names, aliases and abbreviations by first character, for finding names in prose."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat
        self.by_first: dict[str, list[str]] = {}
        for item in cat.items:
            for key in (item.name, *item.aliases, *item.abbr):
                k = nfkc(key).strip()
                if len(k) >= 2 and " " not in k and "(" not in k and "（" not in k:
                    if not k.isascii():
                        k = cat.canonical(k)  # matched with look-alike characters as one (头固 is 头围)
                    self.by_first.setdefault(k[0], []).append(k)
        for v in self.by_first.values():
            v.sort(key=len, reverse=True)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, key) of the longest keys in ``text``; Latin keys only as whole
        upper-case words."""
        out = []
        canon = "".join(ch if ch.isascii() else self.cat.canonical(ch) for ch in text)
        i = 0
        while i < len(text):
            hit = None
            for k in self.by_first.get(canon[i], ()):
                if canon.startswith(k, i):
                    if k.isascii():
                        before = text[i - 1] if i else " "
                        after = text[i + len(k)] if i + len(k) < len(text) else " "
                        if (before.isascii() and before.isalnum()) or (after.isascii() and after.isalpha()) \
                                or not any(ch.isupper() for ch in k):
                            continue
                    hit = k
                    break
            if hit:
                out.append((i, i + len(hit), text[i:i + len(hit)]))
                i += len(hit)
            else:
                i += 1
        return out


_KEYS: dict[int, _Keys] = {}


def _keys(cat: Catalogue) -> _Keys:
    if id(cat) not in _KEYS:
        _KEYS[id(cat)] = _Keys(cat)
    return _KEYS[id(cat)]


_PROSE_VALUE = re.compile(r"(?P<value>(?:[<>≤≥]\s*)?" + _NUM + r")(?:\s*±\s*" + _NUM + r")?(?:\s*(?P<unit>"
                          + _POWER_UNIT.pattern + r"|" + UNIT_WORDS.pattern + r"))?", re.IGNORECASE)
_POSITION = re.compile(r"胎盘\s*(?:位于|附着于|附着在|附着|位置|附着位置)?\s*[:：]?\s*(?:子宫)?\s*"
                       r"(前壁偏左|前壁偏右|后壁偏左|后壁偏右|左前壁|右前壁|左后壁|右后壁|左侧壁|右侧壁|前壁|后壁|宫底|侧壁|下段)")
_GRADE = re.compile(r"(?:成熟度|分级|Grannum)\s*[:：]?\s*(?:为)?\s*(Ⅲ|Ⅱ|Ⅰ|川|0|[123](?!\d)|[Il|丨]{1,3})\s*(\+)?\s*级?")
_CORD = re.compile(r"脐带绕颈")
_CORD_COUNT = re.compile(r"绕颈\s*([一二两三四1-4])\s*周")
_GA = re.compile(r"(?:如|相当于|约|符合)?\s*孕\s*(\d{1,2})\s*(?:\+\s*(\d)\s*)?周(?:\s*(?:\+|又)?\s*(\d)\s*天)?")
_FETAL_POSITION = re.compile(r"胎位\s*[:：]?\s*(头位|臀位|横位|[LR][OS][AP]|枕[左右][前后])")
_DIAGNOSIS = re.compile(r"出院诊断\s*[:：]?")
_NUMBERED = re.compile(r"(?:^|(?<=\s)|(?<=[，,；;。]))(\d{1,2})\s*[.、)）](?!\d)")
_HEADING = re.compile(r"^\s*[\u4e00-\u9fff]{2,8}\s*[:：]")
_ROMAN = {"Ⅰ": "I", "Ⅱ": "II", "Ⅲ": "III", "川": "III", "1": "I", "2": "II", "3": "III"}
_COUNT = {"一": "1", "二": "2", "两": "2", "三": "3", "四": "4"}


@dataclass
class ProseItem:
    """A text or measurement read from a sentence (``raw`` for measurements through the catalogue's units;
    ``text`` for text items, with ``number`` for gestational age)."""

    code: str
    value: str
    line: Line
    source: str
    raw: Raw | None = None
    number: float | None = None
    unit: str = ""


def prose_items(lines: Sequence[Line], cat: Catalogue, kind: str | None) -> list[ProseItem]:
    """Measurements, findings and diagnoses read from free text (see the module documentation)."""
    out: list[ProseItem] = []
    keys = _keys(cat)
    for para in paragraphs(lines):
        text = para.text
        hits = keys.find(text)
        skip_until = -1
        for n, (s, e, key) in enumerate(hits):
            if s < skip_until:
                continue  # the abbreviation in brackets after a name
            pos = e
            bm = _BRACKET.match(text, pos)
            if bm:
                pos = skip_until = bm.end()
            m = cat.match(key, kind=kind)
            if m is None or m.item.code in SPECIAL_CODES or m.item.type == "text":
                continue
            rest_end = next((h[0] for h in hits[n + 1:] if h[0] >= pos), len(text))
            fm = _FILLER.match(text, pos)
            pos = fm.end() if fm else pos
            vm = _PROSE_VALUE.match(text, pos)
            if vm is None or vm.start() >= rest_end:
                qm = re.match(r"(阴性|阳性|弱阳性|未检出|[(（]\s*[+\-±]{1,4}\s*[)）])", text[pos:rest_end])
                if qm is None or m.item.type != "qualitative":
                    continue
                value, unit, end = qm.group(1), "", pos + qm.end()
            else:
                value, unit, end = vm.group("value"), vm.group("unit") or "", vm.end()
                if end < len(text) and (text[end].isdigit() or text[end] in ".+"):
                    continue  # 孕2+1, a date: not a measurement
            a, b = _clause(text, s)
            line = para.line_at(s)
            source = text[a:max(b, end)].strip()
            raw = Raw(label=key, match=m, value=value, unit=unit, conf=line.conf, region=line.box, source=source)
            out.append(ProseItem(m.item.code, value, line, source, raw=raw))
        out.extend(_special(para, kind, diagnoses=False))
    for line in diagnosis_paragraphs(lines):
        out.extend(_special(Paragraph(nfkc(line.text), ((0, len(line.text), line),)), kind, diagnoses=True))
    return out


def _special(para: Paragraph, kind: str | None, diagnoses: bool) -> list[ProseItem]:
    text = para.text
    out: list[ProseItem] = []

    def add(code: str, value: str, pos: int, **kw: object) -> None:
        a, b = _clause(text, pos)
        out.append(ProseItem(code, value, para.line_at(pos), text[a:b].strip(), **kw))  # type: ignore[arg-type]

    if diagnoses:
        return _diagnoses(para)
    for m in _POSITION.finditer(text):
        add("11995-8", m.group(1), m.start())
    for m in _GRADE.finditer(text):
        sentence_start = max(text.rfind(ch, 0, m.start()) for ch in "。\n") + 1
        if "胎盘" in text[sentence_start:m.start()] or "胎盘" in text[m.start() - 2:m.start()]:
            g = m.group(1)
            grade = "I" * len(g) if re.fullmatch(r"[Il|丨]+", g) else _ROMAN.get(g, g)  # II read as ll, I|
            add("ehc:placenta-grade", grade + (m.group(2) or ""), m.start())
    for m in _CORD.finditer(text):
        a, b = _clause(text, m.start())
        clause = text[a:b]
        count = _CORD_COUNT.search(clause)
        if count:
            add("ehc:nuchal-cord", f"{_COUNT.get(count.group(1), count.group(1))}周", m.start())
        elif re.search(r"未见|无|未发现|未显示", clause):
            add("ehc:nuchal-cord", "未见", m.start())
    for m in _FETAL_POSITION.finditer(text):
        add("11875-2", m.group(1), m.start())
    if kind == "obstetric_ultrasound":
        for m in _GA.finditer(text):
            weeks, days = int(m.group(1)), int(m.group(2) or m.group(3) or 0)
            if 4 <= weeks <= 44 and days <= 6:
                printed = f"{weeks}+{days}周" if days else f"{weeks}周"
                add("18185-9", printed, m.start(), number=round(weeks + days / 7, 2), unit="wk")
    return out


def _diagnoses(para: Paragraph) -> list[ProseItem]:
    """One text item per numbered diagnosis after ``出院诊断`` (the whole rest when not numbered)."""
    text = para.text
    out: list[ProseItem] = []
    line = para.spans[0][2]
    dm = _DIAGNOSIS.search(text)
    if dm:
        body = text[dm.end():]
        marks = list(_NUMBERED.finditer(body))
        if marks:
            for k, mk in enumerate(marks):
                end = marks[k + 1].start() if k + 1 < len(marks) else len(body)
                diagnosis = body[mk.end():end].strip(" ，,；;。")
                if diagnosis:
                    out.append(ProseItem("11535-2", diagnosis, line, f"{mk.group(0)}{diagnosis}".strip()))
        elif body.strip(" ，,；;。"):
            out.append(ProseItem("11535-2", body.strip(" ，,；;。"), line, body.strip()))
    return out


def diagnosis_paragraphs(lines: Sequence[Line]) -> list[Line]:
    """The free lines from a ``出院诊断`` heading to the next heading, joined as one line (numbered
    diagnoses are often printed one to a line)."""
    order = sorted(lines, key=lambda ln: (ln.box.y + ln.box.h / 2, ln.box.x))
    out: list[Line] = []
    current: list[Line] = []
    for ln in order:
        t = nfkc(ln.text)
        if _DIAGNOSIS.search(t):
            if current:
                out.append(_join(current))
            current = [ln]
        elif current and (_HEADING.match(t) and not re.match(r"^\s*\d", t)):
            out.append(_join(current))
            current = []
        elif current:
            current.append(ln)
    if current:
        out.append(_join(current))
    return out


def _join(lines: Sequence[Line]) -> Line:
    box = _union([ln.box for ln in lines])
    assert box is not None
    return Line(" ".join(nfkc(ln.text).strip() for ln in lines), min(ln.conf for ln in lines), box)
