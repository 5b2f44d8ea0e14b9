"""Rendered photos of tube racks and of frames holding many codes, for the decoder and the rack scan.

A rack photo shows a plate of ``rows`` x ``columns`` wells seen from above: each occupied well holds a tube
whose cap carries a Data Matrix (or Code 128) label, made with zxing-cpp's writer as the tube printers'
labels are; tubes turn in their wells, so every label has its own angle. The plate is put in the frame with
a rotation and a perspective (the operator's phone or the station camera is never square to the rack),
then blurred, lit with a glare spot and given sensor noise. Some wells are empty (a dark hole) and some
labels are damaged (smeared over, unreadable): the truth says which.

``lots_frame`` is a frame with many QR codes of different sizes and angles (a sheet of labels, a
poster), the benchmark's multi-code category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import zxingcpp
from PIL import Image, ImageDraw, ImageFilter

from drivers.sim_camera import background, qr_image


@dataclass(frozen=True, slots=True)
class RackPhoto:
    """A rendered rack and what it shows: ``tubes`` position -> code text for the readable labels,
    ``missing`` the empty wells, ``damaged`` the tubes whose label cannot be read."""

    frame: np.ndarray = field(repr=False)
    rows: int
    columns: int
    tubes: dict[str, str]
    missing: frozenset[str]
    damaged: frozenset[str]
    centres: dict[str, tuple[float, float]] = field(repr=False)


def position(row: int, column: int) -> str:
    """``A1`` for the first row and column (rows are letters, columns numbers from 1)."""
    return f"{chr(ord('A') + row)}{column + 1}"


def tube_codes(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct tube label texts of the form ``T`` + 8 digits."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(10**8, size=n, replace=False)
    return [f"T{int(v):08d}" for v in picked]


def code_image(text: str, symbology: str, size: int) -> Image.Image:
    """The label for ``text`` as a grey image ``size`` pixels wide (white quiet zone of 2 modules)."""
    fmt = getattr(zxingcpp.BarcodeFormat, symbology)
    bits = np.asarray(zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(text, fmt), scale=1,
                                                      add_quiet_zones=False))
    if symbology != "DataMatrix":
        bits = np.repeat(bits[:1], max(4, bits.shape[1] // 4), axis=0)
    bits = np.pad(bits, 2, constant_values=255)
    h, w = bits.shape
    scale = max(1, math.ceil(4 * size / w))
    img = Image.fromarray(bits, "L").resize((w * scale, h * scale), Image.Resampling.NEAREST)
    return img.resize((size, max(4, round(size * h / w))), Image.Resampling.BOX)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 projective map taking the four ``src`` points to ``dst``."""
    a = []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(a, dtype=np.float64))
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def _apply(h: np.ndarray, x: float, y: float) -> tuple[float, float]:
    u, v, w = h @ np.array([x, y, 1.0])
    return float(u / w), float(v / w)


