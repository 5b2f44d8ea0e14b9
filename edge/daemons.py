"""Long-running box services: the uplink daemon (and, with the station module, the station daemon)."""

from __future__ import annotations

import logging
import signal
import threading

from edge.config import EdgeConfig
from edge.core import sdnotify
from edge.runtime import build_uplink

logger = logging.getLogger(__name__)

STUCK_AFTER = 30.0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def run_uplink(cfg: EdgeConfig) -> int:
    """Drain the outbox to the broker until SIGTERM; ready as soon as keys and outbox are open."""
    stop = _stop_on_signals()
    uplink = build_uplink(cfg, capabilities=["qr"]).start()
    sdnotify.ready("outbox open; connecting")
    interval = min(sdnotify.watchdog_interval() or 5.0, 5.0)
    try:
        while not stop.wait(interval):
            if uplink.heartbeat_age() > STUCK_AFTER:
                logger.error("uplink loop stuck for %.0f s; not petting the watchdog", uplink.heartbeat_age())
                continue
            st = uplink.outbox.stats()
            sdnotify.status(f"{'online' if uplink.connected.is_set() else 'offline'}; queue {st.depth}; "
                            f"in flight {len(uplink.inflight)}; delivered {uplink.delivered}")
            sdnotify.watchdog()
    finally:
        uplink.stop()
    return 0
