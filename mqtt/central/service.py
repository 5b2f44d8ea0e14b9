"""``ehc-central serve``: run the ingest workers (one process each) and supervise them."""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time
from pathlib import Path

from edge.core import sdnotify
from edge.core.logs import setup_logging
from mqtt.central import config as central_config
from mqtt.central.ingest import Ingest
from mqtt.central.store import open_store

logger = logging.getLogger(__name__)


def run_worker(config_path: str, index: int, ready: "mp.synchronize.Event | None" = None,
               stop: "threading.Event | mp.synchronize.Event | None" = None) -> None:
    """Run one ingest worker until ``stop`` is set or SIGTERM arrives."""
    cfg = central_config.load(config_path)
    setup_logging(cfg.logging.level, "ehc-central")
    stop = stop or threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = open_store(cfg.database_url)
    ingest = Ingest(cfg, store, index).start()
    if ready is not None:
        ready.set()
    last = 0.0
    try:
        while not stop.wait(1.0):
            if time.monotonic() - last > 60:
                last = time.monotonic()
                logger.info("worker %d: %s", index, dict(ingest.counters))
    finally:
        ingest.stop()
        store.close()


def serve(config_path: Path, workers: int | None = None) -> int:
    """Start ``workers`` ingest processes, tell systemd when they run, restart any that dies."""
    cfg = central_config.load(config_path)
    n = workers or cfg.ingest.workers
    open_store(cfg.database_url).close()  # create the schema once, before the workers race for it
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def spawn(i: int) -> "mp.process.BaseProcess":
        ready = ctx.Event()
        p = ctx.Process(target=run_worker, args=(str(config_path), i, ready, stop), name=f"ingest-{i}", daemon=True)
        p.start()
        if not ready.wait(30):
            logger.error("ingest worker %d did not start", i)
        return p

    procs = [spawn(i) for i in range(n)]
    sdnotify.ready(f"{n} ingest workers")
    logger.info("central ingest running with %d workers", n)
    interval = sdnotify.watchdog_interval() or 5.0
    while not stop.wait(min(interval, 5.0)):
        for i, p in enumerate(procs):
            if not p.is_alive():
                logger.error("ingest worker %d exited with %s; restarting", i, p.exitcode)
                procs[i] = spawn(i)
        sdnotify.watchdog()
    for p in procs:
        p.join(15)
    return 0
