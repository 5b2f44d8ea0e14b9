"""Camera frames for the identity desk's live capture, taken from the station's camera loop without stalling it.

The station offers every frame (:meth:`FrameTap.offer`, the same call it makes to the document reader); the tap
keeps frames only while a capture is open and only those taken after it opened (a frame read just before
still shows what was under the camera then, e.g. the passport page), at most ``depth`` of them, dropping the oldest (``lossless=False``, a
box) or making the camera loop wait (``lossless=True``, tests and replays of a recorded clip). The flow thread
reads them with :meth:`FrameTap.frames`. Frames stay in memory and are dropped when the capture closes.
:class:`FrameTee` hands each offer to several consumers (the MRZ reader and the tap).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edge.face.desk import to_rgb

logger = logging.getLogger(__name__)


class FrameTap:
    """Frames of the station camera for one capture at a time."""

    def __init__(self, depth: int = 3, *, lossless: bool = False, idle_timeout: float = 2.0) -> None:
        self.depth, self.lossless, self.idle_timeout = depth, lossless, idle_timeout
        self._frames: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._cond = threading.Condition()
        self._open = False
        self._opened_at = 0.0  # time.perf_counter() when the capture opened
        self.dropped = 0
        self.captures = 0

    @property
    def capturing(self) -> bool:
        """True while a capture takes frames."""
        return self._open

    def offer(self, frame: np.ndarray, codes_found: bool = False, frame_at: float | None = None) -> bool:
        """Called by the camera loop for each frame (``frame_at``: its ``time.perf_counter()`` capture time,
        if known); True when the frame was kept."""
        with self._cond:
            if not self._open or (frame_at is not None and frame_at < self._opened_at):
                return False
            if self.lossless:
                self._cond.wait_for(lambda: len(self._frames) < self.depth or not self._open, timeout=5.0)
                if not self._open:
                    return False
            elif len(self._frames) >= self.depth:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append((time.monotonic(), frame))
            self._cond.notify_all()
            return True

    def wait_capturing(self, timeout: float = 10.0) -> bool:
        """Wait until a capture is open (a recorded clip starts playing only then)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._open, timeout)

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Open a capture and yield ``(time, RGB frame)`` until the consumer stops or no frame came for
        ``idle_timeout`` seconds (the camera is gone); the capture closes when the generator ends."""
        with self._cond:
            self._frames.clear()
            self._opened_at = time.perf_counter()
            self._open = True
            self.captures += 1
            self._cond.notify_all()
        try:
            while True:
                with self._cond:
                    if not self._cond.wait_for(lambda: bool(self._frames), self.idle_timeout):
                        logger.warning("face capture: no camera frame for %.1f s", self.idle_timeout)
                        return
                    t, frame = self._frames.popleft()
                    self._cond.notify_all()
                yield t, to_rgb(frame)
        finally:
            with self._cond:
                self._open = False
                self._frames.clear()
                self._cond.notify_all()


class FrameTee:
    """Offers each camera frame to every consumer (``offer(frame, codes_found, frame_at)``); stops those that stop."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = [p for p in parts if p is not None]

    def offer(self, frame: np.ndarray, codes_found: bool, frame_at: float | None = None) -> bool:
        taken = False
        for part in self.parts:
            taken = bool(part.offer(frame, codes_found, frame_at)) or taken
        return taken

    def stop(self) -> None:
        for part in self.parts:
            stop = getattr(part, "stop", None)
            if stop is not None:
                stop()
