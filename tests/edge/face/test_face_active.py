"""Active liveness on synthetic frame sequences warped from real photos: live, replayed, frozen, swapped."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from edge.face.active import SAME_PERSON, ActiveLiveness, Challenge, Decision, random_challenges
from edge.face.landmarks import IrisModel
from edge.face.pipeline import FacePipeline
from tests.conftest import shared_dir
from tests.hw_sim.faces import FaceAnimator, Pose, script

FACES = shared_dir() / "testdata" / "faces"
pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test data folder not found: {FACES}")
FPS = 10.0
PERSON = "train__rose_leslie__img2.jpg"


def _photo(name: str) -> Image.Image:
    with Image.open(FACES / name) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return FacePipeline()


@pytest.fixture(scope="module")
def iris() -> IrisModel:
    return IrisModel()


@pytest.fixture(scope="module")
def person(pipe: FacePipeline) -> FaceAnimator:
    return FaceAnimator(_photo(PERSON), pipe, seed=7)


def _run(session: ActiveLiveness, frames: list[np.ndarray]) -> Decision:
    for i, frame in enumerate(frames):
        if session.feed(frame, i / FPS):
            break
    return session.result().decision


@pytest.mark.parametrize("order", [
    [Challenge.BLINK, Challenge.TURN_LEFT, Challenge.OPEN_MOUTH],
    [Challenge.TURN_RIGHT, Challenge.BLINK, Challenge.TURN_LEFT],
    [Challenge.OPEN_MOUTH, Challenge.TURN_RIGHT, Challenge.BLINK],
], ids=lambda o: "-".join(o))
def test_person_answering_the_challenges_is_live(order, pipe, iris, person) -> None:
    _answer_and_check(order, pipe, iris, person)


def test_second_person_answering_is_live(pipe, iris) -> None:
    other = FaceAnimator(_photo("test__johnsnow_test1.jpg"), pipe, seed=11)
    _answer_and_check([Challenge.OPEN_MOUTH, Challenge.BLINK, Challenge.TURN_RIGHT], pipe, iris, other)


def _answer_and_check(order: list[Challenge], pipe: FacePipeline, iris: IrisModel, person: FaceAnimator) -> None:
    session = ActiveLiveness(pipe, iris, challenges=order)
    frames = [person.frame(p) for p in script([str(c) for c in order])]
    assert _run(session, frames) == Decision.LIVE, session.result()
    r = session.result()
    assert r.completed == 3 and r.min_same_person is not None and r.min_same_person >= SAME_PERSON


def test_replayed_recording_fails(pipe, iris, person) -> None:
    """A recording of a person answering another session's challenges does the wrong thing."""
    asked = [Challenge.TURN_LEFT, Challenge.OPEN_MOUTH, Challenge.BLINK]
    recorded = ["open_mouth", "turn_right", "blink"]
    session = ActiveLiveness(pipe, iris, challenges=asked)
    assert _run(session, [person.frame(p) for p in script(recorded)]) == Decision.NOT_LIVE
    assert "asked" in session.result().reason


def test_replay_without_the_asked_action_does_not_pass(pipe, iris, person) -> None:
    session = ActiveLiveness(pipe, iris, challenges=[Challenge.BLINK, Challenge.OPEN_MOUTH, Challenge.TURN_LEFT],
                             time_limit=3.0)
    frames = [person.frame(p) for p in script(["blink", "blink", "blink"]) + [Pose()] * 20]
    assert _run(session, frames) != Decision.LIVE


def test_frozen_frames_fail(pipe, iris, person) -> None:
    still = person.frame(Pose(), noise=0)
    session = ActiveLiveness(pipe, iris, challenges=[Challenge.BLINK, Challenge.TURN_LEFT, Challenge.OPEN_MOUTH])
    assert _run(session, [still] * 12) == Decision.NOT_LIVE
    assert "frozen" in session.result().reason


