"""Counts for the throughput page: scans per hour per clinic and outcome, and why checks failed.

Only the ``outcome`` and ``reason`` of each ``scan`` result are read (never who was scanned), and the
ingest's rejections table gives the messages refused before they were stored.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from central.dashboard.accounts import Accounts

OUTCOMES = ("green", "yellow", "red")
HOUR = 3600


@dataclass
class Throughput:
    """Hourly scan counts over a window, and failure reasons."""

    start: float  # beginning of the first hour bucket
    hours: int
    by_clinic: dict[str, list[Counter[str]]] = field(default_factory=dict)  # clinic → one Counter per hour
    reasons: Counter[str] = field(default_factory=Counter)  # non-green scan outcomes by reason
    reason_outcome: dict[str, str] = field(default_factory=dict)  # the worse outcome each reason led to
    rejections: Counter[str] = field(default_factory=Counter)  # messages the ingest refused, by reason

    def totals(self, clinic: str) -> Counter[str]:
        """Outcome counts of ``clinic`` over the whole window."""
        out: Counter[str] = Counter()
        for hour in self.by_clinic.get(clinic, []):
            out.update(hour)
        return out


def throughput(accounts: Accounts, clinics: list[str] | None, hours: int = 24,
               now: float | None = None) -> Throughput:
    """Scans of the last ``hours`` hours (by the box's scan time) for ``clinics`` (None: all)."""
    now = time.time() if now is None else now
    start = (int(now) // HOUR - hours + 1) * HOUR
    t = Throughput(start=float(start), hours=hours)
    if clinics is not None and not clinics:
        return t
    scope, params = "", [int(start * 1000)]
    if clinics is not None:
        scope = f" AND clinic IN ({', '.join('?' for _ in clinics)})"
        params += clinics
    with accounts.db() as s:
        rows = s.execute("SELECT clinic, ts_ms, body_json FROM results WHERE kind = 'scan' AND ts_ms >= ?" + scope,
                         params).fetchall()
        rej_sql = "SELECT reason, count(*) FROM rejections WHERE at >= ?"
        rej_params: list = [start]
        if clinics is not None:  # a clinic sees refusals of its own devices only
            rej_sql += (f" AND device_id IN (SELECT device_id FROM devices WHERE clinic IN "
                        f"({', '.join('?' for _ in clinics)}))")
            rej_params += clinics
        rejections = s.execute(rej_sql + " GROUP BY reason", rej_params).fetchall()
        s.end_read()
    for clinic in sorted(set(clinics or []) | {r[0] for r in rows}):
        t.by_clinic[clinic] = [Counter() for _ in range(hours)]
    for clinic, ts_ms, body_json in rows:
        index = int((ts_ms / 1000 - start) // HOUR)
        if not 0 <= index < hours:
            continue
        try:
            body = json.loads(body_json)
        except ValueError:
            continue
        outcome = body.get("outcome") if isinstance(body, dict) else None
        if outcome not in OUTCOMES:
            continue
        t.by_clinic[clinic][index][outcome] += 1
        if outcome != "green":
            reason = body.get("reason")
            key = str(reason) if reason else f"{outcome} (no reason)"
            t.reasons[key] += 1
            if t.reason_outcome.get(key) != "red":
                t.reason_outcome[key] = outcome
    t.rejections.update({reason: int(n) for reason, n in rejections})
    return t
