"""Layout from line geometry: text lines (:class:`~edge.reports.page.TextLine`) → rows, columns and tables.

Nothing here reads a header word: the structure comes from where the text is.

1. **Pieces.** A text line is cut where its characters leave a gap wider than :data:`CUT_GAP` text heights
   (a detector often gives one line for two neighbouring cells) and at dotted leaders (``白细胞....5.6``).
   With the recogniser's character positions (``char_x``) the cut is exact; without them the characters
   are spread over the box by their width (Chinese full, Latin half) and runs of two spaces cut. A line
   ending in the first marks of a leader is cut there (:data:`TRAILING_LEADER`); pieces of dots alone and
   specks (:func:`is_speck`: a leader's dot read as a digit, a faint arrow guessed as ``+``) are dropped.
2. **Rows.** Pieces are clustered by vertical centre after removing the page's residual skew (the median
   slope between horizontally neighbouring pieces), so a slightly rotated or curled table still gives one
   row per printed row; two pieces that overlap horizontally never share a row.
3. **Tables.** Runs of consecutive rows holding two pieces or more (a lone piece between them, such as the
   second line of a long name, is kept) form a block; columns are the runs of x between gutters that no
   piece of the block covers, found once the block's lean is taken out (:func:`column_lean`: columns that
   drift sideways down a page whose rows are level); a piece lying across a gutter is cut at it by its
   characters' positions.
4. **Side by side.** Columns are typed by what their cells hold (names the catalogue knows, values, ranges,
   units, flags); a name column that follows a value column starts another table (twin and triple tables).
5. Rows of one piece outside blocks are free lines (titles, the patient block, prose), in reading order.

The result is a :class:`~edge.reports.page.PageText` with ``source="lines"``; confidences are on
Tesseract's 0–100 scale like the word path's. Pure: no image.
"""

from __future__ import annotations

import logging
import re
import statistics
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.reports.page import Box, Cell, Line, PageText, Row, Table, TextLine

logger = logging.getLogger(__name__)

CUT_GAP = 0.9
"""A gap between two characters of a line wider than this many text heights cuts the line."""
ROW_TOLERANCE = 0.5
"""Pieces whose de-skewed centres are closer than this many text heights share a row."""
BLOCK_GAP = 2.6
"""A vertical step larger than this many text heights ends a table block."""
MIN_GUTTER = 0.6
"""Narrowest gap between two columns, in text heights."""
TABLE_GAP = 2.0
"""A gutter at least this many text heights wide may separate two tables side by side."""
LEADER = re.compile(r"(?:[.．·…。_](?:\s?)){3,}|[-—–]{4,}|…{2,}")
"""Dotted (or dashed) leaders between a name and its value."""
DOT_MARKS = ".．·…。_‥・"
"""The marks a leader is made of, dashes apart."""
TRAILING_LEADER = re.compile(rf"(?<=[\u4e00-\u9fff)）%#])\s*(?:[{DOT_MARKS}](?:[{DOT_MARKS}oO°º:：]\s*)*"
                             rf"(?:[^\s\d\u4e00-\u9fff]{{1,2}})?|(?:[-—–{DOT_MARKS}]\s*){{2,}}|(?<![\s])[-—–])$")
"""The start of a leader ending a line: the detector often keeps only a name's first few dots, fewer than a
:data:`LEADER` needs (``钾。。``, ``肌酐 · ·``), and the recogniser reads a round dot after them as a
letter now and then (``中性粒细胞数。o``, ``单核细胞比率。α``). A lone dash counts only against the name
(``钙-``): a dash after a space is a result (negative)."""


@dataclass(frozen=True)
class Piece:
    """A cut of a text line: its text, confidence (0–1), box and each character's horizontal centre."""

    text: str
    conf: float
    box: Box
    xs: tuple[float, ...]


def _char_width(ch: str) -> float:
    return 1.0 if unicodedata.east_asian_width(ch) in ("W", "F") else 0.55


def _positions(line: TextLine) -> list[float]:
    """Each character's horizontal centre: the recogniser's, or spread over the box by width."""
    if len(line.char_x) == len(line.text) and line.text:
        return [float(x) for x in line.char_x]
    widths = [_char_width(ch) for ch in line.text]
    total = sum(widths) or 1.0
    scale = line.box.w / total
    out, x = [], float(line.box.x)
    for w in widths:
        out.append(x + w * scale / 2)
        x += w * scale
    return out


