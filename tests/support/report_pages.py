"""Hand-built :class:`~edge.reports.page.PageText` values for the structuring tests: tables laid out on a
grid of boxes, free lines one under another, as the reading stage would hand them over."""

from __future__ import annotations

from collections.abc import Sequence

from edge.reports.page import Box, Cell, Line, PageText, Row, Table

COL_W, ROW_H = 160, 40


def row(texts: Sequence[str | None], y: int, x0: int = 40, conf: float = 92.0) -> Row:
    """One row: ``None`` leaves a column empty (absent, as the reader gives it)."""
    cells = tuple(Cell(t, conf, Box(x0 + i * COL_W, y, COL_W - 10, ROW_H - 8), i)
                  for i, t in enumerate(texts) if t is not None)
    box = cells[0].box
    for c in cells[1:]:
        box = box.union(c.box)
    return Row(cells, box)


def table(header: Sequence[str] | None, rows: Sequence[Sequence[str | None]], y0: int = 300,
          conf: float = 92.0) -> Table:
    """A table whose first row is at ``y0`` (the header row, when given)."""
    hdr = row(header, y0, conf=conf) if header is not None else None
    start = y0 + ROW_H if header is not None else y0
    body = tuple(row(r, start + i * ROW_H, conf=conf) for i, r in enumerate(rows))
    box = (hdr or body[0]).box
    for r in body:
        box = box.union(r.box)
    return Table(hdr, body, box)


def lines(texts: Sequence[str], y0: int = 40, conf: float = 90.0) -> tuple[Line, ...]:
    return tuple(Line(t, conf, Box(40, y0 + i * ROW_H, 1000, ROW_H - 8)) for i, t in enumerate(texts))


def page(line_texts: Sequence[str] = (), tables: Sequence[Table] = (), more_lines: Sequence[str] = (),
         more_y: int = 1500) -> PageText:
    """A 1240×1754 page (A4 at 150 dpi): header lines on top, tables, then more lines further down."""
    return PageText(lines=lines(line_texts) + lines(more_lines, y0=more_y), tables=tuple(tables),
                    width=1240, height=1754)
