"""Static 1:1 face verification: is the face in photo A the same person as the face in photo B?

Each photo must hold exactly one face, or the caller selects one (0 = largest). Faces cut off by the
image border are refused. The score is the cosine of the two SFace embeddings; ``same`` means
``score >= threshold``. Photos and embeddings stay in memory; the result carries only the decision,
scores, threshold and model versions.

Example::

    v = FaceVerifier()
    r = v.compare(photo_a, photo_b)
    print(r.same, r.score)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edge.face.embed import MODEL as EMBED_MODEL
from edge.face.embed import cosine
from edge.face.errors import FaceNotSelectable, NoFace, PartialFace, SeveralFaces
from edge.face.pipeline import Face, FacePipeline
from models_tflite.loader import spec

logger = logging.getLogger(__name__)

THRESHOLD = 0.36
"""Cosine at or above which two faces are the same person (see docs/face.md for how it was chosen)."""

MAX_OUTSIDE = 0.3
"""A face whose box lies more than this fraction outside the image is partial."""


def model_versions() -> dict[str, str]:
    """Model name → version string of the models a comparison uses."""
    names = ("face_detection_full", "face_detection_short", "face_landmark", EMBED_MODEL)
    return {n: spec(n).version for n in names}


@dataclass(frozen=True, slots=True)
class CompareResult:
    """Outcome of a 1:1 comparison (no images, no embeddings)."""

    same: bool
    score: float
    threshold: float
    faces_a: int
    faces_b: int
    models: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def outside_fraction(face: Face, width: int, height: int) -> float:
    """Fraction of the face box's area that lies outside a ``width``×``height`` image."""
    x0, y0, x1, y1 = face.box
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    ix = max(0.0, min(x1, width) - max(x0, 0.0))
    iy = max(0.0, min(y1, height) - max(y0, 0.0))
    return 1.0 - ix * iy / area


class FaceVerifier:
    """1:1 comparison with one pipeline (one interpreter per model) for the calling thread."""

    def __init__(self, *, threshold: float = THRESHOLD, threads: int = 1, model_dir: Path | None = None) -> None:
        self.threshold = threshold
        self.pipeline = FacePipeline(threads=threads, model_dir=model_dir)

    def the_face(self, image: np.ndarray | Image.Image, select: int | None = None,
                 label: str = "image") -> tuple[Face, int]:
        """The one face to compare in ``image`` and how many faces it holds."""
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        faces = self.pipeline.faces(pil, still=True)
        if not faces:
            raise NoFace(f"{label}: no face found")
        if select is None:
            if len(faces) > 1:
                raise SeveralFaces(f"{label}: {len(faces)} faces found; 1:1 needs one (select a face, 0 = largest)",
                                   len(faces))
            select = 0
        if not 0 <= select < len(faces):
            raise FaceNotSelectable(f"{label}: face {select} selected but only {len(faces)} found")
        face = faces[select]
        if outside_fraction(face, pil.width, pil.height) > MAX_OUTSIDE:
            raise PartialFace(f"{label}: the face is cut off by the image border")
        return face, len(faces)

    def compare(self, a: np.ndarray | Image.Image, b: np.ndarray | Image.Image, *,
                select_a: int | None = None, select_b: int | None = None) -> CompareResult:
        """Compare the face of ``a`` with the face of ``b``."""
        fa, na = self.the_face(a, select_a, "image A")
        fb, nb = self.the_face(b, select_b, "image B")
        assert fa.embedding is not None and fb.embedding is not None
        score = cosine(fa.embedding, fb.embedding)
        same = score >= self.threshold
        logger.info("face compare: same=%s score=%.3f threshold=%.3f", same, score, self.threshold)
        return CompareResult(same, round(score, 4), self.threshold, na, nb, model_versions())
