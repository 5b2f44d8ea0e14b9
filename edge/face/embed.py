"""Face alignment to the 112×112 ArcFace template and SFace embeddings (128-d, L2-normalised).

Alignment is a least-squares similarity transform (rotation, scale, shift; no shear) from five face
points to the template, applied with Pillow. SFace takes the aligned crop as RGB 0–255 and normalises
inside the model. Embeddings stay in memory: never logged, never written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge.face.geometry import similarity, warp
from models_tflite.loader import _interpreter_class, interpreter

ALIGNED_SIZE = 112
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
"""Eye centres, nose tip and mouth corners (image-left first) in the 112×112 crop (InsightFace / OpenCV)."""

MODEL = "face_recognition_sface"


def align(image: np.ndarray | Image.Image, five: np.ndarray) -> np.ndarray:
    """The 112×112 RGB crop that puts ``five`` points (see :data:`ARCFACE_TEMPLATE`) on the template."""
    return warp(image, similarity(five, ARCFACE_TEMPLATE), (ALIGNED_SIZE, ALIGNED_SIZE))


def _embed(interp: object, crop: np.ndarray) -> np.ndarray:
    det = interp.get_input_details()[0]  # type: ignore[attr-defined]
    x = crop.astype(np.float32)[None]
    if int(det["shape"][1]) == 3:  # NCHW model
        x = x.transpose(0, 3, 1, 2)
    interp.set_tensor(det["index"], x)  # type: ignore[attr-defined]
    interp.invoke()  # type: ignore[attr-defined]
    v = interp.get_tensor(interp.get_output_details()[0]["index"]).reshape(-1).astype(np.float64)  # type: ignore
    return v / (np.linalg.norm(v) or 1.0)


class FaceEmbedder:
    """SFace on aligned crops. ``embed(crop)`` → unit 128-vector; compare with :func:`cosine`."""

    def __init__(self, *, threads: int = 1, model_dir: Path | None = None) -> None:
        self.interp = interpreter(MODEL, threads=threads, model_dir=model_dir)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        return _embed(self.interp, aligned)


def embed_with(model_file: Path, crops: np.ndarray) -> np.ndarray:
    """Embeddings of ``crops`` from an arbitrary SFace TFLite file (no manifest check; for the converter)."""
    cls, _ = _interpreter_class()
    interp = cls(model_path=str(model_file), num_threads=1)
    interp.allocate_tensors()
    return np.asarray([_embed(interp, c) for c in crops])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings."""
    return float(np.dot(a, b) / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))
