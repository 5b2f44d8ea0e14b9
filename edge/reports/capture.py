"""Capture: find the paper report in a camera frame, straighten it and even out its light.

:func:`correct_page` works on a reduced copy to find the page (the brightest large quadrilateral: Otsu
threshold, closing, largest outer contour, polygon of four corners), warps the full-resolution grey
frame to a flat page of at most :data:`MAX_WIDTH` pixels, removes what skew is left (the angle whose
row projection of dark strokes is the most peaked), on request straightens text lines bent by a curled
page (:func:`dewarp`: a smooth vertical displacement fitted to the centre lines of the runs of text), divides by the background (shadows, vignetting,
tinted paper) and stretches the contrast. A frame without visible page edges (a close shot or a scan)
is taken whole.

It refuses frames that cannot be read with a :class:`CaptureRejected` (``TooDark``, ``TooBlurred``,
``NoText``, ``PageCut``) whose :attr:`~CaptureRejected.instruction` tells the person what to do, in Chinese and
English. Requires OpenCV (``opencv-python-headless``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

DETECT_SIDE = 800
"""Longer side of the reduced frame the page is looked for in."""
MAX_WIDTH = 1600
"""Widest corrected page (pixels); a larger page is reduced (Tesseract's time grows with the area)."""
MIN_WIDTH = 1100
"""Narrowest corrected page: a smaller page is enlarged so that body text keeps about 18 pixels."""
MIN_PAGE_AREA = 0.2
"""Smallest share of the frame a detected page may cover; below it the frame is taken whole."""
DARK_LEVEL = 70
"""The page's 90th brightness percentile (0–255) below which a frame is too dark."""
SHARPNESS_MIN = 0.6
"""Least :func:`sharpness` of a readable page: crisp print measures about 0.8; below 0.6 (a blur of
1.5 pixels and more on the corrected page) Tesseract misreads many values."""


class CaptureRejected(ValueError):
    """The frame cannot be read; :attr:`reason` is a short code and :attr:`instruction` what to do."""

    reason = "unreadable"
    instruction = "请重新拍摄报告 / Please take the photo again."

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}. {self.instruction}")
        self.detail = detail


class TooDark(CaptureRejected):
    """Not enough light on the page."""

    reason = "too_dark"
    instruction = "光线太暗, 请在明亮处重新拍摄 / Too dark: move to a brighter place and take the photo again."


class TooBlurred(CaptureRejected):
    """The text is out of focus or moved."""

    reason = "too_blurred"
    instruction = ("照片模糊, 请拿稳并对焦后重新拍摄 / Blurred: hold the report and the camera still, let it "
                   "focus, and take the photo again.")


class PageCut(CaptureRejected):
    """Part of the page lies outside the picture."""

    reason = "page_cut"
    instruction = ("报告有部分在画面外, 请后移并将整页放入画面 / Part of the page is outside the picture: move "
                   "back so that the whole page is in view.")


class NoText(CaptureRejected):
    """Nothing that looks like printed text."""

    reason = "no_text"
    instruction = ("未找到报告, 请将整页报告放入画面 / No report found: put the whole page in view and take "
                   "the photo again.")


@dataclass(frozen=True)
class CapturedPage:
    """A corrected page: grey ``uint8`` image, the corners used (frame pixels, tl tr br bl or None when
    the whole frame was taken), the residual skew removed (degrees) and measurements."""

    image: np.ndarray
    corners: np.ndarray | None
    skew: float
    brightness: float
    sharpness: float
    notes: tuple[str, ...] = ()


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Grey ``uint8`` of a BGR, BGRA or grey frame."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError("frame must be a uint8 HxW or HxWxC array")
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(frame[:, :, 0])


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left."""
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    s, d = pts.sum(axis=1), np.diff(pts, axis=1)[:, 0]
    return np.float32([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]])


def _on_border(hull: np.ndarray, shape: tuple[int, ...]) -> float:
    """How much of the hull's outline runs along the image border, as a share of the image's perimeter."""
    h, w = shape[:2]
    pts = hull.reshape(-1, 2).astype(np.float64)
    total = 0.0
    for a, b in zip(pts, np.roll(pts, -1, axis=0)):
        for axis, limit in ((0, 0), (0, w - 1), (1, 0), (1, h - 1)):
            if abs(a[axis] - limit) <= 2 and abs(b[axis] - limit) <= 2:
                total += float(np.hypot(*(a - b)))
    return total / (2 * (h + w))


def _quad(mask: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """The four corners of the largest blob of ``mask``, its area and how much of it lies along the image
    border, when it is shaped like a page."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    area = cv2.contourArea(hull)
    frame_area = mask.shape[0] * mask.shape[1]
    if area < MIN_PAGE_AREA * frame_area or area > 0.97 * frame_area:
        return None
    border = _on_border(hull, mask.shape)
    peri = cv2.arcLength(hull, True)
    quad = None
    for eps in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4:
            quad = approx.reshape(4, 2).astype(np.float32)
            break
    if quad is None:
        quad = cv2.boxPoints(cv2.minAreaRect(hull)).astype(np.float32)
    quad_area = cv2.contourArea(quad)
    if border < 0.03 and not 0.85 * area <= quad_area <= 1.15 * area:
        return None
    return quad, quad_area, border


