"""Server-sent events: the MQTT watcher's thread publishes, each open page has a bounded asyncio queue.

A subscriber sees only the events of the clinics it may see. A subscriber that does not keep up loses
its queue (the browser's EventSource reconnects and the page reloads its rows), so a slow page never
holds the watcher back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

QUEUE_SIZE = 200
KEEPALIVE = 15.0


@dataclass(frozen=True, slots=True)
class Event:
    """One update: an event name, the clinic it concerns (None: everyone), and its JSON data."""

    name: str
    clinic: str | None
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event in the ``text/event-stream`` format."""
        return f"event: {self.name}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, clinic: str | None) -> None:
        self.loop, self.clinic = loop, clinic
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = False

    def offer(self, event: Event | None) -> None:
        """Runs in the event loop."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)


class Broadcaster:
    """Fan-out of events from any thread to the open event streams."""

    def __init__(self) -> None:
        self._subs: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def publish(self, event: Event) -> None:
        """Send ``event`` to every subscriber allowed to see its clinic (thread-safe)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if sub.clinic is None or event.clinic is None or sub.clinic == event.clinic:
                try:
                    sub.loop.call_soon_threadsafe(sub.offer, event)
                except RuntimeError:  # its loop has closed
                    self._remove(sub)

    def close(self) -> None:
        """End every stream (server shutdown)."""
        self.closed.set()
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.offer, None)

    def count(self) -> int:
        """Open streams."""
        with self._lock:
            return len(self._subs)

    def _remove(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    async def stream(self, clinic: str | None, valid: Callable[[], bool] = lambda: True) -> AsyncIterator[bytes]:
        """The event stream of one page; ``clinic`` limits it to that clinic's events; it ends when
        ``valid()`` turns false (the session ended)."""
        sub = _Subscriber(asyncio.get_running_loop(), clinic)
        with self._lock:
            self._subs.add(sub)
        try:
            yield b"retry: 2000\n\n"
            while not self.closed.is_set() and valid():
                try:
                    event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if event is None:
                    return
                yield event.encode()
        finally:
            self._remove(sub)
