"""Linking box events that happen outside the station (enrollment, self-test, configuration changes) into
the audit chain kept in the outbox database (:mod:`mqtt.auditlog`).

Results, prints, station starts and flow outcomes are linked by the outbox and the flow context
themselves; this module is for the other processes (``ehc-provision``, the uplink's commands).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from edge.config import EdgeConfig
from mqtt.outbox import Outbox, OutboxError

logger = logging.getLogger(__name__)


def record(cfg: EdgeConfig, kind: str, facts: dict[str, Any]) -> bool:
    """Append one event (facts without personal data) to this box's chain; False, logged, when it failed."""
    try:
        box = Outbox(cfg.outbox_path)
    except (sqlite3.Error, OSError) as exc:  # the state directory is not usable
        logger.error("%s event not written to the audit log: %s", kind, exc)
        return False
    try:
        box.audit(kind, facts)
        return True
    except OutboxError as exc:
        logger.error("%s event not written to the audit log: %s", kind, exc)
        return False
    finally:
        box.close()
