"""The box's barcode scanner: more codes read, in less time, than either decoder library alone.

:class:`FrameScanner` returns every code in a frame, not the first: passes are merged by position and
text (one symbol read by two passes is one code; two copies of a label at two places are two). It
decodes camera frames in these steps (each a cheap check first):

1. **Region of interest.** After a code was read, the next frames are first searched only around where
   it was (the box grown by half its size). A person holds a phone still for a second or two, so most
   frames end here, in a fraction of the full-frame cost. Every ``full_scan_every``-th frame is still
   searched whole, so a second code entering the picture is not missed.
2. **Reduced full frame.** Frames wider than ``work_width`` are searched at half (or quarter) size:
   a code big enough to be held up is big enough there, and a 1080p frame costs a quarter.
3. **Full resolution.** A frame whose reduced copy showed more than one code (a sheet of labels, a rack),
   every still image and every ``every_code`` frame is searched again whole at full resolution, and the
   results merged: small codes are lost in the reduced pass. Otherwise, where the reduced frame located a
   symbol it could not decode, the symbol's region is cut from the full-resolution frame and decoded
   again (also when other codes of the frame were read); a reduced frame in which nothing at all was seen
   is searched at full resolution every ``full_res_every``-th time (codes held far away).
4. **Flattened frame.** A frame in which nothing at all was seen is, every ``enhance_every``-th time,
   searched again with the light divided out (glare, shadows) and sharpened.
5. **Second pass with preprocessing.** Every located symbol no pass could read is retried with the light
   flattened, contrast normalisation, median smoothing, up- or down-scaling, histogram equalisation and
   inversion, each with zxing-cpp's local and its global binariser
   (:func:`edge.imageprep.retry_variants`), and finally with zbar.
6. **zbar.** With :attr:`Fallback.ALWAYS`, a frame in which zxing-cpp found nothing at all also goes
   to zbar; :attr:`Fallback.ON_CANDIDATE` (the default) asks zbar only about located symbols.

``thorough`` (used for still images by ``ehc-edge decode``) runs step 5 over the whole image when
nothing was found: too slow for a camera loop, right for a photo.

Repeat suppression (one scan per code held up, not thirty) is :class:`edge.repeats.RepeatFilter`'s job.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import numpy as np

from edge.barcodes import Box, DecodedCode, Reading, ZbarBackend, ZxingBackend
from edge.imageprep import check_frame, crop_gray, flattened, green, retry_variants, to_gray
from edge.symbology import ALL_SYMBOLOGIES, TUBE_LABELS, Symbology

logger = logging.getLogger(__name__)


MIN_SIDE = 21
"""Frames smaller than the smallest QR code (21 modules) hold no code."""


class Fallback(enum.StrEnum):
    """When zbar is asked after zxing-cpp found nothing."""

    ALWAYS = "always"              # every frame without a zxing-cpp result
    ON_CANDIDATE = "on_candidate"  # only where zxing-cpp located a symbol but could not decode it
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How the scanner works.

    ``symbologies``: what to look for (QR plus the 1D codes of tubes and wristbands by default; a
    QR-only station is faster). ``work_width``: frames wider than this are first searched reduced.
    ``track``: search around the last codes first; ``full_scan_every``: how often a tracked frame is
    still searched whole; ``track_frames``: how many frames a region is kept without a read;
    ``full_res_every``: how often a reduced frame in which nothing at all was seen is searched again at
    full resolution (for codes too small to be seen reduced); ``enhance_every``: how often such a frame is
    searched again with glare and uneven light divided out (0: never).
    ``second_pass``: retry located symbols with preprocessing. ``thorough``: retry the whole image
    with preprocessing when nothing was found (still images). ``every_code``: a frame expected to hold many
    codes (a rack): always also searched at full resolution, and every located symbol retried.
    """

    symbologies: frozenset[Symbology] = ALL_SYMBOLOGIES
    fallback: Fallback = Fallback.ON_CANDIDATE
    work_width: int = 1000
    track: bool = True
    full_scan_every: int = 5
    track_frames: int = 3
    full_res_every: int = 6
    enhance_every: int = 3
    second_pass: bool = True
    thorough: bool = False
    every_code: bool = False

    def __post_init__(self) -> None:
        if not self.symbologies:
            raise ValueError("symbologies must not be empty")
        if self.work_width < 160 or min(self.full_scan_every, self.track_frames, self.full_res_every) < 1 \
                or self.enhance_every < 0:
            raise ValueError("work_width >= 160; full_scan_every, track_frames, full_res_every >= 1 required")


STILL_IMAGE = DecodeOptions(track=False, thorough=True, fallback=Fallback.ALWAYS)
"""Options for photos and files: no tracking, every retry, every code."""

RACK = DecodeOptions(symbologies=TUBE_LABELS, track=False, every_code=True, enhance_every=0,
                     fallback=Fallback.NEVER)
"""Options for a rack photo: tube labels only, full resolution, every located label retried."""


