"""Layout: OCR words → text lines and tables (:class:`~edge.reports.page.PageText`).

1. **Lines.** Words are grouped into lines by vertical overlap (at least half of the smaller height), in
   order of their vertical centres; a line's words are sorted left to right. The page's text height is
   the median height of its words.
2. **Tables.** A line whose pieces name at least three column titles (项目, 结果, 单位, 参考…, see
   :data:`HEADER_WORDS`), or two of them including a result title, is a table header. The table's rows are
   the lines below it until a gap of more than :data:`ROW_GAP` row pitches, another header, or a footer
   line (检验者, 审核…). Columns are the runs of x between **gutters**: x positions that no word of the
   header or rows covers, at least :data:`MIN_GUTTER` text heights wide. Each word goes to the column
   holding its centre. A header whose first column title comes again further right (a two-column page:
   the same table printed twice side by side) is split there into two tables.
3. **Lines outside tables** (titles, the patient block, ultrasound measurements and narrative) are cut at
   gaps wider than :data:`KEY_VALUE_GAP` text heights, so ``双顶径(BPD): 87 mm    头围(HC): 260 mm`` and
   ``姓名: …    性别: 女`` become one :class:`~edge.reports.page.Line` per key–value pair, while running
   text stays whole.

Words are joined with a space between Latin letters, digits or punctuation apart by more than a quarter
of the text height, and without one between Chinese characters. Pure: no image, no OCR.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from edge.reports.page import Box, Cell, Line, PageText, Row, Table, Word

HEADER_WORDS = ("项目", "名称", "结果", "单位", "参考", "提示", "缩写", "代号", "序号", "检测值", "测定值",
                "标志", "区间", "范围", "英文", "方法", "检验值")
"""Column titles of result tables."""
RESULT_HEADERS = ("结果", "检测值", "测定值", "检验值")
NAME_HEADERS = ("项目", "名称")
FOOTER_WORDS = ("检验者", "审核", "报告时间", "报告日期", "检验日期", "备注", "本报告", "签名", "操作者")
"""Words of the lines that end a table."""
ROW_GAP = 2.2
"""A vertical gap larger than this many row pitches (or text heights before the first row) ends a table."""
MIN_GUTTER = 0.5
"""Narrowest gap between table columns, in text heights."""
KEY_VALUE_GAP = 1.5
"""Gap, in text heights, that separates two pieces of a line outside tables."""


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def join_words(words: Sequence[Word], height: float) -> str:
    """The words' text in order, spaced as printed (see the module documentation)."""
    out = ""
    prev: Word | None = None
    for w in words:
        if prev is not None:
            gap = w.box.x - (prev.box.x + prev.box.w)
            a, b = prev.text[-1], w.text[0]
            if not (_is_cjk(a) and _is_cjk(b)) and (gap > 0.25 * height or (a.isascii() and a.isalnum()
                                                                           and b.isascii() and b.isalnum())):
                out += " "
        out += w.text
        prev = w
    return out


def _union(boxes: Sequence[Box]) -> Box:
    box = boxes[0]
    for b in boxes[1:]:
        box = box.union(b)
    return box


def _conf(words: Sequence[Word]) -> float:
    total = sum(len(w.text) for w in words)
    return sum(w.conf * len(w.text) for w in words) / total if total else 0.0


def text_height(words: Sequence[Word]) -> float:
    """The page's typical text height: the median word height (at least 8 pixels)."""
    return max(8.0, float(statistics.median(w.box.h for w in words))) if words else 20.0


