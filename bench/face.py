#!/usr/bin/env python3
"""Face pipeline benchmark: detection + face mesh + alignment + SFace embedding per camera frame.

Frames are 640×480 RGB made from the shared face photos (``../shared/testdata/faces``, one face each,
cropped and scaled as a camera at arm's length would see them). Every frame runs the camera path of
:class:`edge.face.pipeline.FacePipeline` (short-range detector, mesh, five-point alignment, SFace
embedding) on one interpreter thread; the iris model (active liveness) and MiniFASNet (passive, when
provisioned) are timed separately. Peak RSS is the whole process (Python, numpy, Pillow, interpreters,
all models loaded).

Targets on the development machine: ≤ 40 ms per frame and ≤ 250 MB peak RSS.

The identity desk (``--desk``, on by default): for every single-face photo, a simulated person made from it
(:class:`tests.hw_sim.faces.FaceAnimator`) answers two random desk challenges as prompted
(:class:`tests.hw_sim.faces.DeskCamera`, 10 frames per second) in a :class:`edge.face.desk.LiveCheck`; its best
frames are compared with every other photo: same-person and different-person error rates at the threshold, for
photo-to-photo and for live-to-photo. Per session: the time from the first challenge to the decision (the
computing time, and the person's time at 10 fps), the per-frame cost of the whole desk step (detection, mesh,
SFace, iris, MiniFASNet when provisioned). Attacks per person: the photo held still, a replayed recording of the
person answering another order, and a clip made from the still photo (``check_clip``): refusals counted.
The synthetic warps of a still photo stand in for people; they are not real presentation attacks or real people.

Last line: ``face: ms_per_frame=X desk_ms_per_frame=D decision_s=S frr=F far=A live_frr=LF live_far=LA
replays_refused=R/N rss_mb=Y`` (median ms of detection + landmarks + embedding; desk figures medians).
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
    ap.add_argument("--no-desk", action="store_true", help="only the per-frame pipeline figures")
    ap.add_argument("--people", type=int, default=100, help="desk: at most this many simulated people")
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
    if args.no_desk:
        print(f"face: ms_per_frame={med(total):.1f} rss_mb={rss_mb:.0f}")
        return 0
    desk = desk_figures(root, pipe, iris, passive, args.people)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"face: ms_per_frame={med(total):.1f} desk_ms_per_frame={desk['ms_per_frame']:.1f} "
          f"decision_s={desk['decision_s']:.2f} frr={desk['frr']:.3f} far={desk['far']:.3f} "
          f"live_frr={desk['live_frr']:.3f} live_far={desk['live_far']:.3f} "
          f"replays_refused={desk['refused']}/{desk['attacks']} rss_mb={rss_mb:.0f}")
    return 0


def _rate(bad: int, total: int) -> float:
    return bad / total if total else float("nan")


def desk_figures(root: Path, pipe: FacePipeline, iris: IrisModel, passive: PassiveLiveness | None,
                 people: int) -> dict[str, float]:
    """The identity desk's figures on the shared faces (see the module docstring)."""
    import random

    import numpy as np

    from edge.face.desk import LiveCheck, check_clip
    from edge.face.embed import cosine
    from edge.face.verify import THRESHOLD
    from tests.hw_sim.faces import DeskCamera, FaceAnimator

    with (root / "labels.csv").open(newline="") as f:
        rows = [(r["file"], r["identities"]) for r in csv.DictReader(f) if ";" not in r["identities"]]
    refs: list[tuple[str, str, np.ndarray]] = []
    for name, who in rows:
        with Image.open(root / name) as im:
            faces = pipe.faces(im.convert("RGB"))
        if len(faces) == 1:
            refs.append((name, who, faces[0].embedding))
    same_pairs = diff_pairs = same_bad = diff_bad = 0
    for i, (_, wa, ea) in enumerate(refs):
        for _, wb, eb in refs[i + 1:]:
            ok = cosine(ea, eb) >= THRESHOLD
            if wa == wb:
                same_pairs, same_bad = same_pairs + 1, same_bad + (not ok)
            else:
                diff_pairs, diff_bad = diff_pairs + 1, diff_bad + ok
    print(f"photo vs photo at threshold {THRESHOLD}: {len(refs)} photos, same-person {same_bad}/{same_pairs} refused "
          f"(FRR {_rate(same_bad, same_pairs):.3f}), different-person {diff_bad}/{diff_pairs} accepted "
          f"(FAR {_rate(diff_bad, diff_pairs):.3f})")
    per_frame, decision_s, person_s = [], [], []
    live_same = live_diff = live_same_bad = live_diff_bad = not_live = sessions = vetoed = 0
    refused = attacks = 0
    rng = random.Random(7)
    for k, (name, who, _) in enumerate(refs[:people]):
        with Image.open(root / name) as im:
            try:
                animator = FaceAnimator(im.convert("RGB"), pipe, seed=k)
            except IndexError:
                continue

        def session(act: str, replay: list[str] | None = None, animator=animator):  # type: ignore[no-untyped-def]
            checker = LiveCheck(pipe, iris, passive, time_limit=8.0, rng=rng)
            holder = {"checker": checker}

            def asked() -> str | None:
                s = holder["checker"].session
                return None if s is None or s.index >= len(s.challenges) else str(s.challenges[s.index])
            cam = DeskCamera(animator, asked, lambda: True, act=act, replay=replay, limit=200)
            made = [0.0]  # seconds spent making the simulated frames: not the desk's time

            def frames():  # type: ignore[no-untyped-def]
                for i in range(200):
                    t0 = time.perf_counter()
                    frame = cam.next_frame()
                    if frame is None:
                        return
                    frame = np.ascontiguousarray(frame[:, :, ::-1])
                    made[0] += time.perf_counter() - t0
                    yield i / 10.0, frame
            t = time.perf_counter()
            result = checker.run(frames(), None)
            return result, checker, time.perf_counter() - t - made[0]

        result, checker, took = session("answer")
        sessions += 1
        decision_s.append(took)
        person_s.append(result.frames / 10.0)
        per_frame.append(took * 1000 / max(result.frames, 1))
        answered = result.completed == len(result.challenges)
        vetoed += answered and not result.live
        not_live += not result.live
        # the error rates use every session whose challenges were met (the passive veto is counted apart)
        best = checker.session.best_embedding() if answered else None
        if best is not None:
            for other, wo, eo in refs:
                if other == name:
                    continue
                ok = cosine(best, eo) >= THRESHOLD
                if wo == who:
                    live_same, live_same_bad = live_same + 1, live_same_bad + (not ok)
                else:
                    live_diff, live_diff_bad = live_diff + 1, live_diff_bad + ok
        for act, replay in (("still", None), ("replay", ["turn_right", "move_closer", "turn_left", "blink"])):
            r, _, _ = session(act, replay)
            attacks, refused = attacks + 1, refused + (not r.live)
        still = [animator.frame(animator_pose()) for _ in range(30)]
        clip = check_clip(((i / 10.0, f) for i, f in enumerate(still)), None, pipe, iris, passive)
        attacks, refused = attacks + 1, refused + (not clip.live)
    med = statistics.median
    print(f"desk sessions: {sessions} simulated people answering as prompted, {not_live} not live, of which "
          f"{vetoed} met both challenges and were vetoed by the passive models ({'on' if passive else 'off'}: "
          f"these 'people' are web photos, which MiniFASNet often takes for prints)")
    print(f"  first challenge to decision: median {med(decision_s):.2f} s computing "
          f"(person's own time at 10 fps: median {med(person_s):.1f} s), max {max(decision_s):.2f} s")
    print(f"  desk step per frame (detect, mesh, SFace, iris{', MiniFASNet' if passive else ''}): "
          f"median {med(per_frame):.1f} ms")
    print(f"  live vs photo at {THRESHOLD}: same-person {live_same_bad}/{live_same} refused "
          f"(FRR {_rate(live_same_bad, live_same):.3f}), different-person {live_diff_bad}/{live_diff} accepted "
          f"(FAR {_rate(live_diff_bad, live_diff):.3f})")
    print(f"  attacks refused: {refused}/{attacks} (photo held still, replayed recording, clip of a still photo)")
    return {"ms_per_frame": med(per_frame), "decision_s": med(decision_s), "frr": _rate(same_bad, same_pairs),
            "far": _rate(diff_bad, diff_pairs), "live_frr": _rate(live_same_bad, live_same),
            "live_far": _rate(live_diff_bad, live_diff), "refused": refused, "attacks": attacks}


def animator_pose():  # type: ignore[no-untyped-def]
    from tests.hw_sim.faces import Pose

    return Pose()


if __name__ == "__main__":
    sys.exit(main())
