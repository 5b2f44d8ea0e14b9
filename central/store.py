"""Central store: device registry, verified results (exactly once), sequence gaps and rejections.

One interface, two back ends: SQLite (embedded default) and PostgreSQL (``postgresql://…``). Results are
keyed by message id and unique per (device, boot, seq), so a redelivered message is stored once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from foundation.privatedb import private_database
from mqtt.auditchain import Segment
from central import audit_check as central_audit
from mqtt.envelope import Message
from mqtt.lookup import code_type_of, pending_card_index

logger = logging.getLogger(__name__)

STORED, DUPLICATE, SEQ_CONFLICT, QUARANTINED = "stored", "duplicate", "seq_conflict", "quarantined"

# Sums over boots and sequence numbers a box chose: as floating point, so that no set of values (each below 2^53,
# but as many as a box likes) overflows a 64-bit integer in SQLite or PostgreSQL. Read back with safe_count.
SAFE_SUM = "COALESCE(SUM(CAST({} AS DOUBLE PRECISION)), 0)"


def body_json(body: dict[str, Any]) -> str:
    """A result body as ``results.body_json`` keeps it: compact JSON without the sealed personal part."""
    return json.dumps({k: v for k, v in body.items() if k != "personal"}, ensure_ascii=False, separators=(",", ":"))


def dead_letter_key(topic: str, payload: bytes) -> str:
    """How a dead letter is recognised when the broker delivers it again: SHA-256 over topic and payload."""
    return hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()


def safe_count(value: Any) -> int:
    """An integer from a :data:`SAFE_SUM` (exact below 2^53)."""
    return int(value or 0)


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or written; the caller keeps the batch and retries."""


def unreachable(exc: BaseException) -> bool:
    """Whether a database error means the database is down, locked or unreachable (retry the same work later),
    rather than that the data was refused (which retrying will not change)."""
    if isinstance(exc, (StoreUnavailable, sqlite3.OperationalError)):
        return True
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):  # the connection was closed under us
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device."""

    device_id: str
    clinic: str
    cert_pem: str
    status: str  # active | revoked


@dataclass(frozen=True, slots=True)
class VerifiedResult:
    """A result whose signature and topic have been checked.

    ``personal``: the opened sealed part; ``quarantine``: why it is held instead of stored (``bad_sealed``);
    ``audit``: the audit-chain segment it proves, or ``audit_problem`` when its audit map does not recompute.
    """

    clinic: str
    message: Message
    envelope: bytes
    personal: dict[str, Any] | None = None
    quarantine: str | None = None
    audit: Segment | None = None
    audit_problem: str | None = None
    body_json: str | None = None  # the body as stored, when the ingest has made it already


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused message: why, where, how big, and a hash (never the content)."""

    reason: str
    topic: str
    size: int
    device_id: str | None
    sha256: str


