"""Reading a report photo: camera frame → :class:`~edge.reports.page.PageText` (capture, OCR, layout).

By default the page is read as text lines by PP-OCR's detection and recognition models
(:class:`edge.reports.textlines.PpOcrLines`, when installed) and laid out from their geometry
(:func:`page_from_lines`, :mod:`edge.reports.geometry`); the structuring then reads rows and sentences by
their catalogue anchors. Without those models, or on a page where they find no line, Tesseract reads it as
below.

:class:`ReportReader` owns one :class:`~edge.reports.ocr.ReportOcr` (one Tesseract instance, reused; a
reader is not thread-safe: one per worker thread). The Tesseract path of :meth:`ReportReader.read`:

1. corrects the page (:func:`edge.reports.capture.correct_page`; raises
   :class:`~edge.reports.capture.CaptureRejected` with an instruction for the person);
2. reads every word once (sparse text, arrows by shape);
3. rebuilds lines and tables (:func:`edge.reports.layout.build_page`);
4. finds printed arrows after the results by their shape in the image (the first reading often joins
   them to the number or drops them), then reads the numeric cells of the tables (values and ranges), and
   the result column of rows where nothing was read there, a second time, enlarged, in one Tesseract
   call, and settles each cell between the two readings (:func:`settle`): a decimal point is far more
   often lost than invented, and a reading that has the shape of a number beats one that has not;
5. reads on its own, once more, a value still without a decimal point in a row whose range has decimals
   (only a reading with the same digits is taken), and an item name that came out in Latin letters (with
   Latin letters forbidden).

Nothing here logs what a report says (values and names are personal health data); only counts and times.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.reports.anchored import cell_kind
from edge.reports.capture import CapturedPage, correct_page
from edge.reports.catalogue import Catalogue, load_catalogue
from edge.reports.geometry import build_page_from_lines
from edge.reports.layout import NAME_HEADERS, RESULT_HEADERS, build_page
from edge.reports.ocr import ARROW_LOOKALIKES, LATIN_LETTERS, ReportOcr, arrow_direction
from edge.reports.page import Box, Cell, LineRecognizer, PageText, Row, Table, TextLine

logger = logging.getLogger(__name__)

FLAG_TAIL = re.compile(r"^(?P<body>.*?\d)\s*(?P<flag>[↑↓HL])$")
NUMBER = re.compile(r"^[<>≤≥]?\d+(\.\d+)?$")
RANGE = re.compile(r"^\d+(\.\d+)?(-{1,2}|~|～)\d+(\.\d+)?$")
NUMERIC_CHARS = set("0123456789.,-~～<>≤≥")
FLAG_HEADERS = ("提示", "标志", "标识", "高低", "异常")
ENGINES = ("auto", "ppocr", "tesseract")


@dataclass(frozen=True)
class ReadTimings:
    """Where the time of one :meth:`ReportReader.read` went, in milliseconds."""

    capture_ms: float
    ocr_ms: float
    layout_ms: float
    reread_ms: float
    total_ms: float
    reread_cells: int
    engine: str = "tesseract"
    detect_ms: float = 0.0
    recognise_ms: float = 0.0


@dataclass(frozen=True)
class ReadPage:
    """One read page: the text for the structuring stage and the corrected image it was read from."""

    text: PageText
    captured: CapturedPage
    timings: ReadTimings


def page_from_lines(lines: Sequence[TextLine], width: int, height: int, notes: Sequence[str] = (),
                    catalogue: Catalogue | None = None) -> PageText:
    """A page read as text lines laid out by their geometry (:mod:`edge.reports.geometry`), its cells
    typed with the catalogue."""
    cat = catalogue or load_catalogue()
    return build_page_from_lines(lines, width, height, cell_kind(cat), notes)


def _shape_ok(text: str) -> bool:
    return bool(NUMBER.match(text) or RANGE.match(text))


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def clean_number(text: str) -> str:
    """``text`` without spaces, with a decimal comma (``74,3``) as a point; other text unchanged."""
    t = "".join(text.split())
    return re.sub(r"(?<=\d),(?=\d{1,2}(\D|$))", ".", t)


def is_numeric_cell(text: str) -> bool:
    """Whether a cell holds a value or a range (mostly digits and ``. - ~ < >``, a flag aside)."""
    m = FLAG_TAIL.match(text.strip())
    body = "".join((m.group("body") if m else text).split())
    if not body or not any(c.isdigit() for c in body):
        return False
    return sum(c in NUMERIC_CHARS for c in body) >= 0.75 * len(body)


def settle(first: str, second: str) -> str:
    """The text of a numeric cell from its first reading and its enlarged, whitelisted second reading.

    A trailing flag (``↑`` ``↓`` ``H`` ``L``) of the first reading is kept. The second reading wins when it
    has the same digits and more decimal points (the first lost one), or when only it has the shape of a
    number or range; otherwise the first stands.
    """
    m = FLAG_TAIL.match(first.strip())
    body, flag = (m.group("body"), m.group("flag")) if m else (first, "")
    m2 = FLAG_TAIL.match(second.strip())
    a, b = clean_number(body), clean_number(m2.group("body") if m2 else second)
    chosen = a
    if b and a != b and (_digits(a) == _digits(b) and b.count(".") > a.count(".") and _shape_ok(b)
                         or _shape_ok(b) and not _shape_ok(a)):
        chosen = b
    return f"{chosen} {flag}" if flag else chosen


class ReportReader:
    """Camera frames of paper reports → :class:`ReadPage`. One per worker thread (not thread-safe).

    >>> with ReportReader() as reader:  # doctest: +SKIP
    ...     page = reader.read(frame)
    """

    def __init__(self, tessdata: str | None = None, reread: bool = True, engine: str = "auto") -> None:
        """``engine``: ``auto`` reads with PP-OCR text lines (:mod:`edge.reports.textlines`) when its runtime
        and models are installed and with Tesseract otherwise; ``ppocr`` or ``tesseract`` insist on one."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        self.tessdata = tessdata
        self.reread = reread
        self.lines: LineRecognizer | None = None
        if engine in ("auto", "ppocr"):
            try:
                from edge.reports.textlines import PpOcrLines

                self.lines = PpOcrLines()
            except (ImportError, RuntimeError) as exc:  # TextLineError is a RuntimeError
                if engine == "ppocr":
                    raise
                logger.warning("PP-OCR text lines unavailable (%s); reading reports with Tesseract",
                               type(exc).__name__)
        self._ocr: ReportOcr | None = None
        if self.lines is None:
            self._ocr = ReportOcr(tessdata)  # fails now, not at the first page, when its models are missing
        self.catalogue = load_catalogue()
        self._kind_of = cell_kind(self.catalogue)

    @property
    def engine(self) -> str:
        """``ppocr`` or ``tesseract``: what reads the pages."""
        return "ppocr" if self.lines is not None else "tesseract"

    @property
    def ocr(self) -> ReportOcr:
        """The Tesseract reader (loaded on first use when PP-OCR lines read the pages)."""
        if self._ocr is None:
            self._ocr = ReportOcr(self.tessdata)
        return self._ocr

    def close(self) -> None:
        """Free the Tesseract instance."""
        if self._ocr is not None:
            self._ocr.close()

    def __enter__(self) -> ReportReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, frame: np.ndarray) -> ReadPage:
        """Read the report in ``frame`` (BGR or grey ``uint8``). Raises
        :class:`~edge.reports.capture.CaptureRejected` for a frame that cannot be read."""
        t0 = time.perf_counter()
        captured = correct_page(frame)
        t1 = time.perf_counter()
        image = captured.image
        if self.lines is not None:
            lines = self.lines.read_lines(image)
            t2 = time.perf_counter()
            if lines:
                page = page_from_lines(lines, image.shape[1], image.shape[0], captured.notes, self.catalogue)
                t3 = time.perf_counter()
                times = getattr(self.lines, "times", None)
                timings = ReadTimings((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, 0.0, (t3 - t0) * 1000,
                                      0, "ppocr", getattr(times, "detect", 0.0) * 1000,
                                      getattr(times, "recognise", 0.0) * 1000)
                logger.debug("report read: %d lines, %d free lines, %d tables, %.0f ms", len(lines),
                             len(page.lines), len(page.tables), timings.total_ms)
                return ReadPage(page, captured, timings)
            logger.info("no text line found on the page; reading it with Tesseract")
            t1 = time.perf_counter()
        words = self.ocr.words(image)
        t2 = time.perf_counter()
        page = build_page(words, image.shape[1], image.shape[0], captured.notes)
        t3 = time.perf_counter()
        cells = 0
        if self.reread:
            page, cells = self._reread_numbers(page, image)
        t4 = time.perf_counter()
        timings = ReadTimings((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, (t4 - t3) * 1000,
                              (t4 - t0) * 1000, cells)
        logger.debug("report read: %d words, %d lines, %d tables, %d cells read again, %.0f ms", len(words),
                     len(page.lines), len(page.tables), cells, timings.total_ms)
        return ReadPage(page, captured, timings)

    def _reread_numbers(self, page: PageText, image: np.ndarray) -> tuple[PageText, int]:
        tables = [_with_arrows(table, image) for table in page.tables]
        where: list[tuple[int, int, int, Box]] = []
        for t, (table, number_boxes) in enumerate(tables):
            for r, row in enumerate(table.rows):
                for c, cell in enumerate(row.cells):
                    if is_numeric_cell(cell.text):
                        where.append((t, r, c, number_boxes.get((r, c), _number_box(cell))))
                blank = _blank_result(table, row)
                if blank is not None:
                    where.append((t, r, -1, blank))  # no result read: look again where it belongs
        names = self._reread_names([t for t, _ in tables], image)
        if not where:
            return dataclasses.replace(page, tables=tuple(t for t, _ in tables)), 0
        results = self.ocr.reread(image, [b for *_, b in where])
        new: dict[tuple[int, int, int], Cell] = {}
        added: dict[tuple[int, int], Cell] = {}
        for (t, r, c, box), res in zip(where, results):
            if c < 0:
                text = clean_number(res.text)
                if NUMBER.match(text) and res.conf >= 25:
                    col = _column(tables[t][0].header, RESULT_HEADERS + ("结",))
                    added[(t, r)] = Cell(text, res.conf, box, int(col if col is not None else 0))
                continue
            cell = tables[t][0].rows[r].cells[c]
            text = settle(cell.text, res.text)
            if _point_missing(text, tables[t][0].rows[r]):
                text = self._look_for_point(image, box, text)
            if text != cell.text:
                new[(t, r, c)] = dataclasses.replace(cell, text=text, conf=max(cell.conf, res.conf))
        out = []
        for t, (table, _) in enumerate(tables):
            rows = []
            for r, row in enumerate(table.rows):
                cells = [new.get((t, r, c), names.get((t, r, c), cell)) for c, cell in enumerate(row.cells)]
                if (t, r) in added:
                    cells.append(added[(t, r)])
                    cells.sort(key=lambda c: c.col)
                rows.append(Row(tuple(cells), row.box))
            out.append(Table(table.header, tuple(rows), table.box))
        return dataclasses.replace(page, tables=tuple(out)), len(where) + len(names)

    def _look_for_point(self, image: np.ndarray, box: Box, text: str) -> str:
        """``text`` (a whole number in a row whose range has decimals) read once more on its own, larger,
        digits and point only: the reading with the same digits and one decimal point wins; digits are
        never changed."""
        m = FLAG_TAIL.match(text.strip())
        body, flag = (m.group("body"), m.group("flag")) if m else (text, "")
        for scale in (3.0, 4.0):
            res = self.ocr.read_line(image, box, scale=scale, whitelist="0123456789.")
            got = clean_number(res.text)
            if got.count(".") == 1 and NUMBER.match(got) and _digits(got) == _digits(body):
                return f"{got} {flag}" if flag else got
        return text

    def _reread_names(self, tables: list[Table], image: np.ndarray) -> dict[tuple[int, int, int], Cell]:
        """Item names that the first reading made mostly Latin letters of (a blurred Chinese name often comes
        out as ``Wp PRE RF``), read again enlarged with Latin letters forbidden; the new reading replaces
        the old one when it is mostly Chinese and read with more confidence."""
        where: list[tuple[int, int, int, Box]] = []
        for t, table in enumerate(tables):
            col = _column(table.header, NAME_HEADERS)
            if col is None:
                continue
            for r, row in enumerate(table.rows):
                for c, cell in enumerate(row.cells):
                    if cell.col == col and _latin_share(cell.text) >= 0.5 and cell.box.w > cell.box.h:
                        where.append((t, r, c, cell.box))
        out = {}
        for t, r, c, box in where:
            res = self.ocr.read_line(image, box, blacklist=LATIN_LETTERS)
            text = "".join(res.text.split())
            cell = tables[t].rows[r].cells[c]
            # a name really printed in Latin letters (HbA1c) reads with more confidence than as Chinese
            if text and sum(_is_cjk(ch) for ch in text) >= 0.7 * len(text) and res.conf > cell.conf:
                out[(t, r, c)] = dataclasses.replace(cell, text=text, conf=res.conf)
        return out


def _point_missing(text: str, row: Row) -> bool:
    """Whether ``text`` is a whole number of three digits or more in a row whose reference range is
    printed with decimals: the decimal point may have been lost."""
    m = FLAG_TAIL.match(text.strip())
    body = clean_number(m.group("body") if m else text)
    if not re.fullmatch(r"\d{3,}", body):
        return False
    return any(RANGE.match(clean_number(c.text)) and "." in c.text for c in row.cells)


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _latin_share(text: str) -> float:
    """The share of ASCII letters among the characters of ``text`` that are not spaces."""
    t = "".join(text.split())
    return sum(ch.isascii() and ch.isalpha() for ch in t) / len(t) if t else 0.0


def _blank_result(table: Table, row: Row) -> Box | None:
    """Where the result of ``row`` should be, when the first reading found nothing in the result column
    (Tesseract's sparse mode drops some lone characters, such as a one-digit value)."""
    header = table.header
    col = _column(header, RESULT_HEADERS + ("结",))
    if header is None or col is None or any(c.col == col for c in row.cells) or not row.cells:
        return None
    title = next(c for c in header.cells if c.col == col)
    h = max(8, min(c.box.h for c in row.cells))
    later = [c.box.x for c in header.cells if c.col > col] + [c.box.x for c in row.cells if c.col > col]
    earlier = [c.box.x + c.box.w for c in row.cells if c.col < col]
    x0 = max([title.box.x - h // 3] + [x + h // 2 for x in earlier])
    x1 = min(later) - h if later else title.box.x + 5 * h
    if x1 - x0 < h:
        return None
    # the height of the row's printed numbers (not of its name, whose box may take in a table rule)
    ys = sorted(c.box.y for c in row.cells if c.box.h <= 1.3 * h)
    y = ys[len(ys) // 2] if ys else row.box.y
    return Box(int(x0), int(y - h // 6), int(x1 - x0), int(h + h // 3))


def _number_box(cell: Cell) -> Box:
    """The part of a cell's box holding its number (an arrow the first reading saw is left out)."""
    text = cell.text.strip()
    m = FLAG_TAIL.match(text)
    if m and text[-1] in "↑↓":
        return dataclasses.replace(cell.box, w=max(4, int(cell.box.w * len(m.group("body").strip()) / len(text))))
    return cell.box


def _column(header: Row | None, words: tuple[str, ...]) -> int | None:
    if header is None:
        return None
    for cell in header.cells:
        if any(w in cell.text for w in words):
            return cell.col
    return None


def _glyphs(image: np.ndarray, region: Box, max_h: float | None = None) -> list[Box]:
    """Character-sized ink blobs in ``region`` of the page (page coordinates), left to right; blobs that
    overlap horizontally (the dot of an i, broken strokes) are one. Blobs taller than ``max_h`` (a piece of
    a rule crossing the region) are left out before that."""
    x0, y0 = max(0, region.x), max(0, region.y)
    crop = image[y0:region.y + region.h, x0:region.x + region.w]
    if crop.size == 0:
        return []
    ink = (crop < 140).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    spans: list[list[int]] = []
    ch, cw = crop.shape
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 3 or y == 0 or y + h >= ch or w > 0.6 * ch or h > 0.8 * ch or (max_h and h > max_h):
            continue  # specks, table rules, and what runs out of the region
        spans.append([x, y, x + w, y + h])
    spans.sort()
    merged: list[list[int]] = []
    for sp in spans:
        if merged and sp[0] <= merged[-1][2]:
            m = merged[-1]
            m[1], m[2], m[3] = min(m[1], sp[1]), max(m[2], sp[2]), max(m[3], sp[3])
        else:
            merged.append(list(sp))
    return [Box(int(x0 + a), int(y0 + b), int(c - a), int(d - b)) for a, b, c, d in merged]


def _with_arrows(table: Table, image: np.ndarray) -> tuple[Table, dict[tuple[int, int], Box]]:
    """``table`` with printed arrows after the results found by shape in the image, whatever the first
    reading made of them (an arrow read as ``1`` and joined to the number, or not read at all), and the
    box of each such result's number (for the second reading)."""
    value_col = _column(table.header, RESULT_HEADERS + ("结",))
    if value_col is None:
        return table, {}
    flag_col = _column(table.header, FLAG_HEADERS)
    boxes: dict[tuple[int, int], Box] = {}
    rows = []
    for r, row in enumerate(table.rows):
        cells = list(row.cells)
        vi = next((i for i, c in enumerate(cells) if c.col == value_col), None)
        if vi is None:
            rows.append(row)
            continue
        value = cells[vi]
        h = max(8, value.box.h)
        last = max(value_col, flag_col if flag_col is not None else value_col)
        after = [c.box.x for c in cells if c.col > last]
        right = min(after) - 2 if after else value.box.x + value.box.w + 3 * h
        region = Box(value.box.x - 2, value.box.y - h, max(4, right - value.box.x + 2), 3 * h)
        glyphs = _glyphs(image, region, max_h=1.6 * h)
        # the number: glyphs from the left closer than 0.42 text heights (a space and more separates an
        # arrow); then the first glyph after it, which must be taller than the digits, as arrows are, or
        # as tall and much narrower, and have an arrow's shape. A decimal point that blur has erased also
        # leaves a gap: then the glyph after it is a digit, and the next gap is tried.
        n, arrow, g, digits = 1, None, None, []
        while arrow is None:
            while n < len(glyphs) and glyphs[n].x - (glyphs[n - 1].x + glyphs[n - 1].w) < 0.42 * h:
                n += 1
            if n >= len(glyphs):
                break
            g = glyphs[n]
            digits = [b for b in glyphs[:n] if b.h > 0.5 * h]
            arrow = _arrow_after(image, g, digits, h)
            n += 0 if arrow else 1
        if arrow is None or g is None:
            rows.append(row)
            continue
        number = glyphs[0]
        for gb in glyphs[1:n]:
            number = number.union(gb)
        first = value.text.strip()
        m = FLAG_TAIL.match(first)
        if m:
            first = m.group("body").strip()
        elif first[-1:] in ARROW_LOOKALIKES and (first[-2:-1].isspace() or len(clean_number(first)) == n + 1
                                                 or len(_digits(first)) == len(digits) + 1):
            first = first[:-1].strip()  # the first reading took the arrow for one more character
        # cells right of the result up to the unit column held what the first reading made of the arrow
        keep = [c for c in cells if not (value_col < c.col <= last)]
        vi = keep.index(value)
        if flag_col is not None and flag_col != value_col:
            keep[vi] = dataclasses.replace(value, text=first, box=number)
            keep.insert(vi + 1, Cell(arrow, value.conf, g, flag_col))
        else:
            keep[vi] = dataclasses.replace(value, text=f"{first} {arrow}", box=number.union(g))
        boxes[(r, vi)] = number
        rows.append(Row(tuple(keep), row.box))
    return Table(table.header, tuple(rows), table.box), boxes


def _arrow_after(image: np.ndarray, g: Box, digits: list[Box], h: int) -> str | None:
    """The direction of the arrow that glyph ``g``, printed after the number whose digits are
    ``digits``, is; None when it is not one."""
    digit_h = float(np.median([b.h for b in digits] or [h]))
    digit_w = float(np.median([b.w for b in digits] or [h / 2]))
    # taller than the digits, or (in fonts whose arrow is hardly taller) about as tall and much narrower
    if (g.h < 1.08 * digit_h and not (g.h >= 0.85 * digit_h and g.w <= 0.6 * digit_w)) or g.w > 0.9 * g.h:
        return None
    pad = max(1, g.h // 6)
    return arrow_direction(image[max(0, g.y - pad):g.y + g.h + pad, max(0, g.x - pad):g.x + g.w + pad],
                           blurred=True)
