"""Where each tube stands in a rack photo: the grid fitted to the decoded label centres.

A rack holds ``rows`` x ``columns`` tubes (8 x 12 = 96, 6 x 8 = 48 ...), row letters from the top (``A``),
column numbers from the left (``1``). :func:`locate` takes every label read in one photo and:

1. estimates the well pitch (median distance to the nearest label) and the grid's turn (the mean of the
   neighbour directions modulo a right angle, so a rack turned by up to 45 degrees either way is read the
   right way up);
2. fits the grid by growing it from the label nearest the middle: the labels within a few pitches get
   their (column, row) by rounding, a projective map from grid to image is fitted to them, the circle
   grows and the map is refitted, so perspective and lens bending are followed from the middle out;
3. drops labels that fall between wells (another code in the picture) or share a well with a closer one;
4. anchors the grid in the rack: when the labels do not span every row and column (missing tubes on an
   edge), the wells' look decides where the rack's edges are (a tube's label shows detail, an empty
   well is a plain hole; a well outside the rack cannot hold a tube);
5. reports every position: read (with its code), ``unreadable`` (a tube is there, or a symbol was located,
   but no label read) or ``missing`` (an empty well).

Pure numpy; the image is only looked at for step 4 and 5 (the detail in a small disc per well).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from edge.barcodes import Box, DecodedCode, Point
from edge.symbology import Symbology
from mqtt.rackbody import MAX_COLUMNS, MAX_ROWS

logger = logging.getLogger(__name__)


class RackProblem(ValueError):
    """A photo that gives no rack: too few labels, no grid, or a grid that does not fit the layout."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RackLayout:
    """A rack's shape: ``rows`` (letters A..) by ``columns`` (numbers 1..)."""

    rows: int = 8
    columns: int = 12

    def __post_init__(self) -> None:
        if not (1 <= self.rows <= MAX_ROWS and 1 <= self.columns <= MAX_COLUMNS):
            raise ValueError(f"rack layout must be 1..{MAX_ROWS} rows by 1..{MAX_COLUMNS} columns")

    @property
    def name(self) -> str:
        """``8x12``."""
        return f"{self.rows}x{self.columns}"

    @property
    def wells(self) -> int:
        return self.rows * self.columns

    def position(self, row: int, column: int) -> str:
        """``A1`` for row 0, column 0."""
        return f"{chr(ord('A') + row)}{column + 1}"

    def positions(self) -> list[str]:
        """Every position, row by row (``A1``, ``A2`` ... ``H12``)."""
        return [self.position(r, c) for r in range(self.rows) for c in range(self.columns)]


@dataclass(frozen=True, slots=True)
class RackTube:
    """One tube read in the rack. ``text`` is the tube's code (not personal data, but kept out of repr)."""

    position: str
    text: str = field(repr=False)
    format: Symbology
    center: Point


@dataclass(frozen=True, slots=True)
class RackReading:
    """Every position of one rack photo: ``tubes`` read, ``unreadable`` and ``missing`` positions;
    ``off_grid``: codes that stand in no well (a rack label, a stray code); ``anchored``: False when
    missing edge rows or columns left the grid's place in the rack a guess (first row/column taken)."""

    layout: RackLayout
    tubes: tuple[RackTube, ...]
    unreadable: tuple[str, ...]
    missing: tuple[str, ...]
    off_grid: tuple[DecodedCode, ...] = ()
    anchored: bool = True
    pitch: float = 0.0

    @property
    def complete(self) -> bool:
        """True when every well holds a tube that was read."""
        return len(self.tubes) == self.layout.wells


