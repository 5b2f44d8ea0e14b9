"""A background reader of camera frames: the camera loop hands over a frame, a thread of its own reads it.

The passport reader (``edge/documents/worker.py``) and the report reader (``edge/reports/worker.py``) are
both this: one frame slot (a newer hand-over replaces a frame not yet taken), a thread that takes the frame
and reads it, and a way for tests to wait until nothing is left to read. Subclasses decide when to take a
frame (their ``offer``) and what reading is (:meth:`FrameThread._read`); :class:`RequestedFrameThread` takes
one frame per request (the report page and the rack photo, on the button).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

logger = logging.getLogger(__name__)


class FrameThread:
    """One frame slot and the thread that reads what is put in it."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> FrameThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (after the frame being read), then :meth:`_close` once it has ended."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():  # still inside a read: freeing its reader now could crash it
            logger.warning("%s: still reading after %.0f s; its reader is left open", self._thread.name, timeout)
            return
        self._close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is waiting to be read and nothing is being read (tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is not None or self._busy or self._pending():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _put(self, frame: np.ndarray) -> None:
        """Copy ``frame`` into the slot (called with ``self._cond`` held) and wake the thread."""
        self._frame = frame.copy()
        self._cond.notify()

    def _pending(self) -> bool:
        """More to read than the slot shows (called with ``self._cond`` held); none by default."""
        return False

    def _taken(self) -> None:
        """The thread has just taken the slot's frame (called with ``self._cond`` held)."""

    def _read(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Free what the reading held, once the thread has ended."""

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._frame is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._frame = self._frame, None
                self._taken()
                self._busy = True
            try:
                self._read(frame)
            except Exception:  # a bad frame or an OCR failure must not end the thread
                logger.exception("%s: reading a frame failed", self._thread.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class RequestedFrameThread(FrameThread):
    """Reads one frame per :meth:`request`: the next frame offered after it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.requested = 0
        self._wanted: float | None = None  # perf_counter of the pending request
        self._at = 0.0  # ... of the request whose frame is being read

    def request(self) -> bool:
        """Read the next frame; False when one is already being read (the press is ignored)."""
        with self._cond:
            if self._wanted is not None or self._frame is not None or self._busy:
                return False
            self._wanted = time.perf_counter()
            self.requested += 1
            return True

    def offer(self, frame: np.ndarray, codes_found: bool, frame_at: float | None = None) -> bool:
        """Called by the camera loop for each frame (``frame_at``: its ``time.perf_counter()`` capture time, if
        known); True when the frame was taken for reading. A frame taken before the request is not the one asked for."""
        if self._wanted is None:  # the common case: a plain read, no lock
            return False
        with self._cond:
            if self._wanted is None or self._frame is not None or (frame_at is not None and frame_at < self._wanted):
                return False
            self._put(frame)
        return True

    def _pending(self) -> bool:
        return self._wanted is not None

    def _taken(self) -> None:
        self._at, self._wanted = self._wanted or time.perf_counter(), None
