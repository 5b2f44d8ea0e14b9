"""Reading the machine-readable zone of a passport or ID card from a camera frame with Tesseract.

:class:`MrzReader` works in three steps, with numpy and Pillow only (no OpenCV on the box):

1. **Locate.** The frame is reduced to about 640 pixels wide; a black-hat (grey closing minus the
   image, separable 7x5 max/min filters) keeps dark strokes thinner than a character on a light
   ground, thresholded against its brightest 0.5 %. The text's skew is the angle (within ±8 degrees)
   whose row projection of those pixels is the most peaked (sum of squared row counts, so long dense
   lines such as the zone's weigh most). In the deskewed mask, characters are joined by a horizontal
   box filter, and every row's longest run gives text bands. Two or three bands of the same extent,
   height and spacing, 12 to 90 times as long as high, are a zone candidate (three lines first, then
   the lowest). The candidate's own skew is measured again (±2.5 degrees) and its bands found anew.
2. **Cut out the lines.** Each line is cut from the full-resolution grey image with one affine
   transform (rotation and upscaling to a 40-pixel character height), straightened by the slope of
   its ink centroids (this takes up slight perspective), trimmed to its ink with a margin,
   flat-fielded (divided by a grey closing) and binarised with Otsu's threshold.
3. **Read.** Each line goes to Tesseract as a single text line (``PSM.SINGLE_LINE``, LSTM, characters
   ``A-Z0-9<`` only, no dictionaries). Characters are put in their columns by their boxes against the
   glyphs' positions (the zone is monospaced), so a ``<`` dropped from a long filler run does not
   shift the rest; a ``K`` whose glyph is a chevron is a ``<``. The line width (30, 36 or 44) follows
   from the number of lines and the character pitch. The text is parsed and corrected by
   :func:`edge.documents.mrz.parse_mrz`. A nearly valid zone is read again at other scales (and the
   readings mixed line by line); a candidate that gives no valid zone makes way for the next one (at
   most ``max_candidates``).

**Model.** With ``tessdata`` set to a folder holding ``mrz.traineddata`` (an LSTM model trained on
OCR-B zones), the reader uses language ``mrz``. Tesserocr takes one tessdata folder, so when that
folder has no ``eng.traineddata`` a folder is built in the cache directory with links to both models.
Without the model (unset, or the file missing) the reader falls back to the system's ``eng`` with the
same whitelist, which reads clean zones but often takes a ``<`` for ``K``; the log says which model is
used.

A reader holds one ``PyTessBaseAPI`` (initialising one costs about 100 ms) and is **not thread-safe**:
one thread owns a reader; give each camera thread its own.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import string
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge.config.documents import MrzSettings
from edge.documents.mrz import MrzError, MrzResult, parse_mrz
from edge.imageprep import check_frame, to_gray

logger = logging.getLogger(__name__)

MRZ_MODEL = "mrz.traineddata"
WHITELIST = string.ascii_uppercase + string.digits + "<"
SYSTEM_TESSDATA = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                   "/usr/share/tessdata", "/usr/local/share/tessdata")
"""Where Debian and source builds put ``eng.traineddata`` (after ``$TESSDATA_PREFIX``)."""

CHAR_HEIGHT = 40
"""Character height, in pixels, of the line images given to Tesseract."""
RETRY_HEIGHTS = (32, 48)
"""Character heights a nearly valid zone is read again at."""


class MrzModelError(RuntimeError):
    """No usable Tesseract model: neither the MRZ model nor the system ``eng`` could be loaded."""


@dataclass(frozen=True, slots=True)
class MrzTimings:
    """Where the time of the last :meth:`MrzReader.read` went (milliseconds), and how many candidates were read."""

    locate_ms: float = 0.0
    ocr_ms: float = 0.0
    total_ms: float = 0.0
    candidates: int = 0


# -- image helpers ----------------------------------------------------------------------------------------

def _shift_reduce(a: np.ndarray, radius: int, axis: int, op: np.ufunc) -> np.ndarray:
    """Running max or min (``op``) over ``2 * radius + 1`` pixels along ``axis`` (edges use what exists)."""
    out = a.copy()
    for s in range(1, radius + 1):
        if axis == 1:
            op(out[:, s:], a[:, :-s], out=out[:, s:])
            op(out[:, :-s], a[:, s:], out=out[:, :-s])
        else:
            op(out[s:], a[:-s], out=out[s:])
            op(out[:-s], a[s:], out=out[:-s])
    return out


def grey_closing(gray: np.ndarray, rx: int, ry: int) -> np.ndarray:
    """Grey closing (max then min filter) with a ``(2 rx + 1) x (2 ry + 1)`` rectangle."""
    dil = _shift_reduce(_shift_reduce(gray, rx, 1, np.maximum), ry, 0, np.maximum)
    return _shift_reduce(_shift_reduce(dil, rx, 1, np.minimum), ry, 0, np.minimum)


def blackhat(gray: np.ndarray, rx: int = 3, ry: int = 2) -> np.ndarray:
    """Dark strokes thinner than the rectangle, as ``int16`` contrast (closing minus image)."""
    return grey_closing(gray, rx, ry).astype(np.int16) - gray


def box_sum_rows(mask: np.ndarray, radius: int) -> np.ndarray:
    """Sum of ``mask`` over ``2 * radius + 1`` pixels along each row (zero outside)."""
    c = np.cumsum(np.pad(mask.astype(np.int32), ((0, 0), (radius + 1, radius))), axis=1)
    return c[:, 2 * radius + 1:] - c[:, :-2 * radius - 1]


def otsu(gray: np.ndarray) -> int:
    """Otsu's threshold of a ``uint8`` image."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 128
    w0 = np.cumsum(hist)
    m = np.cumsum(hist * np.arange(256))
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m[-1] * w0 - m * total) ** 2 / (w0 * w1)
    return int(np.nanargmax(between[:-1]))


