"""Central check of the boxes' audit chains: continuity, forks and gaps, tolerant of re-ordering.

Every stored result proves a segment of its box's chain (:func:`mqtt.auditchain.check`, done by the ingest):
the hashes of every entry after ``base`` up to its own. Per (device, chain) the store keeps each known
position's hash and whether it was *proven* (recomputed from a message) or only *claimed* (named as the
``base`` of a later segment), plus the highest proven position (``audit_heads``). Per segment, in the
transaction that stores the result (:func:`track`, which the ingest passes to the store's ``store_results``)::

    position already known with another hash      -> alert "fork" (the first hash is kept)
    base above the highest proven position         -> alert "gap" for the positions in between (open)
    an open gap whose positions are all proven     -> the gap is resolved (late or resent results)
    a new chain id for a device that had one       -> alert "chain_reset" (outbox database replaced)
    the audit map does not recompute               -> alert "bad_chain" (the result is still stored)
    a result without audit map, chain known        -> alert "unlinked"

Results may arrive in any order (resends, several workers): a gap is opened on the first sign of it and
closed when the missing results arrive, so an open gap that outlives the boxes' resend interval means
the entries are not coming (deleted from the box). See ``docs/delivery.md``, "Audit chain".

The tables are the store's (:func:`central.store.schema.audit_tables`); this module reads and writes them through
the store's public SQL API only (``execute``, ``executemany``, ``query``, ``transaction``, ``end_read``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from central.store import SqlStore, VerifiedResult

logger = logging.getLogger(__name__)

FORK, GAP, CHAIN_RESET, BAD_CHAIN, UNLINKED = "fork", "gap", "chain_reset", "bad_chain", "unlinked"


def _alert(store: SqlStore, device: str, chain: str | None, kind: str, first: int | None, last: int | None,
           detail: str, msg_id: str, now: float) -> None:
    store.execute("""INSERT INTO audit_alerts (device_id, chain, kind, first_pos, last_pos, detail, msg_id,
                     detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""", (device, chain, kind, first, last, detail[:200],
                                                                       msg_id, now))
    # A gap is routine while results arrive out of order (resends, several workers) and usually closes within
    # seconds; what matters is a gap still open later (``ehc-central audit --open``). Everything else is news.
    level = logging.INFO if kind == GAP else logging.WARNING
    logger.log(level, "device %s: audit %s at %s..%s (%s)", device, kind, first, last, detail[:200],
               extra={"EHC_REASON": "audit_" + kind, "EHC_DEVICE": device})


def track(store: SqlStore, stored: list[VerifiedResult], now: float) -> None:
    """Apply the audit segments of newly stored results; runs inside the store's transaction."""
    groups: dict[tuple[str, str], list[VerifiedResult]] = {}
    for res in stored:
        m = res.message
        if res.audit is not None:
            groups.setdefault((m.device, res.audit.chain), []).append(res)
        elif res.audit_problem is not None:
            _alert(store, m.device, None, BAD_CHAIN, None, None, res.audit_problem, str(m.msg_id), now)
        elif store.query_one("SELECT 1 FROM audit_heads WHERE device_id = ? LIMIT 1", (m.device,)):
            _alert(store, m.device, None, UNLINKED, None, None, "result without an audit link", str(m.msg_id), now)
    for (device, chain), items in sorted(groups.items()):  # a fixed lock order across workers
        _apply(store, device, chain, sorted(items, key=lambda r: r.audit.pos), now)  # type: ignore[union-attr]


def _apply(store: SqlStore, device: str, chain: str, items: list[VerifiedResult], now: float) -> None:
    """One device's segments of one chain, lowest position first, against the stored positions."""
    store.execute("""INSERT INTO audit_heads (device_id, chain, pos, head, first_seen, updated_at)
                     VALUES (?, ?, 0, NULL, ?, ?) ON CONFLICT DO NOTHING""", (device, chain, now, now))
    top, head = store.query_one(f"SELECT pos, head FROM audit_heads WHERE device_id = ? AND chain = ?{store.lock_rows}",
                                (device, chain))
    first_msg = str(items[0].message.msg_id)
    if top == 0 and not store.query_one("SELECT 1 FROM audit_chain WHERE device_id = ? AND chain = ? LIMIT 1",
                                        (device, chain)):
        before = store.query_one("SELECT chain, pos FROM audit_heads WHERE device_id = ? AND chain <> ? AND pos > 0 "
                                 "ORDER BY updated_at DESC LIMIT 1", (device, chain))
        if before is not None:
            _alert(store, device, chain, CHAIN_RESET, None, None,
                   f"new chain after chain {before[0][:8]} reached {before[1]}", first_msg, now)
    segs = [(r.audit, str(r.message.msg_id)) for r in items]
    low = min(s.base_pos for s, _ in segs)
    known: dict[int, list[Any]] = {r[0]: [r[1], r[2], None] for r in store.query(
        "SELECT pos, hash, proven FROM audit_chain WHERE device_id = ? AND chain = ? AND pos BETWEEN ? AND ?",
        (device, chain, low, segs[-1][0].pos))}  # [hash, proven, msg_id of a new proof]
    fresh: set[int] = set()
    late = False
    for seg, msg_id in segs:
        assert seg is not None
        claims = ([(seg.base_pos, seg.base_hash, 0)] if seg.base_pos > 0 else []) + [(p, h, 1) for p, h in seg.hashes]
        for pos, digest, proven in claims:
            have = known.get(pos)
            if have is None:
                known[pos] = [digest, proven, msg_id if proven else None]
                fresh.add(pos)
            elif have[0] != digest:
                _alert(store, device, chain, FORK, pos, pos, f"kept {have[0][:16]}, this message says {digest[:16]}",
                       msg_id, now)
            elif proven and not have[1]:
                have[1], have[2] = 1, msg_id
        if seg.base_pos > top:
            _alert(store, device, chain, GAP, top + 1, seg.base_pos, "entries not received (yet)", msg_id, now)
        if seg.pos > top:
            top, head = seg.pos, seg.head
        else:
            late = True
    inserts = [(device, chain, p, known[p][0], known[p][1], known[p][2], now) for p in sorted(fresh)]
    proofs = [(v[2], device, chain, p) for p, v in known.items() if p not in fresh and v[2] is not None]
    if inserts:
        store.executemany("""INSERT INTO audit_chain (device_id, chain, pos, hash, proven, msg_id, seen_at)
                             VALUES (?, ?, ?, ?, ?, ?, ?)""", inserts)
    if proofs:
        store.executemany("UPDATE audit_chain SET proven = 1, msg_id = ? WHERE device_id = ? AND chain = ? AND pos = ?",
                          proofs)
    store.execute("UPDATE audit_heads SET pos = ?, head = ?, updated_at = ? WHERE device_id = ? AND chain = ?",
                  (top, head, now, device, chain))
    if late:
        _resolve_gaps(store, device, chain, low + 1, segs[-1][0].pos, now)


def _resolve_gaps(store: SqlStore, device: str, chain: str, first: int, last: int, now: float) -> None:
    """Close the open gaps overlapping [first, last] whose positions are now all proven."""
    for alert_id, a, b in store.query(
            """SELECT id, first_pos, last_pos FROM audit_alerts WHERE device_id = ? AND chain = ? AND kind = 'gap'
               AND resolved_at IS NULL AND first_pos <= ? AND last_pos >= ?""", (device, chain, last, first)):
        have = store.query_one("SELECT count(*) FROM audit_chain WHERE device_id = ? AND chain = ? AND proven = 1 "
                               "AND pos BETWEEN ? AND ?", (device, chain, a, b))[0]
        if have == b - a + 1:
            store.execute("UPDATE audit_alerts SET resolved_at = ? WHERE id = ?", (now, alert_id))
            logger.info("device %s: audit gap %d..%d closed", device, a, b)


def acknowledge(store: SqlStore, alert_ids: list[int], now: float) -> int:
    """Mark alerts as dealt with (a technician checked the box); returns how many were open."""
    with store.transaction():
        done = sum(store.execute("UPDATE audit_alerts SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
                                 (now, i)).rowcount for i in alert_ids)
    return done


def report(store: SqlStore, device: str | None = None, open_only: bool = False) -> dict[str, Any]:
    """Heads and alerts, for ``ehc-central audit``: ``{"heads": [...], "alerts": [...]}``."""
    where, params = ("WHERE device_id = ?", [device]) if device else ("", [])
    heads = store.query(f"SELECT device_id, chain, pos, head, updated_at FROM audit_heads {where} "
                        "ORDER BY device_id, updated_at", params)
    cond = [c for c in (where[6:] if where else "", "resolved_at IS NULL" if open_only else "") if c]
    alerts = store.query("SELECT id, device_id, chain, kind, first_pos, last_pos, detail, msg_id, detected_at, "
                         "resolved_at "
                         f"FROM audit_alerts {'WHERE ' + ' AND '.join(cond) if cond else ''} ORDER BY id",
                         params)
    store.end_read()
    hk = ("device_id", "chain", "pos", "head", "updated_at")
    ak = ("id", "device_id", "chain", "kind", "first_pos", "last_pos", "detail", "msg_id", "detected_at", "resolved_at")
    return {"heads": [dict(zip(hk, r)) for r in heads], "alerts": [dict(zip(ak, r)) for r in alerts]}
