"""Personal fields: the opened sealed part of a stored result, kept apart from its ``body_json``."""

from __future__ import annotations

import json
import logging
from typing import Any

from central.store.base import SqlBase

logger = logging.getLogger(__name__)


class PersonalMixin(SqlBase):
    """Table ``personal`` (written by :meth:`central.store.results.ResultsMixin.store_results`)."""

    def personal(self, msg_id: str) -> dict[str, Any] | None:
        """The opened personal fields of a stored result, or None."""
        row = self.query_one("SELECT fields_json FROM personal WHERE msg_id = ?", (msg_id,))
        self.end_read()
        return json.loads(row[0]) if row else None
