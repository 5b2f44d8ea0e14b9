"""Synthetic camera frame sequences for active liveness, made by warping a real face photo.

A sequence starts from one photo centred on its face (640×480). Each frame gets fresh sensor noise
(a real camera never repeats a frame) and, as asked, closed eyes (eye opening painted with the
eyelid's colour and a lash line), a head turn (the middle of the face shifted sideways while its
outline stays, as a yaw looks in 2D) or an open mouth (a dark gap between the lips, lower lip and
chin pushed down). Everything stays in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from edge.face.landmarks import LEFT_EYE, LIP_LOWER_INNER, LIP_UPPER_INNER, MOUTH_LEFT, MOUTH_RIGHT, RIGHT_EYE
from edge.face.pipeline import FacePipeline

SIZE = (640, 480)


@dataclass(frozen=True, slots=True)
class Pose:
    """What one frame shows: eyes closed, yaw (-1 … 1; + = nose toward image right), mouth open (0 … 1),
    ``scale`` > 1: the person leaned toward the camera (the whole view zoomed about the face)."""

    closed: bool = False
    yaw: float = 0.0
    mouth: float = 0.0
    scale: float = 1.0


def camera_view(photo: Image.Image, pipe: FacePipeline) -> Image.Image:
    """``photo`` cropped around its single face and scaled to 640×480, the face about a third of the width."""
    face = pipe.detect(photo)[0]
    x0, y0, x1, y1 = face.box
    cx, cy, half_w = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 1.5
    half_h = half_w * SIZE[1] / SIZE[0]
    return photo.crop((int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h))).resize(
        SIZE, Image.Resampling.BILINEAR)


def _remap(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Bilinear sampling of ``img`` at (sx, sy) per output pixel."""
    h, w = img.shape[:2]
    sx, sy = np.clip(sx, 0, w - 1.001), np.clip(sy, 0, h - 1.001)
    x0, y0 = sx.astype(int), sy.astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    f = img.astype(np.float32)
    top = f[y0, x0] * (1 - fx) + f[y0, x0 + 1] * fx
    bot = f[y0 + 1, x0] * (1 - fx) + f[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.uint8)