def skew_angle(mask: np.ndarray, low: float, high: float, step: float) -> float:
    """The angle (degrees, counter-clockwise as :meth:`PIL.Image.Image.rotate` takes it) that lines up the
    set pixels of ``mask`` in rows best: the most peaked row projection over ``low..high``."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 20:
        return 0.0
    if len(ys) > 12000:
        keep = slice(None, None, len(ys) // 12000 + 1)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)
    offset = mask.shape[1] * np.tan(np.deg2rad(max(abs(low), abs(high)))) + 1
    best, best_score = 0.0, -1.0
    for angle in np.arange(low, high + step / 2, step):
        rows = np.rint(ys - xs * np.tan(np.deg2rad(angle)) + offset).astype(np.int64)
        score = float(np.sum(np.bincount(rows).astype(np.float64) ** 2))
        if score > best_score:
            best, best_score = float(angle), score
    return best


# -- locating ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Band:
    """A text line in the deskewed work image: rows ``y0..y1`` (inclusive), columns ``x0..x1``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def length(self) -> int:
        return self.x1 - self.x0


@dataclass(frozen=True, slots=True)
class ZoneCandidate:
    """Two or three bands that may be a zone, in the work image (``work_size`` = width, height; one work
    pixel is ``step`` x ``step`` frame pixels) rotated by ``angle`` degrees about its centre."""

    bands: tuple[Band, ...]
    angle: float
    step: int = 1
    work_size: tuple[int, int] = (0, 0)


def _longest_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: length, start and end (exclusive) of the longest run of set pixels."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    sy, sx = np.nonzero(d == 1)
    _, ex = np.nonzero(d == -1)
    length = np.zeros(h, np.int64)
    start = np.zeros(h, np.int64)
    end = np.zeros(h, np.int64)
    if len(sy):
        runs = ex - sx
        order = np.lexsort((-runs, sy))
        rows, first = np.unique(sy[order], return_index=True)
        pick = order[first]
        length[rows], start[rows], end[rows] = runs[pick], sx[pick], ex[pick]
    return length, start, end


def text_bands(mask: np.ndarray, join: int, min_length: int) -> list[Band]:
    """Text lines in a deskewed stroke mask: runs of rows whose longest run of set pixels (characters
    joined over ``join`` pixels) is at least ``min_length``. A band's extent is that of its longest rows."""
    joined = box_sum_rows(mask, join) > 0
    length, start, end = _longest_runs(joined)
    long = length >= min_length
    bands = []
    y, h = 0, mask.shape[0]
    while y < h:
        if not long[y]:
            y += 1
            continue
        y0 = y
        while y < h and long[y]:
            y += 1
        rows = np.arange(y0, y)
        if len(rows) >= 2:
            top = rows[length[rows] >= np.percentile(length[rows], 50)]
            bands.append(Band(y0, y - 1, int(np.median(start[top])), int(np.median(end[top]))))
    return bands


