"""Dead letters: messages the ingest could not process, kept whole for an operator (and counted as refused)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from typing import Any

from central.store.base import SqlBase, StoreUnavailable

logger = logging.getLogger(__name__)


def dead_letter_key(topic: str, payload: bytes) -> str:
    """How a dead letter is recognised when the broker delivers it again: SHA-256 over topic and payload."""
    return hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()


class DeadLettersMixin(SqlBase):
    """Table ``dead_letters`` (and a ``dead_letter`` row in ``rejections`` per delivery)."""

    def dead_letter(self, topic: str, payload: bytes, reason: str, detail: str, device_id: str | None,
                    now: float | None = None) -> str:
        """Keep a message the ingest could not process, whole (for an operator to look at and replay once the
        cause is fixed), and record it as refused; a redelivery only counts again. Returns its key."""
        now = time.time() if now is None else now
        key = dead_letter_key(topic, payload)
        self.begin()
        try:
            # a row marked by the supervisor (a message that hung a worker) gets the message itself now
            cur = self.execute("""UPDATE dead_letters SET last_at = ?, deliveries = deliveries + 1, topic = ?,
                                  payload = ?, device_id = COALESCE(device_id, ?) WHERE sha256 = ?""",
                               (now, topic[:256], self.blob(payload), device_id, key))
            if cur.rowcount == 0:
                self.execute("""INSERT INTO dead_letters (sha256, topic, reason, detail, device_id, payload, first_at,
                                last_at, deliveries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)""",
                             (key, topic[:256], reason, detail[:500], device_id, self.blob(payload), now, now))
            self.execute("INSERT INTO rejections (at, reason, topic, size, device_id, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                         (now, "dead_letter", topic[:256], len(payload), device_id, hashlib.sha256(payload).hexdigest()))
            self.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):  # the connection may be gone already
                self.rollback()
            raise StoreUnavailable(f"dead letter not written: {type(exc).__name__}: {exc}") from exc
        return key

    def mark_dead_letter(self, key: str, reason: str, detail: str) -> None:
        """Mark a message by its key alone (the supervisor has no copy of it): when the broker delivers it again,
        the ingest keeps it as a dead letter without reading it."""
        now = time.time()
        try:
            self.begin()
            self.execute("""INSERT INTO dead_letters (sha256, topic, reason, detail, device_id, payload, first_at,
                            last_at, deliveries) VALUES (?, '', ?, ?, NULL, ?, ?, ?, 0) ON CONFLICT DO NOTHING""",
                         (key, reason, detail[:500], self.blob(b""), now, now))
            self.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):  # the connection may be gone already
                self.rollback()
            raise StoreUnavailable(f"dead letter not marked: {type(exc).__name__}: {exc}") from exc

    def dead_letter_keys(self) -> set[str]:
        """Keys of every message kept as a dead letter."""
        rows = self.query("SELECT sha256 FROM dead_letters")
        self.end_read()
        return {r[0] for r in rows}

    def dead_letters(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Dead letters without their payload, newest first."""
        rows = self.execute("SELECT sha256, topic, reason, detail, device_id, first_at, last_at, deliveries "
                            "FROM dead_letters ORDER BY last_at DESC").fetchmany(limit)
        self.end_read()
        keys = ("key", "topic", "reason", "detail", "device_id", "first_at", "last_at", "deliveries")
        return [dict(zip(keys, r)) for r in rows]
