"""Find QR codes in camera frames and tell what kind of payload they carry.

Two pure steps, both free of I/O:

* :func:`decode_frame` runs zxing-cpp on a frame (BGR or grayscale ``uint8``), restricted to QR codes,
  and falls back to zbar (pyzbar) when zxing-cpp finds nothing (see :class:`Fallback`). zbar reads a few
  damaged or low-contrast codes that zxing-cpp misses; it is skipped (with one warning) when ``libzbar0``
  is not installed.
* :func:`classify_payload` maps the decoded text to a :class:`Payload`:

  ============  ===========================================================================
  kind          payload text
  ============  ===========================================================================
  ehc_token     national health-card platform token: 64 hex digits, ``:``, 1-2 digit code type
  hc1           ``HC1:`` + Base45 (EU Digital COVID Certificate)
  shc           ``shc:/`` + digits (SMART Health Card, optionally chunked ``shc:/1/2/…``)
  ehc1          ``EHC1:`` + data
  unknown       anything else that is plain text
  malformed     empty, over-long, control characters, undecodable bytes, or a recognised
                prefix whose data is not of the expected shape (``reason`` says which)
  ============  ===========================================================================

Payload text is personal data: nothing here logs it, and :class:`Payload` / :class:`DecodedCode` keep it
out of their ``repr``.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zxingcpp

logger = logging.getLogger(__name__)

MAX_PAYLOAD_CHARS = 4296
"""Longest payload accepted: the capacity of the largest QR code in alphanumeric mode."""

EHC_TOKEN_RE = re.compile(r"(?P<token>[0-9A-Fa-f]{64}):(?P<code_type>[0-9]{1,2})")
_TOKEN_LIKE_RE = re.compile(r"[0-9A-Fa-f]{32,}:[0-9]*|[0-9A-Fa-f]{64}")
_BASE45_RE = re.compile(r"[0-9A-Z $%*+\-./:]+")
_SHC_RE = re.compile(r"([0-9]+/[0-9]+/)?[0-9]+")


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
class DecodedCode:
    """One QR code found in a frame.

    ``corners`` are the symbol's top-left, top-right, bottom-right and bottom-left corners in frame pixels
    (zbar's corners are put in the same clockwise order, starting from the corner it reports first).
    """

    text: str = field(repr=False)
    raw: bytes = field(repr=False)
    format: str
    decoder: Decoder
    corners: tuple[Point, Point, Point, Point]

    @property
    def center(self) -> Point:
        """Centre of the code in frame pixels."""
        return Point(sum(p.x for p in self.corners) // 4, sum(p.y for p in self.corners) // 4)

    @property
    def width(self) -> int:
        """Width of the code's bounding box in pixels (a rough size for logs and framing hints)."""
        xs = [p.x for p in self.corners]
        return max(xs) - min(xs)


class Fallback(enum.StrEnum):
    """When :func:`decode_frame` asks zbar after zxing-cpp found nothing."""

    ALWAYS = "always"              # every frame without a zxing-cpp result
    ON_CANDIDATE = "on_candidate"  # only when zxing-cpp located a QR symbol but could not decode it
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How hard :func:`decode_frame` tries.

    ``try_harder`` lets zxing-cpp also search rotated and inverted (light-on-dark, e.g. a phone in dark
    mode) codes and downscaled copies of the frame; it costs about a millisecond on a 640x480 frame.
    ``fallback`` decides when zbar runs. On a frame without a code zbar costs about ten times as much as
    zxing-cpp (median on one x86 core at 640x480: ~12 ms with zbar, ~1.2 ms without), and most frames at
    a station are empty; :attr:`Fallback.ON_CANDIDATE` keeps most of zbar's extra reads (3 of the 4 in
    the zxing-cpp sample photos) at the cost of zxing-cpp alone.
    """

    try_harder: bool = True
    fallback: Fallback = Fallback.ALWAYS


class FrameFormatError(ValueError):
    """The frame is not a ``uint8`` grayscale (HxW) or BGR (HxWx3) array."""


def decode_frame(frame: np.ndarray, options: DecodeOptions = DecodeOptions()) -> list[DecodedCode]:
    """All QR codes zxing-cpp finds in ``frame``; if it finds none, those zbar finds (empty if none)."""
    frame = _check_frame(frame)
    codes, candidate = _zxing(frame, options.try_harder)
    if not codes and (options.fallback is Fallback.ALWAYS
                      or (options.fallback is Fallback.ON_CANDIDATE and candidate)):
        codes = _zbar(frame)
    return codes


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise FrameFormatError("frame must be a numpy uint8 array")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3):
        return np.ascontiguousarray(frame)
    raise FrameFormatError(f"frame shape {frame.shape} is neither HxW nor HxWx3")


def _zxing(frame: np.ndarray, try_harder: bool) -> tuple[list[DecodedCode], bool]:
    """Codes zxing-cpp decoded, and whether it located a QR symbol it could not decode."""
    found = zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode, try_rotate=try_harder,
                                   try_downscale=try_harder, try_invert=try_harder,
                                   text_mode=zxingcpp.TextMode.Plain, return_errors=True)
    codes = []
    candidate = False
    for b in found:
        if not b.valid:
            candidate = True
            continue
        pos = b.position
        corners = tuple(Point(p.x, p.y) for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left))
        codes.append(DecodedCode(text=b.text, raw=bytes(b.bytes), format=_format_name(b.format),
                                 decoder=Decoder.ZXING, corners=corners))  # type: ignore[arg-type]
    return codes, candidate


def _format_name(fmt: Any) -> str:
    name = getattr(fmt, "name", None) or str(fmt)
    return name.replace(" ", "")


_zbar_module: Any = None
_zbar_missing = False


def _load_zbar() -> Any:
    global _zbar_module, _zbar_missing
    if _zbar_module is None and not _zbar_missing:
        try:
            from pyzbar import pyzbar
        except ImportError as exc:  # pyzbar raises ImportError when libzbar0 is missing
            _zbar_missing = True
            logger.warning("zbar fallback unavailable (%s); install libzbar0", exc)
            return None
        _zbar_module = pyzbar
    return _zbar_module


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Grayscale of a BGR frame (ITU-R BT.601 weights, integer arithmetic); grayscale frames pass through."""
    if frame.ndim == 2:
        return frame
    b, g, r = (frame[:, :, i].astype(np.uint16) for i in range(3))
    return ((29 * b + 150 * g + 77 * r) >> 8).astype(np.uint8)


