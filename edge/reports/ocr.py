"""OCR of a corrected report page with Tesseract (tesserocr): words, boxes and confidences.

:class:`ReportOcr` holds one ``PyTessBaseAPI`` loaded with Debian's ``chi_sim`` and ``eng`` models
(LSTM) and reuses it for every page; initialising one costs about 0.25 s, so a worker makes one reader
and keeps it. It is **not thread-safe**: one thread owns a reader.

* :meth:`ReportOcr.words` reads the whole page once in sparse-text mode (``PSM.SPARSE_TEXT``): a report
  is mostly short pieces of text in columns, which Tesseract's block finder (``PSM.AUTO``) or a single
  block (``PSM.SINGLE_BLOCK``) joins across columns and drops decimal points more often (on the generated
  pages, 79 % and 58 % of the values read exactly against 87 % in sparse mode, before any correction).
* :meth:`ReportOcr.reread` reads small regions again (value and reference cells) in **one** call: the
  crops are enlarged, stacked into a strip one per line, and read as a block with a character whitelist
  (digits, ``. - ~ < >`` and unit characters). Small print read at 2x loses far fewer decimal points.
* :func:`fix_arrows` turns the ``↑`` / ``↓`` flags that the Chinese model reads as ``个``, ``小``,
  ``l``, ``J`` … back into arrows, by the glyph's shape, when the character stands alone.

The tessdata folder is ``$TESSDATA_PREFIX`` or Debian's (``tesseract-ocr-chi-sim``,
``tesseract-ocr-eng``); see :func:`report_tessdata`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge.reports.page import Box, Word

logger = logging.getLogger(__name__)

LANGUAGES = "chi_sim+eng"
SYSTEM_TESSDATA = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                   "/usr/share/tessdata", "/usr/local/share/tessdata")
NUMERIC_WHITELIST = "0123456789.-~<>≤≥%/^×xXLlHhUuμmgdfpLnmolkg*()+"
"""Characters a value, unit or reference cell may hold, for :meth:`ReportOcr.reread`."""
LATIN_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""Blacklisted when a Chinese item name that came out in Latin letters is read again."""
ARROW_LOOKALIKES = frozenset("个小↑↓lJ1I|丨Tti!4二七十大下卜了")
"""What Tesseract's models read for a printed ``↑`` or ``↓``."""


def _quiet_leptonica() -> None:
    """Silence Leptonica's messages on stderr (it reports boxes clipped at the image edge, which are
    harmless here and would garble a command's output). Best effort: nothing happens when the library
    cannot be found."""
    import ctypes
    import glob

    import tesserocr

    base = Path(tesserocr.__file__).resolve().parent
    candidates = glob.glob(str(base.parent / "tesserocr.libs" / "libleptonica*.so*"))
    candidates += ["libleptonica.so.6", "liblept.so.5"]
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            lib.setMsgSeverity(6)  # L_SEVERITY_NONE
            return
        except (OSError, AttributeError):
            continue


class OcrModelError(RuntimeError):
    """The Chinese or English Tesseract model is missing."""


def report_tessdata(configured: str | None = None) -> Path:
    """The tessdata folder holding ``chi_sim`` and ``eng``: ``configured``, else ``$TESSDATA_PREFIX``,
    else Debian's. Raises :class:`OcrModelError` naming the packages to install."""
    options = [configured] if configured else [os.environ.get("TESSDATA_PREFIX", ""), *SYSTEM_TESSDATA]
    for option in options:
        if option and all((Path(option) / f"{lang}.traineddata").is_file() for lang in LANGUAGES.split("+")):
            return Path(option)
    raise OcrModelError("no Tesseract chi_sim and eng models: install tesseract-ocr-chi-sim and tesseract-ocr-eng "
                        "(or set TESSDATA_PREFIX)")


@dataclass(frozen=True)
class RereadResult:
    """What :meth:`ReportOcr.reread` read in one region: text and mean confidence (empty when nothing)."""

    text: str
    conf: float


