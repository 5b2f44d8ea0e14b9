"""Active liveness: a random sequence of challenges (blink, turn left/right, open mouth) with a time limit.

Per frame the box measures, for the one face in view:

* **eye openness** from the iris model's eyelid contour (lid gap / eye width; the 468-point mesh
  barely moves on a blink);
* **yaw** from the mesh: where the nose tip sits between the two face edges (-1 … 1, positive when
  the nose moves toward image right, i.e. the person turns to their left on an unmirrored camera);
* **mouth opening**: inner-lip gap over mouth width.

Each is compared with the person's own neutral level, the median of the first frames.

A challenge is met when its signal crosses the threshold after it was asked for and comes back to
neutral. A face that changes while the neutral level is still being taken (the document photo still under
the camera, someone stepping aside) starts the session over, keeping nothing of the first face, at most
:data:`MAX_RESTARTS` times. The session fails (``not_live``) on several faces, a different person (embedding
cosine to the first frame below :data:`SAME_PERSON`) once the neutral level is taken, a frozen picture (no pixel or landmark change), a response
to a challenge not asked for (a replayed recording does the wrong thing), or a passive-liveness spoof
verdict; it is ``inconclusive`` when time runs out or the face is missing too often; ``live`` when
every challenge was met in order. Frames and embeddings are kept in memory only for the session.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from edge.face.embed import cosine
from edge.face.geometry import as_pil
from edge.face.landmarks import (
    FACE_LEFT_EDGE,
    FACE_RIGHT_EDGE,
    LIP_LOWER_INNER,
    LIP_UPPER_INNER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_TIP,
    IrisModel,
    Mesh,
)
from edge.face.passive import PassiveLiveness
from edge.face.pipeline import FacePipeline
from edge.face.verify import THRESHOLD

logger = logging.getLogger(__name__)

# Every signal is taken relative to the person's own neutral level (median of the first frames):
# faces differ at rest (a smile shows teeth, a head is rarely exactly frontal).
YAW_TURNED = 0.12
"""Yaw change from neutral at or above which the head counts as turned."""
YAW_NEUTRAL = 0.06
MOUTH_OPEN = 0.15
"""Mouth-opening change from neutral at or above which the mouth counts as open."""
MOUTH_NEUTRAL = 0.06
CLOSER = 1.2
"""Face width (edge to edge) at or above this multiple of the neutral width counts as moved closer."""
CLOSER_NEUTRAL = 1.08
DARK = 20.0
"""Mean grey level (0–255) of a frame under which it counts as too dark to judge."""
EYES_CLOSED = 0.6
"""Eye openness below this fraction of the person's neutral level counts as closed."""
EYES_OPEN = 0.8
SAME_PERSON = 0.45
"""Minimum embedding cosine of every frame to the first one (same session, same camera: stricter than 1:1)."""
SAME_PERSON_TURNED = 0.3
"""The same, for a frame whose head is turned (yaw change ≥ ``YAW_TURNED``): a turned face embeds further away."""
FROZEN_PIXELS = 0.5
"""Mean absolute pixel change (0–255) under which a frame is a repeat of the previous one."""
FROZEN_FRAMES = 5
BASELINE_FRAMES = 3
MAX_MISSING = 0.5
MAX_RESTARTS = 3
"""How often a face change before the first challenge starts the baseline over (then: a different person)."""


class Challenge(enum.StrEnum):
    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    OPEN_MOUTH = "open_mouth"
    MOVE_CLOSER = "move_closer"


DESK_CHALLENGES = (Challenge.BLINK, Challenge.TURN_LEFT, Challenge.TURN_RIGHT, Challenge.MOVE_CLOSER)
"""What the identity desk asks (two of them, in random order)."""
CLASSIC_CHALLENGES = (Challenge.BLINK, Challenge.TURN_LEFT, Challenge.TURN_RIGHT, Challenge.OPEN_MOUTH)


