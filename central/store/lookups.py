"""Card lookups: the local card registry (the card platform of the demo and the tests) and the central
resolution of scans a box could not look up."""

from __future__ import annotations

import json
import logging
import time

from central.store.base import SqlBase
from mqtt.lookup import code_type_of, pending_card_index

logger = logging.getLogger(__name__)


class LookupsMixin(SqlBase):
    """Tables ``cards`` and ``card_lookups``."""

    # -- local card registry (the card platform of the demo and the tests) ---------------------------
    def register_card(self, card_index: str, status: str = "active", health: str = "green",
                      id_ref: str | None = None) -> None:
        """Add or update a health card in the local registry (``card_index``: 64 hex digits; ``id_ref``: the
        holder's ID-number pseudonym, so that an ID card finds the health card)."""
        with self.transaction():
            self.execute("DELETE FROM cards WHERE card_index = ?", (card_index.upper(),))
            self.execute("INSERT INTO cards (card_index, status, health, updated_at, id_ref) VALUES (?, ?, ?, ?, ?)",
                         (card_index.upper(), status, health, time.time(), id_ref))

    def card(self, card_index: str) -> tuple[str, str] | None:
        """``(status, health)`` of a registered card, or None."""
        row = self.query_one("SELECT status, health FROM cards WHERE card_index = ?", (card_index.upper(),))
        self.end_read()
        return (row[0], row[1]) if row else None

    def card_by_id(self, id_ref: str) -> tuple[str, str] | None:
        """``(status, health)`` of the card whose holder has this ID pseudonym, or None."""
        row = self.query_one("SELECT status, health FROM cards WHERE id_ref = ?", (id_ref,))
        self.end_read()
        return (row[0], row[1]) if row else None

    # -- central resolution of pending scans ---------------------------------------------------------
    def record_lookup(self, msg_id: str, card_index: str, found: bool, status: str | None,
                      health: str | None) -> None:
        """Store the central resolution of a scan the box could not look up."""
        with self.transaction():
            self.execute("DELETE FROM card_lookups WHERE msg_id = ?", (msg_id,))
            self.execute("INSERT INTO card_lookups (msg_id, card_index, found, status, health, resolved_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (msg_id, card_index.upper(), int(found), status, health, time.time()))

    def unresolved_lookups(self, limit: int = 1000) -> list[tuple[str, str, int]]:
        """``(msg_id, card_index, code_type)`` of stored scans still waiting for a card lookup (the index from
        the scan's opened personal fields, or from the clear body of a box not yet updated)."""
        rows = self.execute("SELECT r.msg_id, r.body_json, p.fields_json FROM results r "
                            "LEFT JOIN card_lookups l ON l.msg_id = r.msg_id "
                            "LEFT JOIN personal p ON p.msg_id = r.msg_id "
                            "WHERE l.msg_id IS NULL AND r.kind = 'scan' AND (p.fields_json LIKE ? OR r.body_json LIKE ?) "
                            "ORDER BY r.received_at", ('%"card_index":%', '%"card_index":%')).fetchmany(limit)
        self.end_read()
        out = []
        for msg_id, body_json, fields_json in rows:
            body = json.loads(body_json)
            index = pending_card_index(body, json.loads(fields_json) if fields_json else None)
            if index is not None:
                out.append((msg_id, index, code_type_of(body.get("code_type"))))
        return out
