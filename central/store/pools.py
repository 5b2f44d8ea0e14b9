"""Pools and racks: where a tube's samples came from and where the tube stood (to recall a positive pool)."""

from __future__ import annotations

import json
import logging
from typing import Any

from central.store.base import SqlBase

logger = logging.getLogger(__name__)


class PoolsMixin(SqlBase):
    """Reads of the stored ``pool`` and ``rack`` results."""

    def pool_members(self, tube: str) -> list[dict[str, Any]]:
        """The stored ``pool`` bindings of a tube, oldest first: ``{"msg_id", "device", "members",
        "id_members"}`` with the card indexes from the opened personal fields (to recall a positive pool)."""
        rows = self.query("SELECT r.msg_id, r.device_id, r.body_json, p.fields_json FROM results r "
                          "LEFT JOIN personal p ON p.msg_id = r.msg_id WHERE r.kind = 'pool' ORDER BY r.received_at")
        self.end_read()
        out = []
        for msg_id, device, body_json, fields_json in rows:
            body = json.loads(body_json)
            if body.get("tube") != tube:
                continue
            personal = json.loads(fields_json) if fields_json else {}
            out.append({"msg_id": msg_id, "device": device, "members": personal.get("members", body.get("members", [])),
                        "id_members": body.get("id_members", [])})
        return out

    def rack_places(self, tube: str) -> list[dict[str, Any]]:
        """Where a tube stood in the stored ``rack`` results, oldest first: ``{"msg_id", "device", "position",
        "layout", "rack", "pool"}`` (``pool``: the message id of the tube's ``pool`` result, or null)."""
        rows = self.query("SELECT msg_id, device_id, body_json FROM results WHERE kind = 'rack' ORDER BY received_at")
        self.end_read()
        out = []
        for msg_id, device, body_json in rows:
            body = json.loads(body_json)
            for t in body.get("tubes", []):
                if t.get("tube") == tube:
                    out.append({"msg_id": msg_id, "device": device, "position": t.get("position"),
                                "layout": body.get("layout"), "rack": body.get("rack"), "pool": t.get("pool")})
        return out
