"""What the reading stage hands to the structuring stage: the words of one corrected page, grouped.

The reading stage (``capture`` → ``ocr`` → ``layout``) turns a camera frame into a :class:`PageText`;
the structuring stage (``structure``) turns a :class:`PageText` into a typed report. Nothing else
crosses between the two, so each side is tested on its own: the reader against generated pages with
ground truth, the structurer against hand-built :class:`PageText` values.

Coordinates are pixels of the corrected (de-skewed, flattened) page, origin top left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle on the corrected page."""

    x: int
    y: int
    w: int
    h: int

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Box(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class Word:
    """One OCR word with Tesseract's confidence (0–100)."""

    text: str
    conf: float
    box: Box


@dataclass(frozen=True)
class TextLine:
    """One line of text as a text detector found it and a recogniser read it.

    ``conf`` is the recogniser's confidence (0–1); ``box`` the line's axis-aligned box on the corrected page;
    ``quad`` its four corners (clockwise from top left) when the detector gave a rotated box; ``char_x`` the
    horizontal centre of each character of ``text`` on the page (from the recogniser's time steps), so that
    a line that runs across several table columns can be cut at its gaps.
    """

    text: str
    conf: float
    box: Box
    quad: tuple[tuple[float, float], ...] = ()
    char_x: tuple[float, ...] = ()


class LineRecognizer(Protocol):
    """Reads the text lines of a corrected page (BGR or grey ``uint8`` image), in no particular order."""

    def read_lines(self, page: np.ndarray) -> list[TextLine]:
        """Every text line found on the page."""
        ...


@dataclass(frozen=True)
class Cell:
    """The words of one table cell, joined; ``col`` is the column index within its table."""

    text: str
    conf: float
    box: Box
    col: int


@dataclass(frozen=True)
class Row:
    """One table row: its cells left to right (columns with nothing in them are absent)."""

    cells: tuple[Cell, ...]
    box: Box


@dataclass(frozen=True)
class Table:
    """Rows aligned into columns. ``header`` is the title row (项目 / 结果 / 单位 / 参考范围 …) when found."""

    header: Row | None
    rows: tuple[Row, ...]
    box: Box


@dataclass(frozen=True)
class Line:
    """A line of running text outside any table (titles, patient header, ultrasound narrative)."""

    text: str
    conf: float
    box: Box
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class PageText:
    """Everything read from one page, in reading order: free lines and tables."""

    lines: tuple[Line, ...]
    tables: tuple[Table, ...]
    width: int
    height: int
    languages: str = "chi_sim+eng"
    notes: tuple[str, ...] = field(default=())  # reader warnings (e.g. "low contrast"), never personal data
    source: str = "words"  # "words": Tesseract words (edge.reports.layout); "lines": text lines (edge.reports.geometry)
