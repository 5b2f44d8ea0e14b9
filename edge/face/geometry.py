"""Affine geometry for face crops: rotated square regions, similarity fits, warping with Pillow.

Transforms are 2×3 float matrices that map source-image pixels to crop pixels (``dst = M @ [x, y, 1]``).
Images are ``numpy`` RGB ``uint8`` arrays (H×W×3) or Pillow images; nothing is written anywhere.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

Affine = np.ndarray
"""A 2×3 float64 matrix mapping source pixels to destination pixels."""


def as_pil(image: np.ndarray | Image.Image) -> Image.Image:
    """The image as an RGB Pillow image (no copy when it already is one)."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3], dtype=np.uint8), "RGB")


def invert(m: Affine) -> Affine:
    """The inverse of a 2×3 affine transform."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply(m: Affine, points: np.ndarray) -> np.ndarray:
    """Transform N×2 (or N×k, k ≥ 2: only the first two columns move) points by ``m``."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts.copy()
    out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
    return out


def warp(image: np.ndarray | Image.Image, m: Affine, size: tuple[int, int]) -> np.ndarray:
    """The ``size`` (w, h) crop that ``m`` maps ``image`` into, bilinear, black outside, as RGB uint8."""
    inv = invert(m)
    data = (inv[0, 0], inv[0, 1], inv[0, 2], inv[1, 0], inv[1, 1], inv[1, 2])
    out = as_pil(image).transform(size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def roi_affine(center: tuple[float, float], side: float, angle: float, out: int, flip: bool = False) -> Affine:
    """Map a square of ``side`` px centred on ``center`` and rotated by ``angle`` (radians) onto ``out``×``out``.

    The region's own x axis points along ``angle``, so content tilted by ``angle`` comes out upright.
    ``flip`` mirrors the crop horizontally (the iris model wants the other eye mirrored).
    """
    c, s = math.cos(angle), math.sin(angle)
    k = out / side
    # rotate by -angle, scale, then move the centre to the crop's centre
    m = np.array([[c * k, s * k, 0.0], [-s * k, c * k, 0.0]])
    m[:, 2] = np.array([out / 2, out / 2]) - m[:, :2] @ np.asarray(center, dtype=np.float64)
    if flip:
        m = np.array([[-1.0, 0.0, out], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def letterbox_affine(width: int, height: int, out: int) -> Affine:
    """Fit a ``width``×``height`` image into an ``out``×``out`` square, centred, keeping its aspect ratio."""
    k = out / max(width, height)
    return np.array([[k, 0.0, (out - width * k) / 2], [0.0, k, (out - height * k) / 2]])


def similarity(src: np.ndarray, dst: np.ndarray) -> Affine:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    Umeyama's closed form, as used for ArcFace alignment; ``src`` and ``dst`` are N×2.
    """
    src = np.asarray(src, dtype=np.float64)[:, :2]
    dst = np.asarray(dst, dtype=np.float64)[:, :2]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var_s = (s0 ** 2).sum() / len(src)
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m
