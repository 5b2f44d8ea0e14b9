"""Frames handed from the camera loop to a capture or a requested read: only frames taken after it was asked."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.face.tap import FrameTap, FrameTee
from edge.framethread import RequestedFrameThread


def _frame(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def test_a_frame_taken_before_the_capture_opened_is_not_part_of_it() -> None:
    tap = FrameTap(depth=3, idle_timeout=0.3)
    before = time.perf_counter()  # e.g. the passport page, read just before the desk opened the capture
    got: list[int] = []

    def capture() -> None:
        frames = tap.frames()
        for _, frame in frames:
            got.append(int(frame[0, 0, 0]))

    thread = threading.Thread(target=capture)
    thread.start()
    assert tap.wait_capturing(5)
    assert tap.offer(_frame(1), False, before) is False
    assert FrameTee([tap]).offer(_frame(2), False, time.perf_counter()) is True
    assert tap.offer(_frame(3), False) is True  # no capture time known: kept
    thread.join(5)
    assert got == [2, 3]


def test_a_requested_read_takes_the_first_frame_taken_after_the_request() -> None:
    read: list[int] = []

    class Reader(RequestedFrameThread):
        def _read(self, frame: np.ndarray) -> None:
            read.append(int(frame[0, 0, 0]))

    reader = Reader("test-reader").start()
    try:
        before = time.perf_counter()
        assert reader.request()
        assert reader.offer(_frame(1), False, before) is False
        assert reader.offer(_frame(2), False, time.perf_counter()) is True
        assert reader.wait_idle(5)
        assert read == [2]
    finally:
        reader.stop()
