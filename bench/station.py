#!/usr/bin/env python3
"""Station benchmark: the simulated camera at 30 fps into the clinic check-in flow, end to end.

A simulated desk (people holding up health-card codes, every sixth something else) is filmed by the
simulated camera; its frames (grayscale, as a Pi camera's Y plane) are rendered before the clock starts
and then played at ``--fps`` behind the latest-frame grabber, as a live camera delivers them (rendering
on the fly would make the simulator, not the station, the bottleneck). The station decodes, the flow
thread verifies, stores a signed result in a real outbox (SQLite, fsync) and shows the outcome.
Measured: frames processed and dropped, scans, and the time from the frame's capture to the outcome.

Last line: ``station: frames=F dropped=D scans=S p95_frame_to_outcome_ms=X``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from drivers.camera import FrameSource, LatestFrameGrabber, pace  # noqa: E402
from edge.flows.base import FlowContext  # noqa: E402
from edge.flows.checkin import CheckinFlow  # noqa: E402
from edge.flows.runner import FlowRunner  # noqa: E402
from edge.scanner import DecodeOptions  # noqa: E402
from edge.sources import simulated_queue  # noqa: E402
from edge.station import Station  # noqa: E402
from edge.symbology import QR_ONLY  # noqa: E402
from foundation.keyfiles import generate_key  # noqa: E402
from mqtt.outbox import DeviceIdentity, Outbox  # noqa: E402


class Replay(FrameSource):
    """Pre-rendered frames played at a fixed rate, like a live camera."""

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        super().__init__("replay")
        self.frames, self.interval = frames, 1.0 / fps
        self._i, self._next_at = 0, 0.0

    @property
    def finished(self) -> bool:
        return self._i >= len(self.frames)

    def _open(self) -> None:
        self._i, self._next_at = 0, time.monotonic()

    def _read(self) -> np.ndarray | None:
        if self._i >= len(self.frames):
            return None
        self._next_at = pace(self._next_at, self.interval)
        self._i += 1
        return self.frames[self._i - 1]

    def _close(self) -> None:
        pass


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}; "
          f"{args.width}x{args.height} at {args.fps:.0f} fps, {args.people} people")
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", DeviceIdentity("bench-box", "bench-clinic", generate_key()))
        box.start_boot()
        ctx = FlowContext(box, clinic="bench-clinic")
        runner = FlowRunner(CheckinFlow(ctx), ctx).start()
        camera = simulated_queue(args.people, seed=3, odd_every=6, width=args.width, height=args.height,
                                 frames_per_code=6, blank_frames=3, size=(args.height * 0.3, args.height * 0.6),
                                 grayscale=True)
        with camera:
            frames = []
            while (frame := camera.read()) is not None:
                frames.append(frame)
        grabber = LatestFrameGrabber(Replay(frames, args.fps))
        station = Station(grabber, runner, decode_options=DecodeOptions(symbologies=QR_ONLY))
        started = time.perf_counter()
        stats = station.run()
        runner.wait_idle(60)
        runner.stop()
        wall = time.perf_counter() - started
        box.close()
    lat = list(runner.stats.latency_ms)
    print(f"  wall {wall:.1f} s, captured {grabber.captured_frames}, processed {stats.frames}, dropped "
          f"{stats.dropped_frames}, codes read {stats.decoded}, scans {stats.scans}, busy {stats.busy_refused}")
    print(f"  signals {dict(runner.stats.signals)}")
    print(f"  frame -> outcome: median {statistics.median(lat):.1f} ms, p95 {pct(lat, 0.95):.1f} ms, "
          f"max {max(lat):.1f} ms")
    print(f"station: frames={stats.frames} dropped={stats.dropped_frames} scans={stats.scans} "
          f"p95_frame_to_outcome_ms={pct(lat, 0.95):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