class FaceAnimator:
    """Renders :class:`Pose` frames of one face photo."""

    def __init__(self, photo: Image.Image, pipe: FacePipeline, seed: int = 0) -> None:
        self.base = camera_view(photo, pipe)
        faces = pipe.faces(self.base, still=False)
        self.points = faces[0].mesh.points[:, :2]
        self.box = faces[0].box
        self.rng = np.random.default_rng(seed)

    def frame(self, pose: Pose, noise: float = 2.0) -> np.ndarray:
        img = np.asarray(self.base).copy()
        if pose.yaw:
            img = self._turn(img, pose.yaw)
        if pose.mouth:
            img = self._open_mouth(img, pose.mouth)
        if pose.closed:
            img = self._close_eyes(img)
        if pose.scale != 1.0:
            img = self._zoom(img, pose.scale)
        if noise:
            img = np.clip(img + self.rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        return img

    def _turn(self, img: np.ndarray, yaw: float) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rx, ry = (x1 - x0) * 0.62, (y1 - y0) * 0.85
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        u, v = (xx - cx) / rx, (yy - cy) / ry
        bump = np.clip(1 - u ** 2, 0, None) * np.clip(1 - v ** 2, 0, None)
        shift = yaw * (x1 - x0) * 0.45 * bump
        return _remap(img, xx - shift, yy)

    def _zoom(self, img: np.ndarray, scale: float) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        return _remap(img, cx + (xx - cx) / scale, cy + (yy - cy) / scale)

    def _open_mouth(self, img: np.ndarray, amount: float) -> np.ndarray:
        p = self.points
        left, right = p[MOUTH_RIGHT], p[MOUTH_LEFT]
        mid = (p[LIP_UPPER_INNER] + p[LIP_LOWER_INNER]) / 2
        width = float(np.linalg.norm(right - left))
        gap = amount * width * 0.6
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        chin = p[152] if len(p) > 152 else mid + [0, width]
        below = np.clip((yy - mid[1]) / 4.0, 0, 1) * np.clip(1 - ((yy - mid[1]) / (chin[1] - mid[1] + width * 0.6)), 0, 1)
        across = np.clip(1 - ((xx - mid[0]) / (width * 0.9)) ** 2, 0, None)
        out = _remap(img, xx, yy - gap * below * across)
        pil = Image.fromarray(out)
        d = ImageDraw.Draw(pil)
        d.ellipse([left[0] + width * 0.12, mid[1] - gap * 0.1, right[0] - width * 0.12, mid[1] + gap * 1.0],
                  fill=(45, 20, 22))
        return np.asarray(pil)

    def _close_eyes(self, img: np.ndarray) -> np.ndarray:
        p = self.points
        pil = Image.fromarray(img)
        d = ImageDraw.Draw(pil)
        for idx in (RIGHT_EYE, LEFT_EYE):
            eye = p[idx]
            width = float(np.linalg.norm(eye[8] - eye[0]))
            below = eye[:9].mean(0) + [0, width * 0.3]  # skin under the eye: the lid's colour
            x, y = int(np.clip(below[0], 0, img.shape[1] - 1)), int(np.clip(below[1], 0, img.shape[0] - 1))
            lid = tuple(int(c) for c in img[max(y - 2, 0):y + 3, max(x - 3, 0):x + 4].reshape(-1, 3).mean(0))
            poly = np.vstack([eye[:9], eye[9:][::-1]])
            grown = eye.mean(0) + (poly - eye.mean(0)) * [1.2, 1.9]
            d.polygon([tuple(q) for q in grown.tolist()], fill=lid)
            lash = eye[:9] * 0.6 + np.vstack([eye[:1], eye[9:], eye[8:9]]) * 0.4
            d.line([tuple(q) for q in lash.tolist()], fill=(45, 32, 30), width=max(2, int(width * 0.06)))
        return np.asarray(pil)


ACTIONS = {"blink": Pose(closed=True), "turn_left": Pose(yaw=1.3), "turn_right": Pose(yaw=-1.3),
           "open_mouth": Pose(mouth=1.0), "move_closer": Pose(scale=1.4)}
"""The pose that answers each challenge (turn left: the person's left, nose toward image right)."""


def script(actions: list[str], lead: int = 4, hold: int = 3, rest: int = 3) -> list[Pose]:
    """Poses of a person answering ``actions`` in order: neutral, then for each: act ``hold`` frames, rest."""
    poses = [Pose()] * lead
    for a in actions:
        poses += [ACTIONS[a]] * hold + [Pose()] * rest
    return poses


def portrait(photo: Image.Image, pipe: FacePipeline, size: tuple[int, int]) -> Image.Image:
    """``photo`` cropped to a passport-style portrait of ``size`` (w, h) around its largest face."""
    x0, y0, x1, y1 = pipe.detect(photo)[0].box
    cx, cy, fw = (x0 + x1) / 2, (y0 + y1) / 2 - (y1 - y0) * 0.1, (x1 - x0)
    half_w = fw * 0.85
    half_h = half_w * size[1] / size[0]
    return photo.crop((int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h))).resize(
        size, Image.Resampling.LANCZOS)


def passport_page(photo: Image.Image, pipe: FacePipeline, rng: np.random.Generator,
                  lines: tuple[str, ...] | None = None) -> tuple[Image.Image, tuple[str, ...]]:
    """A TD3 data page (:func:`tests.hw_sim.documents.render_document`) with ``photo``'s face as its portrait."""
    from edge.documents.mrz import MrzFormat
    from tests.hw_sim.documents import LINE_PITCH_MM, PX_PER_MM, SIZES_MM, random_mrz, render_document

    lines = lines or random_mrz(rng, MrzFormat.TD3)
    page = render_document(lines, MrzFormat.TD3, rng)
    w_mm, h_mm = SIZES_MM[MrzFormat.TD3]
    mm, w = PX_PER_MM, w_mm * PX_PER_MM
    zone_top = h_mm * mm - (2 * LINE_PITCH_MM + 4.0) * mm
    px0, py0 = 5 * mm, 9 * mm
    photo_w = 0.26 * w
    py1 = min(zone_top - 3 * mm, py0 + photo_w * 1.3)
    box = (int(px0), int(py0), int(px0 + photo_w), int(py1))
    page.paste(portrait(photo, pipe, (box[2] - box[0], box[3] - box[1])), box[:2])
    return page, lines