def _aligned(a: Band, b: Band) -> bool:
    h = max(a.height, b.height)
    tol = 0.06 * max(a.length, b.length) + h
    gap = b.y0 - a.y1
    return (min(a.height, b.height) >= 0.45 * h and abs(a.x0 - b.x0) <= tol and abs(a.x1 - b.x1) <= tol
            and -1 <= gap <= 2.2 * h)


def zone_groups(bands: list[Band]) -> list[tuple[Band, ...]]:
    """Groups of 2 or 3 consecutive, aligned bands shaped like zone lines; three lines first, then the lowest."""
    groups: list[tuple[int, tuple[Band, ...]]] = []
    for i in range(len(bands)):
        for n in (3, 2):
            group = tuple(bands[i:i + n])
            if len(group) < n or not all(_aligned(a, b) for a, b in zip(group, group[1:])):
                continue
            height = float(np.mean([b.height for b in group]))
            if not all(12 <= b.length / height <= 90 for b in group):
                continue
            if n == 3 and len(group) == 3:
                gaps = [group[1].y0 - group[0].y1, group[2].y0 - group[1].y1]
                if abs(gaps[0] - gaps[1]) > 0.8 * height + 2:
                    continue
            groups.append((n * 10_000 + group[-1].y1, group))
    groups.sort(key=lambda g: -g[0])
    return [g for _, g in groups]


# -- the reader -------------------------------------------------------------------------------------------

def _system_tessdata(configured: str | None) -> Path | None:
    options = [configured] if configured else [os.environ.get("TESSDATA_PREFIX", ""), *SYSTEM_TESSDATA]
    for option in options:
        if option and (Path(option) / "eng.traineddata").is_file():
            return Path(option)
    return None


def _cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    return Path(systemd) if systemd else Path.home() / ".cache" / "ehc-edge"


def tessdata_folder(settings: MrzSettings) -> tuple[Path, str]:
    """The tessdata folder and language to use: (folder with ``mrz`` and ``eng``, ``"mrz"``) when the MRZ
    model is provisioned, else (the system folder, ``"eng"``). Raises :class:`MrzModelError` when neither
    exists."""
    system = _system_tessdata(settings.system_tessdata)
    model_dir = Path(settings.tessdata).expanduser() if settings.tessdata else None
    if model_dir is not None and (model_dir / MRZ_MODEL).is_file():
        if (model_dir / "eng.traineddata").is_file() or system is None:
            return model_dir, "mrz"
        combined = _cache_dir(settings.cache_dir) / "tessdata"
        try:
            combined.mkdir(parents=True, exist_ok=True)
            for name, source in ((MRZ_MODEL, model_dir / MRZ_MODEL), ("eng.traineddata", system / "eng.traineddata")):
                _link(source.resolve(), combined / name)
            return combined, "mrz"
        except OSError as exc:
            logger.warning("cannot build a tessdata folder in %s (%s); using %s alone", combined, exc, model_dir)
            return model_dir, "mrz"
    if model_dir is not None:
        logger.warning("no %s in %s", MRZ_MODEL, model_dir)
    if system is None:
        raise MrzModelError("no Tesseract model: set [mrz] tessdata to the folder holding mrz.traineddata, "
                            "or install tesseract-ocr-eng")
    return system, "eng"


def _link(source: Path, target: Path) -> None:
    """``target`` pointing at ``source`` (a symbolic link, or a copy where links are not allowed)."""
    if target.is_symlink() or target.exists():
        if target.resolve() == source:
            return
        target.unlink()
    try:
        target.symlink_to(source)
    except OSError:
        shutil.copyfile(source, target)