def cut_line(line: TextLine, height: float) -> list[Piece]:
    """``line`` cut at wide gaps and dotted leaders (see the module documentation)."""
    text = line.text
    if not text.strip():
        return []
    xs = _positions(line)
    height = max(height, 0.75 * line.box.h)  # a title's characters are wider than the page's text
    blank = [ch.isspace() for ch in text]
    leader = [False] * len(text)
    for m in (*LEADER.finditer(text), *TRAILING_LEADER.finditer(text)):
        for i in range(m.start(), m.end()):
            blank[i] = leader[i] = True
    exact = len(line.char_x) == len(text)
    pieces: list[list[int]] = []
    last = -1
    for i, ch in enumerate(text):
        if blank[i]:
            continue
        cut = not pieces
        if pieces:
            between = range(last + 1, i)
            if any(leader[k] for k in between):
                cut = True
            else:
                gap = xs[i] - xs[last] - (_char_width(ch) + _char_width(text[last])) * height / 2
                spaces = sum(1 for k in between if text[k].isspace())
                cut = gap > CUT_GAP * height or (not exact and spaces >= 2)
        if cut:
            pieces.append([i])
        else:
            pieces[-1].extend(range(last + 1, i + 1))
        last = i
    out = []
    for idx in pieces:
        s = "".join(text[k] for k in idx).strip()
        if DOTS.fullmatch(s):  # a stray piece of a leader: nothing to read, and it would split its row
            continue
        first, end = idx[0], idx[-1]
        x0 = xs[first] - _char_width(text[first]) * height / 2
        x1 = xs[end] + _char_width(text[end]) * height / 2
        if len(pieces) == 1 and not any(leader):  # the whole line: the detector's box is the better edge
            x0, x1 = line.box.x, line.box.x + line.box.w
        box = Box(int(round(x0)), line.box.y, max(1, int(round(x1 - x0))), line.box.h)
        out.append(Piece(s, line.conf, box, tuple(xs[k] for k in idx if not text[k].isspace())))
    return out


SPECK_HEIGHT = 0.5
SPECK_CONF = 0.7
SPECK_CHARS = 2
GUESS_CONF = 0.3
"""Below this confidence a one-character line is a guess, not a reading."""


def is_speck(line: TextLine, usual_height: float) -> bool:
    """A line of one or two characters, less than half as tall as the page's lines and read without
    confidence: a dot of a leader, a speck or a stroke of a stamp (read as ``o``, ``0``, ``8``); or one
    character of any size read with next to none (a faint arrow read as ``+``: the flag then comes from
    the value and its range)."""
    n = len(line.text.strip())
    return ((line.box.h < SPECK_HEIGHT * usual_height and line.conf < SPECK_CONF and n <= SPECK_CHARS)
            or (n == 1 and line.conf < GUESS_CONF))


def _cy(b: Box) -> float:
    return b.y + b.h / 2


def _cx(b: Box) -> float:
    return b.x + b.w / 2


def skew_slope(pieces: Sequence[Piece], height: float) -> float:
    """The median vertical drift per pixel between horizontally neighbouring pieces (0 when unknown)."""
    order = sorted(pieces, key=lambda p: p.box.x)
    slopes = []
    for i, p in enumerate(order):
        best = None
        for q in order[i + 1:]:
            dx = q.box.x - (p.box.x + p.box.w)
            if dx > 12 * height:
                break
            if dx >= 0 and abs(_cy(q.box) - _cy(p.box)) < 0.6 * height:
                best = q
                break
        if best is not None:
            dx = _cx(best.box) - _cx(p.box)
            if dx > height:
                slopes.append((_cy(best.box) - _cy(p.box)) / dx)
    if len(slopes) < 3:
        return 0.0
    return max(-0.15, min(0.15, statistics.median(slopes)))


def _ink(p: Piece, height: float) -> tuple[float, float]:
    """Where a piece's characters are (x0, x1): from their positions when known (a detector's box is
    padded), else its box."""
    if p.xs and len(p.xs) == len(p.text.replace(" ", "")):
        chars = p.text.replace(" ", "")
        return (p.xs[0] - _char_width(chars[0]) * height / 2, p.xs[-1] + _char_width(chars[-1]) * height / 2)
    return float(p.box.x), float(p.box.x + p.box.w)