def _zbar(frame: np.ndarray) -> list[DecodedCode]:
    pyzbar = _load_zbar()
    if pyzbar is None:
        return []
    codes = []
    for sym in pyzbar.decode(to_gray(frame), symbols=[pyzbar.ZBarSymbol.QRCODE]):
        codes.append(DecodedCode(text=_bytes_to_text(sym.data), raw=bytes(sym.data), format="QRCode",
                                 decoder=Decoder.ZBAR, corners=_clockwise(sym.polygon, sym.rect)))
    return codes


def _bytes_to_text(data: bytes) -> str:
    """zbar hands back bytes; QR text is UTF-8 in practice. Undecodable bytes become U+FFFD."""
    return data.decode("utf-8", errors="replace")


def _clockwise(polygon: Any, rect: Any) -> tuple[Point, Point, Point, Point]:
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


class PayloadKind(enum.StrEnum):
    """What a QR payload is."""

    EHC_TOKEN = "ehc_token"
    HC1 = "hc1"
    SHC = "shc"
    EHC1 = "ehc1"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"


class Malformed(enum.StrEnum):
    """Why a payload was refused (stable names for counters and result bodies)."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    CONTROL_CHARACTERS = "control_characters"
    UNDECODABLE = "undecodable_bytes"
    BAD_TOKEN = "bad_token"
    BAD_HC1 = "bad_hc1"
    BAD_SHC = "bad_shc"
    BAD_EHC1 = "bad_ehc1"


@dataclass(frozen=True, slots=True)
class Payload:
    """A classified QR payload. ``text`` is the payload as read (personal data: never log it)."""

    kind: PayloadKind
    text: str = field(repr=False)
    code_type: int | None = None
    reason: Malformed | None = None

    @property
    def well_formed(self) -> bool:
        """True for a recognised kind whose data has the expected shape."""
        return self.kind not in (PayloadKind.MALFORMED, PayloadKind.UNKNOWN)


_PREFIXES: tuple[tuple[str, PayloadKind, re.Pattern[str] | None, Malformed], ...] = (
    ("HC1:", PayloadKind.HC1, _BASE45_RE, Malformed.BAD_HC1),
    ("shc:/", PayloadKind.SHC, _SHC_RE, Malformed.BAD_SHC),
    ("EHC1:", PayloadKind.EHC1, None, Malformed.BAD_EHC1),
)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def classify_payload(text: str) -> Payload:
    """Tell what kind of payload ``text`` is; malformed payloads carry the reason.

    >>> classify_payload("E1D10AAC" * 8 + ":1").kind
    <PayloadKind.EHC_TOKEN: 'ehc_token'>
    >>> classify_payload("HC1:\\x00").reason
    <Malformed.CONTROL_CHARACTERS: 'control_characters'>
    """
    def bad(reason: Malformed) -> Payload:
        return Payload(PayloadKind.MALFORMED, text, reason=reason)

    if not text:
        return bad(Malformed.EMPTY)
    if len(text) > MAX_PAYLOAD_CHARS:
        return bad(Malformed.TOO_LONG)
    if "\ufffd" in text:
        return bad(Malformed.UNDECODABLE)
    if _has_control(text):
        return bad(Malformed.CONTROL_CHARACTERS)
    m = EHC_TOKEN_RE.fullmatch(text)
    if m:
        return Payload(PayloadKind.EHC_TOKEN, text, code_type=int(m["code_type"]))
    for prefix, kind, body_re, reason in _PREFIXES:
        if text.startswith(prefix):
            body = text[len(prefix):]
            if not body or (body_re is not None and not body_re.fullmatch(body)):
                return bad(reason)
            return Payload(kind, text)
    if _TOKEN_LIKE_RE.fullmatch(text):
        return bad(Malformed.BAD_TOKEN)
    return Payload(PayloadKind.UNKNOWN, text)
