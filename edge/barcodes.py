"""Barcode decoder back ends behind one interface: zxing-cpp first, zbar (pyzbar) second.

A back end reads one grayscale ``uint8`` image and returns a :class:`Reading`: the codes it decoded and,
where it can tell, the places where it located a symbol it could not decode (*candidates*), which the
scanner (:mod:`edge.scanner`) retries with preprocessing. Only the symbologies a box meets are asked
for: QR codes on phones and paper, and the 1D codes on test tubes and wristbands (Code 128, Code 39,
EAN-13).

Payload text is personal data: :class:`DecodedCode` keeps it out of its ``repr`` and nothing here logs it.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import zxingcpp

from edge.symbology import LINEAR, Symbology

logger = logging.getLogger(__name__)


class Decoder(enum.StrEnum):
    """Which library decoded a code."""

    ZXING = "zxing-cpp"
    ZBAR = "zbar"


@dataclass(frozen=True, slots=True)
class Point:
    """A pixel position in the frame."""

    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle in frame pixels (``x1``/``y1`` exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def grown(self, margin: float, width: int, height: int) -> Box:
        """This box enlarged by ``margin`` times its larger side on every edge, clipped to the frame."""
        pad = int(max(self.width, self.height) * margin) + 8
        return Box(max(0, self.x0 - pad), max(0, self.y0 - pad), min(width, self.x1 + pad),
                   min(height, self.y1 + pad))

    @staticmethod
    def around(points: Iterable[Point]) -> Box:
        """The smallest box holding ``points``."""
        pts = list(points)
        return Box(min(p.x for p in pts), min(p.y for p in pts), max(p.x for p in pts) + 1,
                   max(p.y for p in pts) + 1)


Corners = tuple[Point, Point, Point, Point]


@dataclass(frozen=True, slots=True)
class DecodedCode:
    """One code found in a frame.

    ``corners`` are the symbol's top-left, top-right, bottom-right and bottom-left corners in frame pixels
    (zbar's corners are put in the same clockwise order, starting from the corner it reports first).
    """

    text: str = field(repr=False)
    raw: bytes = field(repr=False)
    format: Symbology
    decoder: Decoder
    corners: Corners

    @property
    def center(self) -> Point:
        """Centre of the code in frame pixels."""
        return Point(sum(p.x for p in self.corners) // 4, sum(p.y for p in self.corners) // 4)

    @property
    def box(self) -> Box:
        """Bounding box of the code in frame pixels."""
        return Box.around(self.corners)

    @property
    def width(self) -> int:
        """Width of the code's bounding box in pixels (a rough size for logs and framing hints)."""
        return self.box.width

    def moved(self, scale: float, dx: int, dy: int) -> DecodedCode:
        """The same code with corners mapped from a scaled crop back to frame pixels."""
        corners = tuple(Point(int(round(p.x * scale)) + dx, int(round(p.y * scale)) + dy) for p in self.corners)
        return DecodedCode(self.text, self.raw, self.format, self.decoder, corners)  # type: ignore[arg-type]

    def as_json(self) -> dict[str, Any]:
        """``{"text", "format", "position"}`` with the corners as ``[[x, y], ...]``."""
        return {"text": self.text, "format": self.format.value, "position": [[p.x, p.y] for p in self.corners]}


@dataclass(slots=True)
class Reading:
    """What one back end found in one image: decoded codes and located-but-undecoded symbols."""

    codes: list[DecodedCode] = field(default_factory=list)
    candidates: list[Box] = field(default_factory=list)


class Backend(Protocol):
    """A barcode library behind the scanner's interface."""

    decoder: Decoder

    def read(self, gray: np.ndarray, symbologies: frozenset[Symbology], *, harder: bool = True,
             global_binarizer: bool = False) -> Reading:
        """Decode ``gray`` (``uint8`` HxW, C-contiguous)."""
        ...


_ZX_FORMATS = {Symbology.QR: zxingcpp.BarcodeFormat.QRCode, Symbology.CODE128: zxingcpp.BarcodeFormat.Code128,
               Symbology.CODE39: zxingcpp.BarcodeFormat.Code39, Symbology.EAN13: zxingcpp.BarcodeFormat.EAN13,
               Symbology.DATAMATRIX: zxingcpp.BarcodeFormat.DataMatrix}
_ZX_BACK = {v: k for k, v in _ZX_FORMATS.items()}


class ZxingBackend:
    """zxing-cpp: the primary decoder (reads more real-world codes than zbar, about ten times faster).

    ``harder`` lets zxing-cpp also look for rotated 1D codes, inverted (light-on-dark, a phone in dark
    mode) codes and downscaled copies of the image; ``global_binarizer`` swaps its local-average
    binarizer for a global histogram one, which reads some decorated or low-contrast codes the local
    one breaks up.
    """

    decoder = Decoder.ZXING

    def __init__(self) -> None:
        self._formats: dict[frozenset[Symbology], tuple[Any, ...]] = {}

    def read(self, gray: np.ndarray, symbologies: frozenset[Symbology], *, harder: bool = True,
             global_binarizer: bool = False) -> Reading:
        formats = self._formats.get(symbologies)
        if formats is None:
            formats = self._formats[symbologies] = tuple(_ZX_FORMATS[s] for s in sorted(symbologies))
        binarizer = zxingcpp.Binarizer.GlobalHistogram if global_binarizer else zxingcpp.Binarizer.LocalAverage
        # zxing-cpp finds a Data Matrix turned by anything but a right angle only with try_rotate
        rotate = (harder and bool(symbologies & LINEAR)) or Symbology.DATAMATRIX in symbologies
        found = zxingcpp.read_barcodes(gray, formats=formats, try_rotate=rotate,
                                       try_downscale=harder, try_invert=harder, binarizer=binarizer,
                                       text_mode=zxingcpp.TextMode.Plain, return_errors=True)
        reading = Reading()
        for b in found:
            pos = b.position
            corners: Corners = tuple(Point(p.x, p.y) for p in (pos.top_left, pos.top_right, pos.bottom_right,
                                                               pos.bottom_left))  # type: ignore[assignment]
            if not b.valid:
                reading.candidates.append(Box.around(corners))
                continue
            fmt = _ZX_BACK.get(b.format) or _ZX_BACK.get(b.symbology)  # EAN-13's symbology is EAN/UPC,
            if fmt is None:                                            # Code 39's format may be a variant
                continue
            reading.codes.append(DecodedCode(text=b.text, raw=bytes(b.bytes), format=fmt, decoder=Decoder.ZXING,
                                             corners=corners))
        return reading


class ZbarBackend:
    """zbar through pyzbar: the second decoder, for the damaged or low-contrast codes zxing-cpp misses.

    When ``libzbar0`` is not installed it reads nothing and warns once.
    """

    decoder = Decoder.ZBAR
    _missing_warned = False

    def __init__(self) -> None:
        self._pyzbar = self._load()

    @classmethod
    def _load(cls) -> Any:
        try:
            from pyzbar import pyzbar
        except ImportError as exc:  # pyzbar raises ImportError when libzbar0 is missing
            if not cls._missing_warned:
                cls._missing_warned = True
                logger.warning("zbar decoder unavailable (%s); install libzbar0", exc)
            return None
        return pyzbar

    @property
    def available(self) -> bool:
        """True when libzbar0 could be loaded."""
        return self._pyzbar is not None

    def read(self, gray: np.ndarray, symbologies: frozenset[Symbology], *, harder: bool = True,
             global_binarizer: bool = False) -> Reading:
        pyzbar = self._pyzbar
        if pyzbar is None:
            return Reading()
        names = {Symbology.QR: pyzbar.ZBarSymbol.QRCODE, Symbology.CODE128: pyzbar.ZBarSymbol.CODE128,
                 Symbology.CODE39: pyzbar.ZBarSymbol.CODE39, Symbology.EAN13: pyzbar.ZBarSymbol.EAN13}
        back = {v.name: k for k, v in names.items()}
        reading = Reading()
        asked = [names[s] for s in symbologies if s in names]  # zbar reads no Data Matrix
        if not asked:
            return reading
        for sym in pyzbar.decode(gray, symbols=asked):
            fmt = back.get(sym.type)
            if fmt is None:
                continue
            reading.codes.append(DecodedCode(text=sym.data.decode("utf-8", errors="replace"), raw=bytes(sym.data),
                                             format=fmt, decoder=Decoder.ZBAR,
                                             corners=_clockwise(sym.polygon, sym.rect)))
        return reading


def _clockwise(polygon: Any, rect: Any) -> Corners:
    pts = [Point(int(p.x), int(p.y)) for p in polygon]
    if len(pts) != 4:
        left, top, w, h = rect.left, rect.top, rect.width, rect.height
        return (Point(left, top), Point(left + w, top), Point(left + w, top + h), Point(left, top + h))
    cx = sum(p.x for p in pts) / 4
    cy = sum(p.y for p in pts) / 4
    # image y grows downwards, so increasing atan2 angle runs clockwise on screen
    ordered = sorted(pts, key=lambda p: math.atan2(p.y - cy, p.x - cx))
    start = ordered.index(pts[0])
    ordered = ordered[start:] + ordered[:start]
    return (ordered[0], ordered[1], ordered[2], ordered[3])
