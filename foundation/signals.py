"""Turn SIGTERM and SIGINT into a threading.Event the main loop waits on."""

from __future__ import annotations

import signal
import threading


def stop_event_on_signals() -> threading.Event:
    """An Event set by SIGTERM or SIGINT (call from the main thread).

    The handler only sets a ``threading.Event``. It must never touch a multiprocessing event: a handler
    runs in the main thread, which may be waiting on that very event while holding its lock.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop
