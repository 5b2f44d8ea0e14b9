"""1:1 face verification on the shared labelled photos: same person, different person, group photos, CLI."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.face.cli import face_main
from edge.face.embed import cosine
from edge.face.errors import FaceNotSelectable, NoFace, PartialFace, SeveralFaces
from edge.face.verify import FaceVerifier
from tests.conftest import shared_dir

FACES = shared_dir() / "testdata" / "faces"
pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test data folder not found: {FACES}")


def _labels() -> list[tuple[str, list[str]]]:
    if not FACES.is_dir():
        return []
    with (FACES / "labels.csv").open(newline="") as f:
        return [(r["file"], r["identities"].split(";")) for r in csv.DictReader(f)]


LABELS = _labels()
SINGLE = [(name, ids[0]) for name, ids in LABELS if len(ids) == 1]
GROUPS = [(name, ids) for name, ids in LABELS if len(ids) > 1]
PAIRS = list(itertools.combinations(SINGLE, 2))


def _open(name: str) -> Image.Image:
    with Image.open(FACES / name) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def verifier() -> FaceVerifier:
    return FaceVerifier()


@pytest.fixture(scope="module")
def embeddings(verifier: FaceVerifier) -> dict[str, np.ndarray]:
    """One embedding per single-face photo (in memory only)."""
    out = {}
    for name, _ in SINGLE:
        face, count = verifier.the_face(_open(name), label=name)
        assert count == 1, name
        assert face.embedding is not None
        out[name] = face.embedding
    return out


@pytest.mark.parametrize(("a", "b"), [(a, b) for a, b in PAIRS if a[1] == b[1]],
                         ids=lambda p: p[0])
def test_same_identity_pairs_are_same(a, b, embeddings, verifier) -> None:
    score = cosine(embeddings[a[0]], embeddings[b[0]])
    assert score >= verifier.threshold, f"{a[0]} vs {b[0]}: {score:.3f}"


@pytest.mark.parametrize(("a", "b"), [(a, b) for a, b in PAIRS if a[1] != b[1]],
                         ids=lambda p: p[0])
def test_different_identity_pairs_are_not_same(a, b, embeddings, verifier) -> None:
    score = cosine(embeddings[a[0]], embeddings[b[0]])
    assert score < verifier.threshold, f"{a[0]} vs {b[0]}: {score:.3f}"


def test_labels_cover_pairs() -> None:
    assert len(SINGLE) >= 10 and len(GROUPS) >= 2
    assert any(a[1] == b[1] for a, b in PAIRS) and any(a[1] != b[1] for a, b in PAIRS)


def test_compare_end_to_end(verifier: FaceVerifier) -> None:
    same = verifier.compare(_open("obama.jpg"), _open("obama2.jpg"))
    assert same.same and same.faces_a == same.faces_b == 1
    assert "face_recognition_sface" in same.models
    other = verifier.compare(_open("obama.jpg"), _open("biden.jpg"))
    assert not other.same and other.score < other.threshold


@pytest.mark.parametrize(("name", "ids"), GROUPS, ids=[g[0] for g in GROUPS])
def test_group_photos_refused_for_one_to_one(name, ids, verifier) -> None:
    with pytest.raises(SeveralFaces) as exc:
        verifier.compare(_open(name), _open("obama.jpg"))
    assert exc.value.count == len(ids)


def test_group_photo_with_selected_face(verifier: FaceVerifier) -> None:
    group = _open("test__obama_and_biden.jpg")
    results = [verifier.compare(group, _open("obama.jpg"), select_a=i) for i in range(2)]
    assert sorted(r.same for r in results) == [False, True]
    biden = [verifier.compare(group, _open("biden.jpg"), select_a=i) for i in range(2)]
    assert [r.same for r in biden] == [not r.same for r in results]
    with pytest.raises(FaceNotSelectable):
        verifier.compare(group, _open("obama.jpg"), select_a=5)


def test_no_face_refused(verifier: FaceVerifier) -> None:
    blank = Image.new("RGB", (640, 480), (200, 190, 180))
    with pytest.raises(NoFace):
        verifier.compare(blank, _open("obama.jpg"))


def test_half_face_refused(verifier: FaceVerifier) -> None:
    """A face cut off at the nose by the border is not compared (no face, or a partial one)."""
    im = _open("obama.jpg")
    face, _ = verifier.the_face(im)
    x0, _, x1, _ = face.box
    half = im.crop((int((x0 + x1) / 2), 0, im.width, im.height))
    with pytest.raises((PartialFace, NoFace)):
        verifier.the_face(half)


def test_cli_compare(capsys: pytest.CaptureFixture[str]) -> None:
    assert face_main(["compare", str(FACES / "obama.jpg"), str(FACES / "obama3.jpg")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["same"] is True and isinstance(out["score"], float) and out["threshold"] > 0
    assert face_main(["compare", str(FACES / "obama.jpg"), str(FACES / "biden.jpg")]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is False


def test_cli_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert face_main(["compare", str(FACES / "two_people.jpg"), str(FACES / "obama.jpg")]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] == "several_faces"
    assert "2 faces" in captured.err
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (90, 90, 90)).save(blank)
    assert face_main(["compare", str(blank), str(FACES / "obama.jpg")]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "no_face"
    assert face_main(["compare", str(FACES / "two_people.jpg"), str(FACES / "obama.jpg"), "--face-a", "0"]) == 0
    assert "same" in json.loads(capsys.readouterr().out)
    assert face_main(["compare", str(tmp_path / "missing.jpg"), str(FACES / "obama.jpg")]) == 1
