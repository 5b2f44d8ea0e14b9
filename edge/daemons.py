"""Long-running box services: the uplink daemon (and, with the station module, the station daemon)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge.boxfiles import STATUS_INTERVAL, load_identity, open_outbox, station_status_path
from edge.config import EdgeConfig
from edge.runtime import build_station, build_uplink
from edge.station_status import write_status
from foundation import sdnotify
from foundation.heap import return_large_blocks
from foundation.signals import stop_event_on_signals

logger = logging.getLogger(__name__)

STUCK_AFTER = 30.0


def run_uplink(cfg: EdgeConfig, config_path: Path | None = None) -> int:
    """Drain the outbox to the broker until SIGTERM; ready as soon as keys and outbox are open."""
    stop = stop_event_on_signals()
    uplink = build_uplink(cfg, capabilities=["qr"], config_path=config_path).start()
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
    """Scan with the configured camera and flow until SIGTERM.

    Ready once keys and outbox are open; the camera is opened by the station thread, and a live camera
    reopens itself with backoff, so a missing camera shows in STATUS, the signals and the health report,
    not as a failed start.
    """
    return_large_blocks()  # frames and pages: freed memory goes back to the system, not into the heap
    stop = stop_event_on_signals()
    outbox = open_outbox(cfg, load_identity(cfg))
    boot = outbox.start_boot()
    parts = build_station(cfg, outbox)
    station, runner = parts.station, parts.runner
    runner.start()
    worker = threading.Thread(target=station.run, kwargs={"stop": stop}, name="station", daemon=True)
    worker.start()
    sdnotify.ready(f"boot {boot}; {cfg.station.flow} with {station.source.name}")
    status_path = station_status_path(cfg)
    interval = min(sdnotify.watchdog_interval() or STATUS_INTERVAL, STATUS_INTERVAL)
    try:
        while not stop.wait(interval):
            if not worker.is_alive() or not runner.alive:
                logger.error("station or flow thread ended; exiting for systemd to restart us")
                return 1
            age = max(time.monotonic() - station.heartbeat, time.monotonic() - runner.heartbeat)
            if age > STUCK_AFTER:
                logger.error("station loop stuck for %.0f s; not petting the watchdog", age)
                continue
            st = station.stats
            write_status(status_path, {"flow": cfg.station.flow, "camera": station.camera_state,
                                       "frames": st.frames, "scans": st.scans, "dropped_frames": st.dropped_frames,
                                       "busy_refused": st.busy_refused, "camera_errors": st.camera_errors,
                                       "signals": dict(runner.stats.signals)})
            sdnotify.status(f"{cfg.station.flow}: camera {station.camera_state}; scans {st.scans}; "
                            f"frames {st.frames}; dropped {st.dropped_frames}; busy {st.busy_refused}")
            sdnotify.watchdog()
    finally:
        stop.set()
        worker.join(5)
        parts.close()
        outbox.close()
    return 0
