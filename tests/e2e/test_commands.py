"""Commands over MQTT v5 request/response against the real broker, and the CLIs that read the store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cbor2
import pytest

from central.commands import CommandClient, CommandTimeout
from central.ingest import Ingest
from central.site import add_device
from central.store import open_store
from edge import config as edge_config
from edge.runtime import build_uplink
from mqtt import commands
from tests.support.mqtt_helpers import wait_until

BIN = Path(sys.executable).parent


@pytest.fixture
def online_box(site, store, broker, tmp_path):
    cfg = edge_config.load(add_device(site, store, "box-1", "clinic-a", tmp_path / "box"))
    up = build_uplink(cfg).start()
    assert up.connected.wait(10)
    yield up
    up.stop()


def test_ping_and_rebirth_get_signed_answers(site, store, online_box):
    with CommandClient(site.config, store) as client:
        pong = client.request("box-1", "ping", timeout=10)
        assert pong["pong"] is True and pong["connected"] is True and pong["queue_depth"] == 0
        assert client.request("box-1", "rebirth") == {"ok": True}
        assert client.request("box-1", "self-destruct") == {"error": "unknown_command"}


def test_command_cli_and_timeout_for_an_offline_box(site, store, broker, tmp_path):
    add_device(site, store, "box-off", "clinic-a", tmp_path / "off")
    with CommandClient(site.config, store) as client, pytest.raises(CommandTimeout):
        client.request("box-off", "ping", timeout=1)
    out = subprocess.run([str(BIN / "ehc-central"), "command", "--config", str(site.config_path), "--device",
                          "box-off", "--name", "ping", "--timeout", "1"], capture_output=True, text=True)
    assert out.returncode == 1 and "did not answer" in out.stderr


def test_box_refuses_requests_that_would_answer_elsewhere():
    good = SimpleNamespace(ResponseTopic="ehc/v1/c/d/res/ping", CorrelationData=b"x" * 16)
    assert commands.decode_request("ehc/v1/c/d/cmd/ping", b"", good, "c", "d").name == "ping"
    for props, payload, reason in [
        (SimpleNamespace(ResponseTopic="ehc/v1/c/other/res/ping", CorrelationData=b"x"), b"", "response topic"),
        (SimpleNamespace(ResponseTopic="ehc/v1/c/d/evt/scan", CorrelationData=b"x"), b"", "response topic"),
        (SimpleNamespace(ResponseTopic="ehc/v1/c/d/res/ping", CorrelationData=None), b"", "correlation"),
        (good, b"\xff\x00", "not CBOR"),
        (good, cbor2.dumps([1, 2]), "must be a map"),
        (good, cbor2.dumps({"a": "x" * 5000}), "too large"),
    ]:
        with pytest.raises(commands.CommandError, match=reason):
            commands.decode_request("ehc/v1/c/d/cmd/ping", payload, props, "c", "d")
    with pytest.raises(commands.CommandError):
        commands.decode_request("ehc/v1/c/other/cmd/ping", b"", good, "c", "d")


def test_results_stats_and_devices_cli(site, store, broker, tmp_path):
    cfg = edge_config.load(add_device(site, store, "box-1", "clinic-a", tmp_path / "box"))
    ingest = Ingest(site.config, open_store(site.config.database_url)).start()
    up = build_uplink(cfg)
    up.outbox.start_boot()
    for i in range(3):
        up.outbox.enqueue("scan", {"n": i, "outcome": "green"})
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 3, what="delivery")
    finally:
        up.stop()
        ingest.stop()
    run = lambda *a: subprocess.run([str(BIN / "ehc-central"), *a, "--config", str(site.config_path)],  # noqa: E731
                                    capture_output=True, text=True, check=True).stdout
    lines = [json.loads(line) for line in run("results").splitlines()]
    assert [r["body"]["n"] for r in sorted(lines, key=lambda r: r["seq"])] == [0, 1, 2]
    assert {r["device_id"] for r in lines} == {"box-1"} and all(r["kind"] == "scan" for r in lines)
    assert json.loads(run("stats"))["results"] == 3
    devices = [json.loads(line) for line in run("devices").splitlines()]
    assert devices[0]["device_id"] == "box-1" and devices[0]["results"] == 3 and devices[0]["missing"] == 0
