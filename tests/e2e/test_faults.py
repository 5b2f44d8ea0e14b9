"""Exactly once under faults, against the real broker, ingest service and databases (small scale).

Each scenario of :mod:`tests.support.faults` runs with one box and a few hundred results: the broker restarted
repeatedly, the network cut and stalled through a proxy, the uplink and the station SIGKILLed, the ingest
service SIGKILLed, the database stopped, the box's disk full, the box's clock jumping. ``bench/chaos.py``
runs the same scenarios at a larger scale. Also here: the proxy itself, and the recovery paths of the
ingest service those scenarios rely on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from central import service
from central.broker import free_port
from central.ingest import Inbound, Ingest
from central.site import add_device, init_central
from central.store import open_store
from foundation.keyfiles import load_private_key
from mqtt import envelope, topics
from tests.support.faults import SCENARIOS, PgCluster, Rig, RigOptions, read_producer_log, run_scenario
from tests.support.mqtt_helpers import wait_until
from tests.support.netproxy import NetProxy

BIN = Path(sys.executable).parent
NO_PG = "PostgreSQL server binaries (Debian package 'postgresql') are not installed"


@pytest.fixture(scope="module")
def pg_cluster():
    """A private PostgreSQL cluster the tests may stop and start."""
    if not PgCluster.available():
        pytest.skip(NO_PG)
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


# -- the scenarios ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_delivers_everything_exactly_once(name, tmp_path):
    sc = SCENARIOS[name]
    if sc.postgres and not PgCluster.available():
        pytest.skip(NO_PG)
    if sc.tmpfs and not Rig.can_mount():
        pytest.skip("filling a disk needs a tmpfs mount (root)")
    t = run_scenario(name, tmp_path, RigOptions(results=200, batch=10, rate=100.0))
    assert t.events, "the faults ran"
    assert t.lost == 0
    assert t.duplicates == 0
    assert t.stored == t.produced == t.delivered
    assert t.produced > 0
    if name == "disk_full":
        assert t.refused > 0, "the full disk made the outbox refuse results"
        assert t.produced + t.refused == 200
    elif name == "station_kill":
        assert t.in_doubt_stored <= 2 * 10  # at most the batch in flight at each of the two kills
    else:
        assert t.produced == 200


# -- the proxy --------------------------------------------------------------------------------------------

@pytest.fixture
def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _roundtrip(port: int, data: bytes = b"ping", timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return s.recv(4096)


def test_proxy_forwards_cuts_stalls_and_restores(echo_server):
    with NetProxy(echo_server) as proxy:
        assert _roundtrip(proxy.port) == b"ping"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        held.sendall(b"a")
        assert held.recv(10) == b"a"

        proxy.cut()
        assert held.recv(10) == b"", "open connections are closed"
        with pytest.raises(ConnectionRefusedError):
            _roundtrip(proxy.port)

        proxy.restore()
        assert _roundtrip(proxy.port) == b"ping"

        proxy.stall()
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
        s.sendall(b"later")
        with pytest.raises(socket.timeout):
            s.recv(10)
        proxy.restore()
        s.settimeout(5)
        assert s.recv(10) == b"later", "stalled traffic is released, not lost"
        s.close()
        held.close()


# -- producer bookkeeping ---------------------------------------------------------------------------------

def test_producer_log_counts_commits_refusals_and_batches_in_doubt(tmp_path):
    log = tmp_path / "produced.log"
    a, b = "a" * 32, "b" * 32
    log.write_text(f"I 0 0 1\nC 0 0 {a} {b}\nI 0 2 3\nR 0 2 3\nI 0 4 5\nI 1 0 0\nC 1 0 {'c' * 16}")
    got = read_producer_log(log)
    assert got.committed == {a, b}
    assert got.refused == 2
    assert got.in_doubt == {(0, 4), (0, 5), (1, 0)}, "no outcome line, or a torn one"


# -- recovery paths of the ingest service -----------------------------------------------------------------

class _Recorder:
    """Stands in for the paho client: records acknowledgements and publications."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def publish(self, *args: object, **kwargs: object) -> None:
        pass


def test_ingest_reconnects_when_the_registry_lookup_hits_a_broken_connection(pg_cluster, tmp_path):
    site = init_central(tmp_path / "central", free_port(), db_url=pg_cluster.url)
    store = open_store(site.config.database_url)
    add_device(site, store, "box-1", "clinic-a", tmp_path / "box")
    key = load_private_key(tmp_path / "box" / "device.key")
    topic = topics.event("clinic-a", "box-1", "scan")
    ingest = Ingest(site.config, store)
    ingest.client = _Recorder()
    ingest.inbox.put(Inbound(7, 1, topic, envelope.sign(envelope.Message("box-1", 1, 1, "scan", {"n": 1}),
                                                        topic, key)))
    # The server restarts before the device's key is cached: the first statement of the batch is the
    # registry lookup, on a connection the restart has broken.
    pg_cluster.stop()
    pg_cluster.resume()
    worker = threading.Thread(target=ingest._work, daemon=True)
    worker.start()
    try:
        wait_until(lambda: ingest.client.acked == [7], 30, "the delivery acknowledged after a reconnect")
    finally:
        ingest._stop.set()
        worker.join(10)
    check = open_store(site.config.database_url)
    assert check.counts()["results"] == 1
    check.close()
    store.close()


def test_worker_waits_for_the_database_instead_of_crashing(pg_cluster):
    pg_cluster.stop()
    got: list = []
    stop = threading.Event()
    t = threading.Thread(target=lambda: got.append(service._open_store_retrying(pg_cluster.url, 0, stop,
                                                                               lambda: False)), daemon=True)
    t.start()
    try:
        t.join(1.0)
        assert t.is_alive(), "still waiting for the database"
    finally:
        pg_cluster.resume()
    t.join(60)
    assert got and got[0] is not None
    got[0].close()


def test_worker_gives_up_waiting_when_told_to_stop():
    stop = threading.Event()
    stop.set()
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    assert service._open_store_retrying(url, 0, stop, lambda: False) is None


def test_workers_exit_when_the_supervisor_is_killed(tmp_path):
    site = init_central(tmp_path / "central", free_port())  # no broker needed: the workers retry it
    serve = subprocess.Popen([str(BIN / "ehc-central"), "--log-level", "WARNING", "serve", "--config",
                              str(site.config_path), "--workers", "2"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    children = Path(f"/proc/{serve.pid}/task/{serve.pid}/children")

    def workers() -> list[int]:  # not multiprocessing's resource tracker
        pids = [int(p) for p in children.read_text().split()]
        return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]

    try:
        wait_until(lambda: len(workers()) == 2, 60, "two workers")
        pids = workers()
        serve.kill()
        serve.wait()

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")

        wait_until(lambda: all(gone(p) for p in pids), 30, "orphaned workers to exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGKILL)


def test_serve_started_during_a_database_outage_waits_for_it(pg_cluster, tmp_path):
    site = init_central(tmp_path / "central", free_port(), db_url=pg_cluster.url)
    pg_cluster.stop()
    serve = subprocess.Popen([str(BIN / "ehc-central"), "--log-level", "WARNING", "serve", "--config",
                              str(site.config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    children = Path(f"/proc/{serve.pid}/task/{serve.pid}/children")
    try:
        assert serve.stderr is not None
        line = serve.stderr.readline().decode()  # the first retry is logged: it did not exit
        assert "store unavailable, retrying" in line
        assert serve.poll() is None
        pg_cluster.resume()
        wait_until(lambda: any(b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
                               for p in children.read_text().split()), 60, "the worker started")
    finally:
        serve.terminate()
        serve.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGKILL)