def render_rack(rows: int = 6, columns: int = 8, *, seed: int = 0, width: int = 1920, height: int = 1080,
                angle: float = 0.0, perspective: float = 0.0, fill: float = 0.8, missing: int = 2,
                damaged: int = 1, blur: float = 0.6, glare: float = 0.35, noise: float = 3.0,
                symbology: str = "DataMatrix", label: float = 0.5, codes: list[str] | None = None,
                grayscale: bool = False) -> RackPhoto:
    """A photo of a rack (see the module docstring).

    ``angle``: the rack's rotation in degrees; ``perspective``: how far (as a share of the rack's size) its
    corners are pulled towards or away from the camera; ``fill``: the share of the frame's smaller
    dimension the rack takes; ``label``: the label's side as a share of the well pitch.
    """
    rng = np.random.default_rng(seed)
    pitch = 120  # the flat rack is drawn at this many pixels per well, then warped into the frame
    margin = pitch // 2
    pw, ph = columns * pitch + 2 * margin, rows * pitch + 2 * margin
    plate = Image.new("L", (pw, ph), 95)
    draw = ImageDraw.Draw(plate)
    draw.rectangle((4, 4, pw - 5, ph - 5), outline=60, width=6)
    cells = [(r, c) for r in range(rows) for c in range(columns)]
    order = rng.permutation(len(cells))
    empty = {cells[i] for i in order[:missing]}
    broken = {cells[i] for i in order[missing:missing + damaged]}
    texts = iter(codes if codes is not None else tube_codes(rows * columns, seed=seed + 1))
    tubes: dict[str, str] = {}
    centres_flat: dict[str, tuple[float, float]] = {}
    for r, c in cells:
        cx, cy = margin + (c + 0.5) * pitch, margin + (r + 0.5) * pitch
        pos = position(r, c)
        centres_flat[pos] = (cx, cy)
        well = 0.44 * pitch
        draw.ellipse((cx - well, cy - well, cx + well, cy + well), fill=28)
        if (r, c) in empty:
            continue
        cap = 0.4 * pitch
        draw.ellipse((cx - cap, cy - cap, cx + cap, cy + cap), fill=int(rng.integers(150, 215)))
        text = next(texts)
        img = code_image(text, symbology, int(label * pitch))
        mask = Image.new("L", img.size, 255)
        turn = float(rng.uniform(0, 360))
        img = img.rotate(turn, Image.Resampling.BILINEAR, expand=True, fillcolor=255)
        mask = mask.rotate(turn, Image.Resampling.BILINEAR, expand=True, fillcolor=0)
        plate.paste(img, (int(round(cx - img.width / 2)), int(round(cy - img.height / 2))), mask)
        if (r, c) in broken:  # a smear over most of the label
            s = label * pitch * 0.45
            draw.ellipse((cx - s, cy - s * 0.7, cx + s * 0.9, cy + s), fill=int(rng.integers(40, 90)))
        else:
            tubes[pos] = text
    # place the plate in the frame: scale, rotate, pull the corners for perspective
    size = fill * min(width / pw, height / ph)
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], dtype=np.float64)
    centred = (corners - [pw / 2, ph / 2]) * size
    t = math.radians(angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    placed = centred @ rot.T
    if perspective:
        jitter = rng.uniform(-perspective, perspective, size=(4, 2)) * [pw * size, ph * size]
        placed = placed + jitter
    placed += [width / 2, height / 2]
    to_frame = _homography(corners, placed)
    to_plate = np.linalg.inv(to_frame)
    to_plate /= to_plate[2, 2]
    warped = plate.transform((width, height), Image.Transform.PERSPECTIVE, tuple(to_plate.ravel()[:8]),
                             Image.Resampling.BILINEAR, fillcolor=0)
    inside = Image.new("L", plate.size, 255).transform((width, height), Image.Transform.PERSPECTIVE,
                                                       tuple(to_plate.ravel()[:8]), Image.Resampling.BILINEAR,
                                                       fillcolor=0)
    bg = Image.fromarray(np.clip(background(width, height, rng), 0, 255).astype(np.uint8), "L")
    bg.paste(warped, (0, 0), inside)
    if blur > 0:
        bg = bg.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(bg, dtype=np.float32)
    if glare > 0:
        gx, gy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        sigma = 0.12 * min(width, height)
        yy, xx = np.ogrid[:height, :width]
        arr += 255.0 * glare * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma * sigma))
    if noise > 0:
        arr += rng.normal(0.0, noise, arr.shape).astype(np.float32)
    centres = {p: _apply(to_frame, *xy) for p, xy in centres_flat.items()}
    missing_pos = frozenset(position(r, c) for r, c in empty)
    damaged_pos = frozenset(position(r, c) for r, c in broken)
    if grayscale:
        frame = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        tint = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
        frame = np.clip(arr[:, :, None] * tint, 0, 255).astype(np.uint8)
    return RackPhoto(frame, rows, columns, tubes, missing_pos, damaged_pos, centres)


def lots_frame(n: int, *, seed: int = 0, width: int = 1920, height: int = 1080, min_size: int = 60,
               max_size: int = 150, blur: float = 0.5, noise: float = 3.0) -> tuple[np.ndarray, list[str]]:
    """A grey frame with ``n`` QR codes (sizes ``min_size``..``max_size`` px, any angle, not overlapping) and
    their texts. Fewer are placed when the frame is too full."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(np.clip(background(width, height, rng), 0, 255).astype(np.uint8), "L")
    taken: list[tuple[float, float, float]] = []
    texts: list[str] = []
    for i in range(n):
        size = int(rng.integers(min_size, max_size + 1))
        text = f"LOT-{seed:04d}-{i:03d}-{int(rng.integers(10**6)):06d}"
        code = qr_image(text, size)
        turn = float(rng.uniform(-45, 45))
        mask = Image.new("L", code.size, 255)
        code = code.rotate(turn, Image.Resampling.BILINEAR, expand=True, fillcolor=255)
        mask = mask.rotate(turn, Image.Resampling.BILINEAR, expand=True, fillcolor=0)
        r = code.width / 2 + 6
        for _ in range(200):
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            if all(math.hypot(cx - x, cy - y) > r + q for x, y, q in taken):
                break
        else:
            continue
        taken.append((cx, cy, r))
        img.paste(code, (int(round(cx - code.width / 2)), int(round(cy - code.height / 2))), mask)
        texts.append(text)
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32)
    if noise > 0:
        arr += rng.normal(0.0, noise, arr.shape).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8), texts
