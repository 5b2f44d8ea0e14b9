"""The box's append-only audit log: a hash chain in the outbox database.

Every event (a result stored, a ticket printed, a station start, a configuration change, an enrollment, a
self-test, a flow outcome that stored nothing) becomes one row ``(pos, ts_ms, kind, digest, prev, hash)``;
the digest covers the event's non-personal facts only. Results are appended in the same transaction as
the outbox row (:meth:`mqtt.outbox.Outbox.enqueue_many`), so a result and its link exist together or not at
all. :func:`verify` recomputes the chain and names the first broken link (``ehc-edge audit verify``).
The hash format is in :mod:`mqtt.auditchain`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from mqtt.auditchain import (
    CHAIN_ID_BYTES,
    MAX_CARRIED,
    MAX_KIND,
    RESULT,
    Entry,
    body_part,
    entry_hash,
    facts_digest,
    genesis,
    result_digest,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    pos INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, digest BLOB NOT NULL,
    prev BLOB NOT NULL, hash BLOB NOT NULL, msg_id BLOB);
CREATE TABLE IF NOT EXISTS audit_meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Verification:
    """Outcome of :func:`verify`: how many entries, the head, and the first broken link if any."""

    entries: int
    head_pos: int
    head: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def create(conn: sqlite3.Connection) -> None:
    """Create the tables and, once per database, the chain id."""
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO audit_meta (k, v) VALUES ('chain', ?)", (os.urandom(CHAIN_ID_BYTES),))
    conn.execute("INSERT OR IGNORE INTO audit_meta (k, v) VALUES ('last_result', 0)")


def chain_id(conn: sqlite3.Connection) -> bytes:
    """This database's chain id."""
    return bytes(conn.execute("SELECT v FROM audit_meta WHERE k = 'chain'").fetchone()[0])


def head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """``(pos, hash)`` of the last entry, or ``(0, genesis)`` for an empty log."""
    row = conn.execute("SELECT pos, hash FROM audit_log ORDER BY pos DESC LIMIT 1").fetchone()
    return (int(row[0]), bytes(row[1])) if row else (0, genesis(chain_id(conn)))


def _append(conn: sqlite3.Connection, kind: str, digest: bytes, ts_ms: int, msg_id: bytes | None) -> Entry:
    pos, prev = head(conn)
    entry = Entry(pos + 1, ts_ms, kind, digest, prev, entry_hash(pos + 1, ts_ms, kind, digest, prev))
    conn.execute("INSERT INTO audit_log (pos, ts_ms, kind, digest, prev, hash, msg_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (entry.pos, entry.ts_ms, entry.kind, entry.digest, entry.prev, entry.hash, msg_id))
    return entry


def append(conn: sqlite3.Connection, kind: str, facts: dict[str, Any], ts_ms: int | None = None) -> Entry:
    """Append one event inside the caller's write transaction. ``facts`` must hold no personal data."""
    if not (0 < len(kind) <= MAX_KIND) or kind == RESULT:
        raise ValueError(f"audit kind {kind!r} is empty, too long or reserved")
    return _append(conn, kind, facts_digest(facts), ts_ms if ts_ms is not None else time.time_ns() // 1_000_000, None)


def append_result(conn: sqlite3.Connection, msg_id: bytes, kind: str, boot: int, seq: int, ts_ms: int,
                  body: dict[str, Any]) -> dict[str, Any]:
    """Append a result inside the outbox transaction; returns the ``audit`` map its message carries."""
    chain, last = conn.execute("SELECT (SELECT v FROM audit_meta WHERE k = 'chain'), "
                               "(SELECT v FROM audit_meta WHERE k = 'last_result')").fetchone()
    chain = bytes(chain)
    # The previous result's entry (the base) and the entries after it, newest first.
    rows = conn.execute("SELECT pos, ts_ms, kind, digest, prev, hash FROM audit_log WHERE pos >= ? ORDER BY pos DESC "
                        "LIMIT ?", (int(last), MAX_CARRIED + 1)).fetchall()
    entries = [Entry(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5])) for r in reversed(rows)]
    log = [e for e in entries if e.pos > int(last)][-MAX_CARRIED:]
    pos, prev = (entries[-1].pos, entries[-1].hash) if entries else (0, genesis(chain))
    digest = result_digest(msg_id, kind, boot, seq, body)
    own = Entry(pos + 1, ts_ms, RESULT, digest, prev, entry_hash(pos + 1, ts_ms, RESULT, digest, prev))
    conn.execute("INSERT INTO audit_log (pos, ts_ms, kind, digest, prev, hash, msg_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (own.pos, own.ts_ms, own.kind, own.digest, own.prev, own.hash, msg_id))
    conn.execute("UPDATE audit_meta SET v = ? WHERE k = 'last_result'", (own.pos,))
    base = (log[0].pos - 1, log[0].prev) if log else (own.pos - 1, own.prev)
    return body_part(chain, own, base, log)


def tail(conn: sqlite3.Connection, limit: int = 20) -> list[Entry]:
    """The last ``limit`` entries, oldest first."""
    rows = conn.execute("SELECT pos, ts_ms, kind, digest, prev, hash FROM audit_log ORDER BY pos DESC LIMIT ?",
                        (limit,)).fetchall()
    return [Entry(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5])) for r in reversed(rows)]


def verify(conn: sqlite3.Connection) -> Verification:
    """Recompute every link from the genesis; report the first position where the chain breaks."""
    prev, expected, count = genesis(chain_id(conn)), 1, 0
    for pos, ts_ms, kind, digest, stored_prev, stored_hash in conn.execute(
            "SELECT pos, ts_ms, kind, digest, prev, hash FROM audit_log ORDER BY pos"):
        count += 1
        if pos != expected:
            return Verification(count, expected - 1, prev.hex(), expected, f"entry {expected} is missing")
        if bytes(stored_prev) != prev:
            return Verification(count, pos - 1, prev.hex(), pos, "does not link to the entry before it")
        recomputed = entry_hash(pos, ts_ms, kind, bytes(digest), prev)
        if recomputed != bytes(stored_hash):
            return Verification(count, pos - 1, prev.hex(), pos, "its content does not match its hash")
        prev, expected = recomputed, expected + 1
    last = int(conn.execute("SELECT v FROM audit_meta WHERE k = 'last_result'").fetchone()[0])
    if last >= expected:
        return Verification(count, expected - 1, prev.hex(), expected, f"entries {expected}..{last} are missing")
    return Verification(count, expected - 1, prev.hex())
