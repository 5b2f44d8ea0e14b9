"""Text lines of a corrected page read by PP-OCR's detection and recognition models on ONNX Runtime.

:class:`PpOcrLines` is the :class:`~edge.reports.page.LineRecognizer` of the box. Three models from
PaddleOCR (PP-OCRv4 mobile, Apache-2.0; see ``models_tflite/manifest.toml`` and
``models_tflite/convert_ppocr.py``) do the work:

1. **Detection** (DB, differentiable binarisation): the page, reduced so that its longer side is at most
   :data:`DET_SIDE` pixels, gives a text probability map; the map thresholded at :data:`DET_THRESH` falls
   into connected regions, each a text line. A region's rotated rectangle, scored by the mean probability
   inside it (kept from :data:`BOX_THRESH`) and grown by ``area × UNCLIP / perimeter`` on every side (what
   PaddleOCR does with a polygon offset; for a rectangle the offset is exact), is the line's quadrilateral.
   A long region whose rectangle scores too low but whose own outline scores :data:`SHAPE_THRESH` (a name
   joined to the faint dots of its leader) is kept, and only its strong part is read. The detector runs
   on bands of :data:`DET_BAND` rows (:meth:`PpOcrLines.probability_map`), which bounds its memory.
2. **Orientation**, once per page: the angle classifier reads up to :data:`CLS_SAMPLE` of the widest
   lines; when most of them are upside down the page is read turned by 180° (and the boxes are those of
   the turned page, see :attr:`PpOcrLines.last_rotation`). Per line, it is not run.
3. **Recognition** (SVTR-LCNet with CTC): each line is cut out (straight when its rectangle is level,
   warped when it is not), scaled to 48 pixels high, and the lines, sorted by width, are read in batches
   of similar width (little padding). CTC decoding with the model's own dictionary (6623 characters,
   stored in the model's metadata) gives the text, the confidence (mean probability of the characters
   kept) and each character's position on the page.

Sessions are made once per :class:`PpOcrLines` and reused; ONNX Runtime runs with ``threads``
intra-op threads (1 on the box, where several workers share the cores). An instance is not meant to
be shared between threads: one worker, one reader.

Example::

    from edge.reports.textlines import PpOcrLines
    reader = PpOcrLines()
    for line in reader.read_lines(page):      # page: corrected grey or BGR uint8 image
        print(line.box, line.text, line.conf)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.reports.page import Box, TextLine
from models_tflite.loader import verified_path

logger = logging.getLogger(__name__)

DET_MODEL = "ppocr_det"
REC_MODEL = "ppocr_rec"
CLS_MODEL = "ppocr_cls"

DET_SIDE = 960
"""Longest side of the page given to the detector (a multiple of 32); a larger page is reduced."""
DET_BAND = 512
"""Rows of the detector's input run at once (a multiple of 32; 0: the whole page in one run)."""
DET_OVERLAP = 64
"""Rows two neighbouring detector bands share (a multiple of 32, more than a text line's height)."""
DET_THRESH = 0.3
"""Probability from which a pixel of the detection map is text."""
BOX_THRESH = 0.5
"""Least mean probability inside a detected line's rectangle."""
SHAPE_THRESH = 0.6
"""Least mean probability inside a region's own outline, for a region whose rectangle scores below
:data:`BOX_THRESH`: a name trailing a leader of faint dots tapers, so its rectangle is mostly empty
(PaddleOCR's ``score_mode="slow"`` scores every region this way, from 0.6)."""
THICK_SHARE = 0.75
"""Of a long region, the columns holding at least this share of the greatest column's probability mass are
the text read."""
TAIL_SHARE = 0.85
"""A long region whose thick part is shorter than this share of it has a tail (a leader) to drop."""
SHAPE_ASPECT = 3.0
"""Least length-to-height ratio of a region scored by its outline: a name with its leader is long; a
compact region below :data:`BOX_THRESH` (a faint arrow, a speck of a stamp) stays out."""
UNCLIP = 1.6
"""How much a detected region is grown (DB shrinks text regions during training)."""
MIN_SIDE = 3
"""Smallest side (detection map pixels) of a region worth reading; smaller specks are dropped."""
MIN_HEIGHT = 8
"""Least height (page pixels) of a line worth reading."""
REC_HEIGHT = 48
"""Height of a line given to the recogniser."""
REC_BATCH = 12
"""Most lines read in one recogniser run."""
REC_BATCH_WIDTH = 4800
"""Most line-image pixels (width at 48 high, padding included) read in one recogniser run: bounds the
memory of one run (the output alone is 4 bytes × 6625 classes per 8 pixels of width)."""
REC_MAX_WIDTH = 1600
"""Widest line image read at once (pixels, at 48 high); wider lines are reduced."""
CLS_SAMPLE = 8
"""Lines the angle classifier looks at to decide whether a page is upside down."""
CLS_THRESH = 0.9
"""Confidence from which the classifier's "180°" counts."""


