"""MediaPipe face mesh (468 points) and iris/eyelid landmarks, on regions derived from a detection.

The mesh model sees a 192×192 square around the detected face (1.5 × the box, turned so the eyes are
level, values in [0, 1]); the iris model sees a 64×64 square around each eye (2.3 × the eye width;
the subject's left eye mirrored, as MediaPipe does). Points are mapped back to image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge.face.detect import Detection
from edge.face.geometry import apply, invert, roi_affine, warp
from models_tflite.loader import interpreter

MESH_SIZE = 192
IRIS_SIZE = 64
MESH_ROI_SCALE = 1.5
IRIS_ROI_SCALE = 2.3
MIN_FACE_FLAG = 0.5

# mesh indices (image-left eye is the subject's right eye)
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
LIP_UPPER_INNER, LIP_LOWER_INNER = 13, 14
FACE_LEFT_EDGE, FACE_RIGHT_EDGE = 234, 454


@dataclass(frozen=True, slots=True)
class Mesh:
    """468 face points (x, y, z) in image pixels and the model's face-presence score."""

    points: np.ndarray
    presence: float

    def five_points(self) -> np.ndarray:
        """Eye centres, nose tip, mouth corners (image-left first): the ArcFace alignment points."""
        p = self.points[:, :2]
        return np.array([p[RIGHT_EYE].mean(0), p[LEFT_EYE].mean(0), p[NOSE_TIP], p[MOUTH_RIGHT], p[MOUTH_LEFT]])


@dataclass(frozen=True, slots=True)
class Eye:
    """Iris model output for one eye: 71 contour points (0–8 lower lid, 9–15 upper lid) and 5 iris points."""

    contour: np.ndarray
    iris: np.ndarray

    def openness(self) -> float:
        """Lid gap over eye width: about 0.25–0.35 open, under 0.1 closed."""
        c = self.contour[:, :2]
        width = float(np.linalg.norm(c[8] - c[0])) or 1.0
        gap = np.mean([np.linalg.norm(c[lo] - c[up]) for lo, up in ((3, 11), (4, 12), (5, 13))])
        return float(gap / width)


def _run(interp: object, crop: np.ndarray) -> list[np.ndarray]:
    det = interp.get_input_details()[0]  # type: ignore[attr-defined]
    interp.set_tensor(det["index"], (crop.astype(np.float32) / 255.0)[None])  # type: ignore[attr-defined]
    interp.invoke()  # type: ignore[attr-defined]
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]  # type: ignore[attr-defined]


class FaceMesh:
    """The 468-point face landmark model. ``mesh(image, detection)`` → :class:`Mesh` or None (no face)."""

    def __init__(self, *, threads: int = 1, model_dir: Path | None = None) -> None:
        self.interp = interpreter("face_landmark", threads=threads, model_dir=model_dir)

    def mesh(self, image: Image.Image, face: Detection) -> Mesh | None:
        kp = face.keypoints
        angle = math.atan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0])
        side = max(face.width, face.height) * MESH_ROI_SCALE
        m = roi_affine(face.center, side, angle, MESH_SIZE)
        outs = _run(self.interp, warp(image, m, (MESH_SIZE, MESH_SIZE)))
        pts = next(o for o in outs if o.size == 1404).reshape(468, 3).astype(np.float64)
        flag = float(next(o for o in outs if o.size == 1).reshape(()))
        presence = 1.0 / (1.0 + math.exp(-flag))
        if presence < MIN_FACE_FLAG:
            return None
        pts = apply(invert(m), pts)
        pts[:, 2] *= side / MESH_SIZE
        return Mesh(pts, presence)


class IrisModel:
    """The iris landmark model: eyelid contour and iris for each eye of a mesh."""

    def __init__(self, *, threads: int = 1, model_dir: Path | None = None) -> None:
        self.interp = interpreter("iris_landmark", threads=threads, model_dir=model_dir)

    def eye(self, image: Image.Image, mesh: Mesh, left: bool) -> Eye:
        """The subject's left (image-right, mirrored for the model) or right eye."""
        a, b = (mesh.points[i, :2] for i in (LEFT_EYE_CORNERS if left else RIGHT_EYE_CORNERS))
        angle = math.atan2(b[1] - a[1], b[0] - a[0])
        side = max(abs(b[0] - a[0]), abs(b[1] - a[1])) * IRIS_ROI_SCALE
        m = roi_affine(tuple((a + b) / 2), side, angle, IRIS_SIZE, flip=left)
        outs = _run(self.interp, warp(image, m, (IRIS_SIZE, IRIS_SIZE)))
        contour = next(o for o in outs if o.size == 213).reshape(71, 3).astype(np.float64)
        iris = next(o for o in outs if o.size == 15).reshape(5, 3).astype(np.float64)
        back = invert(m)
        return Eye(apply(back, contour), apply(back, iris))

    def eyes(self, image: Image.Image, mesh: Mesh) -> tuple[Eye, Eye]:
        """(subject's right eye, subject's left eye)."""
        return self.eye(image, mesh, left=False), self.eye(image, mesh, left=True)
