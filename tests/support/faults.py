"""Fault scenarios against the real daemons: shared by ``tests/e2e/test_faults.py`` (small) and ``bench/chaos.py``.

A :class:`Rig` lays out a site and runs the real pieces: Mosquitto (:class:`BrokerProcess`),
``ehc-central serve``, and per box a producer process (the station's side: signs and commits results to
the outbox) and the real ``ehc-edge uplink``. Optionally a :class:`NetProxy` sits between the boxes and
the broker, the central store is a private PostgreSQL cluster the scenario can stop, and the boxes'
state folders are small tmpfs mounts that can be filled.

Counting (:meth:`Rig.tally`): the producer appends to ``produced.log`` (fsync'd), per batch, an intent line
before the outbox call and a commit line with the message ids after it returned (or a refusal line). A
result is **produced** once its commit line is written. A producer killed between the commit and that line
leaves an *in doubt* batch: its results were committed (they are signed and in the outbox), so those of
them found in the store count as produced too, and are reported. Every result carries ``(run, n)`` in its
body; **duplicates** are extra store rows for the same ``(device, run, n)`` plus quarantined rows;
**lost** are produced results missing from the store.

Run a producer by hand: ``python -m tests.support.faults produce BOX_DIR --run 0 --count 100``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from central.broker import BrokerProcess, free_port, write_config
from central.site import Site, add_device, init_central
from central.store import SqlStore, open_store
from mqtt.uplink import queued_results
from tests.support.netproxy import NetProxy

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAY = 86400.0
# Offsets of the box's wall clock from the true time, applied in turn every few batches.
CLOCK_STEPS = (0.0, -3 * DAY, 2 * DAY, -3600.0, 600.0, -DAY, 0.0)
BOX_MQTT = {"receipt_timeout": 1.0, "max_inflight": 200, "reconnect_min": 0.2, "reconnect_max": 1.0,
            "keepalive": 5, "health_interval": 5.0}


# -- producer process (the station side of a box) -------------------------------------------------------

def _append(out: int, line: str) -> None:
    os.write(out, line.encode() + b"\n")
    os.fsync(out)


def _install_clock(steps: tuple[float, ...], every: int) -> Callable[[int], None]:
    """Replace the process's wall clock by one offset by ``steps[k]`` during batches ``k*every…``."""
    real_time, real_ns = time.time, time.time_ns
    offset = [0.0]
    time.time = lambda: real_time() + offset[0]  # type: ignore[assignment]
    time.time_ns = lambda: real_ns() + int(offset[0] * 1e9)  # type: ignore[assignment]

    def at_batch(k: int) -> None:
        new = steps[(k // every) % len(steps)]
        if new != offset[0]:
            logger.info("clock jumps by %+.0f s", new - offset[0])
            offset[0] = new
    return at_batch


def produce(box_dir: Path, run: int, count: int, batch: int, rate: float, clock_jumps: bool) -> int:
    """Commit ``count`` results in batches at about ``rate`` results/s; log intents, commits and refusals."""
    from edge import config as edge_config
    from edge.boxfiles import load_identity, open_outbox
    from mqtt.outbox import OutboxError

    at_batch = _install_clock(CLOCK_STEPS, 3) if clock_jumps else None
    cfg = edge_config.load(box_dir / "edge.toml")
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()
    out = os.open(box_dir / "produced.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t0, n, k = time.monotonic(), 0, 0
    while n < count:
        if at_batch is not None:
            at_batch(k)
        size = min(batch, count - n)
        _append(out, f"I {run} {n} {n + size - 1}")
        try:
            msgs = box.enqueue_many(("scan", {"outcome": "green", "card_ref": f"{run:04x}{n + i:012x}",
                                              "run": run, "n": n + i}) for i in range(size))
        except OutboxError as exc:
            _append(out, f"R {run} {n} {n + size - 1}")
            logger.warning("outbox refused %d results: %s", size, exc)
        else:
            _append(out, f"C {run} {n} " + " ".join(m.msg_id.hex for m in msgs))
        n, k = n + size, k + 1
        ahead = t0 + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    os.close(out)
    box.close()
    return 0


@dataclass
class ProducerLog:
    """What one box's producers reported."""

    committed: set[str] = field(default_factory=set)  # msg ids (hex)
    in_doubt: set[tuple[int, int]] = field(default_factory=set)  # (run, n) of batches with no outcome line
    refused: int = 0


def read_producer_log(path: Path) -> ProducerLog:
    """Parse ``produced.log`` (a torn last line from a kill is ignored)."""
    log = ProducerLog()
    intents: dict[tuple[int, int], int] = {}
    if not path.exists():
        return log
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] not in ("I", "C", "R"):
            continue
        run, first = int(parts[1]), int(parts[2])
        if parts[0] == "I" and len(parts) == 4:
            intents[(run, first)] = int(parts[3])
        elif parts[0] == "C" and (run, first) in intents:
            last = intents.pop((run, first))
            ids = parts[3:]
            if len(ids) == last - first + 1 and all(len(i) == 32 for i in ids):
                log.committed.update(ids)
            else:  # torn line: the commit happened, the record of it did not
                intents[(run, first)] = last
        elif parts[0] == "R" and (run, first) in intents:
            log.refused += intents.pop((run, first)) - first + 1
    for (run, first), last in intents.items():
        log.in_doubt.update((run, n) for n in range(first, last + 1))
    return log


# -- private PostgreSQL cluster that can be stopped and started ----------------------------------------

class PgCluster:
    """A throw-away PostgreSQL cluster (``initdb`` / ``pg_ctl`` on a free port) the scenario stops at will."""

    def __init__(self) -> None:
        from tests.conftest import PrivateCluster

        # Outside pytest's private tmp folder: the server runs as 'postgres' when we are root.
        self.root = Path(tempfile.mkdtemp(prefix="ehc-fault-pg-"))
        self.cluster = PrivateCluster(self.root)
        self.url = ""

    @staticmethod
    def available() -> bool:
        """PostgreSQL server binaries are installed."""
        return bool(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")))

    def start(self) -> str:
        """initdb and start; returns the admin URL."""
        self.url = self.cluster.start()
        return self.url

    def stop(self) -> None:
        """Immediate shutdown (like a crash): open connections break."""
        self.cluster.stop()

    def resume(self) -> None:
        """Start the stopped cluster again on the same port."""
        c = self.cluster
        c._run(str(c.bin / "pg_ctl"), "-D", str(c.data), "-w", "-l", str(c.root / "pg.log"), "-o",
               f"-p {c.port} -k {c.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def destroy(self) -> None:
        """Stop if running and remove the cluster's folder."""
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# -- the rig -------------------------------------------------------------------------------------------

@dataclass
class Tally:
    """Per-scenario outcome."""

    scenario: str
    produced: int
    delivered: int
    stored: int
    duplicates: int
    lost: int
    in_doubt_stored: int
    refused: int
    seconds: float
    events: list[str]

    @property
    def ok(self) -> bool:
        """Exactly once: everything produced stored, nothing twice, nothing unexplained."""
        return self.lost == 0 and self.duplicates == 0 and self.stored == self.produced == self.delivered


@dataclass
class RigOptions:
    """Shape of a run: boxes, results per box, producer pace, ingest workers, what sits in between."""

    boxes: int = 1
    results: int = 300
    batch: int = 10
    rate: float = 100.0  # results per second per box
    workers: int = 1
    proxy: bool = False
    postgres: bool = False  # a private cluster (stoppable); otherwise SQLite
    tmpfs_bytes: int = 0  # mount each box's state folder as a tmpfs this big (needs root)
    clock_jumps: bool = False
    timeout: float = 120.0

    @property
    def duration(self) -> float:
        """Seconds the producers take to commit everything, faults aside."""
        return self.results / self.rate


class Rig:
    """Site, broker, ingest service, boxes; start, break and count."""

    def __init__(self, root: Path, opts: RigOptions) -> None:
        self.root, self.opts = root, opts
        self.events: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.producers: dict[int, subprocess.Popen] = {}
        self.uplinks: dict[int, subprocess.Popen] = {}
        self.runs: dict[int, int] = {}
        self.mounts: list[Path] = []
        self.pg: PgCluster | None = None
        self.proxy: NetProxy | None = None
        self.serve: subprocess.Popen | None = None
        self.t0 = 0.0
        root.mkdir(parents=True, exist_ok=True)
        self.logs = open(root / "services.log", "ab")  # noqa: SIM115 (the services write to it until close())
        self.boxes = [root / f"box-{i:03d}" for i in range(opts.boxes)]

    # -- setup ---------------------------------------------------------------------------------------
    def start(self) -> Rig:
        """Bring everything up; the producers start with :meth:`go`."""
        db = "sqlite:central.db"
        if self.opts.postgres:
            self.pg = PgCluster()
            db = self.pg.start()
        self.site: Site = init_central(self.root / "central", free_port(), db_url=db, workers=self.opts.workers,
                                       extra={"logging": {"level": "WARNING"}})
        self.store: SqlStore = open_store(self.site.config.database_url)
        log = self.root / "mosquitto.log"
        cfg = self.site.config
        self.broker = BrokerProcess(write_config(cfg, log), cfg.broker.host, cfg.broker.port, log).start()
        port = cfg.broker.port
        if self.opts.proxy:
            self.proxy = NetProxy((cfg.broker.host, cfg.broker.port)).start()
            port = self.proxy.port
        for i, box in enumerate(self.boxes):
            if self.opts.tmpfs_bytes:
                self._mount(box / "state", self.opts.tmpfs_bytes)
            add_device(self.site, self.store, box.name, f"clinic-{i % 2}", box, {**BOX_MQTT, "port": port})
        self.start_serve()
        for i in range(len(self.boxes)):
            self.start_uplink(i)
        self._wait_ingest_connected(log)
        return self

    def _wait_ingest_connected(self, broker_log: Path, timeout: float = 60.0) -> None:
        """Faults are timed against the stream: wait until every ingest worker has connected to the broker."""
        wanted = [f" as {self.site.config.ingest.client_id}-{i} " for i in range(self.opts.workers)]
        deadline = time.monotonic() + timeout
        while not all(w in broker_log.read_text(errors="replace") for w in wanted):
            if time.monotonic() > deadline:
                raise TimeoutError("ingest workers did not connect to the broker")
            time.sleep(0.05)

    def _mount(self, path: Path, size: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                       capture_output=True)
        self.mounts.append(path)

    @staticmethod
    def can_mount() -> bool:
        """Root, and allowed to mount a tmpfs here (the disk-full scenario needs it)."""
        if os.geteuid() != 0 or shutil.which("mount") is None:
            return False
        probe = Path(tempfile.mkdtemp(prefix="ehc-mount-probe-"))
        try:
            ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                                capture_output=True).returncode == 0
            if ok:
                subprocess.run(["umount", str(probe)], capture_output=True)
            return ok
        finally:
            probe.rmdir()

    def _spawn(self, args: list[str], **kw: object) -> subprocess.Popen:
        proc = subprocess.Popen(args, stdout=self.logs, stderr=self.logs, cwd=REPO, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def start_serve(self) -> None:
        """``ehc-central serve`` in its own process group (a kill takes the workers too, as systemd's would)."""
        self.serve = self._spawn([str(BIN / "ehc-central"), "--log-level", "WARNING", "serve", "--config",
                                  str(self.site.config_path)], start_new_session=True)

    def start_uplink(self, i: int) -> None:
        """The real ``ehc-edge uplink`` for box ``i``."""
        self.uplinks[i] = self._spawn([str(BIN / "ehc-edge"), "--log-level", "WARNING", "uplink", "--config",
                                       str(self.boxes[i] / "edge.toml")])

    def start_producer(self, i: int, count: int | None = None) -> None:
        """A new producer process (a new station boot) for box ``i``."""
        run = self.runs.get(i, -1) + 1
        self.runs[i] = run
        args = [sys.executable, "-m", "tests.support.faults", "produce", str(self.boxes[i]), "--run", str(run),
                "--count", str(self.opts.results if count is None else count), "--batch", str(self.opts.batch),
                "--rate", str(self.opts.rate)]
        if self.opts.clock_jumps:
            args.append("--clock-jumps")
        self.producers[i] = self._spawn(args)

    def go(self) -> None:
        """Start every box's producer; the clock starts at their first commits (a process takes a second to
        start, and the faults are timed against the stream)."""
        self.t0 = time.monotonic()
        for i in range(len(self.boxes)):
            self.start_producer(i)
        deadline = time.monotonic() + 60
        while not all(self.committed(i) for i in range(len(self.boxes))):
            if time.monotonic() > deadline or any(p.poll() for p in self.producers.values()):
                raise RuntimeError("producers did not start; see services.log")
            time.sleep(0.02)
        self.t0 = time.monotonic()

    def event(self, what: str) -> None:
        """Record a fault with its time since :meth:`go`."""
        self.events.append(f"{time.monotonic() - self.t0:5.1f}s {what}")
        logger.info("%s", what)

    def sleep_until(self, at: float) -> None:
        """Sleep until ``at`` seconds after :meth:`go`."""
        left = self.t0 + at - time.monotonic()
        if left > 0:
            time.sleep(left)

    # -- faults --------------------------------------------------------------------------------------
    def ingest_pids(self) -> list[int]:
        """Worker processes of the running ``serve``."""
        if self.serve is None:
            return []
        try:
            return [int(p) for p in Path(f"/proc/{self.serve.pid}/task/{self.serve.pid}/children").read_text().split()]
        except OSError:
            return []

    def kill_serve(self) -> None:
        """SIGKILL the ingest service: supervisor and workers."""
        assert self.serve is not None
        os.killpg(self.serve.pid, signal.SIGKILL)
        self.serve.wait()

    def committed(self, i: int) -> int:
        """Results box ``i``'s producers have reported committed so far."""
        return len(read_producer_log(self.boxes[i] / "produced.log").committed)

    # -- end -----------------------------------------------------------------------------------------
    def wait_done(self) -> None:
        """Wait for the producers to finish (restarting none) and the outboxes to drain."""
        deadline = self.t0 + self.opts.timeout
        for p in list(self.producers.values()):
            p.wait(max(1.0, deadline - time.monotonic()))
        while any(queued_results(b / "state" / "outbox.db") for b in self.boxes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"outboxes not drained after {self.opts.timeout:.0f}s")
            time.sleep(0.05)

    def tally(self, scenario: str) -> Tally:
        """Compare what the producers committed with what the store holds."""
        seconds = time.monotonic() - self.t0
        logs = {b.name: read_producer_log(b / "produced.log") for b in self.boxes}
        self.store.reopen()  # the scenario may have broken its connection (database restarted)
        rows = list(self.store.iter_results())
        held = self.store.counts().get("quarantined", 0)
        ids = {uuid.UUID(r["msg_id"]).hex for r in rows}
        committed = set().union(*(lg.committed for lg in logs.values()))
        in_doubt = sum(1 for r in rows if uuid.UUID(r["msg_id"]).hex not in committed
                       and (r["body"].get("run"), r["body"].get("n")) in logs[r["device_id"]].in_doubt)
        per_item = Counter((r["device_id"], r["body"].get("run"), r["body"].get("n")) for r in rows)
        delivered = len(committed & ids) + in_doubt
        return Tally(scenario, produced=len(committed) + in_doubt, delivered=delivered, stored=len(rows),
                     duplicates=sum(c - 1 for c in per_item.values()) + held, lost=len(committed - ids),
                     in_doubt_stored=in_doubt, refused=sum(lg.refused for lg in logs.values()),
                     seconds=seconds, events=list(self.events))

    def close(self) -> None:
        """Stop everything this rig started and remove what it mounted."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.serve is not None:
            with contextlib.suppress(ProcessLookupError):  # workers left behind by a killed supervisor
                os.killpg(self.serve.pid, signal.SIGKILL)
        if getattr(self, "broker", None) is not None:
            self.broker.kill()
        if self.proxy is not None:
            self.proxy.close()
        if getattr(self, "store", None) is not None:
            with contextlib.suppress(Exception):  # connection to a stopped cluster
                self.store.close()
        if self.pg is not None:
            self.pg.destroy()
        for m in self.mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        self.logs.close()


# -- scenarios -----------------------------------------------------------------------------------------

def broker_restarts(rig: Rig) -> None:
    """The broker SIGKILLed and restarted four times, once SIGTERMed, during the stream."""
    d = rig.opts.duration
    for k, at in enumerate((0.15, 0.35, 0.55, 0.75, 0.9)):
        rig.sleep_until(at * d)
        if k == 2:
            rig.broker.stop()
            rig.event("broker SIGTERM")
        else:
            rig.broker.kill()
            rig.event("broker SIGKILL")
        time.sleep(0.2)
        rig.broker.start()


def network_cut(rig: Rig) -> None:
    """The link between boxes and broker cut (connections closed, new ones refused) and restored, twice."""
    assert rig.proxy is not None
    d = rig.opts.duration
    for at, length in ((0.2, 0.3), (0.55, 0.3)):
        rig.sleep_until(at * d)
        rig.proxy.cut()
        rig.event("network cut")
        rig.sleep_until((at + length) * d)
        rig.proxy.restore()
        rig.event("network restored")


def network_stall(rig: Rig) -> None:
    """The link silently stops carrying traffic (open connections, nothing forwarded), then resumes; in a
    long enough run the second stall outlasts the keepalive timeout, so both ends drop the connection."""
    assert rig.proxy is not None
    d = rig.opts.duration
    keepalive_timeout = 1.5 * BOX_MQTT["keepalive"] + 1.0
    for at, length in ((0.2 * d, 0.35 * d), (0.65 * d, keepalive_timeout if d >= 8 else 0.25 * d)):
        rig.sleep_until(at)
        rig.proxy.stall()
        rig.event("network stalled")
        rig.sleep_until(at + length)
        rig.proxy.restore()
        rig.event("network resumed")


def uplink_kill(rig: Rig) -> None:
    """Each box's uplink SIGKILLed mid-delivery and restarted, three times."""
    d = rig.opts.duration
    for at in (0.2, 0.5, 0.8):
        rig.sleep_until(at * d)
        for i, p in rig.uplinks.items():
            p.kill()
            p.wait()
            rig.start_uplink(i)
        rig.event("uplinks SIGKILL + restart")


def station_kill(rig: Rig) -> None:
    """Each box's producer SIGKILLed mid-write twice; a new one (next boot) produces the rest."""
    d = rig.opts.duration
    for at in (0.3, 0.6):
        rig.sleep_until(at * d)
        for i, p in rig.producers.items():
            p.kill()
            p.wait()
            rig.start_producer(i, max(rig.opts.results - rig.committed(i), rig.opts.batch))
        rig.event("stations SIGKILL + restart (new boot)")


def ingest_kill(rig: Rig) -> None:
    """The ingest service SIGKILLed with its workers and started again; then one worker alone SIGKILLed
    (the supervisor restarts it)."""
    d = rig.opts.duration
    rig.sleep_until(0.3 * d)
    rig.kill_serve()
    rig.event("ingest service SIGKILL (supervisor and workers)")
    time.sleep(0.2)
    rig.start_serve()
    rig.sleep_until(0.7 * d)
    deadline = time.monotonic() + 30
    while not rig.ingest_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(rig.ingest_pids()[0], signal.SIGKILL)
    rig.event("one ingest worker SIGKILL")


def database_down(rig: Rig) -> None:
    """The central PostgreSQL stopped (immediate shutdown, connections broken) for a while, twice."""
    assert rig.pg is not None
    d = rig.opts.duration
    for at, length in ((0.2, 0.3), (0.6, 0.2)):
        rig.sleep_until(at * d)
        rig.pg.stop()
        rig.event("database down")
        rig.sleep_until((at + length) * d)
        rig.pg.resume()
        rig.event("database up")


def disk_full(rig: Rig) -> None:
    """Each box's disk filled up mid-stream until its outbox refused results, then space freed."""
    fillers = [b / "state" / "filler" for b in rig.boxes]
    rig.sleep_until(0.3 * rig.opts.duration)
    for f in fillers:
        try:
            with open(f, "wb") as out:
                while True:
                    out.write(b"\0" * 65536)
        except OSError:  # ENOSPC: the disk is full
            pass
    rig.event("disks full")
    deadline = time.monotonic() + max(10.0, rig.opts.duration)
    while time.monotonic() < deadline and not all(
            read_producer_log(b / "produced.log").refused for b in rig.boxes):
        time.sleep(0.05)
    rig.sleep_until(0.6 * rig.opts.duration)
    for f in fillers:
        f.unlink()
    rig.event("space freed")


def clock_jumps(rig: Rig) -> None:
    """The boxes' wall clock jumps back and forth by hours and days (done inside the producers), while the
    broker is restarted once."""
    rig.sleep_until(0.5 * rig.opts.duration)
    rig.broker.kill()
    rig.event("broker SIGKILL (clock jumping: -3 d, +2 d, -1 h, +10 min, -1 d)")
    time.sleep(0.2)
    rig.broker.start()


@dataclass(frozen=True)
class Scenario:
    """A named fault schedule and what the rig needs for it."""

    name: str
    run: Callable[[Rig], None]
    proxy: bool = False
    postgres: bool = False
    tmpfs: bool = False
    clock_jumps: bool = False

    @property
    def description(self) -> str:
        """First paragraph of the schedule's docstring, on one line."""
        return " ".join((self.run.__doc__ or "").strip().split("\n\n")[0].split())


SCENARIOS = {s.name: s for s in (
    Scenario("broker_restarts", broker_restarts),
    Scenario("network_cut", network_cut, proxy=True),
    Scenario("network_stall", network_stall, proxy=True),
    Scenario("uplink_kill", uplink_kill),
    Scenario("station_kill", station_kill),
    Scenario("ingest_kill", ingest_kill),
    Scenario("database_down", database_down, postgres=True),
    Scenario("disk_full", disk_full, tmpfs=True),
    Scenario("clock_jumps", clock_jumps, clock_jumps=True),
)}


def run_scenario(name: str, root: Path, opts: RigOptions) -> Tally:
    """Run one scenario end to end and count."""
    sc = SCENARIOS[name]
    opts = RigOptions(**{**opts.__dict__, "proxy": sc.proxy, "postgres": sc.postgres, "clock_jumps": sc.clock_jumps,
                         "tmpfs_bytes": (opts.tmpfs_bytes or 16 * 1024 * 1024) if sc.tmpfs else 0})
    rig = Rig(root, opts)
    try:
        rig.start()
        rig.go()
        sc.run(rig)
        rig.wait_done()
        return rig.tally(name)
    finally:
        rig.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.faults")
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("produce", help="act as a box's station: commit results to its outbox")
    pr.add_argument("box_dir", type=Path)
    pr.add_argument("--run", type=int, default=0)
    pr.add_argument("--count", type=int, default=100)
    pr.add_argument("--batch", type=int, default=10)
    pr.add_argument("--rate", type=float, default=100.0)
    pr.add_argument("--clock-jumps", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="producer: %(message)s")
    return produce(args.box_dir, args.run, args.count, args.batch, args.rate, args.clock_jumps)


if __name__ == "__main__":
    sys.exit(main())
