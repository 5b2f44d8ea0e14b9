"""``ehc-edge face verify --video CLIP --reference PHOTO``: a recorded clip's liveness and match, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.face.cli import face_main
from tests.conftest import shared_dir
from tests.hw_sim.faces import FaceAnimator, Pose, script

FACES = shared_dir() / "testdata" / "faces"
pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test data folder not found: {FACES}")
cv2 = pytest.importorskip("cv2")


def _clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for f in frames:
        out.write(np.ascontiguousarray(f[:, :, ::-1]))
    out.release()
    return path


@pytest.fixture(scope="module")
def person():
    from edge.face.pipeline import FacePipeline

    with Image.open(FACES / "obama3.jpg") as im:
        return FaceAnimator(im.convert("RGB"), FacePipeline(), seed=9)


def _run(capsys, *argv: str) -> tuple[int, dict]:
    code = face_main(list(argv))
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_clip_of_a_person_moving_is_live_and_matches_their_photo(tmp_path, person, capsys) -> None:
    clip = _clip(tmp_path / "live.avi", [person.frame(p) for p in script(["blink", "turn_left", "move_closer"])])
    code, out = _run(capsys, "verify", "--video", str(clip), "--reference", str(FACES / "obama.jpg"))
    assert code == 0 and out["live"] is True and out["same"] is True and out["score"] >= out["threshold"], out
    assert {"blink", "turn_left", "move_closer"} <= set(out["challenges_seen"]) and out["frames_used"] >= 3
    code, out = _run(capsys, "verify", "--video", str(clip), "--reference", str(FACES / "biden.jpg"))
    assert out["live"] is True and out["same"] is False and out["score"] < out["threshold"]


def test_clip_made_from_a_still_photo_is_not_live(tmp_path, person, capsys) -> None:
    clip = _clip(tmp_path / "still.avi", [person.frame(Pose()) for _ in range(40)])
    code, out = _run(capsys, "verify", "--video", str(clip), "--reference", str(FACES / "obama.jpg"))
    assert code == 0 and out["live"] is False and out["same"] is False and out["score"] is None, out
    assert out["challenges_seen"] == [] and out["frames_used"] == 0 and out["frames"] == 40


def test_clip_of_a_still_photo_slowly_zoomed_shows_one_action_only(tmp_path, person, capsys) -> None:
    """A photo pushed toward the camera is one action (closer); two different ones are needed."""
    poses = [Pose()] * 6 + [Pose(scale=1.4)] * 4 + [Pose()] * 6
    clip = _clip(tmp_path / "zoom.avi", [person.frame(p) for p in poses])
    code, out = _run(capsys, "verify", "--video", str(clip), "--reference", str(FACES / "obama.jpg"))
    assert out["live"] is False and out["challenges_seen"] == ["move_closer"], out


def test_unreadable_clip_and_faceless_reference(tmp_path, capsys) -> None:
    (tmp_path / "x.avi").write_bytes(b"not a video")
    assert face_main(["verify", "--video", str(tmp_path / "x.avi"), "--reference", str(FACES / "obama.jpg")]) == 1
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    code, out = _run(capsys, "verify", "--video", str(tmp_path / "x.avi"), "--reference", str(blank))
    assert code == 2 and out["error"] == "no_face"


def test_enroll_from_a_clip_with_consent_into_the_outbox(tmp_path, person, capsys, site, store) -> None:
    from central.site import add_device
    from edge import config as edge_config
    from edge.boxfiles import load_identity, open_outbox
    from edge.identity import pseudonym
    from mqtt import envelope, face, sealed, topics

    path = add_device(site, store, "box-0009", "clinic-a", tmp_path / "box")
    clip = _clip(tmp_path / "enrol.avi", [person.frame(p) for p in script(["move_closer", "blink"])])
    args = ["enroll", "--config", str(path), "--video", str(clip), "--document", "resident", "--id-number", "X99",
            "--consent", "guardian"]
    code, out = _run(capsys, *args)
    assert code == 2 and out["enrolled"] is False  # a guardian's consent names the guardian and their check
    code, out = _run(capsys, *args[:-1], "self")
    assert code == 0 and out["enrolled"] is True, out
    cfg = edge_config.load(path)
    assert out["id_ref"] == pseudonym(cfg.path(cfg.identity.pseudonym_key).read_bytes(), "resident", "X99")
    box = open_outbox(cfg, load_identity(cfg))
    try:
        (row,) = box.pending(limit=10)
    finally:
        box.close()
    msg = envelope.verify(row.payload, row.topic, load_identity(cfg).key.public_key())
    assert msg.kind == "face_enrol" and msg.body["consent"]["by"] == "self"
    face.check_face_enrol(msg.body)
    central = sealed.load_private(site.config.path(site.config.enrollment.seal_key))
    fields = sealed.open_sealed(msg.body["personal"], central, topics.event("clinic-a", "box-0009", "face_enrol"),
                                msg.msg_id.bytes)
    assert face.check_template_fields(fields).shape == (128,)
    still = _clip(tmp_path / "still.avi", [person.frame(Pose()) for _ in range(30)])
    code, out = _run(capsys, "enroll", "--config", str(path), "--video", str(still), "--document", "resident",
                     "--id-number", "X98", "--consent", "self")
    assert code == 2 and out["live"] is False
