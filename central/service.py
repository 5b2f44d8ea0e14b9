"""``ehc-central serve``: run the ingest workers (one process each) and supervise them.

The supervisor talks to each worker over a pipe, never through shared locks: a worker says ``ready``
on it, the supervisor says ``stop``. A process killed while holding a multiprocessing lock would leave
it held for good; a pipe just reaches end-of-file, which also tells a worker that its supervisor is gone.

Each worker also writes, into a small lock-free shared record (:class:`Progress`), which message it is checking
and since when. A worker that spends more than :data:`~central.ingest.HUNG_AFTER` seconds on one message
is alive but stuck (a loop in a decoder holds even the worker's own threads back): the supervisor marks that
message as a dead letter, kills the worker and starts another, which keeps the message aside unread when the
broker delivers it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from central import config as central_config
from central.ingest import HUNG_AFTER, Ingest
from central.store import SqlStore, StoreUnavailable, open_store
from foundation import sdnotify
from foundation.keyfiles import common_name, load_cert
from foundation.logs import setup_logging
from foundation.signals import stop_event_on_signals
from mqtt.topics import INGEST_SHARE_GROUP

logger = logging.getLogger(__name__)

READY, STOP = "ready", "stop"


class Progress:
    """Which message a worker is checking, since when: shared memory written by the worker, read by the
    supervisor, without a lock (a torn read is caught by reading the start time before and after the key)."""

    def __init__(self, ctx: Any) -> None:
        self.since = ctx.RawValue(ctypes.c_double, 0.0)
        self.key = ctx.RawArray(ctypes.c_char, 64)

    def mark(self, key: str | None) -> None:
        """The worker starts checking the message ``key`` (None: it is done with it)."""
        if key is None:
            self.since.value = 0.0
            return
        self.since.value = 0.0
        self.key.value = key.encode()
        self.since.value = time.monotonic()

    def stuck(self, limit: float) -> str | None:
        """The key of the message the worker has been checking for more than ``limit`` seconds, if any."""
        since = self.since.value
        key = self.key.value.decode()
        if since and time.monotonic() - since > limit and self.since.value == since:
            return key
        return None


def _worker_certificate_problem(cfg: central_config.CentralConfig, worker: int) -> str | None:
    """Why worker ``worker`` cannot connect as itself (no certificate, or one of another identity), or None."""
    cert, _ = cfg.ingest_cert(worker)
    try:
        found = common_name(load_cert(cert))
    except (OSError, ValueError) as exc:
        return f"{cert}: {type(exc).__name__}"
    return None if found == cfg.ingest.identity(worker) else f"{cert} names {found!r}, not {cfg.ingest.identity(worker)!r}"


def _mark_hung(url: str, key: str, seconds: float) -> None:
    try:
        store = open_store(url)
    except StoreUnavailable as exc:
        logger.error("could not mark the message that hung a worker: %s", exc)
        return
    try:
        store.mark_dead_letter(key, "hung", f"a worker spent more than {seconds:.0f} s checking it")
    except StoreUnavailable as exc:
        logger.error("could not mark the message that hung a worker: %s", exc)
    finally:
        store.close()


def run_worker(config_path: str, index: int, control: Connection | None = None, progress: Progress | None = None) -> None:
    """Run one ingest worker until SIGTERM, a ``stop`` from the supervisor, or the supervisor's death."""
    cfg = central_config.load(config_path)
    setup_logging(cfg.logging.level, "ehc-central")
    stop = stop_event_on_signals()

    def ending() -> bool:
        # ``stop`` was sent, or end-of-file: a supervisor killed with SIGKILL cannot stop its workers, so
        # they go by themselves rather than compete with the next supervisor's workers for the client id.
        if control is None or not control.poll(0):
            return False
        logger.info("worker %d: told to stop or supervisor gone; exiting", index)
        return True

    store = _open_store_retrying(cfg.database_url, index, stop, ending)
    if store is None:
        return
    ingest = Ingest(cfg, store, index, progress).start()
    try:
        if control is not None:
            try:
                control.send(READY)
            except OSError:  # the supervisor is gone
                return
        last = time.monotonic()
        while not stop.wait(0.5) and not ending():
            if time.monotonic() - last > 60:
                last = time.monotonic()
                logger.info("worker %d: %s", index, dict(ingest.counters))
            if not ingest.alive():
                logger.error("worker %d: ingest thread died; exiting for a restart", index)
                break
    finally:
        ingest.stop()
        store.close()