class TextLineError(RuntimeError):
    """The text-line models cannot be used (missing runtime or model)."""


@dataclass
class StageTimes:
    """Seconds spent in each stage of the last page read (for ``bench/``)."""

    detect: float = 0.0
    classify: float = 0.0
    recognise: float = 0.0
    lines: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def _session(name: str, threads: int, model_dir: Path | None = None) -> Any:
    """An ONNX Runtime session for the manifest model ``name`` (hash checked)."""
    path = verified_path(name, model_dir)
    sess = session_for(path, threads)
    logger.info("loaded model %s (%s) with %s thread(s)", name, path.name, threads)
    return sess


_shared_arena_lock = threading.Lock()
_shared_arena = False


def _register_shared_arena(ort: Any) -> bool:
    """Register one CPU arena with ONNX Runtime's environment, once per process, for every session to use.

    Three sessions (detection, classifier, recogniser) with an arena each keep three sets of freed blocks;
    one shared arena keeps one (bench/ocr.py: peak resident memory 539 → 458 MB, same text).
    False when this runtime cannot (each session then keeps its own arena)."""
    global _shared_arena
    with _shared_arena_lock:
        if not _shared_arena:
            try:
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, None)
                _shared_arena = True
            except Exception as exc:  # an older runtime, or one built without it: per-session arenas
                logger.warning("shared ONNX Runtime arena unavailable (%s); sessions keep their own", exc)
                return False
        return True


def session_for(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime session for the model file ``path`` as the box runs it: full graph optimisation,
    ``threads`` intra-op threads, one inference at a time, memory patterns off and one memory arena shared
    by every session of the process. The file is not checked here: :func:`_session` checks a manifest
    model before calling it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TextLineError("onnxruntime is not installed") from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    # Every page and batch has a new input shape, so planned memory patterns never repeat. The arena stays:
    # without it a worker runs 1.9 instead of 3.7 s per page (glibc's heap) or grows past 400 MB (glibc
    # keeping the freed blocks); with it, it stays about 350 MB (bench/ocr_runtime.py). The one arena is shared
    # by the three sessions (_register_shared_arena); an arena growing only as requested (OrtArenaCfg
    # strategy 1) measured the same peak, so the default strategy stays.
    opts.enable_mem_pattern = False
    if _register_shared_arena(ort):
        opts.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _bgr(page: np.ndarray) -> np.ndarray:
    if not isinstance(page, np.ndarray) or page.dtype != np.uint8 or page.ndim not in (2, 3):
        raise ValueError("page must be a uint8 HxW or HxWx3 array")
    if page.ndim == 2:
        return cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)
    if page.shape[2] == 4:
        return cv2.cvtColor(page, cv2.COLOR_BGRA2BGR)
    return page