def locate(codes: list[DecodedCode], layout: RackLayout, gray: np.ndarray | None = None,
           located: list[Box] = ()) -> RackReading:
    """The rack positions of ``codes`` (the labels read in one photo; see the module docstring).

    ``gray``: the photo in grey (for the empty-well look); ``located``: symbols located but not read.
    Raises :class:`RackProblem` when no rack of ``layout`` can be fitted.
    """
    if len(codes) < 3:
        raise RackProblem("too_few_codes", f"{len(codes)} tube labels read; at least 3 are needed to find the grid")
    pts = np.array([[c.center.x, c.center.y] for c in codes], dtype=np.float64)
    pitch, theta = _pitch_and_turn(pts)
    try:
        h = _grow_grid(pts, pitch, theta)
        frac = _to_grid(np.linalg.inv(h), pts)
    except np.linalg.LinAlgError:
        raise RackProblem("not_a_grid", "the labels read do not stand in a grid of wells") from None
    idx = np.rint(frac).astype(int)
    err = np.abs(frac - idx).max(axis=1)
    on_grid = err <= 0.35
    # one label per well: the one nearest the well's centre
    best: dict[tuple[int, int], int] = {}
    for i in np.flatnonzero(on_grid):
        key = (int(idx[i, 0]), int(idx[i, 1]))
        if key not in best or err[i] < err[best[key]]:
            best[key] = int(i)
    if len(best) < 3:
        raise RackProblem("not_a_grid", "the labels read do not stand in a grid of wells")
    cols = [k[0] for k in best]
    rows = [k[1] for k in best]
    c0, r0 = min(cols), min(rows)
    span_c, span_r = max(cols) - c0 + 1, max(rows) - r0 + 1
    if span_c > layout.columns or span_r > layout.rows:
        if span_c <= layout.rows and span_r <= layout.columns:
            raise RackProblem("rack_turned", f"the tubes stand {span_r} x {span_c}: photograph the rack with "
                                             f"its {layout.columns} columns across and A1 at the top left")
        raise RackProblem("does_not_fit", f"the tubes stand {span_r} x {span_c}, more than a "
                                          f"{layout.name} rack")
    looks = _well_looks(gray, h, pitch, best, c0, r0, layout) if gray is not None else None
    dc, dr, anchored = _anchor(looks, span_c, span_r, c0, r0, layout)
    tubes = []
    taken: set[tuple[int, int]] = set()
    for (c, r), i in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cc, rr = c - dc, r - dr
        taken.add((cc, rr))
        code = codes[i]
        tubes.append(RackTube(layout.position(rr, cc), code.text, code.format, code.center))
    off = tuple(codes[i] for i in range(len(codes)) if i not in set(best.values()))
    unread_cells = _located_cells(located, h, dc, dr)
    unreadable, missing = [], []
    for rr in range(layout.rows):
        for cc in range(layout.columns):
            if (cc, rr) in taken:
                continue
            occupied = (cc, rr) in unread_cells or (looks is not None and looks.get((cc + dc, rr + dr), False))
            (unreadable if occupied else missing).append(layout.position(rr, cc))
    logger.info("rack %s: %d read, %d unreadable, %d missing, %d off the grid (pitch %.0f px, turn %.1f deg)",
                layout.name, len(tubes), len(unreadable), len(missing), len(off), pitch, math.degrees(theta))
    return RackReading(layout, tuple(tubes), tuple(unreadable), tuple(missing), off, anchored, pitch)


# -- the grid --------------------------------------------------------------------------------------------

def _pitch_and_turn(pts: np.ndarray) -> tuple[float, float]:
    d = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
    np.fill_diagonal(d, np.inf)
    pitch = float(np.median(d.min(axis=1)))
    if not pitch > 0:
        raise RackProblem("not_a_grid", "labels read on top of each other")
    nearest = d.min(axis=1)
    near = (d < 1.3 * pitch)
    i, j = np.nonzero(near)
    v = pts[j] - pts[i]
    angles = np.arctan2(v[:, 1], v[:, 0])
    s4, c4 = np.sin(4 * angles).mean(), np.cos(4 * angles).mean()
    # a grid: most labels have a neighbour one pitch away, and the neighbours run along two square axes
    regular = float(np.mean((nearest > 0.8 * pitch) & (nearest < 1.25 * pitch)))
    if regular < 0.6 or math.hypot(s4, c4) < 0.6:
        raise RackProblem("not_a_grid", "the labels read do not stand in a grid of wells")
    return pitch, float(np.arctan2(s4, c4) / 4)


