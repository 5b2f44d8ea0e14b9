#!/usr/bin/env python3
"""Uplink benchmark: signed results from simulated boxes to the central store, through broker failures.

Starts a real Mosquitto (TLS, ACL) and ``ehc-central serve``; runs D boxes, each as a producer process
(signs and commits results to its outbox, in batches) and a real ``ehc-edge uplink`` daemon. While the
results flow, the broker is SIGKILLed and restarted twice, one uplink is SIGKILLed and restarted, and an
attacker with a box's TLS identity injects forged messages. Then it waits for the outboxes to drain and
compares what the producers committed with what the store holds.

Last line: ``uplink: delivered=N/N duplicates=0 lost=0 rejected_forged=K/K throughput=X msg/s``
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from central.broker import BrokerProcess, free_port, write_config  # noqa: E402
from central.site import add_device, init_central  # noqa: E402
from central.store import open_store  # noqa: E402
from foundation import keyfiles
from mqtt import envelope, topics  # noqa: E402
from mqtt.client import connect_properties, new_client  # noqa: E402
from mqtt.uplink import queued_results  # noqa: E402

BIN = Path(sys.executable).parent


def produce(box_dir: str, count: int, batch: int, ids_file: str) -> None:
    """Producer process: commit ``count`` signed results in batches; append each committed id to a file."""
    from edge import config as edge_config
    from edge.boxfiles import load_identity, open_outbox

    cfg = edge_config.load(Path(box_dir) / "edge.toml")
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()
    print("ready", flush=True)
    sys.stdin.readline()  # the clock starts when every producer is ready
    done = 0
    with open(ids_file, "ab", buffering=0) as out:
        while done < count:
            n = min(batch, count - done)
            msgs = box.enqueue_many(("scan", {"outcome": "green", "card_ref": f"{done + i:016x}", "decode_ms": 4.2})
                                    for i in range(n))
            out.write(b"".join(m.msg_id.bytes for m in msgs))
            done += n


def verify_rate(samples: int = 3000) -> float:
    """Raw ES256 verifications per second on one core (the physical ceiling of one ingest worker)."""
    key = keyfiles.generate_key()
    topic = topics.event("c", "d", "scan")
    data = [envelope.sign(envelope.Message("d", 1, i, "scan", {"outcome": "green"}), topic, key)
            for i in range(samples)]
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    pub = key.public_key()
    parts = [envelope.parse(d) for d in data]
    ders = [encode_dss_signature(int.from_bytes(p.signature[:32], "big"), int.from_bytes(p.signature[32:], "big"))
            for p in parts]
    msgs = [envelope._sig_structure(p.protected, topic, p.payload) for p in parts]
    t = time.perf_counter()
    for der, m in zip(ders, msgs):
        pub.verify(der, m, ec.ECDSA(hashes.SHA256()))
    raw = samples / (time.perf_counter() - t)
    t = time.perf_counter()
    for d in data:
        envelope.verify(d, topic, pub)
    full = samples / (time.perf_counter() - t)
    return raw, full


def inject_forged(site, box_dir: Path, device: str, clinic: str, count: int, done: threading.Event) -> None:
    """An attacker holding a box's TLS identity publishes results signed with another key (QoS 1, until
    the broker has acknowledged every one)."""
    client = new_client(f"{device}-intruder", box_dir / "ca.crt", box_dir / "device.crt", box_dir / "device.key")
    connected, acked = threading.Event(), set()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.on_publish = lambda c, u, mid, rc, p: acked.add(mid)
    b = site.config.broker
    client.connect_async(b.host, b.port, properties=connect_properties(3600), clean_start=False)
    client.loop_start()
    connected.wait(30)
    wrong = keyfiles.generate_key()
    topic = topics.event(clinic, device, "scan")
    mids = {client.publish(topic, envelope.sign(envelope.Message(device, 1, 10**9 + i, "scan", {"outcome": "green"}),
                                                topic, wrong), qos=1).mid for i in range(count)}
    deadline = time.monotonic() + 60
    while not mids <= acked and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    done.set()


class _DropDatabase:
    """Cleanup hook (run with the brokers' kill) dropping the scratch PostgreSQL database."""

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url, self.name = admin_url, name

    def kill(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def scratch_database(admin_url: str, cleanups: list) -> str:
    """Create an empty database for this run on the server of ``admin_url``; dropped at the end."""
    import uuid

    import psycopg

    name = f"ehc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    cleanups.append(_DropDatabase(admin_url, name))
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a live process and its reaped children (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def count_results(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    p.add_argument("--batch", type=int, default=50, help="results committed per outbox transaction")
    p.add_argument("--forged", type=int, default=100)
    p.add_argument("--database", default="sqlite",
                   help="'sqlite', or a postgresql:// URL of a server where a scratch database is made and dropped")
    p.add_argument("--no-chaos", action="store_true", help="skip broker and uplink kills")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.add_argument("--produce", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.produce:
        produce(args.produce[0], int(args.produce[1]), int(args.produce[2]), args.produce[3])
        return 0

    work = Path(tempfile.mkdtemp(prefix="ehc-bench-"))
    procs: list[subprocess.Popen] = []
    brokers: list = []  # broker processes and other cleanups, each with kill()
    try:
        return run(args, work, procs, brokers)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for broker in brokers:
            broker.kill()
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"working folder kept: {work}")


def run(args: argparse.Namespace, work: Path, procs: list[subprocess.Popen], brokers: list) -> int:
    raw_rate, envelope_rate = verify_rate()
    db_url = "sqlite:central.db" if args.database == "sqlite" else scratch_database(args.database, brokers)
    site = init_central(work / "central", free_port(), db_url=db_url, workers=args.workers,
                        extra={"logging": {"level": "WARNING"}})
    store = open_store(site.config.database_url)
    log = work / "mosquitto.log"
    broker = BrokerProcess(write_config(site.config, log), site.config.broker.host, site.config.broker.port, log)
    brokers.append(broker)
    broker.start()
    logs = open(work / "services.log", "ab")  # noqa: SIM115 (the services write to it until the run ends)
    ingest = subprocess.Popen([str(BIN / "ehc-central"), "--log-level", "WARNING", "serve", "--config",
                               str(site.config_path)], stdout=logs, stderr=logs)
    procs.append(ingest)

    boxes: list[Path] = []
    per_device = [args.messages // args.devices + (1 if i < args.messages % args.devices else 0)
                  for i in range(args.devices)]
    for i in range(args.devices):
        box = work / f"box-{i:03d}"
        add_device(site, store, f"box-{i:03d}", f"clinic-{i % 2}", box,
                   {"receipt_timeout": 3.0, "max_inflight": 1000, "reconnect_min": 0.2, "reconnect_max": 2.0,
                    "health_interval": 5.0})
        boxes.append(box)
    # The forger holds the TLS identity of a registered box that runs no uplink: the broker gives a certificate one
    # session, so taking a running box's identity would only take over that box's session.
    forger = work / "box-forger"
    add_device(site, store, "box-forger", "clinic-1", forger)

    def start_uplink(box: Path) -> subprocess.Popen:
        proc = subprocess.Popen([str(BIN / "ehc-edge"), "--log-level", "WARNING", "uplink", "--config",
                                 str(box / "edge.toml")], stdout=logs, stderr=logs)
        procs.append(proc)
        return proc

    uplinks = [start_uplink(b) for b in boxes]
    producers = [subprocess.Popen([sys.executable, __file__, "--produce", str(b), str(n), str(args.batch),
                                   str(b / "ids.bin")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs)
                 for b, n in zip(boxes, per_device)]
    procs.extend(producers)
    for pr in producers:
        assert pr.stdout is not None and pr.stdout.readline().strip() == b"ready", "producer failed to start"
    time.sleep(1.0)  # uplinks and ingest connected before the clock starts
    t0 = time.monotonic()
    for pr in producers:
        assert pr.stdin is not None
        pr.stdin.write(b"go\n")
        pr.stdin.close()

    db = Path(site.config.database_url[len("sqlite://"):]) if args.database == "sqlite" else None
    stored = (lambda: count_results(db)) if db else (lambda: store.counts()["results"])
    events: list[str] = []
    forged_done = threading.Event()
    # Forged messages go in while the ingest is surely subscribed: what a broker accepts while no ingest
    # session exists is dropped by the broker, which would say nothing about the ingest's checks.
    plan = [(0.1, "forged")] + ([] if args.no_chaos else [(0.25, "broker"), (0.45, "uplink"), (0.7, "broker")])
    deadline = t0 + args.timeout
    produced_at = None
    last_n, last_change, stalls = 0, time.monotonic(), []
    while True:
        n = stored()
        now = time.monotonic()
        if n != last_n:
            if now - last_change > 0.3:
                stalls.append(f"{last_change - t0:.1f}-{now - t0:.1f}s")
            last_n, last_change = n, now
        if plan and n >= plan[0][0] * args.messages:
            _, what = plan.pop(0)
            at = time.monotonic() - t0
            if what == "broker":
                broker.kill()
                time.sleep(0.3)
                broker.start()
                events.append(f"{at:.1f}s broker SIGKILL+restart")
            elif what == "uplink":
                uplinks[0].kill()
                uplinks[0].wait()
                uplinks[0] = start_uplink(boxes[0])
                events.append(f"{at:.1f}s uplink box-000 SIGKILL+restart")
            else:
                threading.Thread(target=inject_forged, args=(site, forger, "box-forger", "clinic-1", args.forged,
                                                            forged_done), daemon=True).start()
                events.append(f"{at:.1f}s {args.forged} forged messages injected")
        if produced_at is None and all(pr.poll() is not None for pr in producers):
            produced_at = time.monotonic() - t0
        drained = n >= args.messages and all(queued_results(b / "state" / "outbox.db") == 0 for b in boxes)
        if drained and produced_at is not None:
            break
        if time.monotonic() > deadline:
            print(f"timeout after {args.timeout}s with {n}/{args.messages} stored", file=sys.stderr)
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    cpu = {"ingest": cpu_seconds(ingest.pid) + sum(cpu_seconds(int(c)) for c in
                                                    Path(f"/proc/{ingest.pid}/task/{ingest.pid}/children")
                                                    .read_text().split()),
           "uplinks": sum(cpu_seconds(u.pid) for u in uplinks),
           "broker": cpu_seconds(broker.proc.pid) if broker.proc else 0.0}

    produced: set[bytes] = set()
    for b in boxes:
        data = (b / "ids.bin").read_bytes() if (b / "ids.bin").exists() else b""
        produced.update(data[i:i + 16] for i in range(0, len(data), 16))
    import uuid
    rows = [r["msg_id"] for r in store.iter_results()]
    stored_ids = {uuid.UUID(r).bytes for r in rows}
    delivered = len(produced & stored_ids)
    duplicates = len(rows) - len(stored_ids)
    lost = len(produced) - delivered
    forged_done.wait(30)
    wait_until = time.monotonic() + 10  # the ingest records rejections in its next batch
    while store.counts()["rejections"].get("bad_signature", 0) < args.forged and time.monotonic() < wait_until:
        time.sleep(0.1)
    rejected = store.counts()["rejections"]
    forged_rejected = rejected.get("bad_signature", 0)
    throughput = delivered / elapsed if elapsed else 0.0

    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"setup: {args.devices} boxes, {args.workers} ingest workers, outbox batch {args.batch}, "
          f"store {'SQLite' if db else 'PostgreSQL'}")
    for e in events:
        print(f"event: {e}")
    print(f"stalls (no result stored for >0.3 s): {', '.join(stalls) or 'none'}")
    print(f"produced: {len(produced)} results committed to outboxes in {produced_at or elapsed:.2f}s")
    print(f"ceiling: raw ES256 verify {raw_rate:,.0f}/s per core; full envelope verify {envelope_rate:,.0f}/s per core")
    print(f"end to end: {delivered} stored in {elapsed:.2f}s = {throughput:,.0f} msg/s "
          f"({throughput / raw_rate:.2f} x one core's raw verify rate)")
    print(f"rejections: {dict(rejected)}")
    print("cpu per stored result: " + ", ".join(f"{k} {v / max(delivered, 1) * 1e6:.0f} us" for k, v in cpu.items()))
    print(f"uplink: delivered={delivered}/{args.messages} duplicates={duplicates} lost={lost} "
          f"rejected_forged={forged_rejected}/{args.forged} throughput={throughput:.0f} msg/s")
    ok = delivered == args.messages and lost == 0 and duplicates == 0 and forged_rejected == args.forged
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
