"""Passports under the camera: a background reader that never holds up the camera loop.

The station offers a frame to :class:`DocumentWorker` now and then (every ``every`` frames in which no
barcode was found); the worker keeps at most one frame waiting (a newer offer replaces it), reads the
machine-readable zone in its own thread (:class:`edge.documents.mrz_ocr.MrzReader`, a few hundred
milliseconds), and hands a zone to ``on_document`` once per presentation: the same zone seen again
within ``dedupe_window`` seconds is the same passport still lying there. A zone whose check digits fail,
or any zone read with the ``eng`` fallback model (which misreads where no check digit looks), counts
only when two reads in a row give exactly the same lines.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.documents.page import PageCapture
from edge.framethread import FrameThread
from edge.repeats import RepeatFilter

logger = logging.getLogger(__name__)


class DocumentWorker(FrameThread):
    """Reads MRZs from offered frames in a thread of its own."""

    def __init__(self, reader: Any, on_document: Callable[..., None], *, every: int = 10,
                 dedupe_window: float = 10.0, with_page: bool = False) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        super().__init__("documents")
        self.reader = reader
        self.on_document = on_document
        # with_page: on_document(zone, page) also gets the frame the zone was read in and where the zone lay
        # (edge.documents.page.PageCapture), for the identity desk's portrait; the frame stays in memory
        self.with_page = with_page
        self.every = every
        self.repeats = RepeatFilter(dedupe_window)
        self.read_count = self.found = 0
        self._frames_without_code = 0
        self._last: str | None = None

    def offer(self, frame: np.ndarray, codes_found: bool, frame_at: float | None = None) -> bool:
        """Called by the camera loop for each frame; True when the frame was taken for reading."""
        if codes_found:
            self._frames_without_code = 0
            return False
        self._frames_without_code += 1
        if self._frames_without_code % self.every:
            return False
        with self._cond:
            self._put(frame)
        return True

    def _close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()

    def _read(self, frame: np.ndarray) -> None:
        self.read_count += 1
        result = self.reader.read(frame)
        if result is None:
            return
        key = hashlib.sha256("\n".join(result.lines).encode()).hexdigest()
        # A zone failing its check digits may be a misread, and the eng fallback misreads where no check
        # digit looks: such a zone counts only when the next read gives exactly the same lines.
        if not result.valid or getattr(self.reader, "model", "mrz") != "mrz":
            confirmed, self._last = self._last == key, key
            if not confirmed:
                return
        if not self.repeats.is_new("mrz", key):
            return
        self.found += 1
        logger.info("document zone read (valid: %s)", result.valid)
        if self.with_page:
            corners = getattr(self.reader, "last_zone", None)
            page = PageCapture(frame, corners, result.format.name, len(result.lines[0])) if corners is not None else None
            self.on_document(result, page)
            return
        self.on_document(result)
