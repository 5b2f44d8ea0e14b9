"""Report pages under the camera: read on request, in a thread of its own, never holding up the camera loop.

The operator lays the page under the camera and presses the button: :meth:`ReportWorker.request`. The
station offers every frame (:meth:`ReportWorker.offer`, the same hook as the passport reader); the first
frame after a request is copied and read in the worker's thread (capture and correction, Tesseract,
layout, structuring: about a second on this machine). The outcome goes to ``on_read`` as a
:class:`ReportRead` event for the flow thread: a structured report, or the reason the frame could not be
read with the instruction to show the person. One Tesseract instance per worker, made in its thread and
reused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.framethread import RequestedFrameThread
from edge.reports.capture import CaptureRejected
from edge.reports.model import Report
from edge.reports.structure import structure

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportRead:
    """A page was read (``report``), or could not be (``problem``: a short reason, ``instruction``: what the
    person should do). ``at`` is the ``time.perf_counter()`` of the request, for the flow's timing."""

    report: Report | None = field(repr=False)
    problem: str | None = None
    instruction: str | None = None
    read_ms: float = 0.0
    at: float = field(default_factory=time.perf_counter)


class ReportWorker(RequestedFrameThread):
    """Reads one report page per request from the next offered frame.

    >>> worker = ReportWorker(ReportReader, runner.submit).start()  # doctest: +SKIP
    >>> worker.request()                                              # the button  # doctest: +SKIP
    """

    def __init__(self, reader_factory: Callable[[], Any], on_read: Callable[[ReportRead], Any], *,
                 patient: Mapping[str, Any] | None = None) -> None:
        super().__init__("reports")
        self.reader_factory = reader_factory
        self.on_read = on_read
        self.patient = dict(patient) if patient else None
        self.read_count = self.rejected = 0
        self._reader: Any = None

    def _read(self, frame: np.ndarray) -> None:
        try:
            if self._reader is None:  # made in this thread, reused for every page
                self._reader = self.reader_factory()
            event = self._page(self._reader, frame, self._at)
        except Exception:  # an OCR failure must not end the worker; the person is told
            logger.exception("report reading failed")
            event = ReportRead(None, "read_failed", "请重试或联系工作人员 / Please try again or ask the staff.",
                               at=self._at)
        self.on_read(event)

    def _close(self) -> None:
        close = getattr(self._reader, "close", None)
        if close is not None:
            close()

    def _page(self, reader: Any, frame: np.ndarray, at: float) -> ReportRead:
        self.read_count += 1
        started = time.perf_counter()
        try:
            page = reader.read(frame).text
        except CaptureRejected as exc:
            self.rejected += 1
            logger.info("report page refused: %s", exc.reason)
            return ReportRead(None, exc.reason, exc.instruction, (time.perf_counter() - started) * 1000, at)
        report = structure(page, patient=self.patient)
        ms = (time.perf_counter() - started) * 1000
        logger.info("report page read: %s, %d items, %.0f ms", report.kind, len(report.items), ms)
        return ReportRead(report, read_ms=ms, at=at)
