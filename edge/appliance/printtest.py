"""The ``print_test`` remote command: a test ticket from the central service, printed by the station.

The printer belongs to the station process, so the uplink does not talk to it: it adds the ticket to the
station's durable print queue (the same SQLite file, ``[printer] queue_path``), and the station's printer
worker, which looks at the queue at least every ``[printer] idle_check`` seconds, prints it. The ticket is
the self-test ticket with the device, the clinic and the pairing QR, marked as a remote test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edge.boxfiles import pairing_text
from edge.config import EdgeConfig

logger = logging.getLogger(__name__)


def print_test(cfg: EdgeConfig) -> dict[str, Any]:
    """Queue the test ticket for the station's printer; the answer names the job."""
    if cfg.printer.connection == "none":
        return {"ok": False, "error": "no_printer"}
    from drivers.print_queue import PrintQueue, PrintQueueError
    from drivers.ticket_layout import load_template, render

    fields = {"device_id": cfg.device.id, "clinic": cfg.device.clinic, "pairing_qr": pairing_text(cfg),
              "checks": [{"part": "远程测试 remote test", "status": "ok"}]}
    render(load_template("selftest"), fields, cfg.printer.paper)  # a bad ticket fails here, not at the printer
    try:
        queue = PrintQueue(cfg.printer.queue_file(cfg.path(cfg.device.state_dir)), max_jobs=cfg.printer.max_jobs)
        try:
            job = queue.add("selftest", fields)
        finally:
            queue.close()
    except PrintQueueError as exc:
        return {"ok": False, "error": "queue", "detail": str(exc)[:200]}
    logger.info("test ticket queued for the station's printer")
    return {"ok": True, "job": job.id, "prints_within_s": cfg.printer.idle_check}


def command_handlers(cfg: EdgeConfig) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The ``print_test`` handler for ``Uplink.command_handlers``."""
    return {"print_test": lambda args: print_test(cfg)}
