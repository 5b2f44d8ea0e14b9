"""Trusted reference faces for the identity desk: a document's data-page photo, an enrolled template, a card photo.

A reference is only ever taken from a source the box trusts, never from what a person holds up on a phone:

* **data page** (:func:`page_reference`): the photo printed on a passport (TD3) or TD2 document, cut from the
  same camera frame in which the machine-readable zone was read, at a fixed place relative to the zone
  (left, above it). The cut-out must hold exactly one face, of usable size, sharp enough.
  A TD1 card's zone is on its back, away from the photo: such cards need an enrolled reference.
* **enrolled template** (:func:`decode_template`): a 128-d SFace embedding enrolled earlier at a desk and
  fetched from the central service (:mod:`edge.face.enrolment`); held in memory only.
* **ID card photo** (:func:`card_reference`): the resident ID card's photo is vendor-encrypted (WLT); only a
  licensed decoder plug-in (:func:`load_wlt_plugins`, entry point group ``ehc_edge.wlt_decoders``) turns it into
  an image. Without one the card needs an enrolled reference (:class:`ReferenceRefused` ``needs_enrolled``).

References, crops and embeddings live in memory only; nothing here writes to disk or logs a face.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
from PIL import Image

from edge.face.geometry import as_pil
from edge.face.pipeline import FacePipeline
from mqtt.face import decode_template, encode_template

__all__ = ["Reference", "ReferenceRefused", "card_reference", "decode_template", "encode_template", "load_wlt_plugins",
           "page_reference", "photo_zone", "sharpness"]

logger = logging.getLogger(__name__)

WLT_ENTRY_POINTS = "ehc_edge.wlt_decoders"
PITCH_MM = 2.54
"""MRZ character pitch: the zone's length gives the page's scale."""
PHOTO_ZONE_MM = {"TD3": (-8.0, 45.0, -74.0, -1.0), "TD2": (-8.0, 40.0, -58.0, -1.0)}
"""Where the photo lies relative to the zone's top-left corner, in mm: x from, x to, y from, y to
(x along the zone's lines, y downward; ICAO 9303 places the portrait at the left of the data page)."""
MIN_FACE_PX = 48.0
"""Smallest usable face width on the page, in frame pixels (SFace works on 112-pixel crops)."""
MIN_SHARPNESS = 40.0
"""Smallest variance of the Laplacian of the aligned 112×112 grey face (a blurred photo scores below)."""


class ReferenceRefused(Exception):
    """No trusted reference could be taken; ``reason`` is a stable name shown to staff and recorded."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference face: ``source`` is ``document_photo``, ``enrolled`` or ``id_card_photo``.
    ``embedding`` is biometric data: memory only, never logged (kept out of ``repr``)."""

    source: str
    embedding: np.ndarray = field(repr=False)
    quality: dict[str, float] = field(default_factory=dict)


def sharpness(aligned: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey aligned crop."""
    g = np.asarray(aligned, dtype=np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def photo_zone(frame: np.ndarray | Image.Image, corners: np.ndarray, fmt: str, chars: int) -> tuple[Image.Image, float]:
    """The data page's photo zone cut upright from ``frame`` (RGB), and frame pixels per output pixel.

    ``corners``: the zone's top-left, top-right, bottom-right, bottom-left (frame pixels); ``chars`` its line length.
    """
    if fmt not in PHOTO_ZONE_MM:
        raise ReferenceRefused("no_page_photo", f"a {fmt} document's zone is not on the photo side")
    tl, tr, _, bl = (np.asarray(c, dtype=np.float64) for c in corners)
    along = tr - tl
    length = float(np.linalg.norm(along))
    if length < 1:
        raise ReferenceRefused("no_page_photo", "the zone's position is unknown")
    ux = along / length
    down = bl - tl
    uy = down - ux * float(np.dot(down, ux))
    uy = uy / (float(np.linalg.norm(uy)) or 1.0)
    mm = length / (chars * PITCH_MM)  # frame pixels per mm
    x0, x1, y0, y1 = PHOTO_ZONE_MM[fmt]
    out_w, out_h = int(round((x1 - x0) * mm)), int(round((y1 - y0) * mm))
    origin = tl + ux * x0 * mm + uy * y0 * mm
    # PIL's affine maps output (u, v) to input (a u + b v + c, d u + e v + f): one output pixel = one frame pixel
    coeffs = (ux[0], uy[0], origin[0], ux[1], uy[1], origin[1])
    pil = as_pil(frame)
    return pil.transform((out_w, out_h), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC,
                         fillcolor=(255, 255, 255)), 1.0


def page_reference(frame: np.ndarray | Image.Image, corners: np.ndarray, fmt: str, chars: int,
                   pipe: FacePipeline) -> Reference:
    """The reference from a data page's printed photo in ``frame`` (RGB), located from the zone's ``corners``.

    Raises :class:`ReferenceRefused`: ``no_page_photo`` (no face where the photo must be, or a format whose zone
    is not beside the photo), ``several_faces_on_page``, ``page_photo_too_small``, ``page_photo_blurred``.
    """
    zone, _ = photo_zone(frame, corners, fmt, chars)
    faces = pipe.faces(zone, still=True)
    if not faces:
        raise ReferenceRefused("no_page_photo", "no face found in the data page's photo zone")
    if len(faces) > 1:
        raise ReferenceRefused("several_faces_on_page", f"{len(faces)} faces in the photo zone")
    face = faces[0]
    width = face.detection.width
    sharp = sharpness(face.aligned)
    if width < MIN_FACE_PX:
        raise ReferenceRefused("page_photo_too_small", f"photo face {width:.0f} px wide (need {MIN_FACE_PX:.0f})")
    if sharp < MIN_SHARPNESS:
        raise ReferenceRefused("page_photo_blurred", f"photo sharpness {sharp:.0f} (need {MIN_SHARPNESS:.0f})")
    assert face.embedding is not None
    logger.info("data page photo taken as reference (face %.0f px, sharpness %.0f)", width, sharp)
    return Reference("document_photo", face.embedding, {"face_px": round(width, 1), "sharpness": round(sharp, 1)})


# -- ID card photo (WLT) -------------------------------------------------------------------------------------

def load_wlt_plugins() -> str | None:
    """Register the first installed WLT decoder plug-in (entry point group ``ehc_edge.wlt_decoders``: a
    callable returning a :class:`drivers.idcard.card.PhotoDecoder`); its name, or None when none is installed."""
    from drivers.idcard.card import photo_decoder, set_photo_decoder

    current = photo_decoder()
    if current is not None:
        return current.name
    for ep in metadata.entry_points(group=WLT_ENTRY_POINTS):
        try:
            decoder = ep.load()()
        except Exception as exc:  # a broken vendor library must not stop the desk
            logger.error("WLT decoder plug-in %s failed to load: %s", ep.name, type(exc).__name__)
            continue
        set_photo_decoder(decoder)
        return str(decoder.name)
    return None


def card_reference(wlt: bytes, pipe: FacePipeline) -> Reference:
    """The reference from an ID card's WLT photo through the licensed plug-in.

    Raises :class:`ReferenceRefused` ``needs_enrolled`` when no decoder is installed (or the card carries no
    photo), ``card_photo_unreadable`` when the plug-in fails, ``no_page_photo`` / ``several_faces_on_page``
    when the decoded image does not hold one face.
    """
    from drivers.idcard.card import PhotoDecoderUnavailable, decode_photo

    if not wlt:
        raise ReferenceRefused("needs_enrolled", "this card carries no photo: it needs an enrolled reference")
    try:
        data = decode_photo(wlt)
    except PhotoDecoderUnavailable:
        raise ReferenceRefused("needs_enrolled", "this card's photo cannot be read here (no licensed WLT decoder): "
                                                 "it needs an enrolled reference") from None
    except Exception as exc:
        raise ReferenceRefused("card_photo_unreadable", f"the WLT decoder failed: {type(exc).__name__}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            photo = im.convert("RGB")
    except Exception:
        raise ReferenceRefused("card_photo_unreadable", "the WLT decoder gave no image") from None
    faces = pipe.faces(photo, still=True)
    if len(faces) != 1 or faces[0].embedding is None:
        raise ReferenceRefused("no_page_photo" if not faces else "several_faces_on_page",
                               f"{len(faces)} faces on the card photo")
    return Reference("id_card_photo", faces[0].embedding, {"face_px": round(faces[0].detection.width, 1)})
