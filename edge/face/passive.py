"""Passive liveness with MiniFASNet (Silent-Face-Anti-Spoofing), when its models are provisioned.

Two models look at the face at two scales (2.7× and 4.0× the face box, shifted to stay inside the
image, resized to 80×80, BGR 0–255). Their softmax outputs are summed as upstream does; class 1 is a
real face. The models are not bundled: :meth:`PassiveLiveness.from_dir` returns None when the model
directory does not hold them, and the box then works without a passive signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge.face.geometry import as_pil
from models_tflite.loader import available, interpreter

logger = logging.getLogger(__name__)

MODELS = (("minifasnet_v2", 2.7), ("minifasnet_v1se", 4.0))
INPUT = 80


@dataclass(frozen=True, slots=True)
class PassiveResult:
    """``real``: class 1 wins the summed softmax; ``score``: mean probability of class 1 (0–1)."""

    real: bool
    score: float


def crop_box(width: int, height: int, box: tuple[float, float, float, float], scale: float) -> tuple[int, int, int, int]:
    """Upstream's crop: the face box (x0, y0, x1, y1) scaled about its centre, kept inside the image."""
    x, y = box[0], box[1]
    bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    scale = min((height - 1) / bh, (width - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0, x1, y1 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if x1 > width - 1:
        x0 -= x1 - width + 1
        x1 = width - 1
    if y1 > height - 1:
        y0 -= y1 - height + 1
        y1 = height - 1
    return int(x0), int(y0), int(x1), int(y1)


class PassiveLiveness:
    """MiniFASNet V2 (2.7×) + V1SE (4.0×). ``check(image, box)`` → :class:`PassiveResult`."""

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        self.models = [(interpreter(name, model_dir=model_dir, threads=threads), scale) for name, scale in MODELS]

    @classmethod
    def from_dir(cls, model_dir: Path | None, *, threads: int = 1) -> PassiveLiveness | None:
        """The passive checker if ``model_dir`` holds both models, else None (logged once)."""
        if model_dir is None or not all(available(name, model_dir) for name, _ in MODELS):
            logger.info("passive liveness models not provisioned in %s; passive check off", model_dir)
            return None
        return cls(model_dir, threads=threads)

    def check(self, image: np.ndarray | Image.Image, box: tuple[float, float, float, float]) -> PassiveResult:
        """Passive liveness of the face in ``box`` (x0, y0, x1, y1 pixels of ``image``)."""
        pil = as_pil(image)
        total = np.zeros(3)
        for interp, scale in self.models:
            x0, y0, x1, y1 = crop_box(pil.width, pil.height, box, scale)
            crop = pil.crop((x0, y0, x1 + 1, y1 + 1)).resize((INPUT, INPUT), Image.Resampling.BILINEAR)
            bgr = np.asarray(crop, dtype=np.float32)[..., ::-1]
            det = interp.get_input_details()[0]
            interp.set_tensor(det["index"], np.ascontiguousarray(bgr)[None])
            interp.invoke()
            total += interp.get_tensor(interp.get_output_details()[0]["index"]).reshape(-1)[:3]
        return PassiveResult(bool(np.argmax(total) == 1), float(total[1] / len(self.models)))