class MrzReader:
    """Finds and reads the machine-readable zone in camera frames (one instance per camera thread).

    ``read`` returns the parsed zone (check :attr:`MrzResult.valid` before trusting it), or None when no
    zone was found or its text has no zone shape. :attr:`model` is ``"mrz"`` or ``"eng"``;
    :attr:`last_timings` tells where the last read's time went. Not thread-safe.

    >>> with MrzReader(MrzSettings(tessdata="/opt/ehc/models/tessdata")) as reader:  # doctest: +SKIP
    ...     result = reader.read(frame)
    ...     if result is not None and result.valid:
    ...         print(result.document_type, result.issuing_country)
    """

    def __init__(self, settings: MrzSettings = MrzSettings()) -> None:
        import tesserocr

        self.settings = settings
        folder, self.model = tessdata_folder(settings)
        started = time.perf_counter()

        def load(folder: Path, lang: str) -> tesserocr.PyTessBaseAPI:
            return tesserocr.PyTessBaseAPI(
                path=str(folder) + os.sep, lang=lang, psm=tesserocr.PSM.SINGLE_LINE, oem=tesserocr.OEM.LSTM_ONLY,
                variables={"load_system_dawg": "0", "load_freq_dawg": "0", "load_punc_dawg": "0",
                           "load_number_dawg": "0", "load_unambig_dawg": "0", "load_bigram_dawg": "0"})

        try:
            self._api = load(folder, self.model)
        except RuntimeError as exc:
            system = _system_tessdata(settings.system_tessdata)
            if self.model != "mrz" or system is None:
                raise MrzModelError(f"Tesseract cannot load {self.model!r} from {folder}: {exc}") from None
            logger.error("Tesseract cannot load the MRZ model from %s (%s); falling back to eng", folder, exc)
            folder, self.model = system, "eng"
            self._api = load(folder, self.model)
        self._api.SetVariable("tessedit_char_whitelist", WHITELIST)
        self._api.SetVariable("user_defined_dpi", "300")
        self._ril_symbol = tesserocr.RIL.SYMBOL
        self.last_timings = MrzTimings()
        self.last_zone: np.ndarray | None = None  # corners of the last zone read (frame pixels), see zone_corners
        logger.info("MRZ reader uses Tesseract model %r from %s (%.0f ms to load)%s", self.model, folder,
                    (time.perf_counter() - started) * 1000,
                    "" if self.model == "mrz" else ": without the MRZ model fewer zones will read")

    def close(self) -> None:
        """Free Tesseract's memory; the reader cannot be used afterwards."""
        self._api.End()

    def __enter__(self) -> MrzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public -----------------------------------------------------------------------------------------

    def read(self, frame: np.ndarray) -> MrzResult | None:
        """The zone in ``frame`` (BGR ``HxWx3`` or grey ``HxW`` ``uint8``), or None if none was read.

        A result that is not :attr:`~MrzResult.valid` has at least half of its check digits right (a zone
        misread in places: read the next frame); text failing more of them is not reported.
        """
        started = time.perf_counter()
        gray = to_gray(check_frame(frame))
        candidates = self.locate(gray) if min(gray.shape) >= 64 else []
        located = time.perf_counter()
        best: MrzResult | None = None
        best_zone: ZoneCandidate | None = None
        tried = 0
        for candidate in candidates[:self.settings.max_candidates]:
            tried += 1
            result = self.read_zone(gray, candidate)
            if result is not None and (best is None or _score(result) > _score(best)):
                best, best_zone = result, candidate
            if best is not None and best.valid:
                break
        done = time.perf_counter()
        self.last_timings = MrzTimings((located - started) * 1000, (done - located) * 1000,
                                       (done - started) * 1000, tried)
        if best is not None and not best.valid and 2 * _score(best) < len(best.checks):
            best = None  # most check digits wrong: text that is not a zone, or a zone beyond reading
        self.last_zone = zone_corners(best_zone) if best is not None and best_zone is not None else None
        if best is not None:
            logger.debug("MRZ %s read, valid=%s, %d candidate(s), %.0f ms", best.format.value, best.valid, tried,
                         self.last_timings.total_ms)
        return best

    def locate(self, gray: np.ndarray) -> list[ZoneCandidate]:
        """Zone candidates in a grey frame, most likely first (coordinates of the reduced work image)."""
        step = max(1, gray.shape[1] // self.settings.work_width)
        small = np.asarray(Image.fromarray(gray).reduce(step)) if step > 1 else gray
        hat = blackhat(small)
        floor = float(np.percentile(hat, 99.5))
        if floor < 30:  # nothing dark and thin with real contrast: an empty or blurred-out frame
            return []
        mask = hat > max(12.0, 0.35 * floor)
        angle = skew_angle(mask, -8.0, 8.0, 0.5)
        angle = skew_angle(mask, angle - 0.5, angle + 0.5, 0.1)
        w = mask.shape[1]
        join, min_length = max(3, w // 64), w // 6
        rotated = self._rotated(mask, angle)
        bands = text_bands(rotated, join, min_length)
        # zone-like groups, and tall bands where lines may have merged because the zone's skew differs
        regions = zone_groups(bands) + [(b,) for b in bands if b.length < 12 * b.height and b.height >= 6]
        found: list[ZoneCandidate] = []
        for region in regions:
            for candidate in self._refine(mask, rotated, angle, region, join, min_length):
                if not any(_same_zone(candidate, other) for other in found):
                    found.append(candidate)
        found.sort(key=lambda c: (-len(c.bands), -c.bands[-1].y1))
        size = (small.shape[1], small.shape[0])
        return [ZoneCandidate(c.bands, c.angle, step, size) for c in found]

    @staticmethod
    def _rotated(mask: np.ndarray, angle: float) -> np.ndarray:
        """``mask`` rotated by ``angle`` degrees about its centre (nearest neighbour: 1 ms at 640 x 480)."""
        img = Image.fromarray(mask.astype(np.uint8) * 255)
        return np.asarray(img.rotate(angle, Image.Resampling.NEAREST)) > 0

    def _refine(self, mask: np.ndarray, rotated: np.ndarray, angle: float, region: tuple[Band, ...], join: int,
                min_length: int) -> list[ZoneCandidate]:
        """Zone candidates in ``region`` after measuring its own skew (perspective makes it differ from
        the page's)."""
        pad = max(b.height for b in region)
        y0, y1 = max(0, region[0].y0 - pad), region[-1].y1 + pad
        x0, x1 = max(0, min(b.x0 for b in region) - pad), max(b.x1 for b in region) + pad
        inside = np.zeros_like(rotated)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        residual = skew_angle(rotated & inside, -2.5, 2.5, 0.1)
        if abs(residual) < 0.15 and len(region) > 1:
            return [ZoneCandidate(region, angle)]
        total = angle + residual
        again = self._rotated(mask, total) & _grown(self._rotated(inside, residual), pad)
        bands = text_bands(again, join, min_length)
        return [ZoneCandidate(group, total) for group in zone_groups(bands)]

    def read_zone(self, gray: np.ndarray, candidate: ZoneCandidate) -> MrzResult | None:
        """OCR the candidate's lines from the full-resolution grey frame and parse them.

        A zone that reads but is not valid, with at least half of its check digits right, is read again
        at the :data:`RETRY_HEIGHTS`; every mix of the readings, line by line, is parsed, and the first
        valid one is kept (each reading is like another frame: a wrong line still has to pass its check
        digits).
        """
        readings: list[list[str]] = []
        width: int | None = None
        best: MrzResult | None = None
        for height in (CHAR_HEIGHT, *RETRY_HEIGHTS):
            images, symbols = [], []
            for band in candidate.bands:
                line = self._line_image(gray, candidate, band, height)
                if line is None:
                    return best
                images.append(line)
                symbols.append(self._ocr_line(line))
            width = width or _line_width(symbols)
            if width is None:
                return None
            lookalikes = FILLER_LOOKALIKES.get(self.model, "K")
            readings.append([_fit(s, width, image, lookalikes) for s, image in zip(symbols, images)])
            result = _best_mix(readings)
            if result is None:
                return best
            if best is None or _score(result) > _score(best):
                best = result
            if best.valid or 2 * _score(best) < len(best.checks):
                break
        return best

    # -- lines ------------------------------------------------------------------------------------------

    def _line_image(self, gray: np.ndarray, zone: ZoneCandidate, band: Band,
                    char_height: int) -> np.ndarray | None:
        """The band's text line, straight, ``char_height`` pixels high, trimmed, flat-fielded and binarised."""
        angle = zone.angle
        h = band.height
        scale = char_height / max(3.0, h * 1.1)
        margin_x, margin_y = 1.5 * h, 0.9 * h
        u0, v0 = band.x0 - margin_x, band.y0 - margin_y
        size = (int((band.length + 2 * margin_x) * scale), int((h + 2 * margin_y) * scale))
        crop = _warp(gray, zone, u0, v0, angle, scale, size)
        # straighten: slope of the ink centroids along the line
        ink = blackhat(crop, 4, 4).astype(np.float32)
        ink[ink < 0.35 * max(1.0, float(ink.max()))] = 0
        rows = np.arange(ink.shape[0], dtype=np.float32)[:, None]
        chunks = np.array_split(np.arange(ink.shape[1]), 12)
        xs, ys, ws = [], [], []
        for c in chunks:
            mass = ink[:, c].sum(axis=1)
            total = mass.sum()
            if total > 0:
                xs.append(float(c.mean()))
                ys.append(float((mass * rows[:, 0]).sum() / total))
                ws.append(float(total))
        if len(xs) < 4:
            return None
        slope = float(np.polyfit(xs, ys, 1, w=np.sqrt(ws))[0])
        residual = float(np.rad2deg(np.arctan(slope)))
        if abs(residual) > 0.1:
            angle += residual
            crop = _warp(gray, zone, u0, v0, angle, scale, size)
            ink = blackhat(crop, 4, 4)
        # keep the line's own rows and its longest run of characters (not a neighbour line's edge, nor the
        # card's edge beside the line), then give it a white margin
        strong = ink > 0.35 * max(1, int(ink.max()))
        profile = strong.sum(axis=1)
        if profile.max() == 0:
            return None
        core = np.nonzero(profile >= 0.25 * profile.max())[0]
        centre = crop.shape[0] // 2  # the band is in the middle of the crop
        top, bottom = _cluster(core, centre, 2)
        cols = np.nonzero(strong[top:bottom + 1].any(axis=0))[0]
        left, right = _longest_cluster(cols, int(char_height * 1.2))
        extra = char_height // 8
        top, bottom = max(0, top - extra), min(crop.shape[0], bottom + extra + 1)
        line = crop[top:bottom, max(0, left - extra):right + extra + 1]
        # flat field, then Otsu
        background = grey_closing(line, 12, 12).astype(np.float32)
        flat = np.clip(line.astype(np.float32) / np.maximum(background, 1) * 255, 0, 255).astype(np.uint8)
        binary = np.where(flat > otsu(flat), 255, 0).astype(np.uint8)
        return np.pad(binary, char_height // 2, constant_values=255)

    def _ocr_line(self, line: np.ndarray) -> list[Symbol]:
        """Tesseract's characters on one line image, left to right."""
        api = self._api
        api.SetImage(Image.fromarray(line))
        api.Recognize()
        out: list[Symbol] = []
        it = api.GetIterator()
        level = self._ril_symbol
        while it is not None and not it.Empty(level):
            try:
                text = it.GetUTF8Text(level)
            except RuntimeError:  # an empty result
                break
            box = it.BoundingBox(level)
            if text and box and len(text.strip()) == 1:
                out.append(Symbol(text.strip(), (box[0] + box[2]) / 2, it.Confidence(level)))
            if not it.Next(level):
                break
        return out


@dataclass(frozen=True, slots=True)
class Symbol:
    """One character Tesseract read: the character, its centre x and confidence."""

    char: str
    x: float
    confidence: float


def _warp(gray: np.ndarray, zone: ZoneCandidate, u0: float, v0: float, angle: float, scale: float,
          size: tuple[int, int]) -> np.ndarray:
    """``size`` pixels cut from the frame: from point (u0, v0) of the zone's work image rotated by ``angle``
    (not necessarily the zone's own), magnified ``scale`` times relative to the work image."""
    w, h = zone.work_size
    s = zone.step
    a = np.deg2rad(angle)
    cos, sin = np.cos(a), np.sin(a)
    # the inverse of PIL's rotate about the work image's centre, then work pixel -> frame pixel
    x = cos * (u0 - w / 2) - sin * (v0 - h / 2) + w / 2
    y = sin * (u0 - w / 2) + cos * (v0 - h / 2) + h / 2
    coeffs = (cos * s / scale, -sin * s / scale, x * s + (s - 1) / 2,
              sin * s / scale, cos * s / scale, y * s + (s - 1) / 2)
    img = Image.fromarray(gray).transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC,
                                          fillcolor=255)
    return np.asarray(img)


def zone_corners(zone: ZoneCandidate) -> np.ndarray:
    """The zone's text extent as four frame points (x, y): top-left, top-right, bottom-right, bottom-left, in
    the reading direction (the face photo of a data page is found relative to them)."""
    w, h = zone.work_size
    s = zone.step
    a = np.deg2rad(zone.angle)
    cos, sin = np.cos(a), np.sin(a)
    u0, u1 = min(b.x0 for b in zone.bands), max(b.x1 for b in zone.bands)
    v0, v1 = zone.bands[0].y0, zone.bands[-1].y1 + 1
    out = []
    for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1)):
        x = cos * (u - w / 2) - sin * (v - h / 2) + w / 2
        y = sin * (u - w / 2) + cos * (v - h / 2) + h / 2
        out.append((x * s + (s - 1) / 2, y * s + (s - 1) / 2))
    return np.array(out, dtype=np.float64)