class Decision(enum.StrEnum):
    LIVE = "live"
    NOT_LIVE = "not_live"
    INCONCLUSIVE = "inconclusive"


PROMPTS = {
    Challenge.BLINK: "Please blink",
    Challenge.TURN_LEFT: "Please turn your head to your left",
    Challenge.TURN_RIGHT: "Please turn your head to your right",
    Challenge.OPEN_MOUTH: "Please open your mouth",
    Challenge.MOVE_CLOSER: "Please move closer to the camera",
}

OUTCOMES = ("live", "no_face", "several_faces", "too_dark", "not_live", "timeout")
"""What a session ends in, as shown to the person and recorded (``live`` is the only pass)."""


def random_challenges(n: int = 3, rng: random.Random | None = None,
                      pool: tuple[Challenge, ...] = CLASSIC_CHALLENGES) -> list[Challenge]:
    """``n`` challenges from ``pool`` in random order, no challenge twice in a row, at most one of each turn."""
    rng = rng or random.SystemRandom()
    pool = list(pool)
    out: list[Challenge] = []
    while len(out) < n:
        c = rng.choice(pool)
        if out and c == out[-1]:
            continue
        if c in (Challenge.TURN_LEFT, Challenge.TURN_RIGHT) and c in out and len(out) < len(pool):
            continue
        out.append(c)
    return out


@dataclass(frozen=True, slots=True)
class Signals:
    """One frame's measurements (no image, no embedding)."""

    faces: int
    eye_openness: float = math.nan
    yaw: float = math.nan
    mouth: float = math.nan
    width: float = math.nan


def width_of(mesh: Mesh) -> float:
    """Face width in pixels between the two face edges (grows as the person comes closer)."""
    p = mesh.points[:, :2]
    return float(np.linalg.norm(p[FACE_RIGHT_EDGE] - p[FACE_LEFT_EDGE]))


def yaw_of(mesh: Mesh) -> float:
    """Nose tip position between the face edges: 0 frontal, ±1 at an edge (+: toward image right)."""
    p = mesh.points[:, :2]
    left, right, nose = p[FACE_LEFT_EDGE], p[FACE_RIGHT_EDGE], p[NOSE_TIP]
    axis = right - left
    t = float(np.dot(nose - left, axis) / (np.dot(axis, axis) or 1.0))
    return 2.0 * t - 1.0


def mouth_of(mesh: Mesh) -> float:
    """Inner-lip gap over mouth width."""
    p = mesh.points[:, :2]
    width = float(np.linalg.norm(p[MOUTH_LEFT] - p[MOUTH_RIGHT])) or 1.0
    return float(np.linalg.norm(p[LIP_LOWER_INNER] - p[LIP_UPPER_INNER]) / width)


def measure(frame: np.ndarray | Image.Image, pipe: FacePipeline, iris: IrisModel
            ) -> tuple[Signals, np.ndarray | None, tuple[float, float, float, float] | None]:
    """Signals, embedding and box of the one face in ``frame`` (embedding/box None unless exactly one face)."""
    pil = as_pil(frame)
    dets = pipe.detect(pil, still=False)
    if len(dets) != 1:
        return Signals(len(dets)), None, None
    face = pipe.face(pil, dets[0])
    if face is None:
        return Signals(0), None, None
    right, left = iris.eyes(pil, face.mesh)
    openness = (right.openness() + left.openness()) / 2
    return (Signals(1, openness, yaw_of(face.mesh), mouth_of(face.mesh), width_of(face.mesh)), face.embedding,
            face.box)


def outcome_of(decision: Decision, reason: str) -> str:
    """The session's outcome name (:data:`OUTCOMES`) from its decision and reason."""
    if decision is Decision.LIVE:
        return "live"
    for key, name in (("faces in view", "several_faces"), ("too dark", "too_dark"), ("face not in view", "no_face"),
                      ("no face", "no_face"), ("time limit", "timeout"), ("not finished", "timeout")):
        if key in reason:
            return name
    return "not_live"


