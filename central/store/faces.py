"""Enrolled face templates, kept sealed to the central key with their consent record."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from central.store.base import SqlBase

logger = logging.getLogger(__name__)


class FacesMixin(SqlBase):
    """Table ``face_templates``."""

    def put_face_template(self, id_ref: str, clinic: str, device_id: str, msg_id: str, topic: str,
                          sealed_part: dict[str, Any], consent: dict[str, Any]) -> None:
        """Keep (or replace, on re-enrolment) the sealed template enrolled for ``id_ref`` with its consent."""
        with self.transaction():
            self.execute("DELETE FROM face_templates WHERE id_ref = ?", (id_ref,))
            self.execute("""INSERT INTO face_templates (id_ref, clinic, device_id, msg_id, topic, sealed_json,
                            consent_json, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                         (id_ref, clinic, device_id, msg_id, topic, json.dumps(sealed_part), json.dumps(consent),
                          time.time()))

    def face_template(self, id_ref: str) -> dict[str, Any] | None:
        """The enrolled template row for ``id_ref`` (still sealed), revoked or not; None when there is none."""
        row = self.query_one("""SELECT clinic, device_id, msg_id, topic, sealed_json, consent_json, enrolled_at,
                                revoked_at, revoked_by FROM face_templates WHERE id_ref = ?""", (id_ref,))
        self.end_read()
        if row is None:
            return None
        keys = ("clinic", "device_id", "msg_id", "topic", "sealed", "consent", "enrolled_at", "revoked_at",
                "revoked_by")
        out = dict(zip(keys, row))
        out["sealed"], out["consent"] = json.loads(out["sealed"]), json.loads(out["consent"])
        return out

    def face_templates(self, clinics: list[str] | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Enrolments for the dashboard (no template): newest first, optionally only in ``clinics``."""
        rows = self.execute("""SELECT id_ref, clinic, device_id, consent_json, enrolled_at, revoked_at, revoked_by
                               FROM face_templates ORDER BY enrolled_at DESC""").fetchmany(limit)
        self.end_read()
        keys = ("id_ref", "clinic", "device_id", "consent", "enrolled_at", "revoked_at", "revoked_by")
        out = [dict(zip(keys, r)) for r in rows if clinics is None or r[1] in clinics]
        for r in out:
            r["consent"] = json.loads(r["consent"])
        return out

    def revoke_face_template(self, id_ref: str, by: str) -> bool:
        """Mark a template revoked (it is no longer handed out) and drop its sealed data; False when unknown
        or already revoked."""
        with self.transaction():
            n = self.execute("""UPDATE face_templates SET revoked_at = ?, revoked_by = ?, sealed_json = '{}'
                                WHERE id_ref = ? AND revoked_at IS NULL""", (time.time(), by, id_ref)).rowcount
        return bool(n)
