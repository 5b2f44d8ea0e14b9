"""The identity desk's face check: a live capture with liveness, then the best live frames against a reference.

:class:`LiveCheck` runs one session over camera frames (``(time, RGB frame)`` pairs): two random challenges
from blink, turn left, turn right and move closer (:data:`edge.face.active.DESK_CHALLENGES`), the passive
MiniFASNet score over the frames when its models are provisioned, a time limit. When the session is
``live``, the mean embedding of its best frontal frames is compared with the reference; otherwise there is
no comparison. The :class:`FaceCheck` carries decisions, scores and counts only: no image, no embedding.

``decision`` is one of:

==================  ========================================================================================
``match``           live, and the live face matches the reference (cosine ≥ threshold)
``no_match``        live, but another person than the reference
``not_live``        a presentation attack or a session that broke the rules (see :mod:`edge.face.active`)
``no_face``         no face in view long enough
``several_faces``   more than one face in view
``too_dark``        the frames were too dark to judge
``timeout``         the challenges were not met in time (a still photo held up ends here)
==================  ========================================================================================
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge.face.active import DESK_CHALLENGES, PROMPTS, ActiveLiveness, Challenge, Decision, random_challenges
from edge.face.embed import cosine
from edge.face.landmarks import IrisModel
from edge.face.passive import PassiveLiveness
from edge.face.pipeline import FacePipeline
from edge.face.verify import THRESHOLD, model_versions
from models_tflite.loader import spec

logger = logging.getLogger(__name__)

DECISIONS = ("match", "no_match", "not_live", "no_face", "several_faces", "too_dark", "timeout")
TIME_LIMIT = 20.0
"""Seconds from the first prompt to the decision before the session ends as ``timeout``."""
CHALLENGES = 2
DELIBERATE = (Challenge.TURN_LEFT, Challenge.TURN_RIGHT, Challenge.MOVE_CLOSER)
"""Actions a recording playing its own script would show; done unasked they end the session ``not_live``
(a person talking at the desk opens their mouth, so the mouth is not watched here)."""


@dataclass(frozen=True, slots=True)
class FaceCheck:
    """Outcome of one desk check (no image, no embedding)."""

    decision: str
    same: bool | None
    score: float | None
    threshold: float
    live: bool
    outcome: str
    reason: str
    challenges: list[str]
    completed: int
    frames: int
    frames_used: int
    passive_score: float | None
    min_same_person: float | None
    elapsed_s: float
    models: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def evidence(self) -> dict[str, Any]:
        """The liveness evidence summary that goes into the signed ``face_check`` result."""
        return {"outcome": self.outcome, "challenges": list(self.challenges), "completed": self.completed,
                "frames": self.frames, "frames_used": self.frames_used,
                "passive": self.passive_score, "passive_checked": self.passive_score is not None,
                "min_same_person": self.min_same_person}


def desk_models(passive: bool) -> dict[str, str]:
    """Model name → version of every model a desk check uses."""
    out = {**model_versions(), "iris_landmark": spec("iris_landmark").version}
    if passive:
        out.update({n: spec(n).version for n in ("minifasnet_v2", "minifasnet_v1se")})
    return out


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """A camera frame (BGR ``HxWx3`` or grey ``HxW``) as RGB for the face models."""
    arr = np.asarray(frame)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, ::-1])


class LiveCheck:
    """One live capture against a reference embedding (or none: enrolment captures a template instead).

    ``on_prompt(challenge | None)`` is called whenever what the person should do changes (None: done), so
    the flow can light the LEDs, sound the buzzer and print the guidance.
    """

    def __init__(self, pipe: FacePipeline, iris: IrisModel, passive: PassiveLiveness | None = None, *,
                 threshold: float = THRESHOLD, time_limit: float = TIME_LIMIT,
                 challenges: list[Challenge] | None = None, rng: random.Random | None = None) -> None:
        self.pipe, self.iris, self.passive = pipe, iris, passive
        self.threshold, self.time_limit = threshold, time_limit
        self.challenges = challenges or random_challenges(CHALLENGES, rng, DESK_CHALLENGES)
        self.session: ActiveLiveness | None = None

    def run(self, frames: Iterable[tuple[float, np.ndarray]], reference: np.ndarray | None,
            on_prompt: Callable[[Challenge | None], None] | None = None) -> FaceCheck:
        """Feed ``frames`` (time in seconds, RGB frame) until decided or the time limit; the check."""
        started = time.perf_counter()
        session = ActiveLiveness(self.pipe, self.iris, challenges=list(self.challenges), time_limit=self.time_limit,
                                 passive=self.passive, threshold=self.threshold, deliberate=DELIBERATE)
        self.session = session
        shown: Challenge | None = None
        if on_prompt is not None:
            on_prompt(session.challenges[0])
            shown = session.challenges[0]
        last_t = None
        for t, frame in frames:
            last_t = t
            done = session.feed(frame, t)
            now = session.challenges[session.index] if session.index < len(session.challenges) else None
            if on_prompt is not None and now != shown and not done:
                on_prompt(now)
                shown = now
            if done:
                break
        else:
            if session.decision is None and last_t is not None:  # the camera stopped: the time is up
                session.feed(np.zeros((8, 8, 3), np.uint8), (session.t0 or 0.0) + self.time_limit + 1)
        if on_prompt is not None:
            on_prompt(None)
        return self.decide(session, reference, time.perf_counter() - started)

    def decide(self, session: ActiveLiveness, reference: np.ndarray | None, elapsed: float) -> FaceCheck:
        """The check from a finished session: compare only when it was live."""
        res = session.result()
        live = res.decision is Decision.LIVE
        best = session.best_embedding() if live else None
        score = same = None
        if live and reference is not None and best is not None:
            score = round(cosine(reference, best), 4)
            same = score >= self.threshold
        decision = res.outcome if not live else ("match" if same else "no_match" if same is False else "match")
        if live and reference is not None and best is None:
            decision = "no_face"
        logger.info("desk face check: %s (liveness %s, %d frames)", decision, res.outcome, res.frames)
        return FaceCheck(decision=decision, same=same, score=score, threshold=self.threshold, live=live,
                         outcome=res.outcome, reason=res.reason, challenges=res.challenges, completed=res.completed,
                         frames=res.frames, frames_used=res.best_frames if live else 0,
                         passive_score=res.passive_score, min_same_person=res.min_same_person,
                         elapsed_s=round(elapsed, 3), models=desk_models(self.passive is not None))

    def template(self) -> np.ndarray | None:
        """The enrolment template of the last session: its best frames' mean embedding, if it was live."""
        s = self.session
        if s is None or s.decision is not Decision.LIVE:
            return None
        return s.best_embedding()


