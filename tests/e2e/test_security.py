"""Security tests against the real Mosquitto (generated TLS / ACL config) and the real ingest.

What ``tests/e2e/test_e2e_delivery.py``, ``test_provisioning.py``, ``test_lookup.py`` and ``test_verifiers.py``
already show (publishing on another box's topics, forged, replayed and moved results, revoked devices and
certificates, expired and spent tokens, stale trust lists) is not repeated here. This file adds: a box
writing central documents or its own receipts, a box subscribing to the ingest's topics, results
re-ordered and replayed through the broker, and an outbox database altered on a stolen box.
"""

from __future__ import annotations

import sqlite3

import cbor2
import pytest

from central.site import add_device
from edge import config as edge_config
from edge.boxfiles import load_identity
from edge.runtime import build_uplink
from mqtt import envelope, topics
from tests.support.mqtt_helpers import RawClient, running_central, wait_until

NOT_AUTHORISED = 135
CLINIC = "clinic-a"


@pytest.fixture
def central(tmp_path):
    """A site with a running broker and ingest (SQLite)."""
    with running_central(tmp_path) as running:
        yield running


def make_box(site, store, tmp_path, device_id: str):  # type: ignore[no-untyped-def]
    return edge_config.load(add_device(site, store, device_id, CLINIC, tmp_path / device_id, {"receipt_timeout": 1.0}))


def raw(site, cfg, suffix: str = "raw") -> RawClient:  # type: ignore[no-untyped-def]
    b = site.config.broker
    return RawClient(b.host, b.port, cfg.path(cfg.mqtt.ca), cfg.path(cfg.device.cert), cfg.path(cfg.device.key),
                     f"{cfg.device.id}-{suffix}").wait_connected()


def central_client(site) -> RawClient:  # type: ignore[no-untyped-def]
    """The ``ehc-central`` commands' identity: it writes commands."""
    c = site.config
    return RawClient(c.broker.host, c.broker.port, c.path(c.broker.ca), c.path(c.broker.operator_cert),
                     c.path(c.broker.operator_key), "ehc-central").wait_connected()


# -- the broker's ACL --------------------------------------------------------------------------------------

def test_a_box_cannot_write_central_documents_or_receipts(central, tmp_path) -> None:
    """Trust lists, the central status, receipts, commands and answers come only from the central identity."""
    site, store, _ = central
    a = make_box(site, store, tmp_path, "box-a")
    make_box(site, store, tmp_path, "box-b")
    client = raw(site, a)
    try:
        for topic in (topics.TRUST_LIST, topics.CENTRAL_STATUS, f"{topics.PREFIX}/central/other",
                      topics.device_topic(CLINIC, "box-a", "ack"),           # a receipt for itself
                      topics.command(CLINIC, "box-a", "reload_config"),     # a command to itself
                      topics.reply(CLINIC, "box-a", "lookup"),              # a lookup answer to itself
                      topics.device_topic(CLINIC, "box-b", "status"),       # box-b's presence
                      topics.device_topic(CLINIC, "box-b", "health"),
                      topics.request(CLINIC, "box-b", "record"),
                      f"{topics.PREFIX}/{CLINIC}/box-a/evt/scan/extra",     # outside the topic tree
                      f"$share/ehc-ingest/{topics.PREFIX}/{CLINIC}/box-a/evt/scan"):
            assert client.publish(topic, b"\xa0") == NOT_AUTHORISED, topic
        assert client.publish(topics.device_topic(CLINIC, "box-a", "health"), b"\xa0") == 0  # its own: accepted
    finally:
        client.close()
    wait_until(lambda: store.counts()["rejections"].get("malformed") == 1, what="the one accepted message refused")
    assert store.counts()["results"] == 0


def test_a_box_subscribed_to_the_ingest_topics_receives_nothing_of_other_boxes(central, tmp_path) -> None:
    site, store, _ = central
    a, b = make_box(site, store, tmp_path, "box-a"), make_box(site, store, tmp_path, "box-b")
    spy = raw(site, a, "spy")
    victim = raw(site, b)
    boss = central_client(site)
    try:
        filters = [f"{topics.PREFIX}/+/+/evt/+", f"{topics.PREFIX}/+/+/req/+", f"{topics.PREFIX}/+/+/state",
                   f"{topics.PREFIX}/+/+/health", f"{topics.PREFIX}/+/+/status", f"{topics.PREFIX}/{CLINIC}/box-b/#",
                   f"{topics.PREFIX}/+/+/ack", f"{topics.PREFIX}/+/+/rsp/+", "#"]
        spy.client.subscribe([(f, 1) for f in filters])
        wait_until(lambda: len(spy.suback) == len(filters), what="SUBACK")
        # Mosquitto 2.0 grants these subscriptions and checks read access per delivered message; a broker that
        # refuses them at SUBSCRIBE (135) is just as good: what counts is that nothing is delivered.
        assert all(rc.value in (0, 1, 135) for rc in spy.suback)
        ident = load_identity(b)
        topic = topics.event(CLINIC, "box-b", "scan")
        signed = envelope.sign(envelope.Message("box-b", 1, 1, "scan", {"outcome": "green"}), topic, ident.key)
        assert victim.publish(topic, signed) == 0
        assert victim.publish(topics.device_topic(CLINIC, "box-b", "status"), b"online") == 0
        wait_until(lambda: store.counts()["results"] == 1, what="box-b's result stored")
        # box-b's receipt and a command for box-b are sent; then a command for the spy itself, which it may read:
        # once that one is delivered, anything of box-b's routed to the spy would have been delivered before it.
        assert boss.publish(topics.command(CLINIC, "box-b", "rebirth"), b"now") == 0
        assert boss.publish(topics.command(CLINIC, "box-a", "rebirth"), b"sentinel") == 0
        wait_until(lambda: any(p == b"sentinel" for _, p in spy.messages), what="the spy's own command")
    finally:
        for c in (spy, victim, boss):
            c.close()
    leaked = [t for t, _ in spy.messages if "/box-b/" in t]
    assert leaked == []
    assert {t for t, _ in spy.messages} <= {topics.command(CLINIC, "box-a", "rebirth"), topics.CENTRAL_STATUS,
                                            topics.TRUST_LIST}