@dataclass(slots=True)
class ScannerStats:
    """Where the codes came from (counters since the scanner was made)."""

    frames: int = 0
    roi_reads: int = 0          # frames answered by the tracked regions alone
    full_scans: int = 0
    full_res_reads: int = 0     # codes read in a full-resolution crop after the reduced frame missed them
    enhanced_reads: int = 0     # codes read in an empty-looking frame once glare was divided out
    second_pass_reads: int = 0  # codes read only after preprocessing
    zbar_reads: int = 0
    by_variant: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Track:
    box: Box
    last_frame: int


class FrameScanner:
    """Finds barcodes in frames; keeps the regions of recent reads (one instance per camera).

    >>> scanner = FrameScanner()
    >>> codes = scanner.decode(frame)          # doctest: +SKIP
    >>> [(c.format, c.center) for c in codes]  # doctest: +SKIP
    """

    def __init__(self, options: DecodeOptions = DecodeOptions()) -> None:
        self.options = options
        self.stats = ScannerStats()
        self._zxing = ZxingBackend()
        self._zbar = ZbarBackend() if options.fallback is not Fallback.NEVER else None
        self._tracks: list[_Track] = []
        self._frame_no = 0
        self._last_full = -10**9
        self.unread: list[Box] = []
        """Symbols the last full-frame search located but could not read (a rack's damaged labels)."""

    def reset(self) -> None:
        """Forget tracked regions (e.g. after the camera was reopened)."""
        self._tracks.clear()

    def decode(self, frame: np.ndarray) -> list[DecodedCode]:
        """Every code found in ``frame`` (BGR or grayscale ``uint8``), positions in frame pixels."""
        frame = check_frame(frame)
        self._frame_no += 1
        self.stats.frames += 1
        if min(frame.shape[:2]) < MIN_SIDE:
            return []
        opts = self.options
        if opts.track and self._tracks and self._frame_no - self._last_full < opts.full_scan_every:
            codes = self._decode_tracks(frame)
            if codes:
                self.stats.roi_reads += 1
                return self._remember(codes)
        self._last_full = self._frame_no
        self.stats.full_scans += 1
        return self._remember(self._decode_full(frame))

    # -- steps ------------------------------------------------------------------------------------------

    def _decode_tracks(self, frame: np.ndarray) -> list[DecodedCode]:
        h, w = frame.shape[:2]
        codes: list[DecodedCode] = []
        for track in self._tracks:
            region = track.box.grown(0.5, w, h)
            reading = self._read_region(frame, region, harder=False)
            codes += reading.codes
        return _unique(codes)

    def _decode_full(self, frame: np.ndarray) -> list[DecodedCode]:
        h, w = frame.shape[:2]
        step = 1
        while w // step > self.options.work_width:
            step *= 2
        gray = to_gray(frame, step)
        reading = self._zxing.read(gray, self.options.symbologies)
        codes = [c.moved(step, 0, 0) for c in reading.codes] if step > 1 else reading.codes
        candidates = [Box(c.x0 * step, c.y0 * step, c.x1 * step, c.y1 * step) for c in reading.candidates]
        if step > 1 and (self.options.every_code or self.options.thorough or len(codes) > 1):
            # a frame with many codes (a rack, a sheet of labels): small ones are read only at full resolution
            full_res = self._zxing.read(green(frame), self.options.symbologies, harder=False)
            found = _new_codes(full_res.codes, codes)
            self.stats.full_res_reads += len(found)
            codes += found
            candidates += full_res.candidates
        elif step > 1:
            # small codes may only be readable at full resolution: look where the reduced frame saw one,
            # and every few frames (every still image) search the whole frame at full resolution
            for box in _unread(candidates, codes):
                found = _new_codes(self._read_region(frame, box.grown(0.25, w, h), harder=True).codes, codes)
                self.stats.full_res_reads += len(found)
                codes += found
            if not codes and not candidates and self._frame_no % self.options.full_res_every == 0:
                full_res = self._zxing.read(green(frame), self.options.symbologies, harder=False)
                self.stats.full_res_reads += len(full_res.codes)
                codes += full_res.codes
                candidates += full_res.candidates
        if not codes and not candidates and self.options.enhance_every and \
                self._frame_no % self.options.enhance_every == 0:
            # nothing seen at all: every few frames look again with glare and uneven light divided out
            enhanced = self._zxing.read(flattened(gray), self.options.symbologies, harder=False)
            codes = [c.moved(step, 0, 0) for c in enhanced.codes]
            self.stats.enhanced_reads += len(codes)
            candidates = [Box(c.x0 * step, c.y0 * step, c.x1 * step, c.y1 * step) for c in enhanced.candidates]
            if codes and not self.options.every_code:
                return _unique(codes)
        if self.options.second_pass:
            # every located symbol no pass has read yet gets the preprocessed retries, not just the first
            for box in _merged(_unread(candidates, codes)):
                codes += _new_codes(self._second_pass(frame, box.grown(0.25, w, h)), codes)
        self.unread = _merged(_unread(candidates, codes))
        if codes:
            return _unique(codes)
        full = Box(0, 0, w, h)
        if self.options.thorough:
            codes = self._second_pass(frame, full, zbar=False)
        if not codes and self._zbar is not None and (
                self.options.fallback is Fallback.ALWAYS
                or (self.options.fallback is Fallback.ON_CANDIDATE and candidates and not self.options.second_pass)):
            codes = self._zbar_read(to_gray(frame) if step > 1 else gray, full)
        return _unique(codes)

    def _read_region(self, frame: np.ndarray, region: Box, *, harder: bool) -> Reading:
        """zxing-cpp on a crop of ``frame`` (reduced if it is wider than the work width)."""
        gray = crop_gray(frame, region)
        step = 1
        while gray.shape[1] // step > self.options.work_width:
            step *= 2
        if step > 1:
            gray = np.ascontiguousarray(gray[::step, ::step])
        reading = self._zxing.read(gray, self.options.symbologies, harder=harder)
        reading.codes = [c.moved(step, region.x0, region.y0) for c in reading.codes]
        return reading

    def _second_pass(self, frame: np.ndarray, region: Box, zbar: bool = True) -> list[DecodedCode]:
        gray = crop_gray(frame, region)
        symbologies = self.options.symbologies
        tries: list[tuple[str, np.ndarray, float, bool]] = [("global_binarizer", gray, 1.0, True)]
        for name, image, scale in retry_variants(gray):
            tries += [(name, image, scale, False), (f"{name}+global_binarizer", image, scale, True)]
        for name, image, scale, global_bin in tries:
            found = self._zxing.read(image, symbologies, global_binarizer=global_bin).codes
            if found:
                self.stats.second_pass_reads += len(found)
                self.stats.by_variant[name] = self.stats.by_variant.get(name, 0) + 1
                return [c.moved(scale, region.x0, region.y0) for c in found]
        if zbar and self._zbar is not None:
            return self._zbar_read(gray, region)
        return []

    def _zbar_read(self, gray: np.ndarray, region: Box) -> list[DecodedCode]:
        assert self._zbar is not None
        found = self._zbar.read(gray, self.options.symbologies).codes
        self.stats.zbar_reads += len(found)
        return [c.moved(1.0, region.x0, region.y0) for c in found]

    def _remember(self, codes: list[DecodedCode]) -> list[DecodedCode]:
        if not self.options.track:
            return codes
        alive = [t for t in self._tracks if self._frame_no - t.last_frame < self.options.track_frames]
        for code in codes:
            box = code.box
            for t in alive:
                if _overlaps(t.box, box):
                    t.box, t.last_frame = box, self._frame_no
                    break
            else:
                alive.append(_Track(box, self._frame_no))
        self._tracks = alive[-4:]
        return codes


