#!/usr/bin/env python3
"""Central load benchmark: hundreds of devices publishing through the real broker to ``ehc-central serve``
on PostgreSQL, with one ingest worker and with two sharing the subscription.

Every simulated device has its own key and certificate (``add_device``) and its own TLS connection.
Device processes (``--procs``, each driving ``devices / procs`` paho clients) sign every result before the
clock starts, then publish at QoS 1 and record the wall-clock time of each publish. For each worker
count the benchmark runs two phases:

* **saturation**: every device publishes its results as fast as the broker takes them; stored results per
  second from the first publish to the last result stored (the figure of the last line), and between 10 %
  and 90 % stored (by then most devices are done publishing, so it is close to the ingest's drain rate);
  CPU seconds per 1,000 results of the ingest processes (supervisor and workers), the device processes,
  the broker and the database's backends (from ``/proc``);
* **paced**: the devices together publish at a fixed share of the saturation rate; latency from publish
  to stored (the row's ``received_at``, taken in the ingest's storing transaction), median and p99.

Last line: ``central: devices=D msgs_per_s=X p99_ms=Y workers=W`` for the configuration with the higher
whole-run rate, with the p99 of its paced phase.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import contextlib

import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from central.broker import BrokerProcess, free_port, write_config  # noqa: E402
from central.site import add_device, init_central  # noqa: E402
from central.store import open_store  # noqa: E402

BIN = Path(sys.executable).parent
RECORD = struct.Struct("16sd")  # message id, publish time (s since the epoch)


# -- device process ------------------------------------------------------------------------------------

def run_devices(spec_file: str) -> int:
    """Connect the devices of ``spec``, sign their results, publish on ``go``, record publish times."""
    from foundation.keyfiles import load_private_key
    from mqtt import envelope, topics
    from mqtt.client import connect_properties, new_client

    spec = json.loads(Path(spec_file).read_text())
    clients, messages = [], []
    acked = threading.Semaphore(0)
    connected = threading.Semaphore(0)
    for dev in spec["devices"]:
        box = Path(dev["dir"])
        key = load_private_key(box / "device.key")
        topic = topics.event(dev["clinic"], dev["id"], "scan")
        msgs = []
        for seq in range(1, spec["count"] + 1):
            m = envelope.Message(dev["id"], spec["boot"], seq, "scan", {"outcome": "green", "card_ref": f"{seq:016x}"})
            msgs.append((m.msg_id.bytes, envelope.sign(m, topic, key)))
        c = new_client(f"{dev['id']}-load", box / "ca.crt", box / "device.crt", box / "device.key", max_inflight=50)
        c.on_connect = lambda cl, u, f, rc, p: connected.release()
        c.on_publish = lambda cl, u, mid, rc, p: acked.release()
        c.connect_async(spec["host"], spec["port"], properties=connect_properties(0))
        c.loop_start()
        clients.append((c, topic))
        messages.append(msgs)
    for _ in clients:
        if not connected.acquire(timeout=60):
            print("connect timeout", file=sys.stderr, flush=True)
            return 1
    print("ready", flush=True)
    rate = float(sys.stdin.readline().strip() or 0)  # results per second for this process; 0 = flat out
    sent: list[tuple[bytes, float]] = []
    total = sum(len(m) for m in messages)
    t0 = time.monotonic()
    for i in range(spec["count"]):
        for (c, topic), msgs in zip(clients, messages):
            if rate:
                ahead = t0 + len(sent) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            mid, payload = msgs[i]
            sent.append((mid, time.time()))
            c.publish(topic, payload, qos=1)
    for _ in range(total):
        acked.acquire(timeout=120)
    with open(spec["out"], "wb") as out:
        out.write(b"".join(RECORD.pack(mid, at) for mid, at in sent))
    for c, _ in clients:
        c.disconnect()
        c.loop_stop()
    return 0


# -- measurement ---------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process (from /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_cpu(serve: subprocess.Popen) -> float:
    """CPU seconds of ``serve`` and its worker processes."""
    try:
        kids = [int(p) for p in Path(f"/proc/{serve.pid}/task/{serve.pid}/children").read_text().split()]
    except OSError:
        kids = []
    return cpu_seconds(serve.pid) + sum(cpu_seconds(k) for k in kids)


def database_cpu(dbname: str) -> float:
    """CPU seconds of the PostgreSQL backends serving ``dbname`` (their titles name the database)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f" {dbname} ".encode() in (proc / "cmdline").read_bytes().replace(b"\0", b" ") + b" ":
                total += cpu_seconds(int(proc.name))
        except OSError:
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