# -- replay and re-ordering through the broker ----------------------------------------------------------

def test_reordered_and_replayed_results_are_stored_once_with_gaps_tracked(central, tmp_path) -> None:
    site, store, ingest = central
    cfg = make_box(site, store, tmp_path, "box-0001")
    key = load_identity(cfg).key
    client = raw(site, cfg)
    topic = topics.event(CLINIC, "box-0001", "scan")
    signed = {(boot, seq): envelope.sign(envelope.Message("box-0001", boot, seq, "scan", {"seq": seq}), topic, key)
              for boot, seq in [(7, s) for s in range(1, 6)] + [(8, 1), (8, 3), (8, 2)]}
    try:
        for boot, seq in [(7, 4), (7, 2), (7, 1), (7, 5), (7, 2), (7, 4), (7, 3), (8, 1), (8, 3)]:
            assert client.publish(topic, signed[(boot, seq)]) == 0
        wait_until(lambda: store.counts()["results"] == 7 and ingest.counters["duplicate"] == 2, what="results")
        # boot 8 lacks seq 2: one missing result, recorded as a gap
        assert store.devices()[0]["missing"] == 1
        gaps = store.query("SELECT boot_id, first_missing, last_missing FROM sequence_gaps WHERE boot_id = 8")
        assert [tuple(g) for g in gaps] == [(8, 2, 2)]
        assert client.publish(topic, signed[(8, 2)]) == 0  # the late one arrives: nothing missing any more
        wait_until(lambda: store.counts()["results"] == 8, what="the late result")
    finally:
        client.close()
    assert store.devices()[0]["missing"] == 0
    rows = list(store.iter_results())
    assert sorted((r["boot_id"], r["seq"]) for r in rows) == sorted(signed)
    assert all(r["body"] == {"seq": r["seq"]} for r in rows)
    assert store.counts()["rejections"] == {}


# -- a stolen box's outbox ------------------------------------------------------------------------------

def _tampered_body(payload: bytes) -> bytes:
    """The same COSE_Sign1 with its payload's body changed and the original signature kept."""
    tag = cbor2.loads(payload)
    protected, unprotected, inner, signature = tag.value
    fields = cbor2.loads(inner)
    body_key = next(k for k, v in fields.items() if isinstance(v, dict))
    fields[body_key] = dict(fields[body_key], outcome="green")
    return cbor2.dumps(cbor2.CBORTag(tag.tag, [protected, unprotected, cbor2.dumps(fields), signature]))


def test_an_outbox_altered_on_a_stolen_box_is_refused_centrally(central, tmp_path) -> None:
    """Rows edited in SQLite (body, bytes, topic) no longer verify: refused as forged, nothing altered stored."""
    site, store, ingest = central
    cfg = make_box(site, store, tmp_path, "box-0001")
    up = build_uplink(cfg)
    up.outbox.start_boot()
    sent = [up.outbox.enqueue("scan", {"n": i, "outcome": "red"}) for i in range(5)]
    db = sqlite3.connect(cfg.outbox_path)
    rows = db.execute("SELECT id, topic, payload FROM outbox ORDER BY id").fetchall()
    assert len(rows) == 5
    p1, p2 = rows[1][2], rows[2][2]
    flipped = bytearray(p2)
    flipped[-70] ^= 0x01  # a bit inside the payload, just before the signature
    with db:
        db.execute("UPDATE outbox SET payload = ? WHERE id = ?", (_tampered_body(p1), rows[1][0]))
        db.execute("UPDATE outbox SET payload = ? WHERE id = ?", (bytes(flipped), rows[2][0]))
        db.execute("UPDATE outbox SET topic = ? WHERE id = ?", (topics.event(CLINIC, "box-0001", "print"), rows[3][0]))
    db.close()
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 2 and sum(store.counts()["rejections"].values()) >= 3,
                   what="the untouched results stored and the altered ones refused")
    finally:
        up.stop()
    stored = {r["msg_id"]: r["body"] for r in store.iter_results()}
    assert stored == {str(sent[i].msg_id): {"n": i, "outcome": "red"} for i in (0, 4)}
    assert set(store.counts()["rejections"]) == {"bad_signature"}  # refused again at every resend
    # the altered rows stay on the box: no receipt ever covers them
    assert not up.drained()
