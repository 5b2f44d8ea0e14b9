"""Durable outbox: every signed result is committed to SQLite (WAL, fsync) before the box reports success.

Rows leave the outbox only when the central service's receipt says the result is stored. The file is
shared by the station (writer) and the uplink (reader); SQLite's locking makes that safe across processes,
and ``kill -9`` or power loss at any point leaves either the whole row or nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uuid6
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from foundation.privatedb import private_database
from mqtt import auditlog, envelope, sealed, topics

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id BLOB NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
INSERT OR IGNORE INTO meta (k, v) VALUES ('seq', 0), ('bytes', 0), ('started', 0);
"""
T = TypeVar("T")
StateChange = Callable[[sqlite3.Connection], None]
ROW_OVERHEAD = 128  # bytes of SQLite bookkeeping counted per row towards the bound
Item = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], dict[str, Any] | None]


class OutboxError(RuntimeError):
    """The outbox could not store a result; the caller must tell the user it was not recorded."""


class OutboxFull(OutboxError):
    """The outbox reached its size bound; nothing more is accepted until results are delivered."""


class NoSealKey(OutboxError):
    """A result with personal fields, on a box that has no central sealing key: refused, never sent in clear."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a box signs with: its id, its clinic and its P-256 key."""

    device: str
    clinic: str
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored, signed message waiting for delivery."""

    row_id: int
    msg_id: bytes
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Queue depth, size and age of the oldest waiting message."""

    depth: int
    bytes: int
    oldest_age: float | None
    boot: int
    max_bytes: int

    @property
    def fill(self) -> float:
        """Share of the size bound in use."""
        return self.bytes / self.max_bytes


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the outbox database in WAL mode; ``FULL`` fsyncs every commit (what the writer needs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private_database(path)  # signed results, sealed personal parts and card indexes of pooled tubes
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.executescript(SCHEMA)
    # The boot counter of a new outbox starts at the clock's seconds, so that a box whose storage was
    # wiped or replaced never reuses a (boot, seq) pair it has already delivered.
    conn.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('boot', ?)", (int(time.time()) - 1,))
    auditlog.create(conn)
    return conn


class Outbox:
    """A SQLite-backed queue of signed messages.

    >>> box = Outbox(Path("/var/lib/ehc-edge/outbox.db"), identity)   # doctest: +SKIP
    >>> box.start_boot()                                               # doctest: +SKIP
    >>> box.enqueue("scan", {"outcome": "green"})                     # doctest: +SKIP

    ``seal_key`` is the central service's X25519 key: personal fields given to :meth:`enqueue` are sealed
    to it (:mod:`mqtt.sealed`); without it they are refused (:class:`NoSealKey`). Every result, and every
    event given to :meth:`audit`, is linked into the box's audit chain (:mod:`mqtt.auditlog`).
    """

    def __init__(self, path: Path, identity: DeviceIdentity | None = None,
                 max_bytes: int = 256 * 1024 * 1024, alert_fraction: float = 0.8, *, durable: bool = True,
                 seal_key: x25519.X25519PublicKey | None = None) -> None:
        self.path = Path(path)
        self.identity = identity
        self.seal_key = seal_key
        self.max_bytes = max_bytes
        self.alert_fraction = alert_fraction
        # A writer must fsync before it reports success. The uplink only deletes delivered rows: a delete
        # lost to power failure just causes a resend that the central store deduplicates.
        self._conn = connect(self.path, "FULL" if durable else "NORMAL")
        self._alerted = False

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def _meta(self, key: str) -> int:
        return int(self._conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()[0])

    def start_boot(self) -> int:
        """Increment the persisted boot counter and restart the sequence; call once per process start."""
        with self._txn():
            boot = self._meta("boot") + 1
            self._conn.execute("UPDATE meta SET v = ? WHERE k = 'boot'", (boot,))
            self._conn.execute("UPDATE meta SET v = 0 WHERE k = 'seq'")
            self._conn.execute("UPDATE meta SET v = 1 WHERE k = 'started'")
            auditlog.append(self._conn, "boot", {"boot": boot})
        logger.info("outbox %s: boot %d", self.path.name, boot)
        return boot

    @property
    def boot(self) -> int:
        """Current boot id."""
        return self._meta("boot")

    def _txn(self) -> _Txn:
        return _Txn(self._conn)

    def state(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``change(conn)`` in one transaction on the outbox database and return its result.

        For flow state that must commit atomically with results (tables the flow creates itself;
        never the outbox's own). Raises :class:`OutboxError` when the database fails.
        """
        try:
            with self._txn() as conn:
                return change(conn)
        except sqlite3.Error as exc:
            raise OutboxError(f"state write failed: {exc}") from exc

    def audit(self, kind: str, facts: dict[str, Any]) -> None:
        """Append a non-result event (``print``, ``config``, ``enrollment``…) to the audit chain.

        ``facts`` must hold no personal data; only their digest is kept. Raises :class:`OutboxError`.
        """
        self.state(lambda conn: auditlog.append(conn, kind, facts))

    def audit_verify(self) -> auditlog.Verification:
        """Recompute the audit chain; names the first broken link (``ehc-edge audit verify``)."""
        return auditlog.verify(self._conn)

    def audit_tail(self, limit: int = 20) -> list[auditlog.Entry]:
        """The last ``limit`` audit entries, oldest first."""
        return auditlog.tail(self._conn, limit)

    def enqueue(self, kind: str, body: dict[str, Any], *, also: StateChange | None = None,
                personal: dict[str, Any] | None = None) -> envelope.Message:
        """Sign and durably store one result; returns the message once it is on disk.

        ``personal`` fields (names, ID numbers, birth dates) are sealed into ``body["personal"]``;
        ``also`` runs in the same transaction (see :meth:`enqueue_many`).
        """
        return self.enqueue_many([(kind, body, personal)], also=also)[0]

    def _seal(self, body: dict[str, Any], personal: dict[str, Any] | None, topic: str,
              msg_id: uuid.UUID) -> dict[str, Any]:
        """The body as signed: the flow's fields and, when there are personal fields, their sealed part."""
        if "personal" in body:
            raise ValueError("'personal' is filled by the outbox; pass personal= instead")
        if not personal:
            return body
        if self.seal_key is None:
            raise NoSealKey("this box has no central sealing key: personal fields are not sent")
        return {**body, "personal": sealed.seal(personal, self.seal_key, topic, msg_id.bytes)}

    def enqueue_many(self, items: Iterable[Item], *, also: StateChange | None = None) -> list[envelope.Message]:
        """Sign and store several results in one transaction (one fsync).

        ``items`` are ``(kind, body)`` or ``(kind, body, personal)``. ``also(conn)`` runs inside that
        transaction: a flow's own state change (a tube closed, a queue number used) commits together with
        the results it produced, or not at all; so does each result's audit link.
        """
        ident = self.identity
        if ident is None:
            raise OutboxError("outbox opened without a device identity cannot sign")
        out: list[envelope.Message] = []
        try:
            with self._txn():
                boot, seq, used = self._meta("boot"), self._meta("seq"), self._meta("bytes")
                if not self._meta("started"):
                    raise OutboxError("start_boot() was never called on this outbox")
                rows = []
                for item in items:
                    kind, body, personal = item if len(item) == 3 else (*item, None)  # type: ignore[misc]
                    seq += 1
                    topic = topics.event(ident.clinic, ident.device, kind)
                    msg_id, ts_ms = uuid6.uuid7(), time.time_ns() // 1_000_000
                    body = self._seal(body, personal, topic, msg_id)
                    link = auditlog.append_result(self._conn, msg_id.bytes, kind, boot, seq, ts_ms, body)
                    msg = envelope.Message(device=ident.device, boot=boot, seq=seq, kind=kind, body=body,
                                           msg_id=msg_id, ts_ms=ts_ms, audit=link)
                    payload = envelope.sign(msg, topic, ident.key)
                    used += len(payload) + ROW_OVERHEAD
                    if used > self.max_bytes:
                        raise OutboxFull(f"outbox bound of {self.max_bytes} bytes reached")
                    rows.append((msg.msg_id.bytes, topic, payload, time.time()))
                    out.append(msg)
                self._conn.executemany("INSERT INTO outbox (msg_id, topic, payload, created) VALUES (?, ?, ?, ?)", rows)
                if also is not None:
                    also(self._conn)
                self._conn.execute("UPDATE meta SET v = ? WHERE k = 'seq'", (seq,))
                self._conn.execute("UPDATE meta SET v = ? WHERE k = 'bytes'", (used,))
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox write failed: {exc}") from exc
        self._check_alert(used)
        return out

    def _check_alert(self, used: int) -> None:
        high = used >= self.alert_fraction * self.max_bytes
        if high and not self._alerted:
            logger.warning("outbox above %d%% of its bound (%d of %d bytes)",
                           int(self.alert_fraction * 100), used, self.max_bytes)
        self._alerted = high

    def pending(self, after_row: int = 0, limit: int = 100) -> list[Pending]:
        """Up to ``limit`` waiting messages with a row id above ``after_row``, oldest first."""
        cur = self._conn.execute(
            "SELECT id, msg_id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_row, limit))
        return [Pending(*row) for row in cur]

    def get(self, row_ids: list[int]) -> list[Pending]:
        """The waiting messages among ``row_ids`` (already delivered ones are skipped)."""
        if not row_ids:
            return []
        marks = ",".join("?" * len(row_ids))
        cur = self._conn.execute(f"SELECT id, msg_id, topic, payload FROM outbox WHERE id IN ({marks}) ORDER BY id",
                                 row_ids)
        return [Pending(*row) for row in cur]

    def delete(self, msg_ids: Iterable[bytes]) -> int:
        """Remove delivered messages by id; returns how many were still present."""
        ids = list(msg_ids)
        if not ids:
            return 0
        removed = 0
        with self._txn():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                cur = self._conn.execute(
                    f"DELETE FROM outbox WHERE msg_id IN ({marks}) RETURNING length(payload)", chunk)
                sizes = [r[0] for r in cur]
                removed += len(sizes)
                freed = sum(sizes) + ROW_OVERHEAD * len(sizes)
                self._conn.execute("UPDATE meta SET v = max(0, v - ?) WHERE k = 'bytes'", (freed,))
        return removed

    def stats(self) -> OutboxStats:
        """Depth, bytes and oldest age, for health reports."""
        depth, oldest = self._conn.execute("SELECT count(*), min(created) FROM outbox").fetchone()
        return OutboxStats(depth=depth, bytes=self._meta("bytes"),
                           oldest_age=(time.time() - oldest) if oldest is not None else None,
                           boot=self._meta("boot"), max_bytes=self.max_bytes)

    def check_writable(self) -> None:
        """Take and release the write lock: raises ``sqlite3.Error`` when results could not be stored."""
        with self._txn():
            pass

    def data_version(self) -> int:
        """Changes whenever another connection commits; a cheap way to notice new rows."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])


class _Txn:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` / ``ROLLBACK`` on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def msg_uuid(msg_id: bytes) -> uuid.UUID:
    """UUID of a stored message id."""
    return uuid.UUID(bytes=msg_id)
