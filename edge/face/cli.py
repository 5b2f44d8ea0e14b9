"""``ehc-edge face …`` commands. :func:`face_main` takes the arguments after ``face``.

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
from pathlib import Path

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
    return ap


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def face_main(argv: list[str] | None = None) -> int:
    """Run ``ehc-edge face`` with ``argv`` (the arguments after ``face``); returns the exit status."""
    args = _parser().parse_args(argv)
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
