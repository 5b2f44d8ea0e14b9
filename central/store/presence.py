"""Presence: a box's online/offline status, its birth document (state) and health reports."""

from __future__ import annotations

import json
import logging
import time

from central.store.base import SqlBase

logger = logging.getLogger(__name__)


class PresenceMixin(SqlBase):
    """The presence columns of ``devices``."""

    def update_presence(self, device_id: str, *, presence: str | None = None, state: dict | None = None,
                        health: dict | None = None) -> None:
        """Record a status change, birth document or health report."""
        now = time.time()
        self.begin()
        if presence is not None:
            self.execute("UPDATE devices SET presence = ?, presence_at = ? WHERE device_id = ?",
                         (presence, now, device_id))
        if state is not None:
            self.execute("UPDATE devices SET state_json = ?, last_seen = ? WHERE device_id = ?",
                         (json.dumps(state), now, device_id))
        if health is not None:
            self.execute("UPDATE devices SET health_json = ?, last_seen = ? WHERE device_id = ?",
                         (json.dumps(health), now, device_id))
        self.commit()
