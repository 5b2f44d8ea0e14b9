"""``ehc-edge face …`` commands. :func:`face_main` takes the arguments after ``face``.

``ehc-edge face verify --video CLIP --reference PHOTO`` prints ``{"same", "score", "threshold", "live", "decision",
"reason", "challenges_seen", "frames", "frames_used", "passive_score", "models"}``: the clip's liveness (at least two
different actions seen; a clip made from a still photo is ``live: false``) and, when live, its best frames against
the photo (``same`` is false whenever the clip is not live). ``ehc-edge face enroll`` enrols a template from a clip
(see :mod:`edge.face.enrol`).

``ehc-edge face compare A B`` prints JSON ``{"same", "score", "threshold", "faces_a", "faces_b", "models"}``
and exits 0 whether or not the faces match. When a photo has no face, several faces (and none was
selected with ``--face-a/--face-b``), or only part of a face, it prints ``{"error", "message"}``,
repeats the message on stderr and exits 2; an unreadable file or a missing model exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge.face.errors import FaceError, FaceNotSelectable, NoFace, PartialFace, SeveralFaces
from models_tflite.loader import ModelError

logger = logging.getLogger(__name__)

ERROR_KINDS: dict[type[FaceError], str] = {
    NoFace: "no_face", SeveralFaces: "several_faces", FaceNotSelectable: "no_such_face", PartialFace: "partial_face",
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ehc-edge face", description="Face verification on the box")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="1:1: is the face in photo A the same person as in photo B?")
    c.add_argument("a", type=Path, help="first photo (e.g. the reference or document photo)")
    c.add_argument("b", type=Path, help="second photo")
    c.add_argument("--face-a", type=int, default=None, help="face to use in A when it has several (0 = largest)")
    c.add_argument("--face-b", type=int, default=None, help="face to use in B when it has several (0 = largest)")
    c.add_argument("--threshold", type=float, default=None, help="cosine threshold (default: the built-in one)")
    c.add_argument("--threads", type=int, default=1, help="interpreter threads per model")
    v = sub.add_parser("verify", help="video check: a recorded clip against a reference photo, with liveness")
    v.add_argument("--video", type=Path, required=True, help="the clip (a video file, or an animated GIF/TIFF)")
    v.add_argument("--reference", type=Path, required=True, help="the reference photo (one face)")
    v.add_argument("--model-dir", type=Path, default=None, help="MiniFASNet models folder (passive liveness)")
    v.add_argument("--threshold", type=float, default=None, help="cosine threshold (default: the built-in one)")
    v.add_argument("--max-frames", type=int, default=600, help="read at most this many frames of the clip")
    e = sub.add_parser("enroll", help="enrol a reference template from a clip, with consent (stored in the outbox, "
                                      "sealed to the central key)")
    e.add_argument("--config", type=Path, default=Path("/etc/ehc-edge/edge.toml"), help="the box configuration")
    e.add_argument("--video", type=Path, required=True, help="the enrolment clip of the person")
    e.add_argument("--document", required=True, help="document type the ID number belongs to (e.g. resident, "
                                                     "mrz_P_UTO)")
    e.add_argument("--id-number", required=True, help="the person's ID number (only its pseudonym is sent)")
    e.add_argument("--consent", required=True, choices=("self", "guardian"), help="who consented")
    e.add_argument("--guardian-ref", default=None, help="guardian's ID pseudonym (consent by a guardian)")
    e.add_argument("--guardian-check", default=None, help="message id of the guardian's passed face_check")
    e.add_argument("--model-dir", type=Path, default=None, help="MiniFASNet models folder (passive liveness)")
    return ap


def clip_frames(path: Path, limit: int = 600) -> Iterator[tuple[float, np.ndarray]]:
    """``(seconds, RGB frame)`` of a clip: a video through OpenCV when installed, else a multi-frame image."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None and path.suffix.lower() not in (".gif", ".tif", ".tiff", ".webp"):
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise OSError(f"{path}: not a readable video")
            fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
            for i in range(limit):
                ok, bgr = cap.read()
                if not ok:
                    return
                yield i / fps, np.ascontiguousarray(bgr[:, :, ::-1])
        finally:
            cap.release()
        return
    with Image.open(path) as im:
        n = min(getattr(im, "n_frames", 1), limit)
        for i in range(n):
            im.seek(i)
            yield i * (im.info.get("duration", 100) or 100) / 1000.0, np.asarray(im.convert("RGB"))


def _verify(args: argparse.Namespace) -> int:
    from edge.face.desk import check_clip
    from edge.face.landmarks import IrisModel
    from edge.face.passive import PassiveLiveness
    from edge.face.verify import THRESHOLD, FaceVerifier

    threshold = args.threshold if args.threshold is not None else THRESHOLD
    verifier = FaceVerifier(threshold=threshold)
    ref, _ = verifier.the_face(_load(args.reference), None, "reference")
    result = check_clip(clip_frames(args.video, args.max_frames), ref.embedding, verifier.pipeline, IrisModel(),
                        PassiveLiveness.from_dir(args.model_dir), threshold=threshold)
    print(json.dumps({"same": bool(result.same), "score": result.score, "threshold": result.threshold,
                      "live": result.live, "decision": result.decision, "reason": result.reason,
                      "challenges_seen": result.challenges, "frames": result.frames,
                      "frames_used": result.frames_used, "passive_score": result.passive_score,
                      "models": result.models}))
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from edge.face.enrol import enrol_from_clip

    return enrol_from_clip(args, clip_frames(args.video))


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def face_main(argv: list[str] | None = None) -> int:
    """Run ``ehc-edge face`` with ``argv`` (the arguments after ``face``); returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("verify", "enroll"):
        try:
            return _verify(args) if args.command == "verify" else _enroll(args)
        except FaceError as exc:
            kind = ERROR_KINDS.get(type(exc), "face_error")
            print(json.dumps({"error": kind, "message": str(exc)}))
            print(f"face {args.command}: {exc}", file=sys.stderr)
            return 2
        except (OSError, UnidentifiedImageError) as exc:
            print(f"cannot read: {exc}", file=sys.stderr)
            return 1
        except ModelError as exc:
            print(f"face models unusable: {exc}", file=sys.stderr)
            return 1
    from edge.face.verify import THRESHOLD, FaceVerifier

    try:
        a, b = _load(args.a), _load(args.b)
    except (OSError, UnidentifiedImageError) as exc:
        print(f"cannot read image: {exc}", file=sys.stderr)
        return 1
    try:
        verifier = FaceVerifier(threshold=args.threshold if args.threshold is not None else THRESHOLD,
                                threads=args.threads)
        result = verifier.compare(a, b, select_a=args.face_a, select_b=args.face_b)
    except FaceError as exc:
        kind = ERROR_KINDS.get(type(exc), "face_error")
        print(json.dumps({"error": kind, "message": str(exc)}))
        print(f"face compare: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"face models unusable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(face_main())
