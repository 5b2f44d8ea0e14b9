"""Central store: device registry, verified results (exactly once), sequence gaps and rejections.

One interface, two back ends: SQLite (embedded default) and PostgreSQL (``postgresql://…``). Results are
keyed by message id and unique per (device, boot, seq), so a redelivered message is stored once.

The package: :mod:`~central.store.base` (connection, back ends and the public SQL API: ``execute``,
``executemany``, ``query``, ``query_one``, ``transaction``, ``begin``/``commit``/``rollback``, ``end_read``,
``lock_rows``, ``blob``), :mod:`~central.store.schema` (the tables), and one module per kind of record, each a
mixin of :class:`Store`: :mod:`~central.store.devices`, :mod:`~central.store.tokens`,
:mod:`~central.store.lookups`, :mod:`~central.store.vaccination`, :mod:`~central.store.pools`,
:mod:`~central.store.presence`, :mod:`~central.store.results`, :mod:`~central.store.personal`,
:mod:`~central.store.dead_letters`, :mod:`~central.store.faces`.
"""

from __future__ import annotations

import logging

from central.store.base import (
    SAFE_SUM,
    PostgresBackend,
    SqlBase,
    SqliteBackend,
    StoreUnavailable,
    safe_count,
    unreachable,
)
from central.store.dead_letters import DeadLettersMixin, dead_letter_key
from central.store.devices import DeviceRecord, DevicesMixin
from central.store.faces import FacesMixin
from central.store.lookups import LookupsMixin
from central.store.personal import PersonalMixin
from central.store.pools import PoolsMixin
from central.store.presence import PresenceMixin
from central.store.results import (
    DUPLICATE,
    QUARANTINED,
    SEQ_CONFLICT,
    STORED,
    Rejection,
    ResultCheck,
    ResultsMixin,
    VerifiedResult,
    body_json,
)
from central.store.tokens import TokensMixin
from central.store.vaccination import VaccinationMixin

__all__ = [
    "DUPLICATE", "QUARANTINED", "SAFE_SUM", "SEQ_CONFLICT", "STORED", "DeviceRecord", "PostgresStore", "Rejection",
    "ResultCheck", "SqlBase", "SqlStore", "SqliteStore", "Store", "StoreUnavailable", "VerifiedResult", "body_json",
    "dead_letter_key", "open_store", "safe_count", "unreachable",
]

logger = logging.getLogger(__name__)


class SqlStore(TokensMixin, DevicesMixin, LookupsMixin, VaccinationMixin, PoolsMixin, PresenceMixin, ResultsMixin,
               PersonalMixin, DeadLettersMixin, FacesMixin, SqlBase):
    """Every kind of record over shared SQL for both back ends; :class:`SqliteStore` and :class:`PostgresStore`
    provide the connection and parameter style."""


Store = SqlStore


class SqliteStore(SqliteBackend, SqlStore):
    """Embedded default: one SQLite file in WAL mode."""


class PostgresStore(PostgresBackend, SqlStore):
    """PostgreSQL back end through psycopg 3."""


def open_store(url: str) -> SqlStore:
    """Open a store from ``sqlite:///path`` or ``postgresql://…``."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite://"):])
    if url.startswith("sqlite:"):
        return SqliteStore(url[len("sqlite:"):])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError("database url must start with sqlite:/// or postgresql://")
