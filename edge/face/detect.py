"""BlazeFace face detection (MediaPipe short- and full-range models): anchors, box decoding, weighted NMS.

The image is letterboxed into the model's square input (values scaled to [-1, 1]); each anchor's
regressor gives a box centre offset, box size and six keypoints (eyes, nose tip, mouth centre, ears)
in input pixels. Overlapping boxes are merged by MediaPipe's weighted non-maximum suppression: the
kept box is the score-weighted mean of the boxes it absorbs, which steadies it between frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge.face.geometry import apply, as_pil, invert, letterbox_affine, warp
from models_tflite.loader import interpreter

logger = logging.getLogger(__name__)

MIN_SCORE = 0.5
NMS_IOU = 0.3


@dataclass(frozen=True, slots=True)
class AnchorOptions:
    """MediaPipe ``SsdAnchorsCalculator`` options (fixed anchor size)."""

    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float = 1.0
    anchor_offset: float = 0.5


MODELS: dict[str, tuple[str, AnchorOptions]] = {
    # faces within ~2 m, filling a fair part of the frame (the box camera, document photos)
    "short": ("face_detection_short", AnchorOptions(128, (8, 16, 16, 16), 1.0)),
    # faces within ~5 m, smaller in the frame (group photos)
    "full": ("face_detection_full", AnchorOptions(192, (4,), 0.0)),
}


def ssd_anchors(opts: AnchorOptions) -> np.ndarray:
    """Anchor centres (N×2, normalised) in the order the model emits them."""
    anchors: list[tuple[float, float]] = []
    layer = 0
    n = len(opts.strides)
    while layer < n:
        last = layer
        repeats = 0
        while last < n and opts.strides[last] == opts.strides[layer]:
            repeats += 2 if opts.interpolated_scale_aspect_ratio == 1.0 else 1
            last += 1
        fm = int(np.ceil(opts.input_size / opts.strides[layer]))
        for y in range(fm):
            for x in range(fm):
                anchors.extend([((x + opts.anchor_offset) / fm, (y + opts.anchor_offset) / fm)] * repeats)
        layer = last
    return np.asarray(anchors, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Detection:
    """One face: ``box`` (x0, y0, x1, y1) and ``keypoints`` (6×2: eye, eye, nose, mouth, ear, ear) in pixels."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int,
           min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """Regressor and classifier outputs → (boxes K×16 normalised [x0, y0, x1, y1, kp…], scores K) above ``min_score``."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -80.0, 80.0)))
    keep = scores > min_score
    raw = raw_boxes.reshape(-1, 16)[keep] / size
    anc = anchors[keep]
    cx, cy = raw[:, 0] + anc[:, 0], raw[:, 1] + anc[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    out = np.empty_like(raw)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    out[:, 4::2] = raw[:, 4::2] + anc[:, :1]
    out[:, 5::2] = raw[:, 5::2] + anc[:, 1:]
    valid = (w > 0) & (h > 0)
    return out[valid], scores[keep][valid]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``boxes`` (x0, y0, x1, y1)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: each kept box is the score-weighted mean of the boxes overlapping it."""
    order = np.argsort(-scores)
    remaining = order
    out: list[tuple[np.ndarray, float]] = []
    while remaining.size:
        top = remaining[0]
        overlap = iou(boxes[top], boxes[remaining])
        group = remaining[overlap > threshold]
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(0) / w.sum(), float(scores[top])))
        remaining = remaining[overlap <= threshold]
    return out


class FaceDetector:
    """BlazeFace on an RGB image; ``detect`` returns faces sorted by size, largest first.

    Example::

        faces = FaceDetector("full").detect(np.asarray(Image.open("group.jpg").convert("RGB")))
    """

    def __init__(self, model: str = "short", *, threads: int = 1, min_score: float = MIN_SCORE,
                 model_dir: Path | None = None) -> None:
        name, self.options = MODELS[model]
        self.interp = interpreter(name, threads=threads, model_dir=model_dir)
        self.size = self.options.input_size
        self.anchors = ssd_anchors(self.options)
        self.min_score = min_score
        self._in = self.interp.get_input_details()[0]["index"]
        outs = sorted(self.interp.get_output_details(), key=lambda d: int(d["shape"][-1]))
        self._scores, self._boxes = outs[0]["index"], outs[1]["index"]

    def detect(self, image: np.ndarray | Image.Image) -> list[Detection]:
        """Faces in ``image`` (pixels of ``image``), largest first."""
        pil = as_pil(image)
        m = letterbox_affine(pil.width, pil.height, self.size)
        tensor = warp(pil, m, (self.size, self.size)).astype(np.float32) / 127.5 - 1.0
        self.interp.set_tensor(self._in, tensor[None])
        self.interp.invoke()
        boxes, scores = decode(self.interp.get_tensor(self._boxes)[0], self.interp.get_tensor(self._scores)[0],
                               self.anchors, self.size, self.min_score)
        back = invert(m)
        faces = []
        for box, score in weighted_nms(boxes, scores):
            pts = apply(back, box.reshape(-1, 2) * self.size)
            x0, y0 = pts[0]
            x1, y1 = pts[1]
            faces.append(Detection((float(x0), float(y0), float(x1), float(y1)), score, pts[2:]))
        faces.sort(key=lambda f: -f.width * f.height)
        return faces
