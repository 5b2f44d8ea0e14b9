"""The daemons as systemd runs them: READY/STATUS over $NOTIFY_SOCKET, clean exit on SIGTERM, no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from central.broker import BrokerProcess, free_port, write_config
from central.site import add_device, init_central
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity, open_outbox
from tests.support.mqtt_helpers import wait_until

BIN = Path(sys.executable).parent


class NotifySocket:
    """The receiving end of sd_notify, as systemd would hold it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def seen(self, text: str) -> bool:
        return any(text in m for m in self.drain())


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def running_site(tmp_path):
    site = init_central(tmp_path / "central", free_port(), workers=2)
    log = tmp_path / "mosquitto.log"
    broker = BrokerProcess(write_config(site.config, log), site.config.broker.host, site.config.broker.port, log)
    broker.start()
    yield site
    broker.kill()


def test_central_serve_notifies_ready_stores_and_stops_its_workers(running_site, tmp_path):
    site = running_site
    store = open_store(site.config.database_url)
    cfg = edge_config.load(add_device(site, store, "box-1", "clinic-a", tmp_path / "box"))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    proc = subprocess.Popen([str(BIN / "ehc-central"), "serve", "--config", str(site.config_path)], env=env)
    try:
        wait_until(lambda: notify.seen("READY=1"), 30, "READY=1 from ehc-central serve")
        workers = [p for p in children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2
        box = open_outbox(cfg, load_identity(cfg))
        box.start_boot()
        box.enqueue("scan", {"outcome": "green"})
        uplink = subprocess.Popen([str(BIN / "ehc-edge"), "uplink", "--config", str(tmp_path / "box" / "edge.toml")],
                                  env=env)
        try:
            wait_until(lambda: store.counts()["results"] == 1 and box.stats().depth == 0, 30, "delivery")
        finally:
            uplink.send_signal(signal.SIGTERM)
            assert uplink.wait(20) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert notify.seen("STOPPING=1")
    wait_until(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 10, "workers to exit")
    wait_until(lambda: store.devices()[0]["presence"] == "offline", 10, "offline status from the stopped uplink")


def test_uplink_is_ready_without_a_broker(tmp_path):
    """The box must work offline: READY depends on keys and outbox, not on the network."""
    site = init_central(tmp_path / "central", free_port())  # no broker started
    store = open_store(site.config.database_url)
    add_device(site, store, "box-1", "clinic-a", tmp_path / "box")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    proc = subprocess.Popen([str(BIN / "ehc-edge"), "uplink", "--config", str(tmp_path / "box" / "edge.toml")],
                            env=env)
    try:
        wait_until(lambda: notify.seen("READY=1"), 20, "READY=1 from the uplink")
        wait_until(lambda: notify.seen("STATUS=offline; queue 0"), 20, "an offline status line")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_notify_is_best_effort_when_the_manager_socket_is_gone(tmp_path, monkeypatch):
    from foundation import sdnotify

    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sdnotify.notify("WATCHDOG=1") is False  # no exception: a daemon must not die of it
    live = NotifySocket(tmp_path / "live.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(live.path))
    assert sdnotify.notify("STATUS=ok") is True
    assert live.seen("STATUS=ok")


def test_station_watchdog_stops_when_the_flow_thread_hangs(tmp_path, monkeypatch):
    """A stuck worker must make systemd restart the station: WATCHDOG=1 stops, READY and STATUS came first."""
    import threading

    from edge import daemons
    from edge.feedback import Signal
    from edge.flows import factory
    from edge.flows.base import FlowOutcome

    site = init_central(tmp_path / "central", free_port())
    store = open_store(site.config.database_url)
    cfg_path = add_device(site, store, "box-1", "clinic-a", tmp_path / "box")
    cfg = edge_config.load(cfg_path)
    cfg = cfg.model_copy(update={"station": cfg.station.model_copy(update={"camera": "sim", "fps": 30.0})})
    hang, stop = threading.Event(), threading.Event()

    class HangingFlow:
        name = "hanging"

        def handle(self, event):  # type: ignore[no-untyped-def]
            hang.set()
            stop.wait(30)  # inference or a printer driver that never returns
            return FlowOutcome(Signal.READY)

    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setattr(daemons, "STUCK_AFTER", 1.0)
    monkeypatch.setattr(daemons, "stop_event_on_signals", lambda: stop)
    monkeypatch.setattr(factory, "build_flow", lambda cfg, ctx, **parts: HangingFlow())
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(daemons.run_station(cfg)), daemon=True)
    worker.start()
    try:
        wait_until(lambda: notify.seen("READY=1"), 20, "READY=1 from the station")
        wait_until(lambda: notify.seen("WATCHDOG=1"), 20, "the watchdog petted while healthy")
        assert hang.wait(20), "a code reached the flow"
        # once the flow thread has been stuck longer than STUCK_AFTER, no more WATCHDOG=1
        wait_until(lambda: len(notify.drain()) and _quiet_for(notify, 1.5), 20, "watchdog silence")
    finally:
        stop.set()
        worker.join(20)
    assert result == [0]


def _quiet_for(notify: NotifySocket, seconds: float) -> bool:
    """True when no WATCHDOG=1 arrived for ``seconds``."""
    import time

    start = len(notify.messages)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        notify.drain()
    return not any("WATCHDOG=1" in m for m in notify.messages[start:])