class ReportOcr:
    """Reads report pages (grey ``uint8`` arrays) with one reused Tesseract instance. Not thread-safe.

    >>> with ReportOcr() as ocr:  # doctest: +SKIP
    ...     words = ocr.words(page)
    """

    def __init__(self, tessdata: str | None = None, dpi: int = 150) -> None:
        import tesserocr

        self._tess = tesserocr
        folder = report_tessdata(tessdata)
        started = time.perf_counter()
        try:
            self._api = tesserocr.PyTessBaseAPI(path=str(folder) + os.sep, lang=LANGUAGES,
                                                psm=tesserocr.PSM.SPARSE_TEXT, oem=tesserocr.OEM.LSTM_ONLY)
        except RuntimeError as exc:
            raise OcrModelError(f"Tesseract cannot load {LANGUAGES} from {folder}: {exc}") from None
        _quiet_leptonica()
        self._dpi = str(dpi)
        self._api.SetVariable("user_defined_dpi", self._dpi)
        logger.info("report OCR uses %s from %s (%.0f ms to load)", LANGUAGES, folder,
                    (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        """Free Tesseract's memory; the reader cannot be used afterwards."""
        self._api.End()

    def __enter__(self) -> ReportOcr:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _collect(self, level: int) -> list[Word]:
        out: list[Word] = []
        it = self._api.GetIterator()
        while it is not None and not it.Empty(level):
            try:
                text = it.GetUTF8Text(level)
            except RuntimeError:  # an empty result
                break
            box = it.BoundingBox(level)
            if text and text.strip() and box:
                x0, y0, x1, y1 = box
                out.append(Word(text.strip(), float(it.Confidence(level)), Box(x0, y0, x1 - x0, y1 - y0)))
            if not it.Next(level):
                break
        return out

    def _collect_symbols(self) -> list[tuple[Word, list[tuple[str, Box]]]]:
        """Words with the boxes of their characters."""
        tess = self._tess
        out: list[tuple[Word, list[tuple[str, Box]]]] = []
        it = self._api.GetIterator()
        level = tess.RIL.SYMBOL
        while it is not None and not it.Empty(level):
            try:
                char = it.GetUTF8Text(level)
            except RuntimeError:
                break
            if it.IsAtBeginningOf(tess.RIL.WORD):
                box = it.BoundingBox(tess.RIL.WORD)
                text = it.GetUTF8Text(tess.RIL.WORD)
                if box and text and text.strip():
                    x0, y0, x1, y1 = box
                    out.append((Word(text.strip(), float(it.Confidence(tess.RIL.WORD)),
                                     Box(x0, y0, x1 - x0, y1 - y0)), []))
            sbox = it.BoundingBox(level)
            if out and sbox and char and char.strip():
                x0, y0, x1, y1 = sbox
                out[-1][1].append((char.strip(), Box(x0, y0, x1 - x0, y1 - y0)))
            if not it.Next(level):
                break
        return out

    def words(self, page: np.ndarray) -> list[Word]:
        """Every word on the page with its box (page pixels) and confidence, one sparse-text pass; printed
        arrows are recognised by shape (:func:`fix_arrows`)."""
        api = self._api
        api.SetPageSegMode(self._tess.PSM.SPARSE_TEXT)
        api.SetVariable("tessedit_char_whitelist", "")
        api.SetImage(Image.fromarray(page))
        api.Recognize()
        return fix_arrows(self._collect_symbols(), page)

    def reread(self, page: np.ndarray, boxes: list[Box], scale: float = 2.0,
               whitelist: str = NUMERIC_WHITELIST, blacklist: str = "") -> list[RereadResult]:
        """Read each region of ``page`` again, enlarged ``scale`` times, with a character whitelist (or,
        with ``whitelist=""``, a blacklist), all in one Tesseract call (the crops stacked one per line).
        One result per box, in order."""
        if not boxes:
            return []
        crops = []
        for b in boxes:
            pad = max(2, b.h // 4)
            y0, y1 = max(0, b.y - pad), min(page.shape[0], b.y + b.h + pad)
            x0, x1 = max(0, b.x - pad), min(page.shape[1], b.x + b.w + pad)
            crop = Image.fromarray(page[y0:y1, x0:x1])
            crops.append(crop.resize((max(1, int(crop.width * scale)), max(1, int(crop.height * scale))),
                                     Image.Resampling.BICUBIC))
        gap = int(max(c.height for c in crops) * 0.8)
        margin = gap
        width = max(c.width for c in crops) + 2 * margin
        height = sum(c.height for c in crops) + gap * (len(crops) - 1) + 2 * margin
        strip = Image.new("L", (width, height), 255)
        spans = []
        y = margin
        for c in crops:
            strip.paste(c, (margin, y))
            spans.append((y, y + c.height))
            y += c.height + gap
        api = self._api
        api.SetPageSegMode(self._tess.PSM.SINGLE_BLOCK)
        api.SetVariable("tessedit_char_whitelist", whitelist)
        api.SetVariable("tessedit_char_blacklist", blacklist)
        api.SetImage(strip)
        api.Recognize()
        words = self._collect(self._tess.RIL.WORD)
        api.SetVariable("tessedit_char_whitelist", "")
        api.SetVariable("tessedit_char_blacklist", "")
        found: list[list[Word]] = [[] for _ in boxes]
        for w in words:
            cy = w.box.y + w.box.h / 2
            for i, (top, bottom) in enumerate(spans):
                if top - gap / 2 <= cy < bottom + gap / 2:
                    found[i].append(w)
                    break
        out = []
        for ws in found:
            ws.sort(key=lambda w: w.box.x)
            text = " ".join(w.text for w in ws)
            out.append(RereadResult(text, float(np.mean([w.conf for w in ws])) if ws else 0.0))
        return out

    def read_line(self, page: np.ndarray, box: Box, scale: float = 2.0, blacklist: str = "",
                  whitelist: str = "") -> RereadResult:
        """Read one line of text in ``box`` of ``page`` again on its own (``PSM.SINGLE_LINE``), enlarged
        ``scale`` times, with the characters of ``blacklist`` forbidden (or only those of ``whitelist``). The crop keeps only the band of
        rows holding most ink, so that the edge of a neighbouring line or a rule does not disturb it."""
        pad = max(2, box.h // 4)
        y0, y1 = max(0, box.y - pad), min(page.shape[0], box.y + box.h + pad)
        x0, x1 = max(0, box.x - pad), min(page.shape[1], box.x + box.w + pad)
        crop = page[y0:y1, x0:x1]
        if crop.size == 0:
            return RereadResult("", 0.0)
        inked = (crop < 140).sum(axis=1) > 0
        bands, start = [], None
        for i, v in enumerate([*inked, False]):
            if v and start is None:
                start = i
            elif not v and start is not None:
                bands.append((start, i))
                start = None
        if bands:
            a, b = max(bands, key=lambda ab: int((crop[ab[0]:ab[1]] < 140).sum()))
            m = max(2, (b - a) // 5)
            crop = crop[max(0, a - m):b + m]
        image = Image.fromarray(crop)
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                             Image.Resampling.BICUBIC)
        canvas = Image.new("L", (image.width + 20, image.height + 20), 255)
        canvas.paste(image, (10, 10))
        api = self._api
        api.SetPageSegMode(self._tess.PSM.SINGLE_LINE)
        api.SetVariable("tessedit_char_whitelist", whitelist)
        api.SetVariable("tessedit_char_blacklist", blacklist)
        api.SetImage(canvas)
        try:
            text = (api.GetUTF8Text() or "").strip()
            conf = float(api.MeanTextConf())
        finally:
            api.SetVariable("tessedit_char_whitelist", "")
            api.SetVariable("tessedit_char_blacklist", "")
        return RereadResult(text, conf if text else 0.0)


def arrow_direction(glyph: np.ndarray, blurred: bool = False) -> str | None:
    """``"↑"`` or ``"↓"`` when the dark pixels of ``glyph`` (grey crop of one character) form a vertical
    arrow: a thin stem with a head clearly wider at one end; None otherwise.

    ``blurred``: also accept a head that blur has filled into a blob (wide near one end, narrowing again
    at the tip, the other end no wider than the stem); for a glyph already known to stand where a flag
    is printed (alone after a number), not for any character of the page; the glyph is then also judged
    with its ink taken at half way between paper and the darkest stroke, as blur leaves a thin stem pale."""
    if blurred:
        found = arrow_direction(glyph)
        if found or glyph.size == 0:
            return found
        dark, paper = float(np.percentile(glyph, 1)), float(np.percentile(glyph, 95))
        return _arrow_shape(glyph, max(140.0, (dark + paper) / 2), True)
    return _arrow_shape(glyph, 140.0, False)


def _arrow_shape(glyph: np.ndarray, level: float, blob: bool) -> str | None:
    if 0 < glyph.shape[0] < 48:  # thin strokes of small print: judge the shape at a larger size
        f = 48 / glyph.shape[0]
        glyph = np.asarray(Image.fromarray(glyph).resize((max(1, int(glyph.shape[1] * f)), 48),
                                                         Image.Resampling.BICUBIC))
    ink = glyph < level
    if blob:  # join the pieces of a stem that blur has broken
        import cv2

        ink = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 1), np.uint8)) > 0
    rows = np.nonzero(ink.any(axis=1))[0]
    cols = np.nonzero(ink.any(axis=0))[0]
    if len(rows) < 8 or len(cols) < 3:
        return None
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = ink.shape
    if w > 0.9 * h:
        return None
    lefts = np.array([np.argmax(r) if r.any() else -1 for r in ink])
    rights = np.array([w - 1 - np.argmax(r[::-1]) if r.any() else -1 for r in ink])
    widths = np.where(lefts >= 0, rights - lefts + 1, 0)
    third = max(1, h // 3)
    mid = slice(third, 2 * third)
    if not (lefts[mid] >= 0).all():
        return None
    stem_l, stem_r = float(np.median(lefts[mid])), float(np.median(rights[mid]))
    stem = stem_r - stem_l + 1
    if stem > 0.45 * w:
        return None  # no thin stem in the middle

    def head(part: slice, tip: slice) -> bool:
        ls, rs, ws = lefts[part], rights[part], widths[part]
        if not (ls >= 0).any():
            return False
        # arms on both sides of the stem, reaching well beyond it, and slanting: the width changes
        # gradually over several rows (a bar, as in T, 7 or 1, changes at once); and a pointed tip: the
        # end rows are narrow (a foot or a top bar is widest there)
        both = ls[ls >= 0].min() < stem_l - 0.8 * stem and rs.max() > stem_r + 0.8 * stem
        slant = int(((ws > 1.6 * stem) & (ws < 0.85 * ws.max())).sum())
        pointed = float(widths[tip].mean()) < 0.6 * float(ws.max())
        return bool(both and slant >= 2 and pointed)

    end = max(2, int(0.08 * h))
    up = head(slice(0, int(0.45 * h)), slice(0, end))
    down = head(slice(h - int(0.45 * h), h), slice(h - end, h))
    if up and not down and widths[:third].max() > 1.6 * widths[-third:].max():
        return "↑"
    if down and not up and widths[-third:].max() > 1.6 * widths[:third].max():
        return "↓"
    if blob:
        return _blob_head(lefts, rights, stem_l, stem_r)
    return None


def _blob_head(lefts: np.ndarray, rights: np.ndarray, stem_l: float, stem_r: float) -> str | None:
    """The direction of an arrow whose head blur has filled: the widest row within the outer 40 % at one
    end but not at the very end (the tip narrows again, where a foot or a top bar, as in 1, T or L, is
    widest), clearly wider than the stem, with arms of about equal length on both sides of it (not a hook
    or a bar to one side, as in J, 4, 7 or L); the other end is the stem alone."""
    widths = np.where(lefts >= 0, rights - lefts + 1, 0)
    stem = stem_r - stem_l + 1
    h = len(widths)
    part = max(2, int(0.4 * h))
    tip = max(1, int(0.15 * h))

    def head(rows: np.ndarray, other: np.ndarray, end: np.ndarray) -> bool:
        k = int(np.argmax(widths[rows]))
        row = int(rows[k])
        left, right = stem_l - lefts[row], rights[row] - stem_r
        return bool(widths[row] >= 1.8 * stem and widths[other].max() <= 1.4 * stem
                    and widths[end].mean() < 0.6 * widths[row] and min(left, right) >= 0.5 * stem
                    and max(left, right) <= 2 * min(left, right))

    top, bottom = np.arange(0, part), np.arange(h - part, h)
    if head(np.arange(h - part, h - tip), top, np.arange(h - tip // 2 - 1, h)):
        return "↓"
    if head(np.arange(tip, part), bottom, np.arange(0, tip // 2 + 1)):
        return "↑"
    return None


def _glyph(page: np.ndarray, b: Box) -> np.ndarray:
    pad = max(1, b.h // 6)
    return page[max(0, b.y - pad):b.y + b.h + pad, max(0, b.x - pad):b.x + b.w + pad]


def _ends_in_digit(text: str) -> bool:
    return bool(text) and text[-1].isdigit()


def fix_arrows(words: list[tuple[Word, list[tuple[str, Box]]]], page: np.ndarray) -> list[Word]:
    """Words with printed ``↑`` / ``↓`` restored, judged by the glyph's shape (:func:`arrow_direction`):

    * a one-character word read as a look-alike (``个``, ``l``, ``J`` …) with nothing within a character
      height on either side, or only a number on its left (``5.21 ↑``);
    * a number whose last character, set apart by a space, is a look-alike (``3.4 ↓`` read as ``3.41``):
      the word is split into the number and the arrow.
    """
    plain = [w for w, _ in words]
    out: list[Word] = []
    for w, symbols in words:
        b = w.box
        if len(w.text) == 1 and w.text in ARROW_LOOKALIKES:
            isolated = True
            for other in plain:
                if other is w:
                    continue
                ob = other.box
                same_line = min(b.y + b.h, ob.y + ob.h) - max(b.y, ob.y) > 0.3 * min(b.h, ob.h)
                left = abs(ob.x + ob.w - b.x) < b.h and ob.x < b.x
                right = abs(b.x + b.w - ob.x) < b.h and ob.x > b.x
                if same_line and (right or (left and not _ends_in_digit(other.text))):
                    isolated = False
                    break
            arrow = arrow_direction(_glyph(page, b)) if isolated else None
            out.append(Word(arrow, w.conf, b) if arrow else w)
            continue
        if (len(symbols) >= 2 and symbols[-1][0] in ARROW_LOOKALIKES and any(c.isdigit() for c, _ in symbols[:-1])
                and len(symbols) == len(w.text)):
            last, prev = symbols[-1][1], symbols[-2][1]
            if last.x - (prev.x + prev.w) > 0.15 * max(last.h, prev.h):
                arrow = arrow_direction(_glyph(page, last))
                if arrow:
                    head = symbols[:-1]
                    hb = head[0][1]
                    for _, sb in head[1:]:
                        hb = hb.union(sb)
                    out.append(Word("".join(c for c, _ in head), w.conf, hb))
                    out.append(Word(arrow, w.conf, last))
                    continue
        out.append(w)
    return out
