"""Repeat suppression: a code held in front of the camera for a while is one scan, not thirty."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

MAX_REMEMBERED = 256


class RepeatFilter:
    """Says whether a code is new or a re-read of one seen within ``window`` seconds.

    Every sighting refreshes the code's time, so a code held up for a minute stays one scan; it counts
    again once it has been out of sight for ``window`` seconds. Codes are remembered by a hash of their
    symbology and text (never the text itself), at most :data:`MAX_REMEMBERED` of them.

    >>> f = RepeatFilter(3.0, clock=iter([0.0, 1.0, 5.0]).__next__)
    >>> [f.is_new("QRCode", "abc") for _ in range(3)]
    [True, False, True]
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        self.clock = clock
        self._last_seen: dict[bytes, float] = {}

    def is_new(self, symbology: str, text: str) -> bool:
        """True if the code was not seen within the window; records this sighting either way."""
        now = self.clock()
        key = hashlib.blake2b(f"{symbology}\0{text}".encode("utf-8", "surrogatepass"), digest_size=16).digest()
        last = self._last_seen.get(key)
        self._last_seen[key] = now
        if len(self._last_seen) > MAX_REMEMBERED:
            self._last_seen = {k: t for k, t in self._last_seen.items() if now - t <= self.window}
            while len(self._last_seen) > MAX_REMEMBERED:
                self._last_seen.pop(next(iter(self._last_seen)))
        return last is None or now - last > self.window

    def forget(self) -> None:
        """Forget every code (the next sighting of any code is new)."""
        self._last_seen.clear()
