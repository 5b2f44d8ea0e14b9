"""Exactly once through failures, against the real daemons: the uplink SIGKILLed mid-delivery and the
broker SIGKILLed and restarted while results flow. (bench/uplink.py does the same at scale.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from central.broker import BrokerProcess, free_port, write_config
from central.site import add_device, init_central
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity, open_outbox
from tests.support.mqtt_helpers import wait_until

BIN = Path(sys.executable).parent
N = 3000


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_uplink_kill_and_broker_kill_lose_and_duplicate_nothing(tmp_path, request, database):
    db = "sqlite:central.db" if database == "sqlite" else request.getfixturevalue("pg_url")
    site = init_central(tmp_path / "central", free_port(), db_url=db, workers=2)
    store = open_store(site.config.database_url)
    log = tmp_path / "mosquitto.log"
    broker = BrokerProcess(write_config(site.config, log), site.config.broker.host, site.config.broker.port, log)
    broker.start()
    cfg = edge_config.load(add_device(site, store, "box-1", "clinic-a", tmp_path / "box",
                                      {"receipt_timeout": 2.0, "max_inflight": 300, "reconnect_min": 0.2,
                                       "reconnect_max": 1.0}))
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()
    committed = [m.msg_id for i in range(0, N, 100)
                 for m in box.enqueue_many(("scan", {"n": i + j}) for j in range(100))]
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        procs.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=subprocess.DEVNULL))
        return procs[-1]

    try:
        start("ehc-central", "serve", "--config", str(site.config_path))
        uplink = start("ehc-edge", "uplink", "--config", str(tmp_path / "box" / "edge.toml"))
        wait_until(lambda: store.counts()["results"] >= N // 4, 60, "a quarter delivered")
        uplink.send_signal(signal.SIGKILL)
        uplink.wait()
        start("ehc-edge", "uplink", "--config", str(tmp_path / "box" / "edge.toml"))
        wait_until(lambda: store.counts()["results"] >= N // 2, 60, "half delivered")
        broker.kill()
        broker.start()
        wait_until(lambda: store.counts()["results"] == N and box.stats().depth == 0, 90, "everything delivered")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
        broker.kill()
    stored = [uuid.UUID(r["msg_id"]) for r in store.iter_results()]
    assert len(stored) == N and set(stored) == set(committed)
    assert sorted(r["body"]["n"] for r in store.iter_results()) == list(range(N))
    assert store.counts()["rejections"] == {}
    store.close()
