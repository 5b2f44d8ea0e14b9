"""A rack photo on request: the operator holds the button, the next frame is read for every tube label.

:class:`RackWorker` is the same kind of frame thread as the report reader: :meth:`RackWorker.request` (the
button held) asks for the next frame the camera loop offers; the worker's thread decodes it with the rack
options (:data:`edge.scanner.RACK`: tube labels only, full resolution, every located label retried), fits
the rack's grid (:func:`edge.rack.locate`) and hands a :class:`RackRead` to the flow thread. The camera
loop never waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.framethread import RequestedFrameThread
from edge.imageprep import green
from edge.rack import RackLayout, RackProblem, RackReading, locate
from edge.scanner import RACK, DecodeOptions, FrameScanner

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RackRead:
    """A rack photo was read (``reading``), or gave no rack (``problem``: a stable reason, ``message``: what
    to do). ``at`` is the ``time.perf_counter()`` of the request."""

    reading: RackReading | None = field(repr=False)
    problem: str | None = None
    message: str | None = None
    decode_ms: float = 0.0
    at: float = field(default_factory=time.perf_counter)


def read_rack(frame: np.ndarray, layout: RackLayout, options: DecodeOptions = RACK,
              at: float | None = None) -> RackRead:
    """Every tube label of one rack photo with its position (or the reason there is no rack in it)."""
    started = time.perf_counter()
    scanner = FrameScanner(options)
    codes = scanner.decode(frame)
    try:
        reading = locate(codes, layout, green(frame), scanner.unread)
    except RackProblem as exc:
        logger.info("rack photo refused: %s", exc.reason)
        return RackRead(None, exc.reason, str(exc), (time.perf_counter() - started) * 1000,
                        at if at is not None else started)
    return RackRead(reading, decode_ms=(time.perf_counter() - started) * 1000,
                    at=at if at is not None else started)


class RackWorker(RequestedFrameThread):
    """Reads one rack per request from the next offered frame.

    >>> worker = RackWorker(RackLayout(8, 12), runner.submit).start()  # doctest: +SKIP
    >>> worker.request()                                               # the button held  # doctest: +SKIP
    """

    def __init__(self, layout: RackLayout, on_read: Callable[[RackRead], Any],
                 options: DecodeOptions = RACK) -> None:
        super().__init__("rack")
        self.layout = layout
        self.options = options
        self.on_read = on_read

    def _read(self, frame: np.ndarray) -> None:
        self.on_read(read_rack(frame, self.layout, self.options, self._at))