def _normalise(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 → 3xHxW float32 in [-1, 1] (PaddleOCR's mean 0.5, std 0.5)."""
    return (img.astype(np.float32).transpose(2, 0, 1) * (2.0 / 255.0)) - 1.0


def det_size(h: int, w: int, side: int = DET_SIDE) -> tuple[int, int]:
    """Detector input size (height, width): at most ``side`` on the longer side, multiples of 32."""
    f = min(1.0, side / max(h, w))
    return max(32, int(round(h * f / 32)) * 32), max(32, int(round(w * f / 32)) * 32)


def _box_score(prob: np.ndarray, rect: np.ndarray) -> float:
    """Mean probability inside the quadrilateral or outline ``rect`` (map pixels)."""
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(rect.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(rect.max(axis=0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [(rect - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def _order_quad(pts: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left (for a line: along its baseline)."""
    pts = pts[np.argsort(pts[:, 0])]
    left, right = pts[:2], pts[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.float32([tl, tr, br, bl])


def _thick_part(prob: np.ndarray, bitmap: np.ndarray, contour: np.ndarray) -> tuple | None:
    """The rotated rectangle of the strong part of a long region (the name, without the fainter, thinner
    leader trailing it): the span of columns whose probability mass reaches :data:`THICK_SHARE` of the
    greatest. None when that part is a speck."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour - [x, y]], 1)
    mask &= bitmap[y:y + h, x:x + w]
    mass = (prob[y:y + h, x:x + w] * mask).sum(axis=0)
    cols = np.nonzero(mass >= THICK_SHARE * mass.max())[0]
    ys, xs = np.nonzero(mask[:, cols[0]:cols[-1] + 1])
    if len(xs) < 4:
        return None
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(np.column_stack([xs + x + cols[0], ys + y]).astype(np.float32))
    return None if min(rw, rh) < MIN_SIDE else ((cx, cy), (rw, rh), angle)


def boxes_from_map(prob: np.ndarray, scale_x: float, scale_y: float, page_w: int, page_h: int,
                   *, thresh: float = DET_THRESH, box_thresh: float = BOX_THRESH,
                   shape_thresh: float = SHAPE_THRESH, unclip: float = UNCLIP) -> list[np.ndarray]:
    """The text-line quadrilaterals (tl, tr, br, bl, page pixels) of a DB probability map. A region is
    kept when the mean probability in its rectangle reaches ``box_thresh`` or, for a long tapering region
    (a name and its dotted leader), the mean in its own outline reaches ``shape_thresh``; of such a region
    only the thick part (the name) is kept."""
    bitmap = (prob > thresh).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    quads = []
    for contour in contours:
        if len(contour) < 4:
            continue
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < MIN_SIDE:
            continue
        long = max(rw, rh) >= SHAPE_ASPECT * min(rw, rh)
        if _box_score(prob, cv2.boxPoints(((cx, cy), (rw, rh), angle))) < box_thresh and (
                not long or _box_score(prob, contour[:, 0, :].astype(np.float32)) < shape_thresh):
            continue
        if long:  # a name trailing its leader: the name alone is read (a lone character gets lost in dots)
            thick = _thick_part(prob, bitmap, contour)
            if thick is None:
                continue
            if max(thick[1]) < TAIL_SHARE * max(rw, rh):
                (cx, cy), (rw, rh), angle = thick
        d = rw * rh * unclip / (2 * (rw + rh))
        rw, rh = rw + 2 * d, rh + 2 * d
        if min(rw, rh) < MIN_SIDE + 2:
            continue
        quad = _order_quad(cv2.boxPoints(((cx, cy), (rw, rh), angle)))
        quad[:, 0] = np.clip(quad[:, 0] * scale_x, 0, page_w - 1)
        quad[:, 1] = np.clip(quad[:, 1] * scale_y, 0, page_h - 1)
        quads.append(quad)
    return quads


def _crop(page: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, bool]:
    """The line image of ``quad``: a plain slice when the quadrilateral is level, else warped upright.
    Returns the image and whether it was turned by 90° (a line taller than wide)."""
    tl, tr, br, bl = quad
    w = int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
    h = int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))))
    w, h = max(w, 1), max(h, 1)
    if abs(tl[1] - tr[1]) < 1.0 and abs(tl[0] - bl[0]) < 1.0:
        x0, y0 = int(round(tl[0])), int(round(tl[1]))
        img = page[y0:y0 + h, x0:x0 + w]
    else:
        dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
        img = cv2.warpPerspective(page, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if img.shape[0] >= 1.5 * img.shape[1]:
        return np.ascontiguousarray(np.rot90(img)), True
    return img, False


def _scaled(img: np.ndarray, height: int = REC_HEIGHT, max_width: int = REC_MAX_WIDTH) -> np.ndarray:
    h, w = img.shape[:2]
    nw = min(max_width, max(8, int(math.ceil(w * height / h))))
    return cv2.resize(img, (nw, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def ctc_decode(probs: np.ndarray, chars: list[str]) -> tuple[str, float, list[int]]:
    """Greedy CTC decoding of one line's ``[T, C]`` probabilities: text, mean probability of the kept
    characters (0 when none) and the time step of each kept character."""
    idx = probs.argmax(axis=1)
    best = probs[np.arange(len(idx)), idx]
    keep = idx != 0
    keep[1:] &= idx[1:] != idx[:-1]
    steps = np.nonzero(keep)[0]
    if not len(steps):
        return "", 0.0, []
    text = "".join(chars[i] for i in idx[steps])
    return text, float(best[steps].mean()), steps.tolist()


class PpOcrLines:
    """PP-OCR text lines on ONNX Runtime (see the module's docstring).

    ``threads``: intra-op threads per model; ``det_side``: the detector's longest input side;
    ``det_band``: rows of the detector's input per run (0: all at once); ``classify``: whether to check once
    per page if it is upside down; ``model_dir``: where non-bundled models live (all three are bundled).
    """

    def __init__(self, *, threads: int = 1, det_side: int = DET_SIDE, det_band: int = DET_BAND,
                 classify: bool = True, model_dir: Path | None = None, det_model: str = DET_MODEL,
                 rec_model: str = REC_MODEL, cls_model: str = CLS_MODEL) -> None:
        self.det_side = int(det_side)
        self.det_band = int(det_band)
        self.classify = classify
        self.det = _session(det_model, threads, model_dir)
        self.rec = _session(rec_model, threads, model_dir)
        self.cls = _session(cls_model, threads, model_dir) if classify else None
        keys = self.rec.get_modelmeta().custom_metadata_map.get("character", "")
        if not keys:
            raise TextLineError(f"model {rec_model!r} carries no character dictionary")
        self.chars = ["<blank>", *keys.splitlines(), " "]
        out = self.rec.get_outputs()[0].shape[-1]
        if isinstance(out, int) and out != len(self.chars):
            raise TextLineError(f"dictionary has {len(self.chars)} classes, the model {out}")
        self.times = StageTimes()
        self.last_rotation = 0
        """180 when the last page was read turned (it was upside down), else 0."""

    # -- stages ----------------------------------------------------------------------------------------

    def detect(self, page: np.ndarray) -> list[np.ndarray]:
        """Quadrilaterals (tl, tr, br, bl; page pixels) of the text lines on ``page`` (BGR)."""
        h, w = page.shape[:2]
        dh, dw = det_size(h, w, self.det_side)
        img = cv2.resize(page, (dw, dh), interpolation=cv2.INTER_AREA if dw < w else cv2.INTER_LINEAR)
        prob = self.probability_map(img)
        quads = boxes_from_map(prob, w / dw, h / dh, w, h)
        return [q for q in quads if max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1])) >= MIN_HEIGHT
                or max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3])) >= 3 * MIN_HEIGHT]

    def probability_map(self, img: np.ndarray) -> np.ndarray:
        """The detector's text probability map of ``img`` (BGR, sides multiples of 32), run in horizontal
        bands of at most :attr:`det_band` rows that overlap by :data:`DET_OVERLAP`: each band gives the
        rows nearer its own middle. The detector's working memory follows the input's area, so bands
        hold the process's peak to that of one band. The map is close to the whole page's, not equal: the
        detector's squeeze-and-excitation blocks pool over their whole input."""
        name = self.det.get_inputs()[0].name
        h = img.shape[0]
        band = self.det_band
        if band <= 0 or h <= band:
            return self.det.run(None, {name: _normalise(img)[None]})[0][0, 0]
        prob = np.empty(img.shape[:2], np.float32)
        start = top = 0  # the band's first row; the first row of the map not yet filled
        while True:
            end = min(h, start + band)
            part = self.det.run(None, {name: _normalise(img[start:end])[None]})[0][0, 0]
            keep = h if end == h else end - DET_OVERLAP // 2
            prob[top:keep] = part[top - start:keep - start]
            if end == h:
                return prob
            start, top = end - DET_OVERLAP, keep

    def upside_down(self, crops: list[np.ndarray]) -> bool:
        """Whether most of the widest line images are upside down (the angle classifier)."""
        if self.cls is None or not crops:
            return False
        widest = sorted(crops, key=lambda c: c.shape[1] / c.shape[0], reverse=True)[:CLS_SAMPLE]
        batch = np.zeros((len(widest), 3, 48, 192), np.float32)
        for i, crop in enumerate(widest):
            img = _scaled(crop, 48, 192)
            batch[i, :, :, :img.shape[1]] = _normalise(img)
        probs = self.cls.run(None, {self.cls.get_inputs()[0].name: batch})[0]
        flipped = int(((probs.argmax(axis=1) == 1) & (probs[:, 1] >= CLS_THRESH)).sum())
        return flipped * 2 > len(widest)

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float, list[float]]]:
        """Text, confidence and character centres (as shares of the crop's width) of each line image."""
        scaled = [_scaled(c) for c in crops]
        order = sorted(range(len(scaled)), key=lambda i: scaled[i].shape[1])
        results: list[tuple[str, float, list[float]]] = [("", 0.0, [])] * len(scaled)
        name = self.rec.get_inputs()[0].name
        start = 0
        while start < len(order):
            first = scaled[order[start]].shape[1]
            end = start + 1
            while end < len(order) and end - start < REC_BATCH and scaled[order[end]].shape[1] <= 1.25 * first + 16 \
                    and (end - start + 1) * scaled[order[end]].shape[1] <= REC_BATCH_WIDTH:
                end += 1
            group = order[start:end]
            width = max(scaled[i].shape[1] for i in group)
            width = int(math.ceil(width / 8)) * 8
            batch = np.zeros((len(group), 3, REC_HEIGHT, width), np.float32)
            for k, i in enumerate(group):
                batch[k, :, :, :scaled[i].shape[1]] = _normalise(scaled[i])
            probs = self.rec.run(None, {name: batch})[0]
            for k, i in enumerate(group):
                text, conf, steps = ctc_decode(probs[k], self.chars)
                per_step = width / probs.shape[1]
                frac = [min(1.0, (s + 0.5) * per_step / scaled[i].shape[1]) for s in steps]
                results[i] = (text, conf, frac)
            start = end
        return results

    # -- the page --------------------------------------------------------------------------------------

    def read_lines(self, page: np.ndarray) -> list[TextLine]:
        """Every text line on ``page`` (corrected grey or BGR ``uint8``), with box, text and confidence.

        When the page is upside down it is read turned by 180° and the boxes are those of the turned page
        (:attr:`last_rotation` is then 180).
        """
        img = _bgr(page)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        quads = self.detect(img)
        t1 = time.perf_counter()
        cut = [_crop(img, q) for q in quads]
        crops = [c for c, _ in cut]
        self.last_rotation = 0
        if self.upside_down(crops):
            self.last_rotation = 180
            logger.info("page is upside down: reading it turned by 180 degrees")
            crops = [np.ascontiguousarray(c[::-1, ::-1]) for c in crops]
            quads = [np.float32([[w - 1 - x, h - 1 - y] for x, y in q[[2, 3, 0, 1]]]) for q in quads]
        t2 = time.perf_counter()
        read = self.recognise(crops) if crops else []
        t3 = time.perf_counter()
        lines = []
        for quad, (_, turned), (text, conf, frac) in zip(quads, cut, read):
            if not text.strip():
                continue
            x0, y0 = np.floor(quad.min(axis=0)).astype(int)
            x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
            box = Box(int(x0), int(y0), int(min(x1, w) - x0), int(min(y1, h) - y0))
            if turned:
                char_x: tuple[float, ...] = tuple(float(box.x + box.w / 2) for _ in frac)
            else:
                top = quad[0] + np.outer(frac, quad[1] - quad[0]) if frac else np.zeros((0, 2))
                bottom = quad[3] + np.outer(frac, quad[2] - quad[3]) if frac else np.zeros((0, 2))
                char_x = tuple(float(v) for v in (top[:, 0] + bottom[:, 0]) / 2)
            lines.append(TextLine(text=text, conf=min(1.0, max(0.0, conf)), box=box,
                                  quad=tuple((float(x), float(y)) for x, y in quad), char_x=char_x))
        self.times = StageTimes(detect=t1 - t0, classify=t2 - t1, recognise=t3 - t2, lines=len(lines))
        logger.debug("read %d lines: detect %.2fs, classify %.2fs, recognise %.2fs", len(lines), t1 - t0,
                     t2 - t1, t3 - t2)
        return lines