def group_rows(pieces: Sequence[Piece], height: float) -> list[list[Piece]]:
    """Pieces in rows (top to bottom), each row left to right (see the module documentation)."""
    slope = skew_slope(pieces, height)
    keyed = sorted(pieces, key=lambda p: _cy(p.box) - slope * _cx(p.box))
    ink = {id(p): _ink(p, height) for p in pieces}
    rows: list[list[Piece]] = []
    keys: list[list[float]] = []
    for p in keyed:
        k = _cy(p.box) - slope * _cx(p.box)
        (a0, a1), placed = ink[id(p)], False
        for r in range(len(rows) - 1, max(-1, len(rows) - 3), -1):
            centre = statistics.median(keys[r])
            overlaps = any(min(ink[id(q)][1], a1) - max(ink[id(q)][0], a0) > 0.3 * height for q in rows[r])
            if abs(k - centre) <= ROW_TOLERANCE * height and not overlaps:
                rows[r].append(p)
                keys[r].append(k)
                placed = True
                break
        if not placed:
            rows.append([p])
            keys.append([k])
    for row in rows:
        row.sort(key=lambda p: p.box.x)
    return rows


def mend_rows(rows: list[list[Piece]], height: float, kind_of: CellKind) -> list[list[Piece]]:
    """Rows split by a jittered box joined again: a row of names only and a neighbouring row of values
    only, less than a text height apart and not overlapping horizontally, are one row."""
    rows = sorted(rows, key=lambda r: statistics.median(_cy(p.box) for p in r))
    kinds = [{kind_of(p.text) for p in r} for r in rows]
    i = 0
    while i + 1 < len(rows):
        a, b = rows[i], rows[i + 1]
        ka, kb = kinds[i], kinds[i + 1]
        close = abs(statistics.median(_cy(p.box) for p in a) - statistics.median(_cy(p.box) for p in b)) < height
        apart = not any(min(p.box.x + p.box.w, q.box.x + q.box.w) - max(p.box.x, q.box.x) > 0
                        for p in a for q in b)
        names_values = (ka <= {"name", "index"} and kb <= {"value"}) or (kb <= {"name", "index"} and ka <= {"value"})
        if close and apart and names_values:
            rows[i] = sorted(a + b, key=lambda p: p.box.x)
            kinds[i] = ka | kb
            del rows[i + 1], kinds[i + 1]
            continue
        i += 1
    return rows


DOTS = re.compile(rf"[\s{DOT_MARKS}°º]+")
"""A piece made of dots only (a leader's fragment the detector found apart)."""
LEAN_LIMIT = 0.15
"""Largest lean of a block's columns looked for (horizontal drift per pixel down the page)."""
LEAN_STEP = 0.005
LEAN_GAIN = 1.25
"""How much better a lean must line up the pieces' edges than none, to be taken."""