def _same_zone(a: ZoneCandidate, b: ZoneCandidate) -> bool:
    return len(a.bands) == len(b.bands) and abs(a.bands[0].y0 - b.bands[0].y0) <= a.bands[0].height

def _score(result: MrzResult) -> int:
    return sum(result.checks.values())


def _best_mix(readings: list[list[str]]) -> MrzResult | None:
    """The best parse over every choice of one reading per line that uses the newest reading (older mixes
    were tried before); the first valid one wins. None when the lines have no zone shape."""
    newest = len(readings) - 1
    best: MrzResult | None = None
    for pick in itertools.product(range(newest, -1, -1), repeat=len(readings[0])):
        if newest not in pick:
            continue
        lines = [readings[v][i] for i, v in enumerate(pick)]
        try:
            result = parse_mrz(lines)
        except MrzError:
            return None
        if result.valid:
            return result
        if best is None or _score(result) > _score(best):
            best = result
    return best


def _line_width(lines: list[list[Symbol]]) -> int | None:
    """30 for three lines; for two, 36 or 44 by the number of character pitches the lines span."""
    if any(len(ln) < 10 for ln in lines):
        return None
    if len(lines) == 3:
        return 30
    estimates = []
    for ln in lines:
        xs = np.array([s.x for s in ln])
        pitch = float(np.median(np.diff(xs)))
        if pitch > 0:
            estimates.append((xs[-1] - xs[0]) / pitch + 1)
    if not estimates:
        return None
    n = float(np.median(estimates))
    return 36 if abs(n - 36) < abs(n - 44) else 44


