"""Passive liveness (MiniFASNet) on the shared presentation-attack samples, and running without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from edge.face.passive import PassiveLiveness, crop_box
from edge.face.pipeline import FacePipeline
from tests.conftest import shared_dir

LIVENESS = shared_dir() / "testdata" / "liveness"
MODELS = shared_dir() / "models" / "minifasnet"
needs_shared = pytest.mark.skipif(not (LIVENESS.is_dir() and MODELS.is_dir()),
                                  reason=f"shared test data folder not found: {LIVENESS} / {MODELS}")


def test_crop_box_scales_and_stays_inside() -> None:
    assert crop_box(640, 480, (270, 190, 370, 290), 2.7) == (185, 105, 455, 375)
    x0, y0, x1, y1 = crop_box(640, 480, (0, 0, 100, 100), 4.0)
    assert (x0, y0) == (0, 0) and (x1, y1) == (400, 400)
    x0, y0, x1, y1 = crop_box(640, 480, (200, 100, 440, 340), 4.0)  # too big: scale reduced to fit
    assert x0 >= 0 and y0 >= 0 and x1 <= 639 and y1 <= 479


def test_runs_without_models(tmp_path: Path) -> None:
    assert PassiveLiveness.from_dir(None) is None
    assert PassiveLiveness.from_dir(tmp_path) is None


@needs_shared
@pytest.mark.parametrize(("name", "real"), [("image_T1.jpg", True), ("image_F1.jpg", False), ("image_F2.jpg", False)])
def test_minifasnet_classifies_samples(name: str, real: bool) -> None:
    passive = PassiveLiveness.from_dir(MODELS)
    assert passive is not None
    with Image.open(LIVENESS / name) as im:
        rgb = im.convert("RGB")
    faces = FacePipeline(embed=False).detect(rgb, still=False)
    assert len(faces) == 1
    result = passive.check(rgb, faces[0].box)
    assert result.real is real, result
    assert (result.score > 0.5) is real