def _stands_out(gray: np.ndarray, quad: np.ndarray) -> bool:
    """Whether the quadrilateral is paper on a darker ground: just inside its edges is brighter than just
    outside (not, say, the ruled frame of a table on a page that fills the frame)."""
    inside = np.zeros_like(gray)
    cv2.fillConvexPoly(inside, quad.astype(np.int32), 255)
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    outer = cv2.dilate(inside, k) > cv2.dilate(inside, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    inner = (inside > 0) & ~(cv2.erode(inside, k) > 0)
    if outer.sum() < 50 or inner.sum() < 50:
        return False
    return float(np.median(gray[inner])) - float(np.median(gray[outer])) >= 20


def find_page(gray: np.ndarray) -> np.ndarray | None:
    """The page's corners in ``gray`` (tl, tr, br, bl), or None when no page edge stands out; raises
    :class:`PageCut` when the page runs out of the picture.

    Two masks are tried, the paper brighter than the desk (Otsu) and the area closed by strong edges
    (Canny, which a soft shadow across the page does not cut); of the page-shaped blobs whose inside edge
    is brighter than their surroundings, the larger wins.
    """
    h, w = gray.shape
    f = min(1.0, DETECT_SIDE / max(h, w))
    small = cv2.resize(gray, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA) if f < 1 \
        else gray.copy()
    small = cv2.GaussianBlur(small, (5, 5), 0)
    k = max(3, small.shape[1] // 40) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    _, bright = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, kernel)
    edges = cv2.dilate(cv2.Canny(small, 40, 120), cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    closed = np.zeros_like(edges)
    cv2.drawContours(closed, contours, -1, 255, thickness=cv2.FILLED)
    found = [q for q in (_quad(bright), _quad(closed)) if q is not None and _stands_out(small, q[0])]
    if not found:
        return None
    quad, _, border = max(found, key=lambda q: q[1])
    if border >= 0.03:
        raise PageCut(f"the page runs along {border:.0%} of the picture's edge")
    return order_corners(quad / f)


def _warp(gray: np.ndarray, corners: np.ndarray) -> np.ndarray:
    tl, tr, br, bl = corners
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    scale = min(MAX_WIDTH / width, max(1.0, MIN_WIDTH / width))
    size = (int(round(width * scale)), int(round(height * scale)))
    target = np.float32([[0, 0], [size[0] - 1, 0], [size[0] - 1, size[1] - 1], [0, size[1] - 1]])
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(gray, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def _resize_width(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    scale = min(MAX_WIDTH / w, max(1.0, MIN_WIDTH / w))
    if abs(scale - 1) < 0.02:
        return gray
    return cv2.resize(gray, (int(round(w * scale)), int(round(h * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def background(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness under the text (a grey closing larger than a character, smoothed), float32."""
    h, w = gray.shape
    small = cv2.resize(gray, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    k = max(5, small.shape[1] // 60) | 1
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    closed = cv2.GaussianBlur(closed, (0, 0), k / 2)
    return cv2.resize(closed, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def flatten(gray: np.ndarray, bg: np.ndarray | None = None) -> np.ndarray:
    """``gray`` divided by its background and stretched so that paper is white and ink dark."""
    bg = background(gray) if bg is None else bg
    ratio = gray.astype(np.float32) / np.maximum(bg, 1.0)
    ink = float(np.percentile(ratio[::4, ::4], 0.5))
    out = (ratio - ink) / max(0.98 - ink, 0.05) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def skew_angle(page: np.ndarray, limit: float = 4.0) -> float:
    """The rotation (degrees counter-clockwise, as ``cv2.getRotationMatrix2D`` takes it) that levels the
    text: the most peaked row projection of dark strokes within ±``limit`` degrees."""
    h, w = page.shape
    f = 600 / w
    small = cv2.resize(page, (600, max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    ink = small < 128
    ys, xs = np.nonzero(ink)
    if len(ys) < 50:
        return 0.0
    if len(ys) > 40000:
        keep = slice(None, None, len(ys) // 40000 + 1)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64) - 300

    def score(a: float) -> float:
        rows = np.rint(ys - xs * np.tan(np.deg2rad(a)) + 400).astype(np.int64)
        return float(np.sum(np.bincount(rows).astype(np.float64) ** 2))

    coarse = max(np.arange(-limit, limit + 0.01, 0.5), key=score)
    return float(max(np.arange(coarse - 0.5, coarse + 0.51, 0.1), key=score))


def _rotate(page: np.ndarray, angle: float) -> np.ndarray:
    h, w = page.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(page, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)


CURL_MIN = 5.0
"""Least bend (pixels, peak to peak across the corrected page) of the text lines that :func:`dewarp`
straightens. Flat generated pages measure up to about 4 px (the fit's own noise) and the text-line
detector reads a bend of a few pixels as it is; below this, remapping would only soften the print."""


def _text_rows(page: np.ndarray) -> list[np.ndarray]:
    """Centre lines of the long runs of text on a reduced page: for each, an array of (x, y) samples."""
    ink = (page < 160).astype(np.uint8)
    h, w = ink.shape
    # drop table rules running down the page (they would join every row of a table into one blob)
    ink &= 1 - cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(20, h // 30))))
    # join the characters of a line, not the lines: wide and flat
    joined = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (max(9, w // 60), 1)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    rows = []
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        if bw < w / 30 or bh > h / 30 or bh < 3 or bw < 3 * bh:
            continue
        sub = (labels[y:y + bh, x:x + bw] == k) & (ink[y:y + bh, x:x + bw] > 0)
        count = sub.sum(axis=0)
        cols = np.nonzero(count >= 1)[0]
        if len(cols) < bw / 3:
            continue
        ys = (sub[:, cols] * np.arange(bh)[:, None]).sum(axis=0) / count[cols] + y
        # median of bins of 6 columns: the centre of the ink, steady across letters of different shapes
        xs = cols + x
        bins = xs // 6
        pts = [(float(xs[bins == b].mean()), float(np.median(ys[bins == b]))) for b in np.unique(bins)]
        if len(pts) >= 4:
            rows.append(np.array(pts))
    return rows


def curl_field(page: np.ndarray, width: int = 800) -> tuple[np.ndarray, float] | None:
    """The vertical bend of the text lines of ``page``: coefficients of a smooth field ``dy(x, y)`` (cubic
    in x, quadratic in y, in coordinates scaled to 0–1) and its peak-to-peak size in page pixels; None when
    fewer than eight runs of text are found.

    Every long run of text (rules included) gives the centre of its ink along x; each row's own height
    is a free unknown, so only the bend common to neighbouring rows is fitted (least squares)."""
    h, w = page.shape
    f = width / w
    small = cv2.resize(page, (width, max(1, int(round(h * f)))), interpolation=cv2.INTER_AREA)
    rows = _text_rows(small)
    if len(rows) < 8:
        return None
    sh, sw = small.shape
    a_rows, b = [], []
    for k, pts in enumerate(rows):
        u = pts[:, 0] / sw - 0.5
        v = np.full(len(pts), pts[:, 1].mean() / sh)
        basis = _basis(u, v)
        onehot = np.zeros((len(pts), len(rows)))
        onehot[:, k] = 1.0
        a_rows.append(np.hstack([basis, onehot]))
        b.append(pts[:, 1])
    a, y = np.vstack(a_rows), np.concatenate(b)
    nb = _basis(np.zeros(1), np.zeros(1)).shape[1]
    coef = _ridge(a, y, nb)
    # refit without the samples that disagree (table rules meeting text, underlines)
    resid = np.abs(a @ coef - y)
    keep = resid <= max(1.0, 2.5 * float(np.median(resid)))
    coef = _ridge(a[keep], y[keep], nb)
    field = coef[:nb] / f
    uu, vv = np.meshgrid(np.linspace(-0.5, 0.5, 25), np.linspace(0, 1, 25))
    bend = _basis(uu.ravel(), vv.ravel()) @ field
    bend = bend.reshape(25, 25)
    size = float((bend.max(axis=1) - bend.min(axis=1)).max())
    return field, size


def _ridge(a: np.ndarray, y: np.ndarray, nb: int, lam: float = 1.0) -> np.ndarray:
    """Least squares with the first ``nb`` (field) coefficients pulled towards zero: a bend that the text
    does not show clearly is not invented."""
    reg = np.zeros((nb, a.shape[1]))
    reg[:, :nb] = np.sqrt(lam) * np.eye(nb)
    return np.linalg.lstsq(np.vstack([a, reg]), np.concatenate([y, np.zeros(nb)]), rcond=None)[0]


def _basis(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth bends along x (no constant: a row's own height is separate), varying down the page."""
    cols = [u ** i * v ** j for j in range(3) for i in range(1, 4)]
    return np.stack(cols, axis=1)


def dewarp(page: np.ndarray) -> tuple[np.ndarray, float]:
    """``page`` with its curled text lines straightened, and the bend removed (pixels); the page itself
    and 0.0 when the lines bend less than :data:`CURL_MIN` (or too few are found to tell)."""
    found = curl_field(page)
    if found is None or found[1] < CURL_MIN:
        return page, 0.0
    field, size = found
    h, w = page.shape
    # the field is smooth: evaluate it on a coarse grid and let OpenCV interpolate the remap
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 64), np.linspace(0, h - 1, 64))
    dy = (_basis((gx / w - 0.5).ravel(), (gy / h).ravel()) @ field).reshape(64, 64).astype(np.float32)
    dy = cv2.resize(dy, (w, h), interpolation=cv2.INTER_CUBIC)
    map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_y += dy
    flat = cv2.remap(page, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    logger.debug("curl of %.1f px straightened", size)
    return flat, size


def sharpness(page: np.ndarray) -> float:
    """How much of the print's edge contrast a further blur would remove (0 = already blurred, about 0.8
    for crisp print): the share of horizontal and vertical pixel differences near ink that a 9-pixel box
    filter takes away, measured on the corrected page (whose text is 20–40 pixels high)."""
    bands = [page[y:y + 64] for y in range(0, page.shape[0], 128)]  # half the page, in bands
    small = cv2.medianBlur(np.ascontiguousarray(np.vstack(bands)), 3).astype(np.float32)
    near_ink = cv2.dilate((small < 160).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if near_ink.sum() < 100:
        return 0.0
    total = 0.0
    lost = 0.0
    for axis, kernel in ((1, (9, 1)), (0, (1, 9))):
        d = np.abs(np.diff(small, axis=axis))
        db = np.abs(np.diff(cv2.blur(small, kernel), axis=axis))
        m = near_ink[:, 1:] if axis == 1 else near_ink[1:, :]
        total += float(d[m].sum())
        lost += float(np.maximum(0, d - db)[m].sum())
    return lost / max(total, 1.0)


def correct_page(frame: np.ndarray, straighten: bool = False) -> CapturedPage:
    """The corrected, flattened page in ``frame`` (BGR or grey ``uint8``); with ``straighten``, curled
    text lines are straightened too (:func:`dewarp`; off by default: on the generated pages neither
    reader gained from it, see docs/reports.md).

    Raises :class:`TooDark`, :class:`TooBlurred`, :class:`NoText` or :class:`PageCut` (all
    :class:`CaptureRejected`) for a frame that cannot be read.
    """
    gray = to_gray(frame)
    if min(gray.shape) < 200:
        raise NoText(f"the image is only {gray.shape[1]}x{gray.shape[0]} pixels")
    notes: list[str] = []
    corners = find_page(gray)
    if corners is None:
        notes.append("page edges not found: whole frame used")
        raw = _resize_width(gray)
    else:
        raw = _warp(gray, corners)
    brightness = float(np.percentile(raw[::4, ::4], 90))
    if brightness < DARK_LEVEL:
        raise TooDark(f"page brightness {brightness:.0f} of 255")
    bg = background(raw)
    page = flatten(raw, bg)
    contrast = float(np.percentile(raw[::4, ::4], 95) - np.percentile(raw[::4, ::4], 0.5))
    if contrast < 25 or float((page[::4, ::4] < 128).mean()) < 0.002:
        raise NoText(f"contrast {contrast:.0f}, no dark print")
    sharp = sharpness(page)
    if sharp < SHARPNESS_MIN:
        raise TooBlurred(f"edge sharpness {sharp:.2f} (needs {SHARPNESS_MIN})")
    angle = skew_angle(page)
    if abs(angle) >= 0.2:
        page = _rotate(page, angle)
    page, bend = dewarp(page) if straighten else (page, 0.0)
    if bend:
        notes.append(f"curl of {bend:.0f} px straightened")
    if brightness < 1.6 * DARK_LEVEL:
        notes.append("dim light")
    logger.debug("page %dx%d, corners %s, skew %.1f, brightness %.0f, sharpness %.2f", page.shape[1],
                 page.shape[0], "found" if corners is not None else "none", angle, brightness, sharp)
    return CapturedPage(page, corners, angle, brightness, sharp, tuple(notes))
