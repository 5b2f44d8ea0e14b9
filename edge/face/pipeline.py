"""One face pipeline per worker: detect → mesh → five points → aligned crop → embedding.

Still photos (``still=True``) use the full-range detector (faces of any size, group photos), and the
short-range one only when it finds nothing; camera frames, where the person stands close, use the
short-range detector. (Merging both on stills was tried: the short-range model's false positives on
background, e.g. a building at score 0.71, turned single portraits into "several faces".)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edge.face.detect import Detection, FaceDetector
from edge.face.embed import FaceEmbedder, align
from edge.face.geometry import as_pil
from edge.face.landmarks import FaceMesh, Mesh

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """A found face. ``aligned`` and ``embedding`` are biometric data: keep them in memory only."""

    detection: Detection
    mesh: Mesh = field(repr=False)
    aligned: np.ndarray = field(repr=False)
    embedding: np.ndarray | None = field(repr=False)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.detection.box


class FacePipeline:
    """Detection, landmarks and embedding with this thread's interpreters.

    Example::

        pipe = FacePipeline()
        faces = pipe.faces(rgb_array, still=True)
    """

    def __init__(self, *, threads: int = 1, model_dir: Path | None = None, embed: bool = True) -> None:
        self.short = FaceDetector("short", threads=threads, model_dir=model_dir)
        self.full = FaceDetector("full", threads=threads, model_dir=model_dir)
        self.mesher = FaceMesh(threads=threads, model_dir=model_dir)
        self.embedder = FaceEmbedder(threads=threads, model_dir=model_dir) if embed else None

    def detect(self, image: np.ndarray | Image.Image, still: bool = True) -> list[Detection]:
        """Face boxes, largest first."""
        pil = as_pil(image)
        if still:
            return self.full.detect(pil) or self.short.detect(pil)
        return self.short.detect(pil)

    def face(self, image: np.ndarray | Image.Image, detection: Detection) -> Face | None:
        """Landmarks, aligned crop and embedding for one detection (None if the mesh sees no face)."""
        pil = as_pil(image)
        mesh = self.mesher.mesh(pil, detection)
        if mesh is None:
            return None
        crop = align(pil, mesh.five_points())
        emb = self.embedder.embed(crop) if self.embedder is not None else None
        return Face(detection, mesh, crop, emb)

    def faces(self, image: np.ndarray | Image.Image, still: bool = True) -> list[Face]:
        """Every face in ``image`` with its landmarks and embedding, largest first."""
        pil = as_pil(image)
        out = []
        for det in self.detect(pil, still):
            f = self.face(pil, det)
            if f is not None:
                out.append(f)
        logger.debug("found %s face(s)", len(out))
        return out