def group_lines(words: Sequence[Word]) -> list[list[Word]]:
    """Words grouped into lines (top to bottom), each line's words left to right."""
    lines: list[list[Word]] = []
    spans: list[tuple[float, float]] = []
    for w in sorted(words, key=lambda w: w.box.y + w.box.h / 2):
        top, bottom = w.box.y, w.box.y + w.box.h
        best, best_overlap = -1, 0.0
        for i in range(len(lines) - 1, max(-1, len(lines) - 6), -1):
            t, b = spans[i]
            overlap = min(b, bottom) - max(t, top)
            if overlap > 0.5 * min(b - t, bottom - top) and overlap > best_overlap:
                best, best_overlap = i, overlap
        if best < 0:
            lines.append([w])
            spans.append((top, bottom))
        else:
            lines[best].append(w)
            hs = sorted(x.box.y for x in lines[best])
            bs = sorted(x.box.y + x.box.h for x in lines[best])
            spans[best] = (hs[len(hs) // 2], bs[len(bs) // 2])
    for line in lines:
        line.sort(key=lambda w: w.box.x)
    lines.sort(key=lambda ln: statistics.median(w.box.y + w.box.h / 2 for w in ln))
    return lines


def pieces(line: Sequence[Word], gap: float) -> list[list[Word]]:
    """A line's words cut where the horizontal gap exceeds ``gap`` pixels."""
    out: list[list[Word]] = []
    for w in line:
        if out and w.box.x - (out[-1][-1].box.x + out[-1][-1].box.w) <= gap:
            out[-1].append(w)
        else:
            out.append([w])
    return out


def _header_score(line: Sequence[Word], height: float) -> int:
    texts = [join_words(p, height) for p in pieces(line, 0.6 * height)]
    hits = [t for t in texts if any(k in t for k in HEADER_WORDS)]
    has_result = any(any(k in t for k in RESULT_HEADERS) for t in texts)
    if len(hits) >= 3 or (len(hits) >= 2 and has_result):
        return len(hits)
    return 0


def _is_footer(line: Sequence[Word], height: float) -> bool:
    text = join_words(line, height)
    return any(k in text for k in FOOTER_WORDS)


def _columns(lines: Sequence[Sequence[Word]], height: float) -> list[tuple[int, int]]:
    """Column extents (x0, x1) from the gutters between the words of ``lines``."""
    x0 = min(w.box.x for ln in lines for w in ln)
    x1 = max(w.box.x + w.box.w for ln in lines for w in ln)
    cover = [0] * (x1 - x0 + 1)
    for ln in lines:
        row = [False] * len(cover)
        for w in ln:
            for x in range(w.box.x - x0, w.box.x + w.box.w - x0):
                row[x] = True
        for i, v in enumerate(row):
            cover[i] += v
    tolerance = len(lines) // 12  # a word or two read across a gutter do not close it
    min_gutter = MIN_GUTTER * height
    runs: list[list[int]] = []
    x = 0
    n = len(cover)
    while x < n:
        if cover[x] > tolerance:
            start = x
            while x < n and cover[x] > tolerance:
                x += 1
            runs.append([start, x])
        else:
            x += 1
    merged: list[list[int]] = []
    for r in runs:
        if merged and r[0] - merged[-1][1] < min_gutter:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [(a + x0, b + x0) for a, b in merged]


def _column_of(w: Word, columns: Sequence[tuple[int, int]]) -> int:
    cx = w.box.x + w.box.w / 2
    for i, (a, b) in enumerate(columns):
        if cx < b:
            return i if cx >= a or i == 0 else (i if a - cx < cx - columns[i - 1][1] else i - 1)
    return len(columns) - 1


def _row(words: Sequence[Word], columns: Sequence[tuple[int, int]], first: int, height: float) -> Row | None:
    by_col: dict[int, list[Word]] = {}
    for w in words:
        by_col.setdefault(_column_of(w, columns) - first, []).append(w)
    cells = []
    for col in sorted(by_col):
        ws = sorted(by_col[col], key=lambda w: w.box.x)
        cells.append(Cell(join_words(ws, height), _conf(ws), _union([w.box for w in ws]), col))
    if not cells:
        return None
    return Row(tuple(cells), _union([c.box for c in cells]))


def _split_points(header: Sequence[Word], columns: Sequence[tuple[int, int]], height: float) -> list[int]:
    """Column indexes where a repeated table starts (two-column pages), the first being 0."""
    titles: dict[int, str] = {}
    for w in header:
        c = _column_of(w, columns)
        titles[c] = titles.get(c, "") + w.text
    starts = [0]
    first = titles.get(0, "")
    key = next((k for k in NAME_HEADERS if k in first), first)
    for c in sorted(titles):
        if c <= starts[-1] + 1:
            continue
        if key and key in titles[c]:
            starts.append(c)
        elif any(k in titles[c] for k in NAME_HEADERS) and _has_result(titles, starts[-1], c) \
                and _has_result(titles, c + 1, max(titles) + 1):
            starts.append(c)  # the first block's name title misread: a name title between two result titles
    return starts


def _has_result(titles: dict[int, str], lo: int, hi: int) -> bool:
    return any(any(k in t for k in RESULT_HEADERS) for c, t in titles.items() if lo <= c < hi)


def _table_end(lines: Sequence[Sequence[Word]], start: int, height: float) -> int:
    """Index after the last row of the table whose header is ``lines[start]``."""
    centre = [statistics.median(w.box.y + w.box.h / 2 for w in ln) for ln in lines]
    pitches: list[float] = []
    end = start + 1
    while end < len(lines):
        step = centre[end] - centre[end - 1]
        limit = ROW_GAP * statistics.median(pitches) if pitches else 3.0 * height
        if step > limit or _header_score(lines[end], height) or _is_footer(lines[end], height):
            break
        pitches.append(step)
        end += 1
    return end


def split_spanning(words: Sequence[Word], columns: Sequence[tuple[int, int]], height: float) -> list[Word]:
    """``words`` with each word that lies across a gutter cut into one word per column (Tesseract sometimes
    joins neighbouring cells): its characters are spread evenly over the parts of its box inside columns."""
    out: list[Word] = []
    for w in words:
        x0, x1 = w.box.x, w.box.x + w.box.w
        hit = [i for i, (a, b) in enumerate(columns) if min(b, x1) - max(a, x0) > 0.3 * height]
        if len(hit) < 2 or len(w.text) < 2:
            out.append(w)
            continue
        # the characters are spread over the parts of the word inside columns (the gutters hold none)
        spans = [(max(x0, columns[i][0]), min(x1, columns[i][1])) for i in hit]
        step = sum(b - a for a, b in spans) / len(w.text)
        parts: dict[int, list[int]] = {}
        for k in range(len(w.text)):
            at = (k + 0.5) * step
            for i, (a, b) in zip(hit, spans):
                if at < b - a or i == hit[-1]:
                    parts.setdefault(i, []).append(k)
                    break
                at -= b - a
        for i, (a, b) in zip(hit, spans):
            ks = parts.get(i, [])
            text = "".join(w.text[k] for k in ks).strip()
            if text:
                out.append(Word(text, w.conf, Box(int(a), w.box.y, max(1, int(b - a)), w.box.h)))
    return out


def _with_header_columns(columns: list[tuple[int, int]], header: Sequence[Word],
                          height: float) -> list[tuple[int, int]]:
    """``columns`` with the header's titles that stand in a gutter of the rows: the rest of a title whose
    start lies in a column (``英文`` ``缩写`` over short abbreviations) widens that column; a title of its
    own (a flag column with nothing in it on this page) becomes a column, so indexes follow the header."""
    out = list(columns)
    prev: Word | None = None
    for w in sorted(header, key=lambda w: w.box.x):
        x0, x1 = w.box.x, w.box.x + w.box.w
        inside = [i for i, (a, b) in enumerate(out) if min(b, x1) - max(a, x0) > 0.3 * min(height, w.box.w)]
        if not inside:
            right = min((a for a, b in out if a >= x1), default=None)
            limit = right - 1 if right is not None else x1
            near = prev is not None and x0 - (prev.box.x + prev.box.w) <= 0.6 * height
            owner = [i for i, (a, b) in enumerate(out) if prev is not None and a <= prev.box.x + prev.box.w / 2 < b]
            if near and owner:
                a, b = out[owner[0]]
                out[owner[0]] = (a, max(b, min(x1, limit)))
            else:
                left = max((b for a, b in out if b <= x0), default=None)
                lo = max(x0, left + 1 if left is not None else x0)
                if min(x1, limit) > lo:
                    out.append((lo, min(x1, limit)))
                    out.sort()
        prev = w
    return out


def build_tables(header: Sequence[Word], rows: Sequence[Sequence[Word]], height: float) -> list[Table]:
    """The table(s) under one header line: one, or one per repeated block on two-column pages.

    The columns come from the rows' gutters (the header's too when there are fewer than three rows, since
    its titles are often run together), and words lying across a gutter are cut (:func:`split_spanning`)."""
    columns = _columns([*rows] if len(rows) >= 3 else [header, *rows], height)
    columns = _with_header_columns(columns, header, height)
    header = split_spanning(header, columns, height)
    rows = [split_spanning(r, columns, height) for r in rows]
    starts = _split_points(header, columns, height)
    tables = []
    for k, first in enumerate(starts):
        last = starts[k + 1] if k + 1 < len(starts) else len(columns)
        span = columns[first:last]
        lo, hi = span[0][0], span[-1][1]

        def inside(w: Word, lo: int = lo, hi: int = hi, first: int = first, last: int = last) -> bool:
            return first <= _column_of(w, columns) < last

        head = _row([w for w in header if inside(w)], columns, first, height)
        body = []
        for ln in rows:
            r = _row([w for w in ln if inside(w)], columns, first, height)
            if r is not None:
                body.append(r)
        boxes = [r.box for r in body] + ([head.box] if head else [])
        if boxes:
            tables.append(Table(head, tuple(body), _union(boxes)))
    return tables


def _lines_of(words: Sequence[Word], height: float) -> list[Line]:
    out = []
    for piece in pieces(words, KEY_VALUE_GAP * height):
        out.append(Line(join_words(piece, height), _conf(piece), _union([w.box for w in piece]), tuple(piece)))
    return out


def build_page(words: Sequence[Word], width: int, height: int, notes: Sequence[str] = ()) -> PageText:
    """Lines and tables of a page from its OCR words (page pixels)."""
    words = [w for w in words if w.text.strip()]
    if not words:
        return PageText((), (), width, height, notes=tuple(notes))
    h = text_height(words)
    lines = group_lines(words)
    free: list[Line] = []
    tables: list[Table] = []
    i = 0
    while i < len(lines):
        if _header_score(lines[i], h):
            end = _table_end(lines, i, h)
            if end - i >= 2:
                tables.extend(build_tables(lines[i], lines[i + 1:end], h))
                i = end
                continue
        free.extend(_lines_of(lines[i], h))
        i += 1
    return PageText(tuple(free), tuple(tables), width, height, notes=tuple(notes))