def _to_grid(inv: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ inv.T
    return p[:, :2] / p[:, 2:3]


def _fit(grid: np.ndarray, img: np.ndarray) -> np.ndarray:
    """The projective map grid -> image fitted to the pairs by least squares (normalised DLT); an affine one
    while the pairs are too few or too close to a line for a projective fit."""
    def norm(p: np.ndarray) -> np.ndarray:
        m = p.mean(axis=0)
        s = math.sqrt(2) / max(float(np.sqrt(((p - m) ** 2).sum(axis=1)).mean()), 1e-9)
        return np.array([[s, 0, -s * m[0]], [0, s, -s * m[1]], [0, 0, 1]])
    a_n, b_n = norm(grid), norm(img)
    g = np.c_[grid, np.ones(len(grid))] @ a_n.T
    q = np.c_[img, np.ones(len(img))] @ b_n.T
    spread = np.linalg.matrix_rank(np.c_[grid, np.ones(len(grid))], tol=1e-6) == 3
    if len(grid) >= 6 and spread and len(set(grid[:, 0])) > 2 and len(set(grid[:, 1])) > 2:
        rows = []
        for (x, y, _), (u, v, _) in zip(g, q):
            rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
            rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
        m = np.asarray(rows)
        _, vecs = np.linalg.eigh(m.T @ m)  # the null vector of the 9x9 normal matrix: the map
        h = vecs[:, 0].reshape(3, 3)
    else:
        sol, *_ = np.linalg.lstsq(g, q[:, :2], rcond=None)
        h = np.vstack([sol.T, [0, 0, 1]])
    h = np.linalg.inv(b_n) @ h @ a_n
    return h / h[2, 2]


def _grow_grid(pts: np.ndarray, pitch: float, theta: float) -> np.ndarray:
    centre = np.median(pts, axis=0)
    seed = pts[int(np.argmin(np.hypot(*(pts - centre).T)))]
    cos, sin = math.cos(theta), math.sin(theta)
    h = np.array([[pitch * cos, -pitch * sin, seed[0]], [pitch * sin, pitch * cos, seed[1]], [0, 0, 1]])
    dist = np.hypot(*(pts - seed).T)
    radius = 2.6 * pitch
    final = 0
    while final < 3:
        if radius >= dist.max():
            final += 1
        sel = dist <= radius
        frac = _to_grid(np.linalg.inv(h), pts[sel])
        idx = np.rint(frac)
        good = np.abs(frac - idx).max(axis=1) <= 0.35
        # a fit needs labels off one line (a single filled row keeps the pitch-and-turn map)
        if good.sum() >= 3 and np.linalg.matrix_rank(np.c_[idx[good], np.ones(int(good.sum()))]) == 3:
            try:
                fitted = _fit(idx[good], pts[sel][good])
            except np.linalg.LinAlgError:
                fitted = None
            if fitted is not None and np.all(np.isfinite(fitted)):
                h = fitted
        radius *= 1.6
    return h


# -- the wells' look -------------------------------------------------------------------------------------

def _disc_detail(gray: np.ndarray, x: float, y: float, r: float) -> float | None:
    hh, ww = gray.shape
    ri = max(2, int(r))
    xi, yi = int(round(x)), int(round(y))
    if not (0 <= xi < ww and 0 <= yi < hh):
        return None
    x0, y0, x1, y1 = max(0, xi - ri), max(0, yi - ri), min(ww, xi + ri + 1), min(hh, yi + ri + 1)
    patch = gray[y0:y1, x0:x1].astype(np.float32)
    if min(patch.shape) < 3:
        return None
    detail = np.abs(np.diff(patch, axis=0))[:, :-1] + np.abs(np.diff(patch, axis=1))[:-1, :]
    yy, xx = np.ogrid[y0 - yi:y1 - yi - 1, x0 - xi:x1 - xi - 1]
    return float(detail[xx * xx + yy * yy <= ri * ri].mean())


def _well_looks(gray: np.ndarray, h: np.ndarray, pitch: float, best: dict[tuple[int, int], int], c0: int,
                r0: int, layout: RackLayout) -> dict[tuple[int, int], bool]:
    """For every well the rack could have (the read span widened by what the layout allows, and one more
    on every side): does it look
    like it holds a tube? A well counts as occupied when its middle shows at least a quarter of the detail
    (mean difference between neighbouring pixels) of the median well whose label was read: a label, even
    smeared, has edges; an empty well is a plain hole, and glare over it is smooth. Wells whose middle is outside the
    frame count empty."""
    g = gray if gray.ndim == 2 else gray[:, :, 1]
    cols = [k[0] for k in best]
    rows = [k[1] for k in best]
    free_c, free_r = layout.columns - (max(cols) - c0 + 1), layout.rows - (max(rows) - r0 + 1)
    wells = [(c, r) for c in range(c0 - free_c - 1, max(cols) + free_c + 2)
             for r in range(r0 - free_r - 1, max(rows) + free_r + 2)]
    centres = h @ np.array([[c, r, 1.0] for c, r in wells]).T
    xy = (centres[:2] / centres[2]).T
    means = {}
    for (c, r), (x, y) in zip(wells, xy):
        m = _disc_detail(g, x, y, 0.3 * pitch)
        if m is not None:
            means[(c, r)] = m
    read = [means[k] for k in best if k in means]
    if not read:
        return {}
    level = float(np.median(read)) / 4
    return {k: v >= level for k, v in means.items()}


def _anchor(looks: dict[tuple[int, int], bool] | None, span_c: int, span_r: int, c0: int, r0: int,
            layout: RackLayout) -> tuple[int, int, bool]:
    """Grid index of the rack's A1 ``(column, row)`` and whether the place is certain.

    Along an axis the read labels do not span, every placement of the rack that holds them is scored by
    the tube-looking wells it takes in, less twice those just outside it (no tube stands outside a rack).
    """
    def best_offset(axis: int, span: int, full: int, start: int, other: range) -> tuple[int, bool]:
        if span == full or looks is None:
            return start, span == full
        lit = [k[axis] for k, v in looks.items() if v and k[1 - axis] in other]
        scores = []
        for first in range(start - (full - span), start + 1):
            inside = sum(first <= k < first + full for k in lit)
            outside = sum(k in (first - 1, first + full) for k in lit)
            scores.append((inside - 2 * outside, -abs(first - start), first))
        scores.sort(reverse=True)
        certain = len(scores) == 1 or scores[0][0] > scores[1][0]
        return scores[0][2], certain

    dc, ok_c = best_offset(0, span_c, layout.columns, c0, range(r0, r0 + span_r))
    dr, ok_r = best_offset(1, span_r, layout.rows, r0, range(dc, dc + layout.columns) if ok_c else range(c0, c0 + span_c))
    return dc, dr, ok_c and ok_r


def _located_cells(located: list[Box], h: np.ndarray, dc: int, dr: int) -> set[tuple[int, int]]:
    """Rack cells ``(column, row)`` in which a symbol was located but not read."""
    if not located:
        return set()
    inv = np.linalg.inv(h)
    pts = np.array([[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2] for b in located])
    frac = _to_grid(inv, pts)
    idx = np.rint(frac).astype(int)
    ok = np.abs(frac - idx).max(axis=1) <= 0.4
    return {(int(c) - dc, int(r) - dr) for (c, r), good in zip(idx, ok) if good}