FILLER_LOOKALIKES = {"mrz": "K", "eng": "KXESC"}
"""Letters each model reads for a ``<``; such a letter whose glyph is a chevron becomes ``<``."""


def _grid(ink: np.ndarray, width: int) -> np.ndarray | None:
    """Centre of every column of a monospaced line of ``width`` characters, from its ink.

    The glyphs are the runs of inked columns (wider than a speck). When there are ``width`` of them, their
    centres are the answer; otherwise (touching or broken glyphs) a quadratic through the glyph centres
    against their column gives every column, the curve taking up what perspective leaves of a changing
    pitch. A zone line's first and last columns always hold a character.
    """
    cols = ink.any(axis=0).astype(np.int8)
    d = np.diff(np.concatenate([[0], cols, [0]]))
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    if len(starts) < 3:
        return None
    widths = ends - starts
    keep = widths >= 0.3 * np.median(widths)
    centres = ((starts + ends - 1) / 2)[keep]
    if len(centres) == width:
        return centres
    if len(centres) < 6 or centres[-1] <= centres[0]:
        return None
    index = np.rint((centres - centres[0]) / ((centres[-1] - centres[0]) / (width - 1)))
    for _ in range(2):
        fit = np.polyfit(index, centres, 2)
        grid = np.polyval(fit, np.arange(width))
        index = np.abs(centres[:, None] - grid[None, :]).argmin(axis=1)
    return np.polyval(np.polyfit(index, centres, 2), np.arange(width))


