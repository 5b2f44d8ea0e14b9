"""A simulated camera that films QR codes: the demo's and the tests' frame source.

:class:`SimulatedQrCamera` is a :class:`~drivers.camera.FrameSource` like the real cameras, so the station
runs unchanged on it. Each frame shows one QR code (made with segno) placed on a background at a given
size and rotation, then blurred, darkened or brightened, given a glare spot and Gaussian sensor noise.
Every randomised choice comes from one seeded generator, so a seed replays the same frames.

>>> rng = random.Random(7)
>>> cam = SimulatedQrCamera([generate_health_card_token(rng)], angle=(-20, 20), noise=4, seed=7)
>>> with cam:
...     frame = cam.read()
>>> frame.shape
(480, 640, 3)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import segno
from PIL import Image, ImageFilter

from drivers.camera import FrameSource, pace

Spread = float | tuple[float, float]
"""A fixed value, or a ``(low, high)`` range drawn uniformly for every frame."""

HEALTH_CARD_CODE_TYPES = (0, 1, 2)


def generate_health_card_token(rng: random.Random | np.random.Generator, code_type: int = 1) -> str:
    """A random token in the national health-card platform's QR format: 64 uppercase hex, ``:``, code type.

    >>> generate_health_card_token(random.Random(1))[-2:]
    ':1'
    """
    if not 0 <= code_type <= 99:
        raise ValueError("code type must be 0..99")
    raw = rng.getrandbits(256).to_bytes(32, "big") if isinstance(rng, random.Random) else rng.bytes(32)
    return f"{raw.hex().upper()}:{code_type}"


@dataclass(frozen=True, slots=True)
class Scene:
    """How one frame is filmed (all values fixed; see :class:`SimulatedQrCamera` for ranges)."""

    size: float = 240.0        # side of the code including its quiet zone, in pixels
    angle: float = 0.0         # rotation in degrees, counter-clockwise
    blur: float = 0.0          # Gaussian blur radius in pixels
    brightness: float = 1.0    # gain on all pixel values
    glare: float = 0.0         # 0..1, strength of a bright spot over the code
    noise: float = 0.0         # standard deviation of Gaussian noise, in grey levels
    dx: float = 0.0            # shift of the code centre from the frame centre, in pixels
    dy: float = 0.0


def qr_image(text: str, size: int, error: str = "m") -> Image.Image:
    """The QR code for ``text`` with a 4-module quiet zone, as an 8-bit grey image ``size`` pixels wide."""
    qr = segno.make_qr(text, error=error)
    modules = np.array([list(row) for row in qr.matrix], dtype=np.uint8)
    modules = np.pad(modules, 4, constant_values=0)
    grey = np.where(modules == 1, 0, 255).astype(np.uint8)
    n = grey.shape[0]
    scale = max(1, math.ceil(4 * size / n))
    img = Image.fromarray(grey, "L").resize((n * scale, n * scale), Image.Resampling.NEAREST)
    return img.resize((size, size), Image.Resampling.BOX)


_LINEAR_FORMATS = {"Code128": "Code128", "Code39": "Code39", "EAN13": "EAN13"}


def barcode_image(text: str, symbology: str, size: int) -> Image.Image:
    """A 1D barcode (``Code128``, ``Code39``, ``EAN13``) for ``text`` with quiet zones, ``size`` pixels wide,
    as a label on a test tube or wristband would show it (made with zxing-cpp's writer)."""
    import zxingcpp

    fmt = getattr(zxingcpp.BarcodeFormat, _LINEAR_FORMATS[symbology])
    bars = np.asarray(zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(text, fmt), scale=1))[:1]
    bars = np.pad(bars, ((0, 0), (10, 10)), constant_values=255)
    n = bars.shape[1]
    size = max(size, 3 * n)  # a label held up to be read shows at least 3 pixels per bar module
    scale = max(1, math.ceil(3 * size / n))
    wide = Image.fromarray(np.repeat(bars, 2, axis=0), "L").resize((n * scale, max(8, size * 2 // 5) * 2),
                                                                   Image.Resampling.NEAREST)
    return wide.resize((size, max(8, size * 2 // 5)), Image.Resampling.BOX)


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible counter-top: a soft diagonal gradient with a few low-contrast blocks, as float grey."""
    top, bottom = rng.uniform(70, 170, size=2)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    bg = top + (bottom - top) * (0.7 * ys + 0.3 * xs)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 10, width // 3)), int(rng.integers(height // 10, height // 3))
        bg[y0:y0 + h, x0:x0 + w] += rng.uniform(-35, 35)
    return bg


def render_qr_frame(text: str | None, scene: Scene = Scene(), *, width: int = 640, height: int = 480,
                    rng: np.random.Generator | None = None, grayscale: bool = False,
                    symbology: str = "QRCode") -> np.ndarray:
    """One camera frame showing the code for ``text`` (no code if ``text`` is None), as BGR or grey uint8.

    ``symbology`` is ``QRCode`` or a 1D format (``Code128``, ``Code39``, ``EAN13``).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    img = Image.fromarray(np.clip(background(width, height, rng), 0, 255).astype(np.uint8), "L")
    size = max(21, int(round(scene.size)))
    cx, cy = width / 2 + scene.dx, height / 2 + scene.dy
    if text is not None:
        code = qr_image(text, size) if symbology == "QRCode" else barcode_image(text, symbology, size)
        mask = Image.new("L", code.size, 255)
        if scene.angle:
            code = code.rotate(scene.angle, Image.Resampling.BILINEAR, expand=True, fillcolor=255)
            mask = mask.rotate(scene.angle, Image.Resampling.BILINEAR, expand=True, fillcolor=0)
        img.paste(code, (int(round(cx - code.width / 2)), int(round(cy - code.height / 2))), mask)
    if scene.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur))
    arr = np.asarray(img, dtype=np.float32) * scene.brightness
    if scene.glare > 0:
        gx, gy = cx + rng.uniform(-0.3, 0.3) * size, cy + rng.uniform(-0.3, 0.3) * size
        sigma = size / 4
        yy, xx = np.ogrid[:height, :width]
        arr += 255.0 * scene.glare * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma * sigma))
    if scene.noise > 0:
        arr += rng.normal(0.0, scene.noise, arr.shape).astype(np.float32)
    if grayscale:
        return np.clip(arr, 0, 255).astype(np.uint8)
    tint = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    return np.clip(arr[:, :, None] * tint, 0, 255).astype(np.uint8)


def _draw(value: Spread, rng: np.random.Generator) -> float:
    if isinstance(value, tuple):
        low, high = value
        return float(rng.uniform(low, high))
    return float(value)


class SimulatedQrCamera(FrameSource):
    """A camera filming QR codes for ``payloads``, in order.

    Each payload is shown for ``frames_per_code`` frames, followed by ``blank_frames`` frames without a
    code (the person stepping away); a ``None`` payload is a frame without a code. After the last
    payload the camera is :attr:`finished` unless ``loop`` is set. ``size``, ``angle``, ``blur``,
    ``brightness``, ``glare`` and ``noise`` take a value or a ``(low, high)`` range drawn per frame;
    ``jitter`` moves the code by up to that share of the frame. With ``fps`` set, :meth:`read` paces
    itself like a real camera. :attr:`showing` is the payload of the last frame (the ground truth).
    A payload given as ``(symbology, text)`` is shown as that barcode (``Code128`` for a tube label),
    plain text as a QR code.

    >>> cam = SimulatedQrCamera(["HC1:6BFOXN"], frames_per_code=3, blank_frames=2, blur=(0, 1.5))
    >>> with cam:
    ...     shown = [cam.read() is not None and cam.showing for _ in range(6)]
    >>> shown
    ['HC1:6BFOXN', 'HC1:6BFOXN', 'HC1:6BFOXN', None, None, False]
    """

    def __init__(self, payloads: Sequence[str | tuple[str, str] | None], *, width: int = 640, height: int = 480,
                 size: Spread = 240.0, angle: Spread = 0.0, blur: Spread = 0.0, brightness: Spread = 1.0,
                 glare: Spread = 0.0, noise: Spread = 0.0, jitter: float = 0.0, frames_per_code: int = 1,
                 blank_frames: int = 0, loop: bool = False, fps: float | None = None, seed: int = 0,
                 grayscale: bool = False) -> None:
        super().__init__("sim-qr")
        if frames_per_code < 1 or blank_frames < 0:
            raise ValueError("frames_per_code must be >= 1 and blank_frames >= 0")
        self.payloads = [(p, "QRCode") if isinstance(p, str) else (p[1], p[0]) if p is not None else None
                         for p in payloads]
        self.width, self.height = width, height
        self.size, self.angle, self.blur = size, angle, blur
        self.brightness, self.glare, self.noise = brightness, glare, noise
        self.jitter = jitter
        self.frames_per_code, self.blank_frames = frames_per_code, blank_frames
        self.loop = loop
        self.interval = 1.0 / fps if fps else 0.0
        self.seed = seed
        self.grayscale = grayscale
        self.frames_rendered = 0
        self.showing: str | None = None
        self._schedule: list[tuple[str, str] | None] = []
        self._index = 0
        self._rng = np.random.default_rng(seed)
        self._next_at = 0.0

    def _open(self) -> None:
        self._schedule = []
        for payload in self.payloads:
            self._schedule += [payload] * (self.frames_per_code if payload is not None else 1)
            self._schedule += [None] * self.blank_frames
        self._index = 0
        self._rng = np.random.default_rng(self.seed)
        self._next_at = time.monotonic()

    @property
    def finished(self) -> bool:
        return self._is_open and not self.loop and self._index >= len(self._schedule)

    def scene(self) -> Scene:
        """Draw the filming conditions for the next frame."""
        rng = self._rng
        free_x = self.jitter * self.width / 2
        free_y = self.jitter * self.height / 2
        return Scene(size=_draw(self.size, rng), angle=_draw(self.angle, rng), blur=_draw(self.blur, rng),
                     brightness=_draw(self.brightness, rng), glare=_draw(self.glare, rng),
                     noise=_draw(self.noise, rng), dx=float(rng.uniform(-free_x, free_x)) if free_x else 0.0,
                     dy=float(rng.uniform(-free_y, free_y)) if free_y else 0.0)

    def _read(self) -> np.ndarray | None:
        if self._index >= len(self._schedule):
            if not self.loop or not self._schedule:
                return None
            self._index = 0
        shown = self._schedule[self._index]
        self._index += 1
        text, symbology = shown if shown is not None else (None, "QRCode")
        frame = render_qr_frame(text, self.scene(), width=self.width, height=self.height, rng=self._rng,
                                grayscale=self.grayscale, symbology=symbology)
        self.showing = text
        self.frames_rendered += 1
        if self.interval:
            self._next_at = pace(self._next_at, self.interval)
        return frame

    def _close(self) -> None:
        self._schedule = []
