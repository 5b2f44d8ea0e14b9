"""A simulated fleet in a central store: boxes in several clinics, their presence, birth and health
documents, alerts, gaps and a day of scan results with outcomes (for the dashboard's tests and screenshots).

Scan bodies carry what a real check-in result carries — a card reference, an ID pseudonym — so that a
test can check none of it reaches a page.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from central.site import Site, add_device
from central.store import SqlStore, VerifiedResult
from mqtt.envelope import Message

REASONS_YELLOW = ("pending_online_lookup", "trust_list_stale", "lookup_unavailable")
REASONS_RED = ("card_revoked", "bad_signature", "expired", "unknown_issuer", "status_red")


@dataclass(frozen=True)
class BoxPlan:
    """One simulated box: where it is, whether it is online, what it reports."""

    device_id: str
    clinic: str
    online: bool = True
    alerts: tuple[str, ...] = ()
    queue_depth: int = 0
    oldest_s: float | None = None
    printer: str | None = None  # None | "paper_out" | "paper_low"
    gaps: int = 0
    restarts: int = 0
    scans_per_hour: int = 20


DEFAULT_PLAN = (
    BoxPlan("box-a01", "clinic-north", scans_per_hour=34),
    BoxPlan("box-a02", "clinic-north", printer="paper_out", scans_per_hour=22),
    BoxPlan("box-a03", "clinic-north", online=False, queue_depth=17, oldest_s=5400, scans_per_hour=8),
    BoxPlan("box-b01", "clinic-east", scans_per_hour=28),
    BoxPlan("box-b02", "clinic-east", alerts=("camera_error",), gaps=2, scans_per_hour=12),
    BoxPlan("box-c01", "clinic-south", restarts=3, alerts=("trust_list_stale",), scans_per_hour=18),
    BoxPlan("box-c02", "clinic-south", queue_depth=3, oldest_s=42, scans_per_hour=25),
)

SECRET_MARKERS = ("CARDTOKEN-", "idref-", "王小明")  # what a scan body holds that no page may show


def health(plan: BoxPlan, trust_version: int = 7) -> dict:
    """A health report as the uplink sends it."""
    return {"alerts": list(plan.alerts), "queue_depth": plan.queue_depth, "queue_bytes": plan.queue_depth * 900,
            "queue_fill": round(plan.queue_depth / 10000, 4), "oldest_queued_s": plan.oldest_s, "inflight": 0,
            "cpu_temp_c": 51.2, "disk_free_bytes": 9_800_000_000, "uptime_s": 86000, "connected": plan.online,
            "trust_list": {"version": trust_version, "age_s": 90000 if "trust_list_stale" in plan.alerts else 3600},
            "station": {"flow": "checkin", "camera": "error" if "camera_error" in plan.alerts else "ok",
                        "scans": 400}}


def birth(boot: int) -> dict:
    """A birth document as the uplink sends it."""
    return {"software": "0.1.0", "boot": boot, "capabilities": ["scan", "print"], "config_revision": 3,
            "models": {"sface": "2021dec-int8", "blazeface": "short-0.6"}, "pid": 812}


def populate(site: Site, store: SqlStore, boxes_dir: Path, plan: tuple[BoxPlan, ...] = DEFAULT_PLAN,
             hours: int = 24, seed: int = 3, now: float | None = None) -> list[BoxPlan]:
    """Register the boxes of ``plan`` and fill the store as the ingest would have; returns the plan."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    for p in plan:
        add_device(site, store, p.device_id, p.clinic, boxes_dir / p.device_id)
        boots = 1 + p.restarts
        results: list[VerifiedResult] = []
        seq = 0
        for h in range(hours):
            hour_start = (int(now) // 3600 - hours + 1 + h) * 3600  # the dashboard's hour buckets
            busy = 0.4 + 0.6 * max(0.0, 1 - abs(((hour_start / 3600) % 24) - 13) / 9)
            for _ in range(rng.randint(0, int(p.scans_per_hour * busy * 1.3))):
                seq += 1
                outcome = rng.choices(("green", "yellow", "red"), (86, 9, 5))[0]
                reason = None if outcome == "green" else rng.choice(REASONS_YELLOW if outcome == "yellow"
                                                                   else REASONS_RED)
                body = {"flow": "checkin", "outcome": outcome, "reason": reason, "kind": "ehc",
                        "card_ref": f"CARDTOKEN-{seq:06d}", "id_ref": f"idref-{rng.getrandbits(40):010x}",
                        "holder": "王小明", "queue_no": seq}
                ts = hour_start + rng.uniform(0, min(3599, now - hour_start))
                results.append(VerifiedResult(p.clinic, Message(p.device_id, boots, seq, "scan", body,
                                                                msg_id=uuid.uuid4(), ts_ms=int(ts * 1000)), b"x"))
        if p.printer:
            seq += 1
            results.append(VerifiedResult(p.clinic, Message(p.device_id, boots, seq, "alert",
                                                            {"part": "printer", "state": "error" if p.printer ==
                                                             "paper_out" else "warning", "error": p.printer},
                                                            msg_id=uuid.uuid4()), b"x"))
        for boot in range(1, boots):  # earlier boots of a box that restarted
            results.append(VerifiedResult(p.clinic, Message(p.device_id, boot, 1, "scan",
                                                            {"outcome": "green", "reason": None},
                                                            msg_id=uuid.uuid4(),
                                                            ts_ms=int((now - 3600 * boot) * 1000)), b"x"))
        store.store_results(results)
        for g in range(p.gaps):  # as the ingest records a gap it sees
            store.begin()
            store.execute("INSERT INTO sequence_gaps (device_id, boot_id, first_missing, last_missing, detected_at) "
                          "VALUES (?, ?, ?, ?, ?)", (p.device_id, boots, 100 + g * 10, 102 + g * 10, now - 600))
            store.commit()
        store.update_presence(p.device_id, presence="online" if p.online else "offline", state=birth(boots),
                              health=health(p))
        if not p.online:  # it was last heard from a while ago
            store.begin()
            store.execute("UPDATE devices SET last_seen = ? WHERE device_id = ?", (now - 5400, p.device_id))
            store.commit()
    store.begin()
    store.executemany("INSERT INTO rejections (at, reason, topic, size, device_id, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                      [(now - 600, r, "ehc/v1/x/y/evt/scan", 300, d, "0" * 64) for r, d in
                        (("bad_signature", "box-b02"), ("unknown_device", None), ("revoked_device", "box-a03"),
                         ("bad_signature", "box-b02"), ("wrong_clinic", "box-c01"))])
    store.commit()
    return list(plan)


def scan_bodies(store: SqlStore) -> list[dict]:
    """Every stored scan body (to check a page against)."""
    return [json.loads(r[0]) for r in store.execute("SELECT body_json FROM results WHERE kind = 'scan'").fetchall()]