@dataclass
class LivenessResult:
    """The decision with each signal's value; no images, no embeddings.

    With a reference embedding (video mode: live frames against an enrolled or document photo),
    ``reference_score`` is the median cosine of the session's frames to it and ``matches_reference``
    compares that with the 1:1 threshold; the liveness ``decision`` does not depend on it.
    """

    decision: Decision
    reason: str
    challenges: list[str]
    completed: int
    frames: int
    min_same_person: float | None = None
    passive_score: float | None = None
    reference_score: float | None = None
    matches_reference: bool | None = None
    signals: dict[str, float] = field(default_factory=dict)
    outcome: str = "timeout"
    best_frames: int = 0


class ActiveLiveness:
    """One challenge–response session. Feed frames with their time; read :attr:`prompt`; call :meth:`result`.

    Example::

        session = ActiveLiveness(pipe, iris, challenges=random_challenges())
        for t, frame in camera:
            if session.feed(frame, t):   # True when decided
                break
        print(session.result().decision)
    """

    def __init__(self, pipe: FacePipeline, iris: IrisModel, *, challenges: list[Challenge] | None = None,
                 time_limit: float = 12.0, passive: PassiveLiveness | None = None,
                 reference: np.ndarray | None = None, threshold: float = THRESHOLD,
                 rng: random.Random | None = None, keep_best: int = 5,
                 deliberate: tuple[Challenge, ...] | None = None, observe: int = 0) -> None:
        self.pipe, self.iris, self.passive = pipe, iris, passive
        # observe=n: a recorded clip, no prompts: record every action seen (done, then back to neutral) and call
        # conclude() at its end: live when n different actions were seen
        self.observe = observe
        self.seen: list[str] = []
        self._doing: set[Challenge] = set()
        # actions that count as deliberate (done unasked: not live); blinks are spontaneous
        self.deliberate = frozenset(deliberate if deliberate is not None else
                                    [c for c in Challenge if c is not Challenge.BLINK])
        self.keep_best = keep_best
        self._best: list[tuple[float, np.ndarray]] = []  # (quality, embedding) of frontal frames: memory only
        self.dark = 0
        self.reference, self.threshold = reference, threshold
        self._ref_scores: list[float] = []
        self.challenges = challenges or random_challenges(3, rng)
        self.time_limit = time_limit
        self.index = 0
        self.t0: float | None = None
        self.frames = 0
        self.missing = 0
        self.decision: Decision | None = None
        self.reason = ""
        self._first_emb: np.ndarray | None = None
        self._min_same = 1.0
        self.restarts = 0
        self._baseline: list[Signals] = []
        self._prev: np.ndarray | None = None
        self._still = 0
        self._armed = False  # the current challenge's signal was seen; waiting for neutral
        self._neutral_since_prompt = False
        self._passive: list[float] = []
        # extremes of the signals relative to neutral (yaw and mouth: difference; eyes: ratio)
        self._peak: dict[str, float] = {"yaw_min": 0.0, "yaw_max": 0.0, "mouth_max": 0.0, "eye_min_rel": 1.0,
                                        "width_max_rel": 1.0}

    @property
    def prompt(self) -> str | None:
        """What the person should do now (None when decided)."""
        if self.decision is not None or self.index >= len(self.challenges):
            return None
        return PROMPTS[self.challenges[self.index]]

    def _fail(self, decision: Decision, reason: str) -> bool:
        self.decision, self.reason = decision, reason
        logger.info("active liveness: %s (%s)", decision, reason)
        return True

    def feed(self, frame: np.ndarray | Image.Image, t: float) -> bool:
        """Process one frame taken at ``t`` seconds; True once the session is decided."""
        if self.decision is not None:
            return True
        if self.t0 is None:
            self.t0 = t
        if t - self.t0 > self.time_limit:
            return self._fail(Decision.INCONCLUSIVE, "time limit reached")
        self.frames += 1
        arr = np.asarray(frame)
        small = arr[::8, ::8].astype(np.int16)
        if self._prev is not None and small.shape == self._prev.shape:
            self._still = self._still + 1 if np.abs(small - self._prev).mean() < FROZEN_PIXELS else 0
            if self._still >= FROZEN_FRAMES:
                return self._fail(Decision.NOT_LIVE, "frozen picture (frames repeat)")
        self._prev = small
        if float(small.mean()) < DARK:
            self.dark += 1
            self.missing += 1
            if self.frames >= 10 and self.dark / self.frames > MAX_MISSING:
                return self._fail(Decision.INCONCLUSIVE, "too dark")
            return False
        sig, emb, box = measure(frame, self.pipe, self.iris)
        if sig.faces > 1:
            return self._fail(Decision.NOT_LIVE, f"{sig.faces} faces in view")
        if sig.faces == 0 or emb is None:
            self.missing += 1
            if self.frames >= 10 and self.missing / self.frames > MAX_MISSING:
                return self._fail(Decision.INCONCLUSIVE, "face not in view")
            return False
        if self._first_emb is None:
            self._first_emb = emb
        same = cosine(self._first_emb, emb)
        self._min_same = min(self._min_same, same)
        turned = bool(self._baseline) and abs(sig.yaw - float(np.median([b.yaw for b in self._baseline]))) >= YAW_TURNED
        if same < (SAME_PERSON_TURNED if turned else SAME_PERSON):
            if len(self._baseline) >= BASELINE_FRAMES or self.restarts >= MAX_RESTARTS:
                return self._fail(Decision.NOT_LIVE, "a different person")
            self._start_over(emb)
            same = 1.0
        if self.reference is not None:
            self._ref_scores.append(cosine(self.reference, emb))
        if self.passive is not None and box is not None:
            self._passive.append(self.passive.check(frame, box).score)
        if len(self._baseline) < BASELINE_FRAMES:
            self._baseline.append(sig)
            self._keep(sig, emb, True)
            return False
        return self._respond(sig, emb)

    def _start_over(self, emb: np.ndarray) -> None:
        """Forget the face seen so far (before any challenge was judged) and take ``emb``'s face as the first."""
        self.restarts += 1
        logger.info("active liveness: the face changed before the first challenge; starting over (%d)",
                    self.restarts)
        self._first_emb, self._min_same = emb, 1.0
        self._baseline, self._ref_scores, self._passive, self._best = [], [], [], []

    def _keep(self, sig: Signals, emb: np.ndarray, neutral: bool) -> None:
        """Remember the embedding of a frontal, eyes-open frame among the best ``keep_best`` (largest face)."""
        if not neutral or self.keep_best <= 0:
            return
        self._best.append((sig.width, emb))
        self._best.sort(key=lambda q: -q[0])
        del self._best[self.keep_best:]

    def best_embedding(self) -> np.ndarray | None:
        """Mean of the best frontal frames' embeddings (L2-normalised), or None; memory only."""
        if not self._best:
            return None
        mean = np.mean([e / (np.linalg.norm(e) or 1.0) for _, e in self._best], axis=0)
        return mean / (np.linalg.norm(mean) or 1.0)

    def _respond(self, sig: Signals, emb: np.ndarray) -> bool:
        base = self._baseline
        eyes = sig.eye_openness / (float(np.median([b.eye_openness for b in base])) or 1.0)
        yaw = sig.yaw - float(np.median([b.yaw for b in base]))
        mouth = sig.mouth - float(np.median([b.mouth for b in base]))
        width = sig.width / (float(np.median([b.width for b in base])) or 1.0)
        pk = self._peak
        pk["yaw_min"], pk["yaw_max"] = min(pk["yaw_min"], yaw), max(pk["yaw_max"], yaw)
        pk["mouth_max"], pk["eye_min_rel"] = max(pk["mouth_max"], mouth), min(pk["eye_min_rel"], eyes)
        pk["width_max_rel"] = max(pk["width_max_rel"], width)
        active = {
            Challenge.BLINK: eyes < EYES_CLOSED,
            Challenge.TURN_LEFT: yaw >= YAW_TURNED,
            Challenge.TURN_RIGHT: yaw <= -YAW_TURNED,
            Challenge.OPEN_MOUTH: mouth >= MOUTH_OPEN,
            Challenge.MOVE_CLOSER: width >= CLOSER,
        }
        mouth_ok = mouth <= MOUTH_NEUTRAL or Challenge.OPEN_MOUTH not in self.deliberate
        frontal = abs(yaw) <= YAW_NEUTRAL and mouth_ok and eyes >= EYES_OPEN
        neutral = frontal and width <= CLOSER_NEUTRAL
        self._keep(sig, emb, frontal)
        if self.observe:
            self._doing |= {c for c, on in active.items() if on}
            if neutral:
                self.seen += [str(c) for c in sorted(self._doing) if str(c) not in self.seen]
                self._doing = set()
            return False
        want = self.challenges[self.index]
        # a deliberate action that was not asked for: a recording playing its own script (blinks are spontaneous)
        wrong = [c for c, on in active.items() if on and c != want and c in self.deliberate]
        if wrong and not self._armed:
            return self._fail(Decision.NOT_LIVE, f"did {wrong[0]} when asked to {want}")
        if not self._armed:
            if neutral:
                self._neutral_since_prompt = True
            if active[want] and self._neutral_since_prompt:
                self._armed = True
            return False
        if neutral:
            self.index += 1
            self._armed = False
            self._neutral_since_prompt = True
            if self.index == len(self.challenges):
                return self._finish()
        return False

    def conclude(self) -> LivenessResult:
        """End an observed clip: live when ``observe`` different actions were seen (and passive agrees)."""
        if self.decision is None:
            if len(self.seen) >= self.observe:
                self.index = len(self.challenges)
                self._finish()
            elif self.frames and self.missing == self.frames:
                self._fail(Decision.INCONCLUSIVE, "too dark" if self.dark * 2 > self.frames else "no face in view")
            else:
                self._fail(Decision.NOT_LIVE, f"{len(self.seen)} action(s) seen, {self.observe} needed")
        return self.result()

    def _finish(self) -> bool:
        if self._passive and float(np.median(self._passive)) < 0.5:
            return self._fail(Decision.NOT_LIVE, "passive liveness: presentation attack")
        self.decision, self.reason = Decision.LIVE, "all challenges met"
        logger.info("active liveness: live")
        return True

    def result(self) -> LivenessResult:
        """The session's outcome so far (``inconclusive`` while undecided)."""
        ref = float(np.median(self._ref_scores)) if self._ref_scores else None
        decision, reason = self.decision or Decision.INCONCLUSIVE, self.reason or "not finished"
        if decision is Decision.INCONCLUSIVE and self.frames and self.missing == self.frames:
            reason = "too dark" if self.dark * 2 > self.frames else "no face in view"
        return LivenessResult(
            decision=decision,
            reason=reason,
            challenges=list(self.seen) if self.observe else [str(c) for c in self.challenges],
            completed=len(self.seen) if self.observe else self.index,
            frames=self.frames,
            min_same_person=round(self._min_same, 4) if self._first_emb is not None else None,
            passive_score=round(float(np.median(self._passive)), 4) if self._passive else None,
            reference_score=round(ref, 4) if ref is not None else None,
            matches_reference=ref >= self.threshold if ref is not None else None,
            signals={k: round(v, 4) for k, v in self._peak.items()},
            outcome=outcome_of(decision, reason),
            best_frames=len(self._best),
        )
