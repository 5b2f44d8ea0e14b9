"""Long-running box services: the uplink daemon (and, with the station module, the station daemon)."""

from __future__ import annotations

import logging
import threading
import time

from edge.config import EdgeConfig
from edge.core import sdnotify
from edge.core.signals import stop_event_on_signals
from edge.runtime import build_uplink, load_identity, open_outbox

logger = logging.getLogger(__name__)

STUCK_AFTER = 30.0


def run_uplink(cfg: EdgeConfig) -> int:
    """Drain the outbox to the broker until SIGTERM; ready as soon as keys and outbox are open."""
    stop = stop_event_on_signals()
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


def run_station(cfg: EdgeConfig) -> int:
    """Scan with the configured camera until SIGTERM.

    Ready once keys and outbox are open; the camera is opened by the station thread, and a live camera
    reopens itself with backoff, so a missing camera shows in STATUS and the health report, not as a
    failed start.
    """
    from edge.sources import decode_options, frame_source
    from edge.station import Station

    stop = stop_event_on_signals()
    outbox = open_outbox(cfg, load_identity(cfg))
    boot = outbox.start_boot()
    station = Station(frame_source(cfg.station), outbox, dedupe_window=cfg.station.dedupe_window,
                      decode_options=decode_options(cfg.station))
    worker = threading.Thread(target=station.run, kwargs={"stop": stop}, name="station", daemon=True)
    worker.start()
    sdnotify.ready(f"boot {boot}; scanning with {station.source.name}")
    interval = min(sdnotify.watchdog_interval() or 5.0, 5.0)
    try:
        while not stop.wait(interval):
            if not worker.is_alive():
                logger.error("station thread ended; exiting for systemd to restart us")
                return 1
            age = time.monotonic() - station.heartbeat
            if age > STUCK_AFTER:
                logger.error("station loop stuck for %.0f s; not petting the watchdog", age)
                continue
            st = station.stats
            sdnotify.status(f"scans {st.scans}; rejected {st.rejected}; store failures {st.store_failures}; "
                            f"frames {st.frames}; dropped {st.dropped_frames}")
            sdnotify.watchdog()
    finally:
        stop.set()
        worker.join(5)
        outbox.close()
    return 0