def _fit(symbols: list[Symbol], width: int, image: np.ndarray, filler_lookalikes: str) -> str:
    """The line's text as ``width`` columns.

    The line's ink gives every column's place (:func:`_grid`). Characters read one per column are taken in
    order; otherwise each goes to the column nearest its box centre (of two, the more confident), and a
    column where the OCR read nothing is ``<`` (it drops characters in long filler runs). A letter of
    ``filler_lookalikes`` whose glyph is a chevron (:func:`is_chevron`) becomes ``<``.
    """
    ink = image < 128
    profile = ink.sum(axis=1)
    cap = np.nonzero(profile >= 0.25 * max(1, int(profile.max())))[0]
    band = ink[cap[0]:cap[-1] + 1] if len(cap) else ink
    centres = _grid(band, width)
    if centres is None or len(symbols) == 0:
        return "".join(s.char for s in symbols)
    pitch = float(np.median(np.diff(centres)))
    xs = np.array([s.x for s in symbols])
    nearest = np.abs(xs[:, None] - centres[None, :]).argmin(axis=1)
    columns: list[Symbol | None] = [None] * width
    if len(symbols) == width and np.array_equal(nearest, np.arange(width)):
        columns = list(symbols)
    else:
        for sym, col in zip(symbols, nearest):
            if abs(sym.x - centres[col]) > 0.6 * pitch:
                continue
            held = columns[col]
            if held is None or sym.confidence > held.confidence:
                columns[col] = sym
    chars = []
    for centre, sym in zip(centres, columns):
        char = sym.char if sym else "<"
        if char in filler_lookalikes and pitch > 0 and is_chevron(_glyph(band, centre, pitch)):
            char = "<"
        chars.append(char)
    return "".join(chars)


