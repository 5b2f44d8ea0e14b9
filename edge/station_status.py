"""The station's status file: how the station daemon tells the uplink what to put in the health report.

The station writes a small JSON document (camera state, counters) every few seconds; the uplink reads
it when it builds a ``health`` report. A status older than ``max_age`` seconds means the station is not
running (or stuck), and is reported as such.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from foundation.files import write_atomic

logger = logging.getLogger(__name__)

STATUS_FILE = "station-status.json"


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace the status file with ``status`` plus the time it was written."""
    try:
        write_atomic(path, json.dumps({**status, "written_at": time.time()}, sort_keys=True).encode(), 0o644)
    except OSError as exc:
        logger.warning("cannot write station status %s: %s", path, exc)


def read_status(path: Path, max_age: float) -> tuple[dict[str, Any] | None, list[str]]:
    """The station status and the alerts it implies (``station_down``, ``camera_error``)."""
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError) as exc:
        logger.warning("unreadable station status %s: %s", path, exc)
        return None, ["station_down"]
    alerts = []
    if time.time() - float(status.get("written_at", 0)) > max_age:
        alerts.append("station_down")
    elif status.get("camera") == "error":
        alerts.append("camera_error")
    return status, alerts
