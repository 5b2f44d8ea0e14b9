"""Synthetic passports (TD3), ID cards (TD1) and TD2 documents filmed by a camera, for MRZ tests and benchmarks.

Every document is made up: random names, numbers and dates with correct check digits
(:func:`random_mrz`), printed with the OCR-B font (Debian ``fonts-ocr-b``) on a textured card with a
photo box and a few printed fields (:func:`render_document`), then placed on a desk at an angle with
camera-like degradation: perspective, blur, uneven light, noise and JPEG compression
(:func:`render_frame`). All of it is reproducible from a seed.

>>> doc = next(sample_documents(1, seed=3))
>>> doc.frame.shape, len(doc.lines) in (2, 3)
((960, 1280, 3), True)
"""

from __future__ import annotations

import datetime as dt
import io
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from drivers.sim_camera import background
from edge.documents.mrz import FILLER, MrzFormat, compose_mrz

OCR_B = Path("/usr/share/fonts/opentype/ocr-b/OCRB.otf")
"""The MRZ font (Debian ``fonts-ocr-b``)."""
_PRINT_FONTS = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"))

PX_PER_MM = 10.0
"""Resolution the documents are drawn at before they are filmed."""
SIZES_MM = {MrzFormat.TD1: (85.6, 53.98), MrzFormat.TD2: (105.0, 74.0), MrzFormat.TD3: (125.0, 88.0)}
"""Document sizes (ID-1 card, ID-2, passport data page)."""
PITCH_MM = 2.54
"""MRZ character pitch (10 characters per inch)."""
LINE_PITCH_MM = 4.23
"""MRZ line pitch (6 lines per inch)."""

COUNTRIES = ("UTO", "D", "FRA", "NLD", "GBR", "ITA", "ESP", "AUT", "CHE", "POL", "SWE", "CHN", "USA", "CAN",
             "TUR", "BEL", "DNK", "PRT", "GRC", "IRL", "FIN", "CZE", "HUN", "ROU", "UKR", "JPN", "KOR", "IND",
             "BRA", "MEX", "AUS", "ZAF", "EGY", "MAR", "VNM", "THA", "PHL", "NOR", "EUE", "XXA")
_SYLLABLES = ("AN", "NA", "MA", "RI", "SSON", "ER", "IK", "LO", "WANG", "LI", "ZH", "OU", "MUL", "LER", "SCH",
              "MI", "DT", "KO", "VAL", "ENKO", "GAR", "CIA", "BER", "GER", "SEN", "JO", "HAN", "NES", "QU",
              "IN", "TA", "YA", "KI", "ZE", "BO", "DU", "PE", "TR", "OV", "A", "E", "O", "U", "Y", "X")
_DOC_CODES = {MrzFormat.TD1: ("I<", "ID", "IR", "AC", "C<"), MrzFormat.TD2: ("I<", "ID", "IP"),
              MrzFormat.TD3: ("P<", "P<", "P<", "PD", "PO")}
_ALNUM = string.ascii_uppercase + string.digits


# -- MRZ text -------------------------------------------------------------------------------------------------

def _name(rng: np.random.Generator, parts: int) -> str:
    words = []
    for _ in range(parts):
        n = int(rng.integers(1, 4))
        words.append("".join(_SYLLABLES[int(rng.integers(len(_SYLLABLES)))] for _ in range(n)))
    return " ".join(words)


def _date(rng: np.random.Generator, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=int(rng.integers(0, (last - first).days + 1)))


