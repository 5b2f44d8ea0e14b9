"""Cheap image operations for the scan path: grayscale, reduction, crops and the retry variants.

Everything works on ``uint8`` arrays with numpy and Pillow only (no OpenCV in the scan path: it would
cost a Pi tens of megabytes for a handful of operations). Frames are BGR ``HxWx3`` or grayscale ``HxW``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from edge.barcodes import Box


class FrameFormatError(ValueError):
    """The frame is not a ``uint8`` grayscale (HxW) or BGR (HxWx3) array."""


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as HxW or HxWx3 ``uint8``; raises :class:`FrameFormatError` for anything else."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise FrameFormatError("frame must be a numpy uint8 array")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3):
        return frame
    raise FrameFormatError(f"frame shape {frame.shape} is neither HxW nor HxWx3")


def to_gray(frame: np.ndarray, step: int = 1) -> np.ndarray:
    """Grayscale of ``frame`` (ITU-R BT.601 weights, integer arithmetic), keeping every ``step``-th pixel.

    Subsampling before the colour conversion makes a 1080p frame's half-size grayscale cost about a
    millisecond on one x86 core.
    """
    view = frame[::step, ::step] if step > 1 else frame
    if view.ndim == 2:
        return np.ascontiguousarray(view)
    b, g, r = (view[:, :, i].astype(np.uint16) for i in range(3))
    return ((29 * b + 150 * g + 77 * r) >> 8).astype(np.uint8)


def green(frame: np.ndarray) -> np.ndarray:
    """The green channel of a BGR frame (grayscale frames pass through): a luminance good enough to find
    black-and-white codes, at a tenth of the cost of a weighted conversion."""
    return np.ascontiguousarray(frame if frame.ndim == 2 else frame[:, :, 1])


def crop_gray(frame: np.ndarray, box: Box) -> np.ndarray:
    """Grayscale of the part of ``frame`` inside ``box``."""
    return to_gray(frame[box.y0:box.y1, box.x0:box.x1])


def scaled(gray: np.ndarray, factor: float) -> np.ndarray:
    """``gray`` resized by ``factor`` (bicubic up, box-filtered down)."""
    h, w = gray.shape
    size = (max(8, int(round(w * factor))), max(8, int(round(h * factor))))
    method = Image.Resampling.BICUBIC if factor > 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(gray).resize(size, method))


def normalised(gray: np.ndarray) -> np.ndarray:
    """Contrast stretched to the full 0-255 range, ignoring the darkest and brightest 1 %."""
    return np.asarray(ImageOps.autocontrast(Image.fromarray(gray), cutoff=1))


def equalised(gray: np.ndarray) -> np.ndarray:
    """Histogram-equalised copy (lifts codes filmed in dim light or under glare)."""
    return np.asarray(ImageOps.equalize(Image.fromarray(gray)))


def smoothed(gray: np.ndarray) -> np.ndarray:
    """3x3 median-filtered copy (removes sensor noise and screen moiré before binarisation)."""
    return np.asarray(Image.fromarray(gray).filter(ImageFilter.MedianFilter(3)))


def flattened(gray: np.ndarray) -> np.ndarray:
    """Uneven light and glare divided out, then sharpened (unsharp mask with a 7x7 box).

    The light is estimated on an eighth-size copy, so this costs a few milliseconds at 640x480; it lifts
    codes under a lamp's reflection, in a shadow or slightly out of focus.
    """
    img = Image.fromarray(gray)
    light = img.reduce(8).filter(ImageFilter.BoxBlur(3)).resize(img.size, Image.Resampling.BILINEAR)
    flat = np.minimum(gray.astype(np.uint16) * 160 // (np.asarray(light, dtype=np.uint16) + 1), 255).astype(np.int16)
    blur = np.asarray(Image.fromarray(flat.astype(np.uint8)).filter(ImageFilter.BoxBlur(3)), dtype=np.int16)
    return np.clip(2 * flat - blur, 0, 255).astype(np.uint8)


def inverted(gray: np.ndarray) -> np.ndarray:
    """Negative (a code shown light-on-dark, e.g. a phone in dark mode)."""
    return np.ascontiguousarray(255 - gray)


def retry_variants(gray: np.ndarray) -> Iterator[tuple[str, np.ndarray, float]]:
    """The preprocessed copies the second pass tries, cheapest and most useful first.

    Yields ``(name, image, scale)`` where ``scale`` maps the copy's pixels back to ``gray``'s
    (multiply a copy's coordinates by it).
    """
    h, w = gray.shape
    side = max(h, w)
    if side < 400:
        yield "upscaled", scaled(gray, 2.0), 0.5
    yield "flattened", flattened(gray), 1.0
    yield "normalised", normalised(gray), 1.0
    yield "smoothed", smoothed(gray), 1.0
    if side >= 160:
        yield "half", scaled(gray, 0.5), 2.0
    yield "equalised", equalised(gray), 1.0
    yield "inverted", inverted(gray), 1.0