def _open_store_retrying(url: str, index: int, stop: threading.Event,
                         ending: Callable[[], bool]) -> SqlStore | None:
    """Open the store, waiting (0.5 s doubling to 30 s) while the database is unavailable; None if told to
    stop meanwhile. A worker started during a database outage waits for it instead of crashing."""
    delay = 0.5
    while True:
        try:
            return open_store(url)
        except StoreUnavailable as exc:
            logger.error("%s: store unavailable, retrying in %.1f s: %s",
                         f"worker {index}" if index >= 0 else "supervisor", delay, exc)
        if stop.wait(delay) or ending():
            return None
        delay = min(delay * 2, 30.0)


def serve(config_path: Path, workers: int | None = None) -> int:
    """Start ``workers`` ingest processes, tell systemd when they run, restart any that dies."""
    cfg = central_config.load(config_path)
    n = workers or cfg.ingest.workers
    problems = [p for p in (_worker_certificate_problem(cfg, i) for i in range(n)) if p]
    if problems:  # the broker gives each certificate one session: every worker needs its own
        logger.error("ingest workers without their own certificate: %s; run ehc-central init --workers %d "
                     "(and [ingest] cert / key = \"pki/ingest-{worker}.crt\" / \".key\")", "; ".join(problems), n)
        return 2
    if cfg.ingest.share_group == INGEST_SHARE_GROUP:
        logger.warning("[ingest] share_group is the well-known %r: a box that subscribes to it joins the ingest's "
                       "group and holds back deliveries; set a secret one (ehc-central init writes one)",
                       INGEST_SHARE_GROUP)
    stop = stop_event_on_signals()
    # Create the schema once, before the workers race for it (waiting out a database outage).
    store = _open_store_retrying(cfg.database_url, -1, stop, lambda: False)
    if store is None:
        return 0
    store.close()
    ctx = mp.get_context("spawn")
    watch = [Progress(ctx) for _ in range(n)]

    def spawn(i: int) -> tuple[mp.process.BaseProcess, Connection]:
        mine, theirs = ctx.Pipe()
        watch[i].mark(None)
        p = ctx.Process(target=run_worker, args=(str(config_path), i, theirs, watch[i]), name=f"ingest-{i}")
        p.start()
        theirs.close()  # only the worker holds its end: its death is end-of-file here
        deadline = time.monotonic() + 30
        while not mine.poll(0.1):  # a worker that died at start is restarted by the loop, not waited for
            if not p.is_alive() or time.monotonic() > deadline:
                logger.error("ingest worker %d did not start (yet)", i)
                break
        return p, mine

    procs = [spawn(i) for i in range(n)]
    try:
        sdnotify.ready(f"{n} ingest workers")
        logger.info("central ingest running with %d workers", n)
        interval = min(sdnotify.watchdog_interval() or 5.0, 5.0)
        while not stop.wait(interval):
            for i, (p, conn) in enumerate(procs):
                hung = watch[i].stuck(HUNG_AFTER)
                if hung is not None and p.is_alive():
                    logger.error("ingest worker %d stuck on message %s for over %.0f s; killing it", i, hung[:16],
                                 HUNG_AFTER, extra={"EHC_REASON": "worker_hung"})
                    _mark_hung(cfg.database_url, hung, HUNG_AFTER)
                    p.kill()
                    p.join(5)
                if not p.is_alive():
                    logger.error("ingest worker %d exited with %s; restarting", i, p.exitcode)
                    conn.close()
                    procs[i] = spawn(i)
            sdnotify.watchdog()
        sdnotify.notify("STOPPING=1")
    finally:  # whatever ended the loop, the workers must not outlive the supervisor
        for _, conn in procs:
            with contextlib.suppress(OSError):  # that worker may be gone already
                conn.send(STOP)
        for p, conn in procs:
            p.join(15)
            if p.is_alive():
                logger.error("ingest worker %s did not stop; killing it", p.name)
                p.kill()
                p.join(5)
            conn.close()
    return 0