def prompt_text(challenge: Challenge | None) -> str:
    """The printed and shown guidance for a challenge."""
    return PROMPTS[challenge] if challenge is not None else "Thank you"


CLIP_ACTIONS = 2
"""Different actions (blink, turn left, turn right, move closer) a recorded clip must show to be live."""


def check_clip(frames: Iterable[tuple[float, np.ndarray]], reference: np.ndarray | None, pipe: FacePipeline,
               iris: IrisModel, passive: PassiveLiveness | None = None, *, threshold: float = THRESHOLD,
               template: list[np.ndarray] | None = None) -> FaceCheck:
    """The video check of a recorded clip (no prompts can be shown): live when at least :data:`CLIP_ACTIONS`
    different actions are seen, with the same person throughout, no frozen frames and (when provisioned) the
    passive models agreeing; then its best frontal frames against ``reference``. A clip made from a still photo
    shows no action: ``live`` false. With ``template`` (a list), a live clip's best-frames embedding is appended to it
    (enrolment; memory only)."""
    started = time.perf_counter()
    session = ActiveLiveness(pipe, iris, challenges=[Challenge.BLINK], time_limit=float("inf"), passive=passive,
                             threshold=threshold, deliberate=DELIBERATE, observe=CLIP_ACTIONS)
    for t, frame in frames:
        if session.feed(frame, t):
            break
    session.conclude()
    if template is not None and session.decision is Decision.LIVE and session.best_embedding() is not None:
        template.append(session.best_embedding())
    checker = LiveCheck(pipe, iris, passive, threshold=threshold, challenges=[Challenge.BLINK])
    return checker.decide(session, reference, time.perf_counter() - started)
