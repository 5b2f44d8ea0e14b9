#!/usr/bin/env python3
"""QR decoding benchmark: the station's decoder against plain pyzbar and plain zxing-cpp, same frames.

Frames come from the simulated camera: half show a generated health-card code (size, angle, blur, noise
and glare drawn per frame), half show nothing (most frames at a desk hold no code). Prints, per
decoder, the median and 95th-percentile time per frame with and without a code, and the share of coded
frames read correctly.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import zxingcpp  # noqa: E402
from pyzbar import pyzbar  # noqa: E402

from drivers.sim_camera import SimulatedQrCamera, generate_health_card_token  # noqa: E402
from edge.qrscan import DecodeOptions, Fallback, decode_frame  # noqa: E402


def frames(n: int, width: int, height: int, seed: int) -> tuple[list[np.ndarray], list[str | None]]:
    rng = random.Random(seed)
    payloads: list[str | None] = [generate_health_card_token(rng) if i % 2 == 0 else None for i in range(n)]
    cam = SimulatedQrCamera(payloads, width=width, height=height, size=(min(width, height) * 0.3,
                            min(width, height) * 0.6), angle=(-30, 30), blur=(0, 1.5), noise=(0, 8),
                            glare=(0, 0.3), jitter=0.2, seed=seed, grayscale=True)
    out, truth = [], []
    with cam:
        while (f := cam.read()) is not None:
            out.append(f)
            truth.append(cam.showing)
    return out, truth


def plain_pyzbar(frame: np.ndarray) -> list[str]:
    return [s.data.decode("utf-8", "replace") for s in pyzbar.decode(frame, symbols=[pyzbar.ZBarSymbol.QRCODE])]


def plain_zxing(frame: np.ndarray) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode)]


def ours(fallback: Fallback):
    options = DecodeOptions(fallback=fallback)
    return lambda frame: [c.text for c in decode_frame(frame, options)]


def measure(fn, data: list[np.ndarray], truth: list[str | None]) -> dict[str, float]:
    with_code, without, hits = [], [], 0
    for frame, expected in zip(data, truth):
        t = time.perf_counter()
        texts = fn(frame)
        ms = (time.perf_counter() - t) * 1000
        (with_code if expected else without).append(ms)
        hits += int(expected is not None and expected in texts)
    q = lambda xs, p: statistics.quantiles(xs, n=20)[int(p * 20) - 1] if len(xs) > 1 else xs[0]  # noqa: E731
    return {"code_med": statistics.median(with_code), "code_p95": q(with_code, 0.95),
            "none_med": statistics.median(without), "none_p95": q(without, 0.95),
            "read": hits / max(1, len(with_code))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", default="640x480")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    data, truth = frames(args.frames, width, height, args.seed)
    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}, "
          f"zxing-cpp {version('zxing-cpp')}, pyzbar {version('pyzbar')}; "
          f"{len(data)} frames {width}x{height}, half with a code")
    decoders = {"plain pyzbar": plain_pyzbar, "plain zxing-cpp": plain_zxing,
                "ours, on_candidate (default)": ours(Fallback.ON_CANDIDATE),
                "ours, always": ours(Fallback.ALWAYS), "ours, never": ours(Fallback.NEVER)}
    results = {name: measure(fn, data, truth) for name, fn in decoders.items()}
    base = results["plain pyzbar"]
    print(f"{'decoder':30} {'code med':>9} {'p95':>7} {'empty med':>10} {'p95':>7} {'read':>6}  speed vs pyzbar (empty frames)")
    for name, r in results.items():
        print(f"{name:30} {r['code_med']:7.2f}ms {r['code_p95']:5.2f}ms {r['none_med']:8.2f}ms {r['none_p95']:5.2f}ms "
              f"{r['read']:6.1%}  {base['none_med'] / r['none_med']:.1f}x")
    r = results["ours, on_candidate (default)"]
    print(f"qr_decode: frames={len(data)} read={r['read']:.3f} code_median_ms={r['code_med']:.2f} "
          f"empty_median_ms={r['none_med']:.2f} speedup_vs_pyzbar_empty={base['none_med'] / r['none_med']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