def test_held_up_photo_times_out(pipe, iris, person) -> None:
    """A photo held in front of the camera (fresh noise each frame, no motion) never answers: not live."""
    session = ActiveLiveness(pipe, iris, challenges=[Challenge.TURN_RIGHT, Challenge.BLINK, Challenge.OPEN_MOUTH],
                             time_limit=2.0)
    assert _run(session, [person.frame(Pose()) for _ in range(25)]) == Decision.INCONCLUSIVE
    assert "time" in session.result().reason


def test_other_person_midway_fails(pipe, iris, person) -> None:
    other = FaceAnimator(_photo("biden.jpg"), pipe, seed=3)
    order = [Challenge.BLINK, Challenge.TURN_LEFT, Challenge.OPEN_MOUTH]
    poses = script([str(c) for c in order])
    frames = [person.frame(p) for p in poses[:8]] + [other.frame(p) for p in poses[8:]]
    session = ActiveLiveness(pipe, iris, challenges=order)
    assert _run(session, frames) == Decision.NOT_LIVE
    assert "different person" in session.result().reason


def test_someone_else_in_the_first_frames_starts_the_session_over(pipe, iris, person) -> None:
    """Someone else still in view when the capture opens (the previous person leaving): their frames are neither
    the first face nor compared with the reference; the holder who then answers is live."""
    other = FaceAnimator(_photo("biden.jpg"), pipe, seed=3)
    reference = pipe.faces(_photo("train__rose_leslie__img1.jpg"))[0].embedding
    order = [Challenge.BLINK, Challenge.TURN_LEFT]
    live = [person.frame(p) for p in script([str(c) for c in order])]
    alone = ActiveLiveness(pipe, iris, challenges=order, reference=reference)
    assert _run(alone, live) == Decision.LIVE
    session = ActiveLiveness(pipe, iris, challenges=order, reference=reference)
    assert _run(session, [other.frame(Pose()) for _ in range(2)] + live) == Decision.LIVE, session.result()
    assert session.restarts == 1
    assert session.result().reference_score == alone.result().reference_score


def test_faces_changing_again_and_again_before_the_challenges_fail(pipe, iris, person) -> None:
    other = FaceAnimator(_photo("biden.jpg"), pipe, seed=3)
    frames = [(person if i % 2 else other).frame(Pose()) for i in range(12)]
    session = ActiveLiveness(pipe, iris, challenges=[Challenge.BLINK, Challenge.TURN_LEFT])
    assert _run(session, frames) == Decision.NOT_LIVE
    assert "different person" in session.result().reason and session.restarts == 3


def test_two_faces_fail(pipe, iris) -> None:
    group = np.asarray(_photo("two_people.jpg").resize((640, 376)))
    session = ActiveLiveness(pipe, iris, challenges=[Challenge.BLINK])
    assert _run(session, [group]) == Decision.NOT_LIVE
    assert "faces" in session.result().reason


def test_random_challenges() -> None:
    rng = random.Random(5)
    seen = set()
    for _ in range(50):
        c = random_challenges(3, rng)
        assert len(c) == 3 and all(a != b for a, b in zip(c, c[1:]))
        seen.add(tuple(c))
    assert len(seen) > 10


def test_video_mode_against_a_reference_photo(pipe, iris, person) -> None:
    """Live frames of a person, compared with another photo of the same person and of someone else."""
    order = [Challenge.BLINK, Challenge.OPEN_MOUTH, Challenge.TURN_RIGHT]
    frames = [person.frame(p) for p in script([str(c) for c in order])]
    for photo, same in (("train__rose_leslie__img1.jpg", True), ("obama.jpg", False)):
        ref = pipe.faces(_photo(photo))[0].embedding
        session = ActiveLiveness(pipe, iris, challenges=order, reference=ref)
        assert _run(session, frames) == Decision.LIVE
        r = session.result()
        assert r.matches_reference is same, r
