"""Model manifest and loader (hash check, per-thread interpreters) and the geometry under the face pipeline."""

from __future__ import annotations

import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.face.detect import MODELS, decode, ssd_anchors, weighted_nms
from edge.face.embed import ARCFACE_TEMPLATE, align
from edge.face.geometry import apply, invert, roi_affine, similarity
from models_tflite import loader


def test_manifest_entries_complete_and_bundled_files_match() -> None:
    entries = loader.manifest()
    assert {"face_detection_short", "face_detection_full", "face_landmark", "iris_landmark",
            "face_recognition_sface", "minifasnet_v2", "minifasnet_v1se"} <= set(entries)
    for spec in entries.values():
        assert len(spec.sha256) == 64 and spec.license == "Apache-2.0"
        assert (loader.PACKAGE_DIR / spec.license_file).is_file()
        assert spec.input and spec.output and spec.quantization and spec.source
        if spec.bundled:
            assert loader.verified_path(spec.name).is_file()


def test_hash_mismatch_refused(tmp_path: Path) -> None:
    spec = loader.spec("minifasnet_v2")
    (tmp_path / spec.file).write_bytes(b"not the model")
    with pytest.raises(loader.ModelHashMismatch, match="refusing"):
        loader.load("minifasnet_v2", model_dir=tmp_path)


def test_tampered_bundled_copy_refused(tmp_path: Path) -> None:
    src = loader.model_path("face_detection_short")
    bad = bytearray(src.read_bytes())
    bad[-1] ^= 0xFF
    spec = loader.spec("minifasnet_v1se")
    (tmp_path / spec.file).write_bytes(bytes(bad))
    with pytest.raises(loader.ModelHashMismatch):
        loader.verified_path("minifasnet_v1se", tmp_path)


def test_missing_and_unknown_models(tmp_path: Path) -> None:
    with pytest.raises(loader.ModelMissing):
        loader.load("minifasnet_v2", model_dir=tmp_path)
    with pytest.raises(loader.ModelMissing):
        loader.load("minifasnet_v2")
    with pytest.raises(loader.UnknownModel):
        loader.spec("no_such_model")
    assert not loader.available("minifasnet_v2", None)


def test_one_interpreter_per_thread() -> None:
    a = loader.interpreter("face_detection_short")
    assert loader.interpreter("face_detection_short") is a
    other: list[object] = []
    t = threading.Thread(target=lambda: other.append(loader.interpreter("face_detection_short")))
    t.start()
    t.join()
    assert other and other[0] is not a
    assert loader.backend() in ("ai_edge_litert", "tflite_runtime")


def test_copied_model_dir_loads(tmp_path: Path) -> None:
    shutil.copyfile(loader.model_path("face_detection_short"), tmp_path / "x.tflite")
    assert loader.sha256_file(tmp_path / "x.tflite") == loader.spec("face_detection_short").sha256


def test_anchor_counts_match_models() -> None:
    assert len(ssd_anchors(MODELS["short"][1])) == 896
    assert len(ssd_anchors(MODELS["full"][1])) == 2304


def test_decode_and_weighted_nms() -> None:
    anchors = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], dtype=np.float32)
    raw = np.zeros((3, 16), dtype=np.float32)
    raw[:, 2:4] = 32.0  # 32 px box on a 128 input = 0.25
    raw[1, 0] = 2.0     # shifted by 2 px
    scores = np.array([5.0, 3.0, -5.0])
    boxes, s = decode(raw, scores, anchors, 128)
    assert len(boxes) == 2  # the third is below 0.5
    kept = weighted_nms(boxes, s)
    assert len(kept) == 1
    box, score = kept[0]
    assert math.isclose(score, 1 / (1 + math.exp(-5)), rel_tol=1e-6)
    assert 0.375 < box[0] < 0.375 + 2 / 128  # a weighted mean of the two boxes
    assert math.isclose(box[2] - box[0], 0.25, rel_tol=1e-5)


def test_similarity_recovers_transform() -> None:
    ang, k, t = 0.3, 1.7, np.array([12.0, -5.0])
    rot = k * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    src = np.random.default_rng(1).uniform(0, 100, (5, 2))
    dst = src @ rot.T + t
    m = similarity(src, dst)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], t)
    assert np.allclose(apply(invert(m), dst), src)


def test_roi_affine_levels_a_tilted_pair() -> None:
    a, b = np.array([100.0, 100.0]), np.array([150.0, 130.0])
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    m = roi_affine(tuple((a + b) / 2), 100.0, angle, 64)
    pa, pb = apply(m, np.array([a, b]))
    assert math.isclose(pa[1], pb[1], abs_tol=1e-9) and pa[0] < pb[0]
    assert np.allclose((pa + pb) / 2, [32, 32])
    flipped = apply(roi_affine(tuple((a + b) / 2), 100.0, angle, 64, flip=True), np.array([a, b]))
    assert flipped[0, 0] > flipped[1, 0]


def test_align_puts_points_on_template() -> None:
    img = np.zeros((200, 200, 3), dtype=np.uint8)
    five = ARCFACE_TEMPLATE * 1.5 + 20  # a face 1.5x the template size
    for x, y in five.astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    crop = align(img, five)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE.round().astype(int):
        assert crop[y - 1:y + 2, x - 1:x + 2].max() > 100


def test_falls_back_to_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert loader.backend() == "tflite_runtime"
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(loader.NoInterpreter):
        loader.backend()


def test_face_repr_has_no_biometrics() -> None:
    from edge.face.detect import Detection
    from edge.face.landmarks import Mesh
    from edge.face.pipeline import Face

    face = Face(Detection((0, 0, 10, 10), 0.9, np.zeros((6, 2))), Mesh(np.zeros((468, 3)), 1.0),
                np.full((112, 112, 3), 7, np.uint8), np.full(128, 0.123))
    assert "0.123" not in repr(face) and "aligned" not in repr(face)