def _glyph(band: np.ndarray, centre: float, pitch: float) -> np.ndarray:
    """The glyph nearest ``centre`` (a run of inked columns within 0.8 pitch of it, not cut by that window),
    or an empty array."""
    x0, x1 = max(0, int(centre - 0.8 * pitch)), min(band.shape[1], int(centre + 0.8 * pitch) + 1)
    cols = np.concatenate([[0], band[:, x0:x1].any(axis=0).astype(np.int8), [0]])
    d = np.diff(cols)
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    best = None
    for a, b in zip(starts, ends):
        if a == 0 or b == x1 - x0 or b - a < 0.3 * pitch:
            continue  # cut by the window, or a speck
        if best is None or abs((a + b) / 2 + x0 - centre) < abs(sum(best) / 2 + x0 - centre):
            best = (a, b)
    if best is None:
        return band[:, :0]
    return band[:, x0 + best[0]:x0 + best[1]]


def is_chevron(cell: np.ndarray) -> bool:
    """Whether the ink in ``cell`` (one character's column of a line) is OCR-B's ``<``: relative to its own
    height, its leftmost quarter (the point) lies in the middle rows only, and its rightmost quarter (the
    arm ends) has ink at the top and the bottom but none in the middle. No letter or digit has both."""
    rows = np.nonzero(cell.any(axis=1))[0]
    cols = np.nonzero(cell.any(axis=0))[0]
    if len(rows) < 8 or len(cols) < 4:
        return False
    glyph = cell[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = glyph.shape
    quarter = max(1, w // 4)
    point = np.nonzero(glyph[:, :quarter].any(axis=1))[0]
    arms = glyph[:, w - quarter:].any(axis=1)
    return bool(point[0] >= 0.2 * h and point[-1] <= 0.8 * h and not arms[int(0.35 * h):int(0.65 * h) + 1].any()
                and arms[:int(0.25 * h) + 1].any() and arms[int(0.75 * h):].any())


def _cluster(values: np.ndarray, centre: int, gap: int) -> tuple[int, int]:
    """First and last of the sorted ``values`` reachable from near ``centre`` in steps of at most ``gap``."""
    i = int(np.argmin(np.abs(values - centre)))
    lo = hi = i
    while lo > 0 and values[lo] - values[lo - 1] <= gap:
        lo -= 1
    while hi < len(values) - 1 and values[hi + 1] - values[hi] <= gap:
        hi += 1
    return int(values[lo]), int(values[hi])


def _longest_cluster(values: np.ndarray, gap: int) -> tuple[int, int]:
    """First and last of the widest run of sorted ``values`` with steps of at most ``gap``."""
    breaks = np.nonzero(np.diff(values) > gap)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(values) - 1]])
    k = int(np.argmax(values[ends] - values[starts]))
    return int(values[starts[k]]), int(values[ends[k]])


def _grown(mask: np.ndarray, radius: int) -> np.ndarray:
    grown = _shift_reduce(mask.astype(np.uint8), radius, 1, np.maximum)
    return _shift_reduce(grown, radius, 0, np.maximum) > 0