def _overlaps(a: Box, b: Box) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _same(a: DecodedCode, b: DecodedCode) -> bool:
    """The same symbol read twice: same format and text, and one's centre inside the other's box."""
    if a.format is not b.format or a.text != b.text:
        return False
    ca, cb, ba, bb = a.center, b.center, a.box, b.box
    return (ba.x0 <= cb.x <= ba.x1 and ba.y0 <= cb.y <= ba.y1) or (bb.x0 <= ca.x <= bb.x1 and bb.y0 <= ca.y <= bb.y1)


def _unique(codes: list[DecodedCode]) -> list[DecodedCode]:
    """Drop the same symbol read twice (two passes, two overlapping regions, a region and the full frame),
    keeping the first read; the same text at two places (two copies of a label) stays twice."""
    out: list[DecodedCode] = []
    for c in codes:
        if not any(_same(c, o) for o in out):
            out.append(c)
    return out


def _new_codes(found: list[DecodedCode], known: list[DecodedCode]) -> list[DecodedCode]:
    """The codes of ``found`` that are not already in ``known``."""
    return [c for c in _unique(found) if not any(_same(c, k) for k in known)]


def _unread(candidates: list[Box], codes: list[DecodedCode]) -> list[Box]:
    """Located symbols whose centre lies in no decoded code's box (the others were read by some pass)."""
    boxes = [c.box for c in codes]
    out = []
    for box in candidates:
        cx, cy = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
        if not any(b.x0 <= cx <= b.x1 and b.y0 <= cy <= b.y1 for b in boxes):
            out.append(box)
    return out


def _merged(boxes: list[Box]) -> list[Box]:
    """``boxes`` with overlapping ones joined (one symbol located by two passes is retried once)."""
    out: list[Box] = []
    for box in boxes:
        for i, o in enumerate(out):
            if _overlaps(o, box):
                out[i] = Box(min(o.x0, box.x0), min(o.y0, box.y0), max(o.x1, box.x1), max(o.y1, box.y1))
                break
        else:
            out.append(box)
    return out


def decode_image(frame: np.ndarray, options: DecodeOptions = STILL_IMAGE) -> list[DecodedCode]:
    """Every code in one still image, trying everything (no state kept)."""
    return FrameScanner(options).decode(frame)