def _chars(rng: np.random.Generator, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(alphabet[int(rng.integers(len(alphabet)))] for _ in range(n))


def random_mrz(rng: np.random.Generator, fmt: MrzFormat = MrzFormat.TD3) -> tuple[str, ...]:
    """A random, fully valid zone of ``fmt``: made-up names, numbers, dates and optional data.

    Document numbers are 9 characters, sometimes shorter (fillers) and, for TD1/TD2, sometimes longer
    (continued in the optional data); names are sometimes cut by the field width; optional data is
    sometimes empty.
    """
    today = dt.date(2025, 1, 1)
    birth = _date(rng, dt.date(1930, 1, 1), dt.date(2022, 12, 31))
    expiry = _date(rng, today - dt.timedelta(days=400), today + dt.timedelta(days=3650))
    r = float(rng.random())
    if fmt is not MrzFormat.TD3 and r < 0.1:
        number = _chars(rng, int(rng.integers(10, 13)))
    else:
        number = _chars(rng, 1, string.ascii_uppercase) + _chars(rng, 8 if r < 0.85 else int(rng.integers(5, 8)))
    room = {MrzFormat.TD1: 15, MrzFormat.TD2: 7, MrzFormat.TD3: 14}[fmt] - max(0, len(number) - 9 + 2)
    optional = "" if rng.random() < 0.5 else _chars(rng, int(rng.integers(1, room + 1)))
    return compose_mrz(
        fmt,
        document_type=_DOC_CODES[fmt][int(rng.integers(len(_DOC_CODES[fmt])))].rstrip(FILLER),
        issuing_country=COUNTRIES[int(rng.integers(len(COUNTRIES)))],
        surname=_name(rng, int(rng.integers(1, 3))),
        given_names=_name(rng, int(rng.integers(1, 4))),
        document_number=number,
        nationality=COUNTRIES[int(rng.integers(len(COUNTRIES)))],
        birth_date=birth.strftime("%y%m%d"),
        sex="MFX"[int(rng.choice(3, p=[0.48, 0.48, 0.04]))],
        expiry_date=expiry.strftime("%y%m%d"),
        optional_data=optional,
        optional_data_2=_chars(rng, int(rng.integers(0, 8))) if fmt is MrzFormat.TD1 and rng.random() < 0.3 else "",
    )


# -- the document ---------------------------------------------------------------------------------------------

def _font(size: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = _PRINT_FONTS[1 if bold else 0]
    return ImageFont.truetype(str(path if path.exists() else OCR_B), max(6, int(round(size))))


def _texture(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A pale security-print background: guilloche-like waves over a soft colour gradient, RGB float."""
    base = rng.uniform(205, 245, size=3)
    tint = rng.uniform(-25, 10, size=3)
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    img = base[None, None, :] + (0.6 * xs + 0.4 * ys)[:, :, None] * tint[None, None, :]
    waves = np.zeros((h, w), np.float32)
    for _ in range(3):
        fx, fy, ph = rng.uniform(8, 30), rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
        waves += np.cos(2 * np.pi * (fx * xs + 0.2 * np.sin(2 * np.pi * fy * ys + ph)))
    lines = (np.abs(waves) > 2.6).astype(np.float32)
    img -= lines[:, :, None] * rng.uniform(10, 30, size=3)[None, None, :]
    return img


def render_document(lines: Sequence[str], fmt: MrzFormat, rng: np.random.Generator, *,
                    px_per_mm: float = PX_PER_MM) -> Image.Image:
    """The page (TD3, TD2) or card side (TD1) holding ``lines`` as its MRZ, as an RGB image."""
    w_mm, h_mm = SIZES_MM[fmt]
    w, h = int(round(w_mm * px_per_mm)), int(round(h_mm * px_per_mm))
    mm = px_per_mm
    n_lines, width = fmt.lines, fmt.width
    zone_top = h - (n_lines * LINE_PITCH_MM + 4.0) * mm
    tex = _texture(w, h, rng)
    tex[int(zone_top):, :, :] = 0.35 * tex[int(zone_top):, :, :] + 0.65 * 242.0  # the MRZ's clear zone
    img = Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    ink = tuple(int(v) for v in rng.integers(20, 70, size=3))
    title = {MrzFormat.TD3: "PASSPORT  PASSEPORT", MrzFormat.TD2: "IDENTITY CARD",
             MrzFormat.TD1: "IDENTITY CARD  CARTE D'IDENTITE"}[fmt]
    draw.text((5 * mm, 3 * mm), title, font=_font(3.2 * mm, bold=True), fill=(40, 40, 110))
    # photo box with a head-and-shoulders silhouette
    photo_w = (0.27 if fmt is MrzFormat.TD1 else 0.26) * w
    px0, py0 = 5 * mm, 9 * mm
    px1, py1 = px0 + photo_w, min(zone_top - 3 * mm, py0 + photo_w * 1.3)
    shade = int(rng.integers(150, 215))
    draw.rectangle((px0, py0, px1, py1), fill=(shade, shade - 5, shade - 10), outline=(90, 90, 90))
    cx, pw, ph = (px0 + px1) / 2, px1 - px0, py1 - py0
    skin = tuple(int(v) for v in rng.integers(90, 200, size=3))
    draw.ellipse((cx - 0.22 * pw, py0 + 0.15 * ph, cx + 0.22 * pw, py0 + 0.6 * ph), fill=skin)
    draw.ellipse((cx - 0.45 * pw, py0 + 0.68 * ph, cx + 0.45 * pw, py0 + 1.3 * ph), fill=(60, 60, 80))
    draw.rectangle((px0, py1, px1, py1 + 0.3 * ph), fill=tuple(int(v) for v in tex[min(h - 1, int(py1) + 2), 2]))
    # printed fields (the same made-up person as the MRZ)
    name_line = lines[-1] if fmt is MrzFormat.TD1 else lines[0][5:]
    surname, _, given = name_line.rstrip(FILLER).partition(FILLER * 2)
    values = [("Surname / Nom", surname.replace(FILLER, " ")), ("Given names / Prenoms", given.replace(FILLER, " ")),
              ("Nationality", "UTOPIAN"), ("Date of birth", "12 AUG / AOUT 74"), ("Sex", "F")]
    x = px1 + 4 * mm
    y = py0
    step = (zone_top - 3 * mm - py0) / len(values)
    small, value_font = _font(min(2.0 * mm, step * 0.3)), _font(min(3.0 * mm, step * 0.45), bold=True)
    for label, value in values:
        draw.text((x, y), label, font=small, fill=(90, 90, 120))
        draw.text((x, y + step * 0.35), value[:22], font=value_font, fill=ink)
        y += step
    # the machine-readable zone, monospaced at 10 characters per inch
    font = ImageFont.truetype(str(OCR_B), int(round(PITCH_MM * mm / 0.7232)))
    x0 = (w - width * PITCH_MM * mm) / 2
    mrz_ink = tuple(int(v) for v in rng.integers(0, 45, size=3))
    for i, text in enumerate(lines):
        baseline = h - (n_lines - i - 1) * LINE_PITCH_MM * mm - 3.2 * mm
        for j, ch in enumerate(text):
            draw.text((x0 + j * PITCH_MM * mm, baseline), ch, font=font, fill=mrz_ink, anchor="ls")
    return img


def render_front(fmt: MrzFormat, rng: np.random.Generator) -> Image.Image:
    """A document side without an MRZ (a card's front): texture, photo box and printed fields only."""
    img = render_document(random_mrz(rng, fmt), fmt, rng)
    w, h = img.size
    zone_top = int(h - (fmt.lines * LINE_PITCH_MM + 4.0) * PX_PER_MM)
    clean = Image.fromarray(np.clip(_texture(w, h - zone_top, rng), 0, 255).astype(np.uint8), "RGB")
    img.paste(clean, (0, zone_top))
    return img


# -- filming --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Capture:
    """How a document is filmed (fixed values; :func:`camera_capture` and :func:`easy_capture` draw them).

    ``fill``: document width as a share of the frame width; ``angle``: rotation in degrees
    (counter-clockwise); ``perspective``: largest corner displacement as a share of the document width;
    ``blur``: Gaussian radius in frame pixels; ``light``: strength (0..1) of uneven lighting; ``noise``:
    standard deviation in grey levels; ``jpeg_quality``: None for no compression; ``dx``, ``dy``: shift
    of the document centre as a share of the frame size.
    """

    fill: float = 0.75
    angle: float = 0.0
    perspective: float = 0.0
    blur: float = 0.0
    light: float = 0.0
    noise: float = 0.0
    jpeg_quality: int | None = None
    dx: float = 0.0
    dy: float = 0.0


def camera_capture(rng: np.random.Generator) -> Capture:
    """A document held under the box's camera: tilted up to 5 degrees, slightly skewed, blurred, noisy."""
    return Capture(fill=float(rng.uniform(0.6, 0.85)), angle=float(rng.uniform(-5, 5)),
                   perspective=float(rng.uniform(0, 0.025)), blur=float(rng.uniform(0.0, 1.2)),
                   light=float(rng.uniform(0.1, 0.5)), noise=float(rng.uniform(2, 7)),
                   jpeg_quality=int(rng.integers(55, 92)), dx=float(rng.uniform(-0.06, 0.06)),
                   dy=float(rng.uniform(-0.06, 0.06)))


def easy_capture(rng: np.random.Generator) -> Capture:
    """A document laid flat and well lit: nearly straight, sharp, little noise."""
    return Capture(fill=float(rng.uniform(0.75, 0.85)), angle=float(rng.uniform(-1, 1)), blur=0.3,
                   light=0.1, noise=2.0, jpeg_quality=92)


def _perspective_coeffs(dst: np.ndarray, src: np.ndarray) -> list[float]:
    """Pillow PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src`` (4x2 each)."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, float), src.reshape(8).astype(float)).tolist()


def render_frame(document: Image.Image | None, capture: Capture, rng: np.random.Generator, *,
                 width: int = 1280, height: int = 960) -> np.ndarray:
    """A BGR ``uint8`` camera frame of ``document`` (None: the empty desk) filmed as ``capture`` says."""
    desk = background(width, height, rng)
    frame = Image.fromarray(np.clip(np.stack([desk * t for t in rng.uniform(0.85, 1.1, 3)], -1), 0, 255)
                            .astype(np.uint8), "RGB")
    if document is not None:
        dw, dh = document.size
        scale = capture.fill * width / dw
        cx, cy = width / 2 + capture.dx * width, height / 2 + capture.dy * height
        a = np.deg2rad(capture.angle)
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        corners = np.array([[0, 0], [dw, 0], [dw, dh], [0, dh]], float)
        dst = (corners - [dw / 2, dh / 2]) * scale @ rot.T + [cx, cy]
        dst += rng.uniform(-1, 1, size=(4, 2)) * capture.perspective * dw * scale
        coeffs = _perspective_coeffs(dst, corners)
        rgba = document.convert("RGBA")
        warped = rgba.transform((width, height), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
        frame.paste(warped, (0, 0), warped)
    if capture.blur > 0:
        frame = frame.filter(ImageFilter.GaussianBlur(capture.blur))
    arr = np.asarray(frame, np.float32)
    if capture.light > 0:
        ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
        xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
        gx, gy = rng.uniform(-1, 1, 2)
        bx, by = rng.uniform(-0.8, 0.8, 2)
        field = 1 + capture.light * (0.5 * (gx * xs + gy * ys) + 0.6 * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / 0.3)
                                     - 0.3)
        arr *= field[:, :, None]
    if capture.noise > 0:
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(capture.noise)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if capture.jpeg_quality is not None:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=capture.jpeg_quality)
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.ascontiguousarray(np.asarray(out)[:, :, ::-1])


# -- samples --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SampleDocument:
    """One filmed document: the true zone, the frame (BGR) and how it was filmed."""

    format: MrzFormat
    lines: tuple[str, ...]
    frame: np.ndarray
    capture: Capture


def sample_documents(n: int, seed: int = 0, *, formats: Sequence[MrzFormat] = (MrzFormat.TD1, MrzFormat.TD3),
                     level: str = "camera", width: int = 1280, height: int = 960) -> Iterator[SampleDocument]:
    """``n`` filmed documents, the formats taken in turn; ``level`` ``"camera"`` or ``"easy"``.

    Document ``i`` depends only on ``seed`` and ``i``, so a sample of the first ``k`` is the same whatever ``n``.
    """
    draw = {"camera": camera_capture, "easy": easy_capture}[level]
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        fmt = formats[i % len(formats)]
        lines = random_mrz(rng, fmt)
        capture = draw(rng)
        frame = render_frame(render_document(lines, fmt, rng), capture, rng, width=width, height=height)
        yield SampleDocument(fmt, lines, frame, capture)


def frames_without_mrz(n: int, seed: int = 0, *, width: int = 1280, height: int = 960) -> Iterator[np.ndarray]:
    """``n`` frames with no zone to read: the empty desk and document fronts without an MRZ, in turn."""
    for i in range(n):
        rng = np.random.default_rng([seed, i, 7])
        if i % 2 == 0:
            yield render_frame(None, Capture(noise=4, jpeg_quality=85), rng, width=width, height=height)
        else:
            fmt = (MrzFormat.TD1, MrzFormat.TD3)[(i // 2) % 2]
            yield render_frame(render_front(fmt, rng), camera_capture(rng), rng, width=width, height=height)
