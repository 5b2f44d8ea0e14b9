#!/usr/bin/env python3
"""Face pipeline benchmark: detection + face mesh + alignment + SFace embedding per camera frame.

Frames are 640×480 RGB made from the shared face photos (``../shared/testdata/faces``, one face each,
cropped and scaled as a camera at arm's length would see them). Every frame runs the camera path of
:class:`edge.face.pipeline.FacePipeline` (short-range detector, mesh, five-point alignment, SFace
embedding) on one interpreter thread; the iris model (active liveness) and MiniFASNet (passive, when
provisioned) are timed separately. Peak RSS is the whole process (Python, numpy, Pillow, interpreters,
all models loaded).

Targets on the development machine: ≤ 40 ms per frame and ≤ 250 MB peak RSS.
Last line: ``face: ms_per_frame=X rss_mb=Y`` (median ms of detection + landmarks + embedding).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from PIL import Image  # noqa: E402

from edge.face.landmarks import IrisModel  # noqa: E402
from edge.face.passive import PassiveLiveness  # noqa: E402
from edge.face.pipeline import FacePipeline  # noqa: E402
from models_tflite.loader import backend  # noqa: E402
from tests.conftest import shared_dir  # noqa: E402


def camera_frames(root: Path, size: tuple[int, int] = (640, 480)) -> list[Image.Image]:
    """640×480 frames: each single-face photo centred on its face, the face about a third of the frame wide."""
    pipe = FacePipeline(embed=False)
    frames = []
    with (root / "labels.csv").open(newline="") as f:
        names = [r["file"] for r in csv.DictReader(f) if ";" not in r["identities"]]
    for name in names:
        with Image.open(root / name) as im:
            rgb = im.convert("RGB")
        faces = pipe.detect(rgb)
        if len(faces) != 1:
            continue
        x0, y0, x1, y1 = faces[0].box
        cx, cy, w = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
        half_w = w * 1.5
        half_h = half_w * size[1] / size[0]
        frames.append(rgb.crop((int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h)))
                      .resize(size, Image.Resampling.BILINEAR))
    return frames


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="passes over the frames")
    ap.add_argument("--model-dir", type=Path, default=shared_dir() / "models" / "minifasnet",
                    help="folder with the MiniFASNet models (optional)")
    args = ap.parse_args(argv)
    root = shared_dir() / "testdata" / "faces"
    if not root.is_dir():
        print(f"shared test data folder not found: {root}")
        return 1
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}, "
          f"interpreter {backend()}, {threadcap.THREADS} thread(s)")
    frames = camera_frames(root)
    pipe = FacePipeline(threads=threadcap.THREADS)
    iris = IrisModel(threads=threadcap.THREADS)
    passive = PassiveLiveness.from_dir(args.model_dir, threads=threadcap.THREADS)
    for f in frames[:3]:  # warm-up
        pipe.faces(f, still=False)
    total, det, rest, iris_ms, passive_ms = [], [], [], [], []
    for _ in range(args.rounds):
        for frame in frames:
            t0 = time.perf_counter()
            found = pipe.detect(frame, still=False)
            t1 = time.perf_counter()
            face = pipe.face(frame, found[0]) if found else None
            t2 = time.perf_counter()
            total.append((t2 - t0) * 1000)
            det.append((t1 - t0) * 1000)
            rest.append((t2 - t1) * 1000)
            if face is not None:
                iris_ms.append(timed(iris.eyes, frame, face.mesh))
                if passive is not None:
                    passive_ms.append(timed(passive.check, frame, face.box))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    med = statistics.median
    print(f"frames: {len(frames)} x {args.rounds} rounds at 640x480")
    print(f"  detection (short range)          median {med(det):6.2f} ms")
    print(f"  mesh + align + SFace embedding   median {med(rest):6.2f} ms")
    print(f"  total per frame                  median {med(total):6.2f} ms  p95 "
          f"{sorted(total)[int(0.95 * (len(total) - 1))]:6.2f} ms")
    print(f"  iris, both eyes (active only)    median {med(iris_ms):6.2f} ms")
    if passive_ms:
        print(f"  MiniFASNet x2 (passive)          median {med(passive_ms):6.2f} ms")
    else:
        print(f"  MiniFASNet: not provisioned in {args.model_dir}")
    print(f"  peak RSS {rss_mb:.0f} MB (targets: 40 ms, 250 MB)")
    print(f"face: ms_per_frame={med(total):.1f} rss_mb={rss_mb:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
