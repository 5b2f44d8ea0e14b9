"""Vaccination records: the local registry of children and the doses stored ``vaccination`` results add."""

from __future__ import annotations

import logging
import time
from typing import Any

from central.store.base import SqlBase

logger = logging.getLogger(__name__)


class VaccinationMixin(SqlBase):
    """Tables ``children`` and ``vaccinations``."""

    def register_child(self, child_ref: str, birth_date: str) -> None:
        """Add a child to the local vaccination registry (``child_ref``: card or ID pseudonym)."""
        with self.transaction():
            self.execute("DELETE FROM children WHERE child_ref = ?", (child_ref,))
            self.execute("INSERT INTO children (child_ref, birth_date) VALUES (?, ?)", (child_ref, birth_date))

    def vaccination_record(self, child_ref: str) -> tuple[str | None, list[dict[str, Any]]]:
        """A child's birth date (None when unknown) and doses, oldest first."""
        row = self.query_one("SELECT birth_date FROM children WHERE child_ref = ?", (child_ref,))
        doses = [{"vaccine": v, "product": p, "dose": d, "date": g} for v, p, d, g in self.query(
            "SELECT vaccine, product, dose, given_on FROM vaccinations WHERE child_ref = ? ORDER BY given_on, msg_id",
            (child_ref,))]
        self.end_read()
        return (row[0] if row else None), doses

    def record_vaccination(self, msg_id: str, body: dict[str, Any]) -> None:
        """Add a stored ``vaccination`` result to the child's record (once per message)."""
        with self.transaction():
            if self.query_one("SELECT 1 FROM vaccinations WHERE msg_id = ?", (msg_id,)) is None:
                self.execute("INSERT INTO vaccinations (msg_id, child_ref, vaccine, product, dose, given_on, "
                             "trace_code, lot, expiry, override, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (msg_id, body["child_ref"], body["vaccine"], body.get("product"), body.get("dose"),
                              body["given_on"], body.get("trace_code"), body.get("lot"), body.get("expiry"),
                              int(bool(body.get("override"))), time.time()))