def passport_frame(photo: Image.Image, pipe: FacePipeline, seed: int = 0, blur: float = 0.3) -> tuple[np.ndarray, tuple[str, ...]]:
    """A BGR 1280×960 camera frame of a data page bearing ``photo``'s face, laid flat and lit evenly."""
    from tests.hw_sim.documents import Capture, render_frame

    rng = np.random.default_rng(seed)
    page, lines = passport_page(photo, pipe, rng)
    capture = Capture(fill=0.8, angle=float(rng.uniform(-3, 3)), blur=blur, light=0.1, noise=2.0, jpeg_quality=92)
    return render_frame(page, capture, rng), lines


class DeskCamera:
    """The simulated identity-desk camera (a :class:`drivers.camera.FrameSource`, BGR 640×480 frames).

    Before the desk starts a capture it shows ``document`` (a BGR frame, e.g. :func:`passport_frame`) if given,
    else the person standing still. During a capture what it shows depends on ``act``:

    * ``"answer"``: the person does what the desk asks now (``asked()``: the challenge name), after ``react``
      frames, holds it ``hold`` frames and comes back to neutral, again while it is still asked: a live person
      following the LEDs;
    * ``"still"``: the photo held up: only sensor noise changes (a print or a phone showing a photo);
    * ``"replay"``: a recording of the person answering another session (``replay``: action names), looped.

    It stops (``finished``) after ``limit`` frames shown during captures; outside a capture it shows a frame
    every ``idle`` seconds (a camera's pace), not counted.
    """

    def __init__(self, person: FaceAnimator, asked, capturing, *, act: str = "answer",  # type: ignore[no-untyped-def]
                 document: np.ndarray | None = None, replay: list[str] | None = None, limit: int = 600,
                 react: int = 2, hold: int = 3, rest: int = 3, idle: float = 0.0) -> None:
        from drivers.camera import FileFrameSource

        class _Source(FileFrameSource):
            def _open(inner) -> None:  # noqa: N805
                pass

            @property
            def finished(inner) -> bool:  # noqa: N805
                return self.count >= self.limit

            def _read(inner) -> np.ndarray | None:  # noqa: N805
                return self.next_frame()

        from pathlib import Path

        self.source = _Source(Path("."))
        self.person, self.asked, self.capturing, self.act = person, asked, capturing, act
        self.document, self.limit = document, limit
        self.react, self.hold, self.rest = react, hold, rest
        self.replay = script(replay or [], lead=2) if act == "replay" else []
        self.count = 0
        self.idle = idle
        self._plan: list[Pose] = []
        self._last: str | None = None
        self.captured = False

    def next_frame(self) -> np.ndarray | None:
        if self.count >= self.limit:
            return None
        if self.idle and not self.capturing():
            import time

            time.sleep(self.idle)  # a camera's pace; what it shows is decided when the frame is taken, below
        if not self.capturing():
            if self.document is not None and not self.captured:
                return self.document
            return self.person.frame(Pose())[:, :, ::-1]
        self.count += 1
        self.captured = True
        if self.act == "replay":
            pose = self.replay[self.count % len(self.replay)]
        elif self.act == "still":
            pose = Pose()
        else:
            now = self.asked()
            if now is not None and (now != self._last or not self._plan):  # still asked: do it again
                self._plan = [Pose()] * self.react + [ACTIONS[now]] * self.hold + [Pose()] * self.rest
            self._last = now
            pose = self._plan.pop(0) if self._plan else Pose()
        return self.person.frame(pose)[:, :, ::-1]
