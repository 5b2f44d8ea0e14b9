"""Verified results, stored exactly once: keyed by message id and unique per (device, boot, seq); sequence
bookkeeping and gaps, the quarantine of results kept aside, and the rejections counted with a batch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from central.store.base import SqlBase, StoreUnavailable, unreachable
from mqtt.auditchain import Segment
from mqtt.envelope import Message

logger = logging.getLogger(__name__)

STORED, DUPLICATE, SEQ_CONFLICT, QUARANTINED = "stored", "duplicate", "seq_conflict", "quarantined"


def body_json(body: dict[str, Any]) -> str:
    """A result body as ``results.body_json`` keeps it: compact JSON without the sealed personal part."""
    return json.dumps({k: v for k, v in body.items() if k != "personal"}, ensure_ascii=False, separators=(",", ":"))


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


# A check run on the newly stored results of a batch, inside the transaction that stores them:
# ``check(store, stored, now)`` (e.g. :func:`central.audit_check.track`).
ResultCheck = Callable[[Any, list[VerifiedResult], float], None]


class ResultsMixin(SqlBase):
    """Tables ``results``, ``device_boots``, ``sequence_gaps``, ``quarantine`` and ``rejections`` (and the
    ``personal`` fields of a stored result)."""

    _INSERT_RESULT = """INSERT INTO results (msg_id, device_id, clinic, boot_id, seq, kind, ts_ms, body_json,
                        envelope, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""

    def store_results(self, results: list[VerifiedResult], rejections: list[Rejection] = (),
                      checks: Sequence[ResultCheck] = ()) -> list[str]:
        """Store a batch in one transaction; returns stored / duplicate / seq_conflict per result.

        The whole batch goes in with one ``executemany`` when none of it was seen before (the normal
        case); otherwise each result is inserted and classified on its own. A ``seq_conflict`` result is
        kept whole in the quarantine table (and counted as a rejection), and so is a result marked
        ``quarantine`` by the ingest (outcome ``quarantined``). A stored result's opened personal fields go to
        the ``personal`` table (the sealed part is left out of ``body_json``). Each of ``checks`` is called as
        ``check(store, stored, now)`` with the newly stored results, in the same transaction (the ingest passes
        :func:`central.audit_check.track`, which checks their audit segments).
        """
        now = time.time()
        held = [r for r in results if r.quarantine]
        kept = [r for r in results if not r.quarantine]
        rows = [(str(r.message.msg_id), r.message.device, r.clinic, r.message.boot, r.message.seq, r.message.kind,
                 r.message.ts_ms, r.body_json if r.body_json is not None else body_json(r.message.body),
                 self.blob(r.envelope), now) for r in kept]
        rejections = list(rejections)
        try:
            self.begin()
            if rows and self._insert_all(rows):
                outcomes = [STORED] * len(rows)
            else:
                outcomes = [self._insert_one(row, res, now, rejections) for row, res in zip(rows, kept)]
            stored = [r for r, o in zip(kept, outcomes) if o == STORED]
            self._track_sequences([r.message for r in stored], now)
            personal = [(str(r.message.msg_id), r.message.device, json.dumps(r.personal, ensure_ascii=False), now)
                        for r in stored if r.personal]
            if personal:
                self.executemany("INSERT INTO personal (msg_id, device_id, fields_json, stored_at) VALUES (?, ?, ?, ?)",
                                 personal)
            for check in checks:
                check(self, stored, now)
            for res in held:
                self._quarantine(res, res.quarantine or QUARANTINED, now, rejections)
            if rejections:
                self.executemany("INSERT INTO rejections (at, reason, topic, size, device_id, sha256) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 [(now, j.reason, j.topic[:256], j.size, j.device_id, j.sha256) for j in rejections])
            self.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):  # the connection may be gone already
                self.rollback()
            if unreachable(exc):
                raise StoreUnavailable(f"store failed: {type(exc).__name__}: {exc}") from exc
            raise  # the data was refused: the caller finds the message that did it (the batch is not committed)
        if held:
            left = iter(outcomes)
            outcomes = [QUARANTINED if r.quarantine else next(left) for r in results]
        return outcomes

    def _insert_all(self, rows: list[tuple]) -> bool:
        """Insert the batch in one go inside a savepoint; keep it only if every row was new."""
        self.execute("SAVEPOINT batch")
        if self.executemany(self._INSERT_RESULT, rows) == len(rows):
            self.execute("RELEASE SAVEPOINT batch")
            return True
        self.execute("ROLLBACK TO SAVEPOINT batch")
        self.execute("RELEASE SAVEPOINT batch")
        return False

    def _insert_one(self, row: tuple, res: VerifiedResult, now: float, rejections: list[Rejection]) -> str:
        if self.query_one(self._INSERT_RESULT + " RETURNING seq", row) is not None:
            return STORED
        if self.query_one("SELECT 1 FROM results WHERE msg_id = ?", (row[0],)):
            return DUPLICATE
        # Validly signed, but its (device, boot, seq) is taken by another result: keep the whole envelope
        # aside for a technician, so that the box may drop it without a loss.
        self._quarantine(res, SEQ_CONFLICT, now, rejections)
        return SEQ_CONFLICT

    def _quarantine(self, res: VerifiedResult, reason: str, now: float, rejections: list[Rejection]) -> None:
        """Keep a signed result's whole envelope aside (never in ``results``) and record why."""
        m = res.message
        self.execute("""INSERT INTO quarantine (msg_id, device_id, boot_id, seq, kind, envelope, received_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                     (str(m.msg_id), m.device, m.boot, m.seq, m.kind, self.blob(res.envelope), now))
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
        self.executemany("""INSERT INTO device_boots (device_id, boot_id, max_seq, received, first_seen)
                            VALUES (?, ?, 0, 0, ?) ON CONFLICT DO NOTHING""", [(d, b, now) for d, b in pairs])
        marks = ", ".join("(?, ?)" for _ in pairs)
        current = {(r[0], r[1]): (r[2], r[3]) for r in self.query(
            f"""SELECT device_id, boot_id, max_seq, received FROM device_boots
                WHERE (device_id, boot_id) IN (VALUES {marks}) ORDER BY device_id, boot_id{self.lock_rows}""",
            [v for pair in pairs for v in pair])}
        updates, gaps = [], []
        for device, boot in pairs:
            max_seq, received = current[(device, boot)]
            for seq in sorted(by_boot[(device, boot)]):
                if seq > max_seq + 1:
                    gaps.append((device, boot, max_seq + 1, seq - 1, now))
                    logger.info("device %s boot %d: gap %d..%d", device, boot, max_seq + 1, seq - 1)
                max_seq = max(max_seq, seq)
            updates.append((max_seq, received + len(by_boot[(device, boot)]), device, boot))
        self.executemany("UPDATE device_boots SET max_seq = ?, received = ? WHERE device_id = ? AND boot_id = ?",
                         updates)
        if gaps:
            self.executemany("""INSERT INTO sequence_gaps (device_id, boot_id, first_missing, last_missing,
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
        rows = self.query(sql, params)
        self.end_read()
        for r in rows:
            yield {"msg_id": r[0], "device_id": r[1], "clinic": r[2], "boot_id": r[3], "seq": r[4], "kind": r[5],
                   "ts_ms": r[6], "body": json.loads(r[7]), "received_at": r[8]}

    def counts(self) -> dict[str, Any]:
        """Totals: results, duplicates are not stored, rejections by reason, gaps."""
        total = self.query_one("SELECT count(*) FROM results")[0]
        rej = dict(self.query("SELECT reason, count(*) FROM rejections GROUP BY reason"))
        gaps = self.query_one("SELECT count(*) FROM sequence_gaps")[0]
        held = self.query_one("SELECT count(*) FROM quarantine")[0]
        dead = self.query_one("SELECT count(*) FROM dead_letters")[0]
        self.end_read()
        out: dict[str, Any] = {"results": total, "rejections": rej, "gaps": gaps}
        if held:
            out["quarantined"] = held
        if dead:
            out["dead_letters"] = dead
        return out

    def envelope(self, msg_id: str) -> tuple[str, bytes] | None:
        """Topic-free audit copy: (device id, original COSE bytes) of a stored result."""
        row = self.query_one("SELECT device_id, envelope FROM results WHERE msg_id = ?", (msg_id,))
        self.end_read()
        return (row[0], bytes(row[1])) if row else None
