"""The scanning station's camera loop: frames in, new codes out to the flow thread.

For every frame the loop decodes the barcodes (:class:`edge.scanner.FrameScanner`), drops re-reads of a
code still held up (:class:`edge.repeats.RepeatFilter`) and hands each new code, as a
:class:`~edge.flows.base.Scan`, to the :class:`~edge.flows.runner.FlowRunner`. Verification, storing,
printing and signals happen in the flow thread, so a slow disk or printer never stalls the camera.

Live cameras should be wrapped in :class:`~drivers.camera.LatestFrameGrabber`, which keeps only the
newest frame and reopens a failing device with backoff; the loop reports the grabber's state changes
(camera lost, camera back) to the flow thread as :class:`~edge.flows.runner.Alert` s. A 1D code (a
tube label) counts only once it was read the same way in two frames. At a station that reads racks
(``rack_labels``), a frame with that many labels shows a rack (read on request by
:class:`~edge.rackscan.RackWorker`), and none of its labels is a scan. A
:class:`~drivers.camera.CameraError` from an unwrapped source ends :meth:`Station.run`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from drivers.camera import FrameSource, GrabberState, LatestFrameGrabber
from edge.flows.base import Scan
from edge.flows.runner import Alert, FlowRunner
from edge.repeats import RepeatFilter
from edge.scanner import DecodeOptions, FrameScanner

logger = logging.getLogger(__name__)

DEFAULT_DEDUPE_WINDOW = 3.0
RACK_LABELS = 3
"""At a station that reads racks, a frame with this many tube or wristband labels or more shows a rack."""


@dataclass(frozen=True, slots=True)
class StationStats:
    """Counters since the station was created.

    ``decoded`` counts codes read (including re-reads), ``scans`` new codes handed to the flow,
    ``busy_refused`` new codes the flow thread could not take, ``dropped_frames`` frames the source
    discarded because the loop was behind, ``camera_errors`` times the camera was lost, ``rack_frames`` frames
    whose labels were not scans because there were too many of them (a rack in view).
    """

    frames: int = 0
    decoded: int = 0
    scans: int = 0
    duplicates_suppressed: int = 0
    busy_refused: int = 0
    dropped_frames: int = 0
    camera_errors: int = 0
    rack_frames: int = 0


class Station:
    """Reads frames and feeds new codes to a flow.

    >>> runner = FlowRunner(CheckinFlow(ctx), ctx).start()                          # doctest: +SKIP
    >>> Station(LatestFrameGrabber(OpenCVFrameSource(0)), runner).run(stop=stop)    # doctest: +SKIP
    """

    def __init__(self, source: FrameSource, runner: FlowRunner, *, scanner: FrameScanner | None = None,
                 dedupe_window: float = DEFAULT_DEDUPE_WINDOW, decode_options: DecodeOptions | None = None,
                 linear_confirm: int = 2, documents: Any = None, rack_labels: int | None = None) -> None:
        self.source = source
        self.documents = documents
        self.runner = runner
        self.scanner = scanner or FrameScanner(decode_options or DecodeOptions())
        self.repeats = RepeatFilter(dedupe_window)
        self.dedupe_window = dedupe_window
        self.linear_confirm = linear_confirm
        self.rack_labels = rack_labels
        self._sightings: dict[tuple[str, str], tuple[int, float]] = {}
        self._stats = StationStats()
        self._seen_errors = 0
        self._camera_down = False
        self.heartbeat = time.monotonic()

    @property
    def stats(self) -> StationStats:
        """A snapshot of the counters (safe to read from another thread)."""
        return replace(self._stats, dropped_frames=self.source.dropped_frames)

    @property
    def camera_state(self) -> str:
        """``running``, ``error`` or ``stopped`` for a grabber; ``running`` for other open sources."""
        if isinstance(self.source, LatestFrameGrabber):
            return self.source.state.value
        return "running" if self.source.is_open else "stopped"

    def _count(self, **delta: int) -> None:
        s = self._stats
        self._stats = replace(s, **{k: getattr(s, k) + v for k, v in delta.items()})

    def run(self, max_frames: int | None = None, stop: threading.Event | None = None) -> StationStats:
        """Scan until ``stop`` is set, ``max_frames`` frames were processed, or a finite source runs out.

        Opens the source and closes it on return; does not stop the runner.
        """
        done = 0
        logger.info("station started on %s", self.source.name)
        self.source.open()
        try:
            while (stop is None or not stop.is_set()) and (max_frames is None or done < max_frames):
                self.heartbeat = time.monotonic()
                frame = self.source.read()
                frame_at = self.source.frame_time if isinstance(self.source, LatestFrameGrabber) else time.perf_counter()
                self._watch_camera()
                if frame is None:
                    if self.source.finished:
                        break
                    continue
                self.process_frame(frame, frame_at)
                done += 1
        finally:
            stats = self.stats
            self.source.close()
        logger.info("station stopped: %d frames, %d scans, %d refused busy, %d dropped", stats.frames, stats.scans,
                    stats.busy_refused, stats.dropped_frames)
        return stats

    def process_frame(self, frame: np.ndarray, frame_at: float | None = None) -> list[Scan]:
        """Decode one frame and hand every new code to the flow; returns the scans handed over."""
        frame_at = time.perf_counter() if frame_at is None else frame_at
        codes = self.scanner.decode(frame)
        decode_ms = (time.perf_counter() - frame_at) * 1000.0
        self._count(frames=1, decoded=len(codes))
        if self.documents is not None:
            self.documents.offer(frame, bool(codes), frame_at)
        scans = []
        if self.rack_labels is not None and sum(c.format.is_label for c in codes) >= self.rack_labels:
            # a rack or a tray of tubes in view: its photo is the rack scan's
            self._count(rack_frames=1)
            codes = [c for c in codes if not c.format.is_label]
        for code in codes:
            if code.format.is_linear and not self._confirmed(code.format.value, code.text):
                continue
            if not self.repeats.is_new(code.format.value, code.text):
                self._count(duplicates_suppressed=1)
                continue
            scan = Scan(text=code.text, symbology=code.format, decoder=code.decoder.value, decode_ms=decode_ms,
                        frame_at=frame_at)
            if self.runner.submit(scan):
                self._count(scans=1)
                scans.append(scan)
            else:
                self._count(busy_refused=1)
        return scans

    def _confirmed(self, symbology: str, text: str) -> bool:
        """True once a 1D code was read the same way in ``linear_confirm`` frames (1D codes carry a weak
        or no checksum, and a blurred label can be misread once; it is not misread the same way twice)."""
        now = time.monotonic()
        key = (symbology, text)
        count, last = self._sightings.get(key, (0, now))
        count = count + 1 if now - last <= max(self.dedupe_window, 1.0) else 1
        self._sightings[key] = (count, now)
        if len(self._sightings) > 256:
            self._sightings = {k: v for k, v in self._sightings.items() if now - v[1] <= self.dedupe_window}
        return count >= self.linear_confirm

    def _watch_camera(self) -> None:
        """Report camera failures (counted by the grabber, so a quick recovery is not missed) and recovery."""
        if not isinstance(self.source, LatestFrameGrabber):
            return
        errors = self.source.errors
        if errors > self._seen_errors:
            self._count(camera_errors=errors - self._seen_errors)
            self._seen_errors = errors
            if not self._camera_down:
                self._camera_down = True
                self.scanner.reset()
                logger.error("camera %s lost: %s", self.source.name, self.source.last_error)
                self.runner.submit(Alert("camera", "error", self.source.last_error))
        elif self._camera_down and self.source.state is GrabberState.RUNNING:
            self._camera_down = False
            logger.info("camera %s back", self.source.name)
            self.runner.submit(Alert("camera", "ok"))