@dataclass
class Phase:
    """One measured phase."""

    stored: int
    seconds: float
    rate: float  # stored/s from the first publish to the last result stored
    sustained: float  # stored/s between 10 % and 90 % stored (the devices are mostly done by then)
    cpu_per_1000: float
    p50_ms: float
    p99_ms: float
    others_per_1000: dict[str, float]  # CPU s per 1,000 of the device processes, broker and database


class Bench:
    """Site, broker, database and device folders shared by every run."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work, self.args = work, args
        self.cleanups: list = []
        self.procs: list[subprocess.Popen] = []
        self.boot = 0

    def setup(self) -> None:
        db_url = self._database()
        self.site = init_central(self.work / "central", free_port(), db_url=db_url,
                                 extra={"logging": {"level": "WARNING"}})
        self.store = open_store(self.site.config.database_url)
        log = self.work / "mosquitto.log"
        cfg = self.site.config
        self.broker = BrokerProcess(write_config(cfg, log), cfg.broker.host, cfg.broker.port, log).start()
        self.cleanups.append(self.broker.kill)
        t = time.monotonic()
        self.devices = []
        for i in range(self.args.devices):
            dev, clinic = f"dev-{i:04d}", f"clinic-{i % 10}"
            add_device(self.site, self.store, dev, clinic, self.work / "boxes" / dev)
            self.devices.append({"id": dev, "clinic": clinic, "dir": str(self.work / "boxes" / dev)})
        print(f"setup: {self.args.devices} devices enrolled (key, certificate, registry) in {time.monotonic() - t:.1f}s",
              flush=True)

    def _database(self) -> str:
        import psycopg

        admin = self.args.database
        try:
            psycopg.connect(admin, connect_timeout=3).close()
        except psycopg.OperationalError:
            from tests.support.faults import PgCluster

            cluster = PgCluster()
            admin = cluster.start()
            self.cleanups.append(cluster.destroy)
        name = self.dbname = f"ehc_load_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.cleanups.append(drop)
        return f"{admin.rsplit('/', 1)[0]}/{name}"

    def stored(self) -> int:
        row = self.store.query_one("SELECT count(*) FROM results")
        self.store.end_read()
        return int(row[0])

    def run(self, workers: int, count: int, rate: float) -> tuple[Phase, list[tuple[bytes, float]]]:
        """Start ``serve`` with ``workers``, publish ``count`` results per device (``rate`` total, 0 = flat
        out), wait until all are stored; returns the phase figures and the publish records."""
        self.boot += 1
        logs = open(self.work / "services.log", "ab")  # noqa: SIM115 (the service writes it for the whole run)
        serve = subprocess.Popen([str(BIN / "ehc-central"), "--log-level", "WARNING", "serve", "--config",
                                  str(self.site.config_path), "--workers", str(workers)], stdout=logs, stderr=logs,
                                 start_new_session=True)
        self.procs.append(serve)
        procs = []
        per = [self.devices[i::self.args.procs] for i in range(self.args.procs)]
        for k, devs in enumerate(per):
            spec = self.work / f"spec-{self.boot}-{k}.json"
            spec.write_text(json.dumps({"devices": devs, "count": count, "boot": self.boot,
                                        "host": self.site.config.broker.host, "port": self.site.config.broker.port,
                                        "out": str(self.work / f"sent-{self.boot}-{k}.bin")}))
            p = subprocess.Popen([sys.executable, __file__, "--devices-proc", str(spec)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=logs)
            procs.append(p)
            self.procs.append(p)
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == b"ready", "device process failed"
        time.sleep(2.0)  # the ingest workers subscribed
        base = self.stored()
        total = count * len(self.devices)
        cpu0 = ingest_cpu(serve)
        dev0 = sum(cpu_seconds(p.pid) for p in procs)
        broker0 = cpu_seconds(self.broker.proc.pid) if self.broker.proc else 0.0
        db0 = database_cpu(self.dbname)
        t0 = time.monotonic()
        for p, devs in zip(procs, per):
            assert p.stdin is not None
            p.stdin.write(f"{rate * len(devs) / len(self.devices) if rate else 0}\n".encode())
            p.stdin.close()
        marks: dict[float, float] = {}
        deadline = t0 + self.args.timeout
        while True:
            n = self.stored() - base
            now = time.monotonic() - t0
            for q in (0.1, 0.9):
                if q not in marks and n >= q * total:
                    marks[q] = now
            if n >= total or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        cpu = ingest_cpu(serve) - cpu0
        dev = sum(cpu_seconds(p.pid) for p in procs) - dev0
        brk = (cpu_seconds(self.broker.proc.pid) if self.broker.proc else 0.0) - broker0
        dbc = database_cpu(self.dbname) - db0  # includes this benchmark's own count queries
        for p in procs:
            p.wait(120)
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        logs.close()
        sent: list[tuple[bytes, float]] = []
        for k in range(len(per)):
            data = (self.work / f"sent-{self.boot}-{k}.bin").read_bytes()
            sent.extend(RECORD.iter_unpack(data))
        received = {r[0]: r[1] for r in self.store.query(
            "SELECT msg_id, received_at FROM results WHERE boot_id = ?", (self.boot,))}
        self.store.end_read()
        lat = [(received[str(uuid.UUID(bytes=mid))] - at) * 1000 for mid, at in sent
               if str(uuid.UUID(bytes=mid)) in received]
        span = marks.get(0.9, elapsed) - marks.get(0.1, 0.0)
        n = len(received)
        return Phase(n, elapsed, n / elapsed, 0.8 * total / span if span > 0 else 0.0, cpu / max(n, 1) * 1000,
                     percentile(lat, 0.5), percentile(lat, 0.99),
                     {"devices": dev / max(n, 1) * 1000, "broker": brk / max(n, 1) * 1000,
                      "database": dbc / max(n, 1) * 1000}), sent

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        if getattr(self, "store", None) is not None:
            self.store.close()
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # keep cleaning up
                print(f"cleanup: {exc}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--procs", type=int, default=4, help="device processes")
    p.add_argument("--count", type=int, default=100, help="results per device in the saturation phase")
    p.add_argument("--paced-seconds", type=float, default=8.0, help="length of the paced phase")
    p.add_argument("--paced-share", type=float, default=0.5, help="paced rate as a share of the saturation rate")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--database", default=os.environ.get("EHC_TEST_PG_URL",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="admin URL of a PostgreSQL server (a scratch database is created and dropped); "
                        "a private cluster when it cannot be reached")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--devices-proc", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.devices_proc:
        return run_devices(args.devices_proc)

    work = Path(tempfile.mkdtemp(prefix="ehc-central-load-"))
    bench = Bench(work, args)
    try:
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}", flush=True)
        bench.setup()
        rows = []
        for w in args.workers:
            sat, _ = bench.run(w, args.count, 0.0)
            rate = args.paced_share * sat.rate
            per_device = max(1, int(rate * args.paced_seconds / args.devices))
            paced, _ = bench.run(w, per_device, rate)
            rows.append((w, sat, paced, rate))
            print(f"workers={w}: saturation {sat.stored} stored in {sat.seconds:.1f}s = {sat.rate:,.0f}/s "
                  f"(10-90 %: {sat.sustained:,.0f}/s), ingest CPU {sat.cpu_per_1000:.2f} s per 1,000; paced at {rate:,.0f}/s: "
                  f"p50 {paced.p50_ms:.0f} ms, p99 {paced.p99_ms:.0f} ms; CPU s per 1,000 elsewhere: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sat.others_per_1000.items()), flush=True)
        print()
        print("| ingest workers | devices | stored/s (whole run) | 10-90 % | ingest CPU s per 1,000 | "
              "devices / broker / database | paced rate | publish→stored p50 | p99 |")
        print("|---|---|---|---|---|---|---|---|---|")
        for w, sat, paced, rate in rows:
            other = " / ".join(f"{v:.2f}" for v in sat.others_per_1000.values())
            print(f"| {w} | {args.devices} | {sat.rate:,.0f} | {sat.sustained:,.0f} | {sat.cpu_per_1000:.2f} | {other} | "
                  f"{rate:,.0f}/s | {paced.p50_ms:.0f} ms | {paced.p99_ms:.0f} ms |")
        if len(rows) > 1:
            base = rows[0][1]
            for w, sat, _, _ in rows[1:]:
                print(f"scaling: {w} workers / {rows[0][0]} = {sat.rate / base.rate:.2f}x (whole run), "
                      f"{sat.sustained / base.sustained:.2f}x (10-90 %)")
        best = max(rows, key=lambda r: r[1].rate)
        print(f"central: devices={args.devices} msgs_per_s={best[1].rate:.0f} p99_ms={best[2].p99_ms:.0f} "
              f"workers={best[0]}")
        return 0
    finally:
        bench.close()
        if args.keep:
            print(f"working folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
