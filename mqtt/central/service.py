"""``ehc-central serve``: run the ingest workers (one process each) and supervise them."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from pathlib import Path

from edge.core import sdnotify
from edge.core.logs import setup_logging
from edge.core.signals import stop_event_on_signals
from mqtt.central import config as central_config
from mqtt.central.ingest import Ingest
from mqtt.central.store import open_store

logger = logging.getLogger(__name__)


def run_worker(config_path: str, index: int, ready: "mp.synchronize.Event | None" = None,
               shutdown: "mp.synchronize.Event | None" = None) -> None:
    """Run one ingest worker until SIGTERM or until the supervisor sets ``shutdown``."""
    cfg = central_config.load(config_path)
    setup_logging(cfg.logging.level, "ehc-central")
    stop = stop_event_on_signals()
    store = open_store(cfg.database_url)
    ingest = Ingest(cfg, store, index).start()
    if ready is not None:
        ready.set()
    last = time.monotonic()
    try:
        while not stop.wait(0.5) and not (shutdown is not None and shutdown.is_set()):
            if time.monotonic() - last > 60:
                last = time.monotonic()
                logger.info("worker %d: %s", index, dict(ingest.counters))
            if not ingest.alive():
                logger.error("worker %d: ingest thread died; exiting for a restart", index)
                break
    finally:
        ingest.stop()
        store.close()


def serve(config_path: Path, workers: int | None = None) -> int:
    """Start ``workers`` ingest processes, tell systemd when they run, restart any that dies."""
    cfg = central_config.load(config_path)
    n = workers or cfg.ingest.workers
    open_store(cfg.database_url).close()  # create the schema once, before the workers race for it
    ctx = mp.get_context("spawn")
    stop = stop_event_on_signals()
    shutdown = ctx.Event()  # set from the main loop only, never from a signal handler

    def spawn(i: int) -> "mp.process.BaseProcess":
        ready = ctx.Event()
        p = ctx.Process(target=run_worker, args=(str(config_path), i, ready, shutdown), name=f"ingest-{i}")
        p.start()
        if not ready.wait(30):
            logger.error("ingest worker %d did not start", i)
        return p

    procs = [spawn(i) for i in range(n)]
    try:
        sdnotify.ready(f"{n} ingest workers")
        logger.info("central ingest running with %d workers", n)
        interval = min(sdnotify.watchdog_interval() or 5.0, 5.0)
        while not stop.wait(interval):
            for i, p in enumerate(procs):
                if not p.is_alive():
                    logger.error("ingest worker %d exited with %s; restarting", i, p.exitcode)
                    procs[i] = spawn(i)
            sdnotify.watchdog()
        sdnotify.notify("STOPPING=1")
    finally:  # whatever ended the loop, the workers must not outlive the supervisor
        shutdown.set()
        for p in procs:
            p.join(15)
            if p.is_alive():
                logger.error("ingest worker %s did not stop; killing it", p.name)
                p.kill()
                p.join(5)
    return 0