def _edge_alignment(edges: Sequence[tuple[float, float]], lean: float, bin_w: float) -> int:
    """Pairs of piece edges falling in one bin once the lean is taken out (two binnings, half a bin apart)."""
    total = 0
    for offset in (0.0, bin_w / 2):
        counts: dict[int, int] = {}
        for x, dy in edges:
            k = int((x - lean * dy + offset) // bin_w)
            counts[k] = counts.get(k, 0) + 1
        total += sum(c * (c - 1) for c in counts.values())
    return total


def column_lean(rows: Sequence[Sequence[Piece]], height: float) -> float:
    """How far a block's columns drift sideways per pixel down the page (a page corrected from a wrong
    corner, or photographed at a slant, leans them while its rows stay level): the lean that lines up the
    most left and right edges of the pieces, when it lines them up clearly better than none; else 0."""
    pieces = [p for r in rows for p in r]
    if len(rows) < 4 or len(pieces) < 8:
        return 0.0
    y0 = statistics.median(_cy(p.box) for p in pieces)
    edges = [(float(x), _cy(p.box) - y0) for p in pieces for x in (p.box.x, p.box.x + p.box.w)]
    bin_w = max(2.0, 0.4 * height)
    steps = int(round(LEAN_LIMIT / LEAN_STEP))
    flat = _edge_alignment(edges, 0.0, bin_w)
    best, best_score = 0.0, flat
    for k in range(-steps, steps + 1):
        lean = k * LEAN_STEP
        score = _edge_alignment(edges, lean, bin_w)
        if score > best_score or (score == best_score and abs(lean) < abs(best)):
            best, best_score = lean, score
    return best if best_score > LEAN_GAIN * flat else 0.0


def _shifted(p: Piece, dx: float) -> Piece:
    d = int(round(dx))
    return Piece(p.text, p.conf, Box(p.box.x + d, p.box.y, p.box.w, p.box.h), tuple(x + d for x in p.xs))


def columns(rows: Sequence[Sequence[Piece]], height: float) -> list[tuple[int, int]]:
    """Column extents (x0, x1) between the gutters that no piece of ``rows`` covers (one stray piece
    in twelve rows across a gutter does not close it)."""
    x0 = min(p.box.x for r in rows for p in r)
    x1 = max(p.box.x + p.box.w for r in rows for p in r)
    cover = [0] * (x1 - x0 + 1)
    for r in rows:
        for p in r:
            for x in range(p.box.x - x0, p.box.x + p.box.w - x0):
                cover[x] += 1
    tolerance = len(rows) // 12
    runs: list[list[int]] = []
    for x, c in enumerate(cover):
        if c > tolerance:
            if runs and runs[-1][1] == x:
                runs[-1][1] = x + 1
            else:
                runs.append([x, x + 1])
    merged: list[list[int]] = []
    for r in runs:
        if merged and r[0] - merged[-1][1] < MIN_GUTTER * height:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [(a + x0, b + x0) for a, b in merged]


def _column_of(x: float, cols: Sequence[tuple[int, int]]) -> int:
    for i, (a, b) in enumerate(cols):
        if x < b:
            return i if x >= a or i == 0 else (i if a - x < x - cols[i - 1][1] else i - 1)
    return len(cols) - 1


def cut_at_gutters(p: Piece, cols: Sequence[tuple[int, int]], height: float) -> list[tuple[int, Piece]]:
    """``p`` cut into one piece per column its characters fall in, with each piece's column index."""
    if not p.xs or len(p.xs) != len(p.text.replace(" ", "")):
        return [(_column_of(_cx(p.box), cols), p)]
    chars = [ch for ch in p.text if not ch.isspace()]
    where = [_column_of(x, cols) for x in p.xs]
    if len(set(where)) == 1:
        return [(where[0], p)]
    out: list[tuple[int, Piece]] = []
    start = 0
    for i in range(1, len(chars) + 1):
        if i == len(chars) or where[i] != where[start]:
            xs = p.xs[start:i]
            text = "".join(chars[start:i])
            x0 = int(xs[0] - _char_width(chars[start]) * height / 2)
            x1 = int(xs[-1] + _char_width(chars[i - 1]) * height / 2)
            out.append((where[start], Piece(text, p.conf, Box(x0, p.box.y, max(1, x1 - x0), p.box.h), xs)))
            start = i
    return out


def _union(boxes: Sequence[Box]) -> Box:
    box = boxes[0]
    for b in boxes[1:]:
        box = box.union(b)
    return box


def _blocks(rows: Sequence[Sequence[Piece]], height: float) -> list[tuple[int, int]]:
    """(first, end) row indexes of the table blocks."""
    multi = [len(r) >= 2 for r in rows]
    centre = [statistics.median(_cy(p.box) for p in r) for r in rows]
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(rows):
        if not multi[i]:
            i += 1
            continue
        j = i + 1
        while j < len(rows) and centre[j] - centre[j - 1] <= BLOCK_GAP * height:
            if multi[j]:
                j += 1
            elif j + 1 < len(rows) and multi[j + 1] and centre[j + 1] - centre[j] <= BLOCK_GAP * height:
                j += 1  # a lone piece between two table rows (a name's second line, a stamp's text)
            else:
                break
        if sum(multi[i:j]) >= 2 or len(rows[i]) >= 3:
            # a lone piece just above or below, under the first column (a name's other line), belongs to it
            first = min(p.box.x for p in rows[i])
            if i > 0 and not multi[i - 1] and centre[i] - centre[i - 1] <= 1.6 * height \
                    and abs(rows[i - 1][0].box.x - first) < 2 * height and (not out or out[-1][1] < i - 1):
                i -= 1
            last = min(p.box.x for p in rows[j - 1])
            if j < len(rows) and not multi[j] and centre[j] - centre[j - 1] <= 1.6 * height \
                    and abs(rows[j][0].box.x - last) < 2 * height:
                j += 1
            out.append((i, j))  # two rows or more, or one row of three cells and more
        i = j
    return out


CellKind = Callable[[str], str]
"""What a cell holds: ``name``, ``value``, ``range``, ``unit``, ``flag``, ``index`` or ``text``."""


def _table_starts(rows: Sequence[Sequence[tuple[int, Piece]]], ncols: int, kind_of: CellKind,
                  cols: Sequence[tuple[int, int]], height: float) -> list[int]:
    """Column indexes where a table starts (side-by-side tables), the first being 0."""
    counts: list[dict[str, int]] = [{} for _ in range(ncols)]
    for r in rows:
        for c, p in r:
            k = kind_of(p.text)
            counts[c][k] = counts[c].get(k, 0) + 1
    n = max(1, len(rows))
    starts = [0]
    seen_value = False
    for c in range(ncols):
        share = {k: v / n for k, v in counts[c].items()}
        is_name = share.get("name", 0.0) >= 0.3
        if is_name and seen_value and c > starts[-1]:
            wide = cols[c][0] - cols[c - 1][1] >= TABLE_GAP * height or share.get("name", 0.0) >= 0.5
            if wide:
                starts.append(c)
                seen_value = False
        if share.get("value", 0.0) + share.get("range", 0.0) >= 0.3:
            seen_value = True
    # an index column right before a name column belongs to the table that name starts
    out = []
    for s in starts:
        if s > 0 and counts[s - 1].get("index", 0) / n >= 0.5:
            s -= 1
        out.append(s)
    return out


def build_page_from_lines(lines: Sequence[TextLine], width: int, height: int, kind_of: CellKind,
                          notes: Sequence[str] = ()) -> PageText:
    """Rows, tables and free lines of a page from its text lines (see the module documentation)."""
    lines = [ln for ln in lines if ln.text.strip()]
    if not lines:
        return PageText((), (), width, height, notes=tuple(notes), source="lines")
    usual = float(statistics.median(ln.box.h for ln in lines))
    lines = [ln for ln in lines if not is_speck(ln, usual)]
    th = max(8.0, usual * 0.8)
    pieces = [p for ln in lines for p in cut_line(ln, th)]
    rows = mend_rows(group_rows(pieces, th), th, kind_of)
    in_block: set[int] = set()
    tables: list[Table] = []
    for first, end in _blocks(rows, th):
        block = rows[first:end]
        lean = column_lean(block, th)
        if lean:  # columns found with the lean taken out; the cells keep their place on the page
            y0 = statistics.median(_cy(p.box) for r in block for p in r)
            block = [[_shifted(p, -lean * (_cy(p.box) - y0)) for p in r] for r in block]
            logger.debug("table block leans %.3f px/px", lean)
        cols = columns(block, th)
        cut_rows = [[cp for p in r for cp in cut_at_gutters(p, cols, th)] for r in block]
        starts = _table_starts(cut_rows, len(cols), kind_of, cols, th)
        if lean:
            cut_rows = [[(c, _shifted(p, lean * (_cy(p.box) - y0))) for c, p in r] for r in cut_rows]
        for k, s in enumerate(starts):
            e = starts[k + 1] if k + 1 < len(starts) else len(cols)
            body = []
            for r in cut_rows:
                cells = tuple(Cell(p.text, p.conf * 100.0, p.box, c - s) for c, p in r if s <= c < e)
                if cells:
                    body.append(Row(cells, _union([c.box for c in cells])))
            if body:
                tables.append(Table(None, tuple(body), _union([r.box for r in body])))
        in_block.update(range(first, end))
    free = []
    for i, r in enumerate(rows):
        if i in in_block:
            continue
        text = "  ".join(p.text for p in r)
        free.append(Line(text, min(p.conf for p in r) * 100.0, _union([p.box for p in r])))
    logger.debug("line layout: %d lines, %d rows, %d tables, %d free lines", len(lines), len(rows), len(tables),
                 len(free))
    return PageText(tuple(free), tuple(tables), width, height, notes=tuple(notes), source="lines")


def _shift(box: Box, dy: int) -> Box:
    return Box(box.x, box.y + dy, box.w, box.h)


def stack_pages(pages: Sequence[PageText]) -> PageText:
    """Several pages of one report as one tall page (each below the one before), for one structuring: a
    table continued on the next page and its title on the first one give one report."""
    if len(pages) == 1:
        return pages[0]
    lines: list[Line] = []
    tables: list[Table] = []
    dy = 0
    for page in pages:
        lines += [Line(ln.text, ln.conf, _shift(ln.box, dy), ln.words) for ln in page.lines]
        for t in page.tables:
            rows = tuple(Row(tuple(Cell(c.text, c.conf, _shift(c.box, dy), c.col) for c in r.cells), _shift(r.box, dy))
                         for r in t.rows)
            header = None if t.header is None else Row(
                tuple(Cell(c.text, c.conf, _shift(c.box, dy), c.col) for c in t.header.cells), _shift(t.header.box, dy))
            tables.append(Table(header, rows, _shift(t.box, dy)))
        dy += page.height
    notes = tuple(n for p in pages for n in p.notes)
    return PageText(tuple(lines), tuple(tables), max(p.width for p in pages), dy, pages[0].languages, notes,
                    pages[0].source)
