#!/usr/bin/env python3
"""Cost of sealing personal fields and of the audit chain, next to what every result already pays.

One thread, on this machine:

* ``sign`` / ``verify``: a check-in result through ``envelope.sign`` / ``envelope.verify`` (ES256), the
  baseline every result pays;
* ``seal`` / ``open``: three personal fields through ``sealed.seal`` / ``sealed.open_sealed`` (HPKE base
  mode: X25519 key generation and agreement, HKDF-SHA256, AES-256-GCM);
* ``audit_check``: the central recomputation of a result's audit link (``auditchain.check``);
* ``enqueue``: whole outbox commits (``synchronous=FULL``: one fsync each, audit link included) with and
  without personal fields, on a temporary file; ``enqueue_batch``: results per second when 100 share one
  commit (``enqueue_many``), where the per-result CPU cost shows.

Prints per case the median rate over ``--repeats`` timed runs and µs per operation, the bytes a sealed part
and an audit link add to a message, and as its last line
``privacy: sign=… verify=… seal=… open=… audit_check=… enqueue=… enqueue_personal=… enqueue_batch=…
enqueue_batch_personal=…`` (per second).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from foundation.keyfiles import generate_key  # noqa: E402
from mqtt import auditchain, envelope, sealed, topics  # noqa: E402
from mqtt.outbox import DeviceIdentity, Outbox  # noqa: E402

BODY = {"flow": "checkin", "outcome": "green", "reason": None, "kind": "id_card", "document": "resident",
        "id_ref": "3f2a" * 8, "verified": True, "pending": None, "queue_no": 17}
PERSON = {"name": "王芳", "id_number": "11010519491231002X", "birth_date": "1949-12-31"}
TOPIC = topics.event("clinic-a", "box-0001", "scan")


def rate(op: Callable[[], object], n: int, repeats: int) -> float:
    """Median operations per second over ``repeats`` runs of ``n`` calls."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            op()
        runs.append(n / (time.perf_counter() - start))
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000, help="operations per timed run (in-memory cases)")
    ap.add_argument("--commits", type=int, default=200, help="outbox commits per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    key, central = generate_key(), sealed.generate_key()
    ident = DeviceIdentity("box-0001", "clinic-a", key)
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", ident, seal_key=central.public_key())
        box.start_boot()
        box.enqueue("scan", BODY)  # carries the boot entry; the next ones show the steady state
        plain_msg = box.enqueue("scan", BODY)
        personal_msg = box.enqueue("scan", BODY, personal=PERSON)
        plain = envelope.sign(plain_msg, TOPIC, key)
        part = personal_msg.body["personal"]
        bare = envelope.sign(envelope.Message("box-0001", plain_msg.boot, 1, "scan", BODY, plain_msg.msg_id,
                                              plain_msg.ts_ms), TOPIC, key)
        with_part = envelope.sign(personal_msg, TOPIC, key)
        mid = personal_msg.msg_id.bytes
        m = plain_msg
        cases: dict[str, Callable[[], object]] = {
            "sign": lambda: envelope.sign(plain_msg, TOPIC, key),
            "verify": lambda: envelope.verify(plain, TOPIC, key.public_key()),
            "seal": lambda: sealed.seal(PERSON, central.public_key(), TOPIC, mid),
            "open": lambda: sealed.open_sealed(part, central, TOPIC, mid),
            "audit_check": lambda: auditchain.check(m.audit, m.msg_id.bytes, m.kind, m.boot, m.seq, m.ts_ms, m.body),
        }
        found = {name: rate(op, args.n, args.repeats) for name, op in cases.items()}
        found["enqueue"] = rate(lambda: box.enqueue("scan", BODY), args.commits, args.repeats)
        found["enqueue_personal"] = rate(lambda: box.enqueue("scan", BODY, personal=PERSON), args.commits,
                                         args.repeats)
        batch, batch_personal = [("scan", BODY)] * 100, [("scan", BODY, PERSON)] * 100
        found["enqueue_batch"] = 100 * rate(lambda: box.enqueue_many(batch), max(1, args.commits // 20), args.repeats)
        found["enqueue_batch_personal"] = 100 * rate(lambda: box.enqueue_many(batch_personal),
                                                     max(1, args.commits // 20), args.repeats)
        chain_ok = box.audit_verify().ok
        box.close()

    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    for name, value in found.items():
        print(f"{name:>22}: {value:10.0f}/s  {1e6 / value:8.1f} µs")
    print(f"bytes: result without link {len(bare)}, audit link +{len(plain) - len(bare)}, "
          f"sealed part of 3 fields +{len(with_part) - len(plain)}; chain verifies: {chain_ok}")
    print("privacy: " + " ".join(f"{k}={v:.0f}/s" for k, v in found.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
