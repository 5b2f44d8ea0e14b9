"""End to end against a real Mosquitto: box outbox -> uplink -> broker -> ingest -> store, exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge import config as edge_config
from edge.runtime import build_uplink
from mqtt.central.ingest import Ingest
from mqtt.central.store import open_store
from provisioning.site import add_device


def wait_until(cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def box(site, store, broker, tmp_path):
    path = add_device(site, store, "box-0001", "clinic-a", tmp_path / "box", {"receipt_timeout": 2.0})
    cfg = edge_config.load(path)
    up = build_uplink(cfg, ["qr"])
    up.outbox.start_boot()
    yield up
    up.stop()


def test_results_arrive_once_and_leave_the_outbox(site, store, broker, box):
    ingest = Ingest(site.config, open_store(site.config.database_url)).start()
    try:
        sent = [box.outbox.enqueue("scan", {"n": i, "outcome": "green"}) for i in range(50)]
        box.start()
        wait_until(lambda: store.counts()["results"] == 50 and box.drained(), what="delivery")
        rows = list(store.iter_results())
        assert sorted(r["body"]["n"] for r in rows) == list(range(50))
        assert {r["msg_id"] for r in rows} == {str(m.msg_id) for m in sent}
        assert [r["seq"] for r in sorted(rows, key=lambda r: r["seq"])] == list(range(1, 51))
        assert store.counts()["gaps"] == 0
    finally:
        ingest.stop()
