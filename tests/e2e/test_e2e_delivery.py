"""End to end against a real Mosquitto (TLS, ACL) and real SQLite / PostgreSQL stores.

box outbox -> uplink -> broker -> ingest -> store, exactly once; forged, replayed, wrong-topic,
unknown-device and garbage messages refused with a counted reason; the broker's ACL keeps a box
off another box's topics.
"""

from __future__ import annotations

import pytest

from central.site import add_device
from edge import config as edge_config
from edge.boxfiles import load_identity
from edge.runtime import build_uplink
from foundation import keyfiles
from mqtt import envelope, topics
from tests.support.mqtt_helpers import RawClient, running_central, wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A site with a running broker and ingest, on SQLite or PostgreSQL."""
    db = "sqlite:central.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with running_central(tmp_path, db) as running:
        yield running


def make_box(site, store, tmp_path, device_id="box-0001", clinic="clinic-a", register=True):
    cfg = edge_config.load(add_device(site, store, device_id, clinic, tmp_path / device_id,
                                      {"receipt_timeout": 2.0}, register=register))
    return cfg


def raw(site, cfg, client_id=None) -> RawClient:
    b = site.config.broker
    return RawClient(b.host, b.port, cfg.path(cfg.mqtt.ca), cfg.path(cfg.device.cert), cfg.path(cfg.device.key),
                     client_id or f"{cfg.device.id}-raw").wait_connected()


def test_results_arrive_once_and_leave_the_outbox(central, tmp_path):
    site, store, _ = central
    up = build_uplink(make_box(site, store, tmp_path), ["qr"])
    up.outbox.start_boot()
    sent = [up.outbox.enqueue("scan", {"n": i, "outcome": "green", "名": "扫码"}) for i in range(50)]
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 50 and up.drained(), what="delivery")
    finally:
        up.stop()
    rows = list(store.iter_results())
    assert sorted(r["body"]["n"] for r in rows) == list(range(50))
    assert {r["msg_id"] for r in rows} == {str(m.msg_id) for m in sent}
    assert sorted(r["seq"] for r in rows) == list(range(1, 51))
    assert rows[0]["body"]["名"] == "扫码"
    assert store.counts()["gaps"] == 0
    # The stored envelope still verifies: the central copy is evidence, not just data.
    device, cose = store.envelope(rows[0]["msg_id"])
    topic = topics.event("clinic-a", device, "scan")
    assert envelope.verify(cose, topic, up.ident.key.public_key()).msg_id == sent[rows[0]["seq"] - 1].msg_id
    # Presence: the retained status and the signed birth document reached the registry.
    wait_until(lambda: store.devices()[0]["presence"] == "offline", what="offline status after stop")


def test_forged_replayed_wrong_topic_and_unknown_are_refused(central, tmp_path):
    site, store, ingest = central
    cfg = make_box(site, store, tmp_path)
    ident = load_identity(cfg)
    client = raw(site, cfg)
    topic = topics.event("clinic-a", "box-0001", "scan")
    try:
        good = envelope.sign(envelope.Message("box-0001", 1, 1, "scan", {"ok": True}), topic, ident.key)
        assert client.publish(topic, good) == 0
        # Replay of the same signed message: stored once.
        assert client.publish(topic, good) == 0
        # Forged: right shape, signed with another key.
        forged = envelope.sign(envelope.Message("box-0001", 1, 2, "scan", {"ok": False}), topic, keyfiles.generate_key())
        assert client.publish(topic, forged) == 0
        # Wrong topic: a message signed for evt/scan published on evt/print (AAD mismatch).
        other = topics.event("clinic-a", "box-0001", "print")
        moved = envelope.sign(envelope.Message("box-0001", 1, 3, "scan", {"ok": True}), topic, ident.key)
        assert client.publish(other, moved) == 0
        # Kind inside differs from the topic although signed for that topic.
        liar = envelope.sign(envelope.Message("box-0001", 1, 4, "scan", {"ok": True}), other, ident.key)
        assert client.publish(other, liar) == 0
        # Garbage and malformed CBOR.
        assert client.publish(topic, b"\x00garbage") == 0
        assert client.publish(topic, b"\xd2\x84\x40") == 0
        # Same (boot, seq) as the first, different message id.
        clash = envelope.sign(envelope.Message("box-0001", 1, 1, "scan", {"ok": "again"}), topic, ident.key)
        assert client.publish(topic, clash) == 0
        wait_until(lambda: sum(store.counts()["rejections"].values()) >= 6, what="rejections")
    finally:
        client.close()
    counts = store.counts()
    assert counts["results"] == 1
    assert counts["rejections"] == {"bad_signature": 2, "wrong_topic": 1, "malformed": 2, "seq_conflict": 1}
    assert ingest.counters["duplicate"] == 1
    assert ingest.counters["seq_conflict"] == 1


def test_unknown_and_revoked_devices_are_refused(central, tmp_path):
    site, store, ingest = central
    # A certificate from our CA for a box that was never registered.
    cfg = make_box(site, store, tmp_path, "box-ghost", register=False)
    cfg2 = make_box(site, store, tmp_path, "box-0002")
    assert store.set_device_status("box-0002", "revoked")
    for c in (cfg, cfg2):
        client = raw(site, c)
        topic = topics.event("clinic-a", c.device.id, "scan")
        ident = load_identity(c)
        client.publish(topic, envelope.sign(envelope.Message(c.device.id, 1, 1, "scan", {}), topic, ident.key))
        client.close()
    wait_until(lambda: sum(store.counts()["rejections"].values()) >= 2, what="rejections")
    assert store.counts() == {"results": 0, "rejections": {"unknown_device": 1, "revoked_device": 1}, "gaps": 0}


def test_broker_acl_keeps_a_box_off_other_topics(central, tmp_path):
    site, store, _ = central
    a = make_box(site, store, tmp_path, "box-a")
    make_box(site, store, tmp_path, "box-b")
    client = raw(site, a)
    try:
        ident = load_identity(a)
        victim = topics.event("clinic-a", "box-b", "scan")
        signed = envelope.sign(envelope.Message("box-a", 1, 1, "scan", {}), victim, ident.key)
        assert client.publish(victim, signed) == 135  # Not authorised
        assert client.publish(topics.device_topic("clinic-a", "box-b", "ack"), b"\xa0") == 135
        assert client.publish(topics.command("clinic-a", "box-b", "rebirth"), b"") == 135
        # Mosquitto grants any SUBACK but checks read access per delivered message: box-a must see
        # nothing of box-b's commands, while box-b receives its own.
        client.client.subscribe([(f"{topics.PREFIX}/clinic-a/box-b/cmd/+", 1), (f"{topics.PREFIX}/#", 1)])
        b_client = raw(site, edge_config.load(tmp_path / "box-b" / "edge.toml"))
        b_client.client.subscribe(f"{topics.PREFIX}/clinic-a/box-b/cmd/+", 1)
        wait_until(lambda: len(client.suback) == 2 and b_client.suback, what="SUBACK")
        c = site.config
        central_client = RawClient(c.broker.host, c.broker.port, c.path(c.broker.ca), c.path(c.broker.operator_cert),
                                   c.path(c.broker.operator_key), "ehc-central").wait_connected()
        assert central_client.publish(topics.command("clinic-a", "box-b", "rebirth"), b"now") == 0
        wait_until(lambda: b_client.messages, what="box-b receives its command")
        central_client.close()
        b_client.close()
        assert not [m for m in client.messages if "/box-b/" in m[0]]
    finally:
        client.close()
    assert store.counts()["results"] == 0


def test_sequence_gap_is_recorded(central, tmp_path):
    site, store, _ = central
    cfg = make_box(site, store, tmp_path)
    ident = load_identity(cfg)
    client = raw(site, cfg)
    topic = topics.event("clinic-a", "box-0001", "scan")
    try:
        for seq in (1, 2, 5):
            client.publish(topic, envelope.sign(envelope.Message("box-0001", 7, seq, "scan", {}), topic, ident.key))
        wait_until(lambda: store.counts()["results"] == 3, what="results")
    finally:
        client.close()
    assert store.counts()["gaps"] == 1
    assert store.devices()[0]["missing"] == 2
