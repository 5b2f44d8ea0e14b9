#!/usr/bin/env python3
"""Decoding benchmark: the station's scanner against plain zxing-cpp and plain pyzbar, same images, one run.

1. Real photos (``../shared/testdata/qr``: qrcode-1..6 and falsepositives-1): per category, the share
   read correctly (for falsepositives: the share with nothing reported) and median / p95 ms per image.
   Ours runs as ``ehc-edge decode`` does (every retry); the peers run with their defaults.
2. Hard synthetic frames (640x480: small, dim, noisy, blurred, glare, inverted): read rate and ms for
   ours on the first frame a code is seen, on a code held for three frames (0.2 s at 15 fps), and on a
   still image (``ehc-edge decode``), against the peers.
3. The same hard frames by category (one hardness each: small, tilted, blurred, dim, glare, noisy,
   inverted), plus multi-code frames ("lots": 12-40 QR codes of 55-150 px in a 1080p frame; rate = codes
   read / codes shown) and rack photos (48 = 6x8 and 96 = 8x12 Data Matrix tube labels at 1080p, turned,
   in perspective, blurred, with glare, some wells empty and some labels smeared; rate = labels read /
   readable labels shown; for ours also the tubes placed at the right position). Ours runs as
   ``ehc-edge decode`` for the categories and lots, and as the rack scan (``edge.rackscan.read_rack``:
   decoding and grid fitting) for racks. zbar reads no Data Matrix.
4. 1920x1080 frames with one code: ms per frame for a cold frame (no region known) and for a code held
   in front of the camera (region tracking), against the peers on the same frames.

Last line: ``decode: ours=R1 zxing=R2 pyzbar=R3 median_ms=M lots=L1/L2 rack48_ms=K worst_margin=W`` (R: rates
on the real photos with a code; M: our median per 1080p frame with one code, held in front of the camera;
L1/L2: ours / zxing-cpp on the lots frames; K: our median ms for a 48-tube rack photo at 1080p, decoding
and positions; W: the smallest (ours - zxing-cpp) rate over every category, real and synthetic).
Runs on one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)
import zxingcpp  # noqa: E402
from pyzbar import pyzbar  # noqa: E402

from drivers.camera import IMAGE_SUFFIXES, load_image  # noqa: E402
from drivers.sim_camera import Scene, render_qr_frame  # noqa: E402
from edge.imageprep import to_gray  # noqa: E402
from edge.rack import RackLayout  # noqa: E402
from edge.rackscan import read_rack  # noqa: E402
from edge.scanner import STILL_IMAGE, DecodeOptions, FrameScanner  # noqa: E402
from edge.symbology import QR_ONLY  # noqa: E402
from tests.hw_sim.camera import health_card_tokens  # noqa: E402
from tests.hw_sim.rack import lots_frame, render_rack  # noqa: E402

Reader = Callable[[np.ndarray], list[bytes]]


def ours(options: DecodeOptions) -> Reader:
    def read(frame: np.ndarray) -> list[bytes]:
        return [c.text.encode() for c in FrameScanner(options).decode(frame)]
    return read


def stream(scanner: FrameScanner) -> Reader:
    """One scanner fed frame after frame, as the camera loop feeds it (regions and periodic passes kept)."""
    def read(frame: np.ndarray) -> list[bytes]:
        return [c.text.encode() for c in scanner.decode(frame)]
    return read


def plain_zxing(frame: np.ndarray) -> list[bytes]:
    return [b.text.encode() for b in zxingcpp.read_barcodes(to_gray(frame), formats=zxingcpp.BarcodeFormat.QRCode)]


def plain_zbar(frame: np.ndarray) -> list[bytes]:
    return [s.data for s in pyzbar.decode(to_gray(frame), symbols=[pyzbar.ZBarSymbol.QRCODE])]


def plain_zxing_dm(frame: np.ndarray) -> list[bytes]:
    return [b.text.encode() for b in zxingcpp.read_barcodes(to_gray(frame), formats=zxingcpp.BarcodeFormat.DataMatrix)]


def timed(read: Reader, frame: np.ndarray) -> tuple[list[bytes], float]:
    started = time.perf_counter()
    out = read(frame)
    return out, (time.perf_counter() - started) * 1000.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def real_photos(root: Path, readers: dict[str, Reader]) -> tuple[dict[str, tuple[int, int]], float]:
    totals = {name: (0, 0) for name in readers}
    margin = 1.0
    print(f"\nreal photos ({root})")
    print(f"  {'category':18} {'n':>4} " + " ".join(f"{n + ' rate':>12} {n + ' med/p95 ms':>22}" for n in readers))
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        cells = []
        rates = {}
        for name, read in readers.items():
            ok, ms = 0, []
            for image in images:
                expected = next((image.with_suffix(s).read_bytes() for s in (".txt", ".bin")
                                 if image.with_suffix(s).exists()), None)
                out, t = timed(read, load_image(image))
                ms.append(t)
                ok += (not out) if folder.name.startswith("falsepositives") else (expected in out)
            rates[name] = ok / len(images)
            cells.append(f"{ok / len(images):>12.1%} {statistics.median(ms):>10.1f} / {pct(ms, 0.95):>8.1f}")
            if not folder.name.startswith("falsepositives"):
                done, n = totals[name]
                totals[name] = (done + ok, n + len(images))
        margin = min(margin, rates["ours"] - rates["zxing"])
        print(f"  {folder.name:18} {len(images):>4} " + " ".join(cells))
    return totals, margin


def hard_frames(n: int) -> tuple[list[np.ndarray], list[bytes]]:
    rng = np.random.default_rng(5)
    tokens = health_card_tokens(n, seed=5)
    frames = []
    for i, token in enumerate(tokens):
        scene = Scene(size=float(rng.uniform(110, 200)), angle=float(rng.uniform(-40, 40)),
                      blur=float(rng.uniform(0.5, 1.8)), brightness=float(rng.uniform(0.35, 0.8)),
                      glare=float(rng.uniform(0.1, 0.5)), noise=float(rng.uniform(4, 12)))
        frame = render_qr_frame(token, scene, rng=rng, grayscale=True)
        frames.append(255 - frame if i % 5 == 0 else frame)  # every fifth: a phone in dark mode
    return frames, [t.encode() for t in tokens]


CATEGORIES: dict[str, dict[str, tuple[float, float]]] = {
    "small": {"size": (62, 90), "blur": (0.3, 0.8)},
    "tilted": {"size": (110, 180), "angle": (28, 45)},
    "blurred": {"size": (130, 200), "blur": (1.6, 2.4)},
    "dim": {"size": (110, 180), "brightness": (0.18, 0.3), "noise": (3, 6)},
    "glare": {"size": (120, 200), "glare": (0.6, 0.95)},
    "noisy": {"size": (110, 180), "noise": (16, 26)},
    "inverted": {"size": (100, 180), "blur": (0.3, 1.0)},
}


def category_frames(name: str, n: int, seed: int) -> tuple[list[np.ndarray], list[bytes]]:
    rng = np.random.default_rng(seed)
    tokens = health_card_tokens(n, seed=seed)
    frames = []
    for token in tokens:
        spec = {k: float(rng.uniform(*v)) for k, v in CATEGORIES[name].items()}
        spec.setdefault("angle", float(rng.uniform(-15, 15)))
        frame = render_qr_frame(token, Scene(**spec), rng=rng, grayscale=True)
        frames.append(255 - frame if name == "inverted" else frame)
    return frames, [t.encode() for t in tokens]


def by_category(n: int, lots: int, racks: int) -> tuple[float, tuple[float, float], float]:
    """Section 3; returns the smallest (ours - zxing) margin, the lots rates (ours, zxing) and the 48-rack ms."""
    readers: dict[str, Reader] = {"ours": ours(STILL_IMAGE), "zxing": plain_zxing, "pyzbar": plain_zbar}
    print(f"\nby category ({n} frames each, 640x480; lots and racks at 1920x1080)")
    print(f"  {'category':10} {'n':>5} " + " ".join(f"{k + ' rate':>11} {k + ' med ms':>12}" for k in readers))
    margin = 1.0
    for i, name in enumerate(CATEGORIES):
        frames, truth = category_frames(name, n, seed=100 + i)
        rates = {}
        cells = []
        for reader_name, read in readers.items():
            ok, ms = 0, []
            for frame, expected in zip(frames, truth):
                out, t = timed(read, frame)
                ok += expected in out
                ms.append(t)
            rates[reader_name] = ok / len(frames)
            cells.append(f"{ok / len(frames):>11.1%} {statistics.median(ms):>12.1f}")
        margin = min(margin, rates["ours"] - rates["zxing"])
        print(f"  {name:10} {len(frames):>5} " + " ".join(cells))
    lot_frames = [lots_frame(int(k), seed=200 + j, min_size=55, max_size=150)
                  for j, k in enumerate(np.random.default_rng(3).integers(12, 41, size=lots))]
    shown = sum(len(t) for _, t in lot_frames)
    cells, lot_rates = [], {}
    for reader_name, read in readers.items():
        ok, ms = 0, []
        for frame, texts in lot_frames:
            out, t = timed(read, frame)
            ok += len({o.decode() for o in out} & set(texts))
            ms.append(t)
        lot_rates[reader_name] = ok / shown
        cells.append(f"{ok / shown:>11.1%} {statistics.median(ms):>12.1f}")
    margin = min(margin, lot_rates["ours"] - lot_rates["zxing"])
    print(f"  {'lots':10} {shown:>5} " + " ".join(cells) + f"   ({lots} frames, {shown} codes)")
    rack48_ms = float("nan")
    for rows, cols in ((6, 8), (8, 12)):
        layout = RackLayout(rows, cols)
        rng = np.random.default_rng(rows)
        photos = [render_rack(rows, cols, seed=300 + 10 * rows + j, angle=float(rng.uniform(-30, 30)),
                              perspective=float(rng.uniform(0, 0.07)), blur=float(rng.uniform(0.3, 1.0)),
                              glare=float(rng.uniform(0.2, 0.5)), missing=int(rng.integers(0, 4)),
                              damaged=int(rng.integers(0, 3)), fill=0.9 if rows == 6 else 0.95,
                              label=0.5 if rows == 6 else 0.55)
                  for j in range(racks)]
        shown = sum(len(p.tubes) for p in photos)
        cells, rack_rates, placed = [], {}, 0
        for reader_name, read in {"ours": None, "zxing": plain_zxing_dm, "pyzbar": plain_zbar}.items():
            ok, ms = 0, []
            for p in photos:
                if read is None:
                    started = time.perf_counter()
                    event = read_rack(p.frame, layout)
                    ms.append((time.perf_counter() - started) * 1000.0)
                    tubes = event.reading.tubes if event.reading is not None else ()
                    out = [t.text.encode() for t in tubes]
                    placed += sum(p.tubes.get(t.position) == t.text for t in tubes)
                else:
                    out, t = timed(read, p.frame)
                    ms.append(t)
                ok += len({o.decode() for o in out} & set(p.tubes.values()))
            rack_rates[reader_name] = ok / shown
            cells.append(f"{ok / shown:>11.1%} {statistics.median(ms):>12.1f}")
            if reader_name == "ours" and rows == 6:
                rack48_ms = statistics.median(ms)
        margin = min(margin, rack_rates["ours"] - rack_rates["zxing"])
        print(f"  {'rack ' + layout.name:10} {shown:>5} " + " ".join(cells) +
              f"   ({racks} photos; ours placed {placed / shown:.1%} at the right position)")
    return margin, (lot_rates["ours"], lot_rates["zxing"]), rack48_ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("EHC_SHARED_DIR", str(Path(__file__).resolve().parents[2] /
                                                                          "shared")))
    ap.add_argument("--hard", type=int, default=200, help="hard synthetic frames")
    ap.add_argument("--hd", type=int, default=100, help="1080p frames")
    ap.add_argument("--per-category", type=int, default=40, help="synthetic frames per category")
    ap.add_argument("--lots", type=int, default=20, help="multi-code frames")
    ap.add_argument("--racks", type=int, default=15, help="rack photos per layout")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpu, "
          f"python {platform.python_version()}, zxing-cpp {version('zxing-cpp')}, pyzbar {version('pyzbar')}")

    root = Path(args.shared) / "testdata" / "qr"
    totals: dict[str, tuple[int, int]] = {}
    real_margin = 1.0
    if root.is_dir():
        totals, real_margin = real_photos(root, {"ours": ours(STILL_IMAGE), "zxing": plain_zxing,
                                                 "pyzbar": plain_zbar})
        print("  all qrcode-*          " + "  ".join(f"{k} {d}/{n} = {d / n:.1%}" for k, (d, n) in totals.items()))
    else:
        print(f"\nreal photos skipped: {root} not found")

    frames, truth = hard_frames(args.hard)
    print(f"\nhard synthetic frames: {len(frames)} at 640x480 (small, tilted, blurred, dim, glare, noise; 1/5 inverted)")
    camera = DecodeOptions(symbologies=QR_ONLY, track=False)

    def held(frame: np.ndarray) -> list[bytes]:  # the same code in front of the camera for three frames
        scanner = FrameScanner(camera)
        return [c.text.encode() for _ in range(3) for c in scanner.decode(frame)]

    for name, read in {"ours, 1st frame": ours(camera), "ours, 3 frames": held, "ours, still": ours(STILL_IMAGE),
                       "zxing": plain_zxing, "pyzbar": plain_zbar}.items():
        ms, ok = [], 0
        for frame, expected in zip(frames, truth):
            out, t = timed(read, frame)
            ok += expected in out
            ms.append(t)
        print(f"  {name:16} rate {ok / len(frames):6.1%}  median {statistics.median(ms):6.2f} ms  p95 {pct(ms, 0.95):6.2f} ms")

    margin, (lots_ours, lots_zxing), rack48_ms = by_category(args.per_category, args.lots, args.racks)
    margin = min(margin, real_margin)

    rng = np.random.default_rng(9)
    tokens = health_card_tokens(args.hd, seed=9)
    hd = [render_qr_frame(t, Scene(size=float(rng.uniform(260, 520)), angle=float(rng.uniform(-30, 30)),
                                   blur=float(rng.uniform(0, 1.0)), noise=float(rng.uniform(0, 6))),
                          width=1920, height=1080, rng=rng) for t in tokens]
    print(f"\n1920x1080 BGR frames with one code: {len(hd)}")
    results: dict[str, float] = {}
    held_scanner = FrameScanner(DecodeOptions(symbologies=QR_ONLY))
    rows = {"ours cold (no region)": ours(DecodeOptions(symbologies=QR_ONLY, track=False)),
            "ours held (region)": lambda f: [c.text.encode() for c in held_scanner.decode(f)],
            "zxing": plain_zxing, "pyzbar": plain_zbar}
    for name, read in rows.items():
        ms, ok = [], 0
        for frame, token in zip(hd, tokens):
            repeats = 5 if name.startswith("ours held") else 1  # the same code held for five frames
            for _ in range(repeats):
                out, t = timed(read, frame)
                ms.append(t)
            ok += token.encode() in out
        results[name] = statistics.median(ms)
        print(f"  {name:22} rate {ok / len(hd):6.1%}  median {statistics.median(ms):6.2f} ms  p95 {pct(ms, 0.95):6.2f} ms")
    print(f"  ratio: zxing / ours held = {results['zxing'] / results['ours held (region)']:.1f}x, "
          f"pyzbar / ours held = {results['pyzbar'] / results['ours held (region)']:.1f}x, "
          f"zxing / ours cold = {results['zxing'] / results['ours cold (no region)']:.1f}x")

    print("\nempty frames (most of a desk's day), 200 in a row through one scanner, so the periodic passes count")
    for w, h in ((640, 480), (1920, 1080)):
        empties = [render_qr_frame(None, Scene(noise=4), width=w, height=h, rng=rng) for _ in range(20)]
        cells = []
        for name, read in {"ours": stream(FrameScanner(DecodeOptions(symbologies=QR_ONLY))), "zxing": plain_zxing,
                           "pyzbar": plain_zbar}.items():
            ms = [timed(read, empties[i % len(empties)])[1] for i in range(200)]
            cells.append(f"{name} mean {statistics.fmean(ms):5.2f} ms")
        print(f"  {w}x{h}: " + ", ".join(cells))

    rate = {k: (d / n if n else float("nan")) for k, (d, n) in totals.items()} or {"ours": 0, "zxing": 0, "pyzbar": 0}
    print(f"decode: ours={rate['ours']:.3f} zxing={rate['zxing']:.3f} pyzbar={rate['pyzbar']:.3f} "
          f"median_ms={results['ours held (region)']:.2f} lots={lots_ours:.3f}/{lots_zxing:.3f} "
          f"rack48_ms={rack48_ms:.1f} worst_margin={margin:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