def _schema(blob: str, real: str, serial: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS devices (
            device_id TEXT PRIMARY KEY, clinic TEXT NOT NULL, cert_pem TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active', registered_at {real} NOT NULL,
            presence TEXT, presence_at {real}, state_json TEXT, health_json TEXT, last_seen {real})""",
        f"""CREATE TABLE IF NOT EXISTS results (
            msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, clinic TEXT NOT NULL,
            boot_id BIGINT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, ts_ms BIGINT NOT NULL,
            body_json TEXT NOT NULL, envelope {blob} NOT NULL, received_at {real} NOT NULL,
            UNIQUE (device_id, boot_id, seq))""",
        "CREATE INDEX IF NOT EXISTS results_received ON results (received_at)",
        f"""CREATE TABLE IF NOT EXISTS device_boots (
            device_id TEXT NOT NULL, boot_id BIGINT NOT NULL, max_seq BIGINT NOT NULL,
            received BIGINT NOT NULL, first_seen {real} NOT NULL, PRIMARY KEY (device_id, boot_id))""",
        f"""CREATE TABLE IF NOT EXISTS sequence_gaps (
            id {serial}, device_id TEXT NOT NULL, boot_id BIGINT NOT NULL,
            first_missing BIGINT NOT NULL, last_missing BIGINT NOT NULL, detected_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS quarantine (
            msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, boot_id BIGINT NOT NULL, seq BIGINT NOT NULL,
            kind TEXT NOT NULL, envelope {blob} NOT NULL, received_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS certificates (
            serial TEXT PRIMARY KEY, device_id TEXT NOT NULL, not_after {real} NOT NULL, issued_at {real} NOT NULL,
            revoked_at {real})""",
        f"""CREATE TABLE IF NOT EXISTS enrollment_tokens (
            token_hash TEXT PRIMARY KEY, clinic TEXT NOT NULL, serial TEXT NOT NULL, created_at {real} NOT NULL,
            expires_at {real} NOT NULL, used_at {real}, device_id TEXT, reenroll BIGINT NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS cards (
            card_index TEXT PRIMARY KEY, status TEXT NOT NULL, health TEXT NOT NULL, updated_at {real} NOT NULL,
            id_ref TEXT)""",
        "CREATE INDEX IF NOT EXISTS cards_id_ref ON cards (id_ref)",
        f"""CREATE TABLE IF NOT EXISTS card_lookups (
            msg_id TEXT PRIMARY KEY, card_index TEXT NOT NULL, found BIGINT NOT NULL, status TEXT, health TEXT,
            resolved_at {real} NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS children (child_ref TEXT PRIMARY KEY, birth_date TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS vaccinations (
            msg_id TEXT PRIMARY KEY, child_ref TEXT NOT NULL, vaccine TEXT NOT NULL, product TEXT, dose BIGINT,
            given_on TEXT NOT NULL, trace_code TEXT, lot TEXT, expiry TEXT, override BIGINT NOT NULL,
            recorded_at {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS vaccinations_child ON vaccinations (child_ref)",
        f"""CREATE TABLE IF NOT EXISTS rejections (
            id {serial}, at {real} NOT NULL, reason TEXT NOT NULL, topic TEXT NOT NULL,
            size BIGINT NOT NULL, device_id TEXT, sha256 TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS personal (
            msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, fields_json TEXT NOT NULL, stored_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS dead_letters (
            sha256 TEXT PRIMARY KEY, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
            device_id TEXT, payload {blob} NOT NULL, first_at {real} NOT NULL, last_at {real} NOT NULL,
            deliveries BIGINT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS face_templates (
            id_ref TEXT PRIMARY KEY, clinic TEXT NOT NULL, device_id TEXT NOT NULL, msg_id TEXT NOT NULL,
            topic TEXT NOT NULL, sealed_json TEXT NOT NULL, consent_json TEXT NOT NULL, enrolled_at {real} NOT NULL,
            revoked_at {real}, revoked_by TEXT)""",
        *central_audit.schema(real, serial),
    ]


# Columns added after a table's first version: (table, column, SQL type and default). The CREATE TABLE statements
# above already hold them; an older database gets them on open.
_ADDED_COLUMNS = [("certificates", "revoked_at", "{real}"),
                  ("enrollment_tokens", "reenroll", "BIGINT NOT NULL DEFAULT 0")]


class SqlStore:
    """Shared SQL for both back ends; subclasses provide the connection and parameter style."""

    param = "?"
    lock_rows = ""  # row-lock clause for read-modify-write (PostgreSQL: FOR UPDATE)

    def __init__(self) -> None:
        self.conn: Any = None

    # -- helpers -------------------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql if self.param == "?" else sql.replace("?", self.param)

    def _exec(self, sql: str, params: tuple | list = ()) -> Any:
        return self.conn.execute(self._q(sql), params)

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()

    def _blob(self, data: bytes) -> Any:
        return data

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def reopen(self) -> None:
        """Reconnect after a failure (SQLite needs nothing: the next statement retries the file)."""

    # -- registry ------------------------------------------------------------------------------------
    def register_device(self, device_id: str, clinic: str, cert_pem: str) -> None:
        """Add a device or replace its certificate (re-enrollment, renewal); it becomes active."""
        self._begin()
        try:
            self._upsert_device(device_id, clinic, cert_pem, time.time())
            self._commit()
        except Exception:
            self._rollback()
            raise

    # -- local card registry (the card platform of the demo and the tests) ---------------------------
    def register_card(self, card_index: str, status: str = "active", health: str = "green",
                      id_ref: str | None = None) -> None:
        """Add or update a health card in the local registry (``card_index``: 64 hex digits; ``id_ref``: the
        holder's ID-number pseudonym, so that an ID card finds the health card)."""
        self._begin()
        try:
            self._exec("DELETE FROM cards WHERE card_index = ?", (card_index.upper(),))
            self._exec("INSERT INTO cards (card_index, status, health, updated_at, id_ref) VALUES (?, ?, ?, ?, ?)",
                       (card_index.upper(), status, health, time.time(), id_ref))
            self._commit()
        except Exception:
            self._rollback()
            raise

    def card(self, card_index: str) -> tuple[str, str] | None:
        """``(status, health)`` of a registered card, or None."""
        row = self._exec("SELECT status, health FROM cards WHERE card_index = ?", (card_index.upper(),)).fetchone()
        self._end_read()
        return (row[0], row[1]) if row else None

    def card_by_id(self, id_ref: str) -> tuple[str, str] | None:
        """``(status, health)`` of the card whose holder has this ID pseudonym, or None."""
        row = self._exec("SELECT status, health FROM cards WHERE id_ref = ?", (id_ref,)).fetchone()
        self._end_read()
        return (row[0], row[1]) if row else None

    def register_child(self, child_ref: str, birth_date: str) -> None:
        """Add a child to the local vaccination registry (``child_ref``: card or ID pseudonym)."""
        self._begin()
        try:
            self._exec("DELETE FROM children WHERE child_ref = ?", (child_ref,))
            self._exec("INSERT INTO children (child_ref, birth_date) VALUES (?, ?)", (child_ref, birth_date))
            self._commit()
        except Exception:
            self._rollback()
            raise

    def vaccination_record(self, child_ref: str) -> tuple[str | None, list[dict[str, Any]]]:
        """A child's birth date (None when unknown) and doses, oldest first."""
        row = self._exec("SELECT birth_date FROM children WHERE child_ref = ?", (child_ref,)).fetchone()
        doses = [{"vaccine": v, "product": p, "dose": d, "date": g} for v, p, d, g in self._exec(
            "SELECT vaccine, product, dose, given_on FROM vaccinations WHERE child_ref = ? ORDER BY given_on, msg_id",
            (child_ref,)).fetchall()]
        self._end_read()
        return (row[0] if row else None), doses

    def record_vaccination(self, msg_id: str, body: dict[str, Any]) -> None:
        """Add a stored ``vaccination`` result to the child's record (once per message)."""
        self._begin()
        try:
            if self._exec("SELECT 1 FROM vaccinations WHERE msg_id = ?", (msg_id,)).fetchone() is None:
                self._exec("INSERT INTO vaccinations (msg_id, child_ref, vaccine, product, dose, given_on, trace_code, "
                           "lot, expiry, override, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (msg_id, body["child_ref"], body["vaccine"], body.get("product"), body.get("dose"),
                            body["given_on"], body.get("trace_code"), body.get("lot"), body.get("expiry"),
                            int(bool(body.get("override"))), time.time()))
            self._commit()
        except Exception:
            self._rollback()
            raise

    def record_lookup(self, msg_id: str, card_index: str, found: bool, status: str | None,
                      health: str | None) -> None:
        """Store the central resolution of a scan the box could not look up."""
        self._begin()
        try:
            self._exec("DELETE FROM card_lookups WHERE msg_id = ?", (msg_id,))
            self._exec("INSERT INTO card_lookups (msg_id, card_index, found, status, health, resolved_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (msg_id, card_index.upper(), int(found), status, health, time.time()))
            self._commit()
        except Exception:
            self._rollback()
            raise

    def unresolved_lookups(self, limit: int = 1000) -> list[tuple[str, str, int]]:
        """``(msg_id, card_index, code_type)`` of stored scans still waiting for a card lookup (the index from
        the scan's opened personal fields, or from the clear body of a box not yet updated)."""
        rows = self._exec("SELECT r.msg_id, r.body_json, p.fields_json FROM results r "
                          "LEFT JOIN card_lookups l ON l.msg_id = r.msg_id LEFT JOIN personal p ON p.msg_id = r.msg_id "
                          "WHERE l.msg_id IS NULL AND r.kind = 'scan' AND (p.fields_json LIKE ? OR r.body_json LIKE ?) "
                          "ORDER BY r.received_at", ('%"card_index":%', '%"card_index":%')).fetchmany(limit)
        self._end_read()
        out = []
        for msg_id, body_json, fields_json in rows:
            body = json.loads(body_json)
            index = pending_card_index(body, json.loads(fields_json) if fields_json else None)
            if index is not None:
                out.append((msg_id, index, code_type_of(body.get("code_type"))))
        return out

    def pool_members(self, tube: str) -> list[dict[str, Any]]:
        """The stored ``pool`` bindings of a tube, oldest first: ``{"msg_id", "device", "members",
        "id_members"}`` with the card indexes from the opened personal fields (to recall a positive pool)."""
        rows = self._exec("SELECT r.msg_id, r.device_id, r.body_json, p.fields_json FROM results r "
                          "LEFT JOIN personal p ON p.msg_id = r.msg_id WHERE r.kind = 'pool' ORDER BY r.received_at"
                          ).fetchall()
        self._end_read()
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
        rows = self._exec("SELECT msg_id, device_id, body_json FROM results WHERE kind = 'rack' "
                          "ORDER BY received_at").fetchall()
        self._end_read()
        out = []
        for msg_id, device, body_json in rows:
            body = json.loads(body_json)
            for t in body.get("tubes", []):
                if t.get("tube") == tube:
                    out.append({"msg_id": msg_id, "device": device, "position": t.get("position"),
                                "layout": body.get("layout"), "rack": body.get("rack"), "pool": t.get("pool")})
        return out

    # -- enrollment tokens ---------------------------------------------------------------------------
    def add_token(self, token_hash: str, clinic: str, serial: str, expires_at: float, reenroll: bool = False) -> None:
        """Store a new one-time token (only its hash); ``reenroll``: it may replace a registered box (admin)."""
        self._begin()
        self._exec("""INSERT INTO enrollment_tokens (token_hash, clinic, serial, created_at, expires_at, reenroll)
                      VALUES (?, ?, ?, ?, ?, ?)""", (token_hash, clinic, serial, time.time(), expires_at, int(reenroll)))
        self._commit()

    def token(self, token_hash: str) -> dict[str, Any] | None:
        """A token's record: clinic, serial, expires_at, used_at, device_id, reenroll."""
        row = self._exec("""SELECT clinic, serial, expires_at, used_at, device_id, reenroll FROM enrollment_tokens
                            WHERE token_hash = ?""", (token_hash,)).fetchone()
        self._end_read()
        keys = ("clinic", "serial", "expires_at", "used_at", "device_id", "reenroll")
        return {**dict(zip(keys, row)), "reenroll": bool(row[5])} if row else None

    def burn_token_and_register(self, token_hash: str, serial: str, device_id: str, clinic: str,
                                cert_pem: str, now: float) -> str | None:
        """In one transaction: spend an unused, unexpired token for ``serial`` and register the device.

        A device already registered under ``device_id`` (active or revoked, in any clinic) is replaced only with
        a re-enrollment token, and then every certificate it had is revoked (:meth:`revoked_serials`). Returns
        None when done, else why nothing changed: ``token_used`` (spent or expired meanwhile, e.g. by a
        concurrent request) or ``serial_registered``.
        """
        self._begin()
        try:
            cur = self._exec("""UPDATE enrollment_tokens SET used_at = ?, device_id = ?
                                WHERE token_hash = ? AND serial = ? AND used_at IS NULL AND expires_at > ?""",
                             (now, device_id, token_hash, serial, now))
            if cur.rowcount != 1:
                self._rollback()
                return "token_used"
            reenroll = self._exec("SELECT reenroll FROM enrollment_tokens WHERE token_hash = ?",
                                  (token_hash,)).fetchone()[0]
            registered = self._exec(f"SELECT 1 FROM devices WHERE device_id = ?{self.lock_rows}",
                                    (device_id,)).fetchone()
            if registered and not reenroll:
                self._rollback()
                return "serial_registered"
            if registered:
                self._exec("UPDATE certificates SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                           (now, device_id))
            self._upsert_device(device_id, clinic, cert_pem, now)
            self._commit()
            return None
        except Exception:
            self._rollback()
            raise

    def device_certs(self) -> list[tuple[str, str]]:
        """(device id, current certificate PEM) of every registered device."""
        rows = self._exec("SELECT device_id, cert_pem FROM devices").fetchall()
        self._end_read()
        return [(r[0], r[1]) for r in rows]

    def _upsert_device(self, device_id: str, clinic: str, cert_pem: str, now: float) -> None:
        """Register or re-register a device, and remember its certificate for revocation lists."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        # A revoked device's certificates stay revoked when it is registered again (with a new certificate).
        self._exec("""UPDATE certificates SET revoked_at = ? WHERE revoked_at IS NULL AND device_id IN
                      (SELECT device_id FROM devices WHERE device_id = ? AND status = 'revoked')""", (now, device_id))
        self._exec("""INSERT INTO devices (device_id, clinic, cert_pem, status, registered_at)
                      VALUES (?, ?, ?, 'active', ?)
                      ON CONFLICT (device_id) DO UPDATE SET clinic = excluded.clinic,
                      cert_pem = excluded.cert_pem, status = 'active'""", (device_id, clinic, cert_pem, now))
        self._exec("""INSERT INTO certificates (serial, device_id, not_after, issued_at) VALUES (?, ?, ?, ?)
                      ON CONFLICT DO NOTHING""",
                   (format(cert.serial_number, "x"), device_id, cert.not_valid_after_utc.timestamp(), now))

    def revoked_serials(self, now: float | None = None) -> list[int]:
        """Serial numbers of every unexpired certificate ever issued to a revoked device, and of every certificate
        revoked on its own (replaced by a re-enrollment)."""
        rows = self._exec("""SELECT c.serial FROM certificates c JOIN devices d ON d.device_id = c.device_id
                             WHERE (d.status = 'revoked' OR c.revoked_at IS NOT NULL) AND c.not_after > ?
                             ORDER BY c.serial""",
                          (now if now is not None else time.time(),)).fetchall()
        self._end_read()
        return [int(r[0], 16) for r in rows]

    def set_device_status(self, device_id: str, status: str) -> bool:
        """Mark a device active or revoked; False when it is unknown."""
        self._begin()
        cur = self._exec("UPDATE devices SET status = ? WHERE device_id = ?", (status, device_id))
        self._commit()
        return cur.rowcount > 0

    def get_device(self, device_id: str) -> DeviceRecord | None:
        """Look up a device."""
        row = self._exec("SELECT device_id, clinic, cert_pem, status FROM devices WHERE device_id = ?",
                         (device_id,)).fetchone()
        self._end_read()
        return DeviceRecord(*row) if row else None

    def _end_read(self) -> None:
        """Close an implicit read transaction (PostgreSQL); no-op for SQLite."""

    def devices(self) -> list[dict[str, Any]]:
        """All devices with presence, last seen and sequence bookkeeping."""
        rows = self._exec(f"""SELECT d.device_id, d.clinic, d.status, d.presence, d.last_seen,
                                     {SAFE_SUM.format("b.received")}, {SAFE_SUM.format("b.max_seq - b.received")}
                              FROM devices d LEFT JOIN device_boots b ON b.device_id = d.device_id
                              GROUP BY d.device_id, d.clinic, d.status, d.presence, d.last_seen
                              ORDER BY d.device_id""").fetchall()
        self._end_read()
        keys = ("device_id", "clinic", "status", "presence", "last_seen", "results", "missing")
        return [dict(zip(keys, (*r[:5], safe_count(r[5]), safe_count(r[6])))) for r in rows]

    # -- presence ------------------------------------------------------------------------------------
    def update_presence(self, device_id: str, *, presence: str | None = None, state: dict | None = None,
                        health: dict | None = None) -> None:
        """Record a status change, birth document or health report."""
        now = time.time()
        self._begin()
        if presence is not None:
            self._exec("UPDATE devices SET presence = ?, presence_at = ? WHERE device_id = ?",
                       (presence, now, device_id))
        if state is not None:
            self._exec("UPDATE devices SET state_json = ?, last_seen = ? WHERE device_id = ?",
                       (json.dumps(state), now, device_id))
        if health is not None:
            self._exec("UPDATE devices SET health_json = ?, last_seen = ? WHERE device_id = ?",
                       (json.dumps(health), now, device_id))
        self._commit()

    # -- results -------------------------------------------------------------------------------------
    _INSERT_RESULT = """INSERT INTO results (msg_id, device_id, clinic, boot_id, seq, kind, ts_ms, body_json,
                        envelope, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""

    def store_results(self, results: list[VerifiedResult], rejections: list[Rejection] = ()) -> list[str]:
        """Store a batch in one transaction; returns stored / duplicate / seq_conflict per result.

        The whole batch goes in with one ``executemany`` when none of it was seen before (the normal
        case); otherwise each result is inserted and classified on its own. A ``seq_conflict`` result is
        kept whole in the quarantine table (and counted as a rejection), and so is a result marked
        ``quarantine`` by the ingest (outcome ``quarantined``). A stored result's opened personal fields go to
        the ``personal`` table (the sealed part is left out of ``body_json``); its audit segment is checked
        (:func:`central.audit_check.track`).
        """
        now = time.time()
        held = [r for r in results if r.quarantine]
        kept = [r for r in results if not r.quarantine]
        rows = [(str(r.message.msg_id), r.message.device, r.clinic, r.message.boot, r.message.seq, r.message.kind,
                 r.message.ts_ms, r.body_json if r.body_json is not None else body_json(r.message.body),
                 self._blob(r.envelope), now) for r in kept]
        rejections = list(rejections)
        try:
            self._begin()
            if rows and self._insert_all(rows):
                outcomes = [STORED] * len(rows)
            else:
                outcomes = [self._insert_one(row, res, now, rejections) for row, res in zip(rows, kept)]
            stored = [r for r, o in zip(kept, outcomes) if o == STORED]
            self._track_sequences([r.message for r in stored], now)
            personal = [(str(r.message.msg_id), r.message.device, json.dumps(r.personal, ensure_ascii=False), now)
                        for r in stored if r.personal]
            if personal:
                self._executemany("INSERT INTO personal (msg_id, device_id, fields_json, stored_at) VALUES (?, ?, ?, ?)",
                                  personal)
            central_audit.track(self, stored, now)
            for res in held:
                self._quarantine(res, res.quarantine or QUARANTINED, now, rejections)
            if rejections:
                self._executemany("INSERT INTO rejections (at, reason, topic, size, device_id, sha256) "
                                  "VALUES (?, ?, ?, ?, ?, ?)",
                                  [(now, j.reason, j.topic[:256], j.size, j.device_id, j.sha256) for j in rejections])
            self._commit()
        except Exception as exc:
            try:
                self._rollback()
            except Exception:  # connection already gone
                pass
            if unreachable(exc):
                raise StoreUnavailable(f"store failed: {type(exc).__name__}: {exc}") from exc
            raise  # the data was refused: the caller finds the message that did it (the batch is not committed)
        if held:
            left = iter(outcomes)
            outcomes = [QUARANTINED if r.quarantine else next(left) for r in results]
        return outcomes

    def _executemany(self, sql: str, rows: list[tuple]) -> int:
        """Run ``sql`` for every row; returns the number of rows changed."""
        raise NotImplementedError

    def _insert_all(self, rows: list[tuple]) -> bool:
        """Insert the batch in one go inside a savepoint; keep it only if every row was new."""
        self._exec("SAVEPOINT batch")
        if self._executemany(self._INSERT_RESULT, rows) == len(rows):
            self._exec("RELEASE SAVEPOINT batch")
            return True
        self._exec("ROLLBACK TO SAVEPOINT batch")
        self._exec("RELEASE SAVEPOINT batch")
        return False

    def _insert_one(self, row: tuple, res: VerifiedResult, now: float, rejections: list[Rejection]) -> str:
        if self._exec(self._INSERT_RESULT + " RETURNING seq", row).fetchone() is not None:
            return STORED
        if self._exec("SELECT 1 FROM results WHERE msg_id = ?", (row[0],)).fetchone():
            return DUPLICATE
        # Validly signed, but its (device, boot, seq) is taken by another result: keep the whole envelope
        # aside for a technician, so that the box may drop it without a loss.
        self._quarantine(res, SEQ_CONFLICT, now, rejections)
        return SEQ_CONFLICT

    def _quarantine(self, res: VerifiedResult, reason: str, now: float, rejections: list[Rejection]) -> None:
        """Keep a signed result's whole envelope aside (never in ``results``) and record why."""
        m = res.message
        self._exec("""INSERT INTO quarantine (msg_id, device_id, boot_id, seq, kind, envelope, received_at)
                      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                   (str(m.msg_id), m.device, m.boot, m.seq, m.kind, self._blob(res.envelope), now))
        rejections.append(Rejection(reason, f"evt/{m.kind}", len(res.envelope), m.device,
                                    hashlib.sha256(res.envelope).hexdigest()))

    def _track_sequences(self, stored: list[Message], now: float) -> None:
        """Update per-(device, boot) max seq and count, and record gaps; concurrency-safe across workers.

        The rows are created if missing, then read with a row lock in a fixed order (PostgreSQL
        ``FOR UPDATE``; SQLite's write transaction is already exclusive), so two workers storing results
        of the same boot cannot lose each other's counts or deadlock.
        """
        by_boot: dict[tuple[str, int], list[int]] = {}
        for m in stored:
            by_boot.setdefault((m.device, m.boot), []).append(m.seq)
        if not by_boot:
            return
        pairs = sorted(by_boot)
        self._executemany("""INSERT INTO device_boots (device_id, boot_id, max_seq, received, first_seen)
                             VALUES (?, ?, 0, 0, ?) ON CONFLICT DO NOTHING""", [(d, b, now) for d, b in pairs])
        marks = ", ".join("(?, ?)" for _ in pairs)
        current = {(r[0], r[1]): (r[2], r[3]) for r in self._exec(
            f"""SELECT device_id, boot_id, max_seq, received FROM device_boots
                WHERE (device_id, boot_id) IN (VALUES {marks}) ORDER BY device_id, boot_id{self.lock_rows}""",
            [v for pair in pairs for v in pair]).fetchall()}
        updates, gaps = [], []
        for device, boot in pairs:
            max_seq, received = current[(device, boot)]
            for seq in sorted(by_boot[(device, boot)]):
                if seq > max_seq + 1:
                    gaps.append((device, boot, max_seq + 1, seq - 1, now))
                    logger.info("device %s boot %d: gap %d..%d", device, boot, max_seq + 1, seq - 1)
                max_seq = max(max_seq, seq)
            updates.append((max_seq, received + len(by_boot[(device, boot)]), device, boot))
        self._executemany("UPDATE device_boots SET max_seq = ?, received = ? WHERE device_id = ? AND boot_id = ?",
                          updates)
        if gaps:
            self._executemany("""INSERT INTO sequence_gaps (device_id, boot_id, first_missing, last_missing,
                                 detected_at) VALUES (?, ?, ?, ?, ?)""", gaps)

    def iter_results(self, after_received: float = 0.0, limit: int | None = None,
                     device_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored results as dicts, oldest first."""
        sql = ("SELECT msg_id, device_id, clinic, boot_id, seq, kind, ts_ms, body_json, received_at FROM results "
               "WHERE received_at > ?")
        params: list[Any] = [after_received]
        if device_id:
            sql += " AND device_id = ?"
            params.append(device_id)
        sql += " ORDER BY received_at, device_id, boot_id, seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = self._exec(sql, params).fetchall()
        self._end_read()
        for r in rows:
            yield {"msg_id": r[0], "device_id": r[1], "clinic": r[2], "boot_id": r[3], "seq": r[4], "kind": r[5],
                   "ts_ms": r[6], "body": json.loads(r[7]), "received_at": r[8]}

    def counts(self) -> dict[str, Any]:
        """Totals: results, duplicates are not stored, rejections by reason, gaps."""
        total = self._exec("SELECT count(*) FROM results").fetchone()[0]
        rej = dict(self._exec("SELECT reason, count(*) FROM rejections GROUP BY reason").fetchall())
        gaps = self._exec("SELECT count(*) FROM sequence_gaps").fetchone()[0]
        held = self._exec("SELECT count(*) FROM quarantine").fetchone()[0]
        dead = self._exec("SELECT count(*) FROM dead_letters").fetchone()[0]
        self._end_read()
        out: dict[str, Any] = {"results": total, "rejections": rej, "gaps": gaps}
        if held:
            out["quarantined"] = held
        if dead:
            out["dead_letters"] = dead
        return out

    # -- dead letters --------------------------------------------------------------------------------
    def dead_letter(self, topic: str, payload: bytes, reason: str, detail: str, device_id: str | None,
                    now: float | None = None) -> str:
        """Keep a message the ingest could not process, whole (for an operator to look at and replay once the
        cause is fixed), and record it as refused; a redelivery only counts again. Returns its key."""
        now = time.time() if now is None else now
        key = dead_letter_key(topic, payload)
        self._begin()
        try:
            # a row marked by the supervisor (a message that hung a worker) gets the message itself now
            cur = self._exec("""UPDATE dead_letters SET last_at = ?, deliveries = deliveries + 1, topic = ?, payload = ?,
                                device_id = COALESCE(device_id, ?) WHERE sha256 = ?""",
                             (now, topic[:256], self._blob(payload), device_id, key))
            if cur.rowcount == 0:
                self._exec("""INSERT INTO dead_letters (sha256, topic, reason, detail, device_id, payload, first_at,
                              last_at, deliveries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)""",
                           (key, topic[:256], reason, detail[:500], device_id, self._blob(payload), now, now))
            self._exec("INSERT INTO rejections (at, reason, topic, size, device_id, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                       (now, "dead_letter", topic[:256], len(payload), device_id, hashlib.sha256(payload).hexdigest()))
            self._commit()
        except Exception as exc:
            try:
                self._rollback()
            except Exception:  # connection already gone
                pass
            raise StoreUnavailable(f"dead letter not written: {type(exc).__name__}: {exc}") from exc
        return key

    def mark_dead_letter(self, key: str, reason: str, detail: str) -> None:
        """Mark a message by its key alone (the supervisor has no copy of it): when the broker delivers it again,
        the ingest keeps it as a dead letter without reading it."""
        now = time.time()
        try:
            self._begin()
            self._exec("""INSERT INTO dead_letters (sha256, topic, reason, detail, device_id, payload, first_at, last_at,
                          deliveries) VALUES (?, '', ?, ?, NULL, ?, ?, ?, 0) ON CONFLICT DO NOTHING""",
                       (key, reason, detail[:500], self._blob(b""), now, now))
            self._commit()
        except Exception as exc:
            try:
                self._rollback()
            except Exception:  # connection already gone
                pass
            raise StoreUnavailable(f"dead letter not marked: {type(exc).__name__}: {exc}") from exc

    def dead_letter_keys(self) -> set[str]:
        """Keys of every message kept as a dead letter."""
        rows = self._exec("SELECT sha256 FROM dead_letters").fetchall()
        self._end_read()
        return {r[0] for r in rows}

    def dead_letters(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Dead letters without their payload, newest first."""
        rows = self._exec("SELECT sha256, topic, reason, detail, device_id, first_at, last_at, deliveries "
                          "FROM dead_letters ORDER BY last_at DESC").fetchmany(limit)
        self._end_read()
        keys = ("key", "topic", "reason", "detail", "device_id", "first_at", "last_at", "deliveries")
        return [dict(zip(keys, r)) for r in rows]

    # -- enrolled face templates (kept sealed to the central key) ---------------------------------------
    def put_face_template(self, id_ref: str, clinic: str, device_id: str, msg_id: str, topic: str,
                          sealed_part: dict[str, Any], consent: dict[str, Any]) -> None:
        """Keep (or replace, on re-enrolment) the sealed template enrolled for ``id_ref`` with its consent."""
        self._begin()
        try:
            self._exec("DELETE FROM face_templates WHERE id_ref = ?", (id_ref,))
            self._exec("""INSERT INTO face_templates (id_ref, clinic, device_id, msg_id, topic, sealed_json,
                          consent_json, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                       (id_ref, clinic, device_id, msg_id, topic, json.dumps(sealed_part), json.dumps(consent),
                        time.time()))
            self._commit()
        except Exception:
            self._rollback()
            raise

    def face_template(self, id_ref: str) -> dict[str, Any] | None:
        """The enrolled template row for ``id_ref`` (still sealed), revoked or not; None when there is none."""
        row = self._exec("""SELECT clinic, device_id, msg_id, topic, sealed_json, consent_json, enrolled_at, revoked_at,
                            revoked_by FROM face_templates WHERE id_ref = ?""", (id_ref,)).fetchone()
        self._end_read()
        if row is None:
            return None
        keys = ("clinic", "device_id", "msg_id", "topic", "sealed", "consent", "enrolled_at", "revoked_at",
                "revoked_by")
        out = dict(zip(keys, row))
        out["sealed"], out["consent"] = json.loads(out["sealed"]), json.loads(out["consent"])
        return out

    def face_templates(self, clinics: list[str] | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Enrolments for the dashboard (no template): newest first, optionally only in ``clinics``."""
        rows = self._exec("""SELECT id_ref, clinic, device_id, consent_json, enrolled_at, revoked_at, revoked_by
                             FROM face_templates ORDER BY enrolled_at DESC""").fetchmany(limit)
        self._end_read()
        keys = ("id_ref", "clinic", "device_id", "consent", "enrolled_at", "revoked_at", "revoked_by")
        out = [dict(zip(keys, r)) for r in rows if clinics is None or r[1] in clinics]
        for r in out:
            r["consent"] = json.loads(r["consent"])
        return out

    def revoke_face_template(self, id_ref: str, by: str) -> bool:
        """Mark a template revoked (it is no longer handed out) and drop its sealed data; False when unknown
        or already revoked."""
        self._begin()
        try:
            n = self._exec("""UPDATE face_templates SET revoked_at = ?, revoked_by = ?, sealed_json = '{}'
                              WHERE id_ref = ? AND revoked_at IS NULL""", (time.time(), by, id_ref)).rowcount
            self._commit()
        except Exception:
            self._rollback()
            raise
        return bool(n)

    def personal(self, msg_id: str) -> dict[str, Any] | None:
        """The opened personal fields of a stored result, or None."""
        row = self._exec("SELECT fields_json FROM personal WHERE msg_id = ?", (msg_id,)).fetchone()
        self._end_read()
        return json.loads(row[0]) if row else None

    def envelope(self, msg_id: str) -> tuple[str, bytes] | None:
        """Topic-free audit copy: (device id, original COSE bytes) of a stored result."""
        row = self._exec("SELECT device_id, envelope FROM results WHERE msg_id = ?", (msg_id,)).fetchone()
        self._end_read()
        return (row[0], bytes(row[1])) if row else None


class SqliteStore(SqlStore):
    """Embedded default: one SQLite file in WAL mode."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_database(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        for stmt in _schema("BLOB", "REAL", "INTEGER PRIMARY KEY AUTOINCREMENT"):
            self.conn.execute(stmt)
        for table, column, kind in _ADDED_COLUMNS:
            if column not in {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind.format(real='REAL')}")

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _executemany(self, sql: str, rows: list[tuple]) -> int:
        before = self.conn.total_changes
        self.conn.executemany(sql, rows)
        return self.conn.total_changes - before

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class PostgresStore(SqlStore):
    """PostgreSQL back end through psycopg 3."""

    param = "%s"
    lock_rows = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg

        self.url = url
        try:
            self.conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        with self.conn.transaction():
            for stmt in _schema("BYTEA", "DOUBLE PRECISION", "BIGSERIAL PRIMARY KEY"):
                self.conn.execute(stmt)
            for table, column, kind in _ADDED_COLUMNS:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} "
                                  f"{kind.format(real='DOUBLE PRECISION')}")

    def _begin(self) -> None:
        """psycopg opens a transaction implicitly on the first statement."""

    def _executemany(self, sql: str, rows: list[tuple]) -> int:
        with self.conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)  # pipelined: one round trip for the batch
            return cur.rowcount

    def _end_read(self) -> None:
        self.conn.rollback()

    def reopen(self) -> None:
        """Replace a broken connection (server restarted, network cut) with a new one."""
        import psycopg

        try:
            self.conn.close()
        except Exception:  # already broken
            pass
        try:
            self.conn = psycopg.connect(self.url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc


def open_store(url: str) -> SqlStore:
    """Open a store from ``sqlite:///path`` or ``postgresql://…``."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite://"):])
    if url.startswith("sqlite:"):
        return SqliteStore(url[len("sqlite:"):])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError("database url must start with sqlite:/// or postgresql://")
