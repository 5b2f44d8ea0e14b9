"""Online card lookup through a real Mosquitto and the central ingest, signed both ways."""

from __future__ import annotations

import time

import pytest

from central.ingest import Ingest
from central.site import add_device
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity, load_seal_key, relay_path
from edge.lookup import LookupClient
from edge.payloads import classify_payload
from edge.runtime import build_lookup, build_verifier
from edge.verify import Outcome
from foundation import keyfiles
from mqtt import lookup, topics
from tests.hw_sim.camera import health_card_tokens
from tests.support.mqtt_helpers import RawClient, wait_until

ACTIVE, SUSPENDED, UNKNOWN, YELLOW = health_card_tokens(4, seed=31)


@pytest.fixture
def running(site, store, broker):
    ingest = Ingest(site.config, open_store(site.config.database_url)).start()
    assert ingest.connected.wait(10)
    store.register_card(ACTIVE[:64])
    store.register_card(SUSPENDED[:64], status="suspended")
    store.register_card(YELLOW[:64], health="yellow")
    yield ingest
    ingest.stop()


@pytest.fixture
def box(site, store, tmp_path):
    return edge_config.load(add_device(site, store, "box-0001", "clinic-a", tmp_path / "box"))


@pytest.fixture
def uplink(box):
    """The box's uplink: it owns the box's one MQTT session, which the station's lookups go through."""
    from edge.runtime import build_uplink

    up = build_uplink(box).start()
    assert up.connected.wait(10)
    yield up
    up.stop()


def test_lookups_decide_the_outcome(running, box, uplink) -> None:
    client = build_lookup(box, load_identity(box))
    try:
        assert client.connected.wait(10)
        verifier = build_verifier(box, client)
        verdicts = {name: verifier.verify(classify_payload(token)) for name, token in
                    (("active", ACTIVE), ("suspended", SUSPENDED), ("unknown", UNKNOWN), ("yellow", YELLOW))}
    finally:
        client.stop()
    assert (verdicts["active"].outcome, verdicts["active"].verified, verdicts["active"].pending) == (
        Outcome.GREEN, True, None)
    assert (verdicts["suspended"].outcome, verdicts["suspended"].reason) == (Outcome.RED, "card_suspended")
    assert (verdicts["unknown"].outcome, verdicts["unknown"].reason) == (Outcome.RED, "card_unknown")
    assert (verdicts["yellow"].outcome, verdicts["yellow"].reason) == (Outcome.YELLOW, "status_yellow")
    assert running.counters["lookup"] == 4


def test_no_broker_means_yellow_within_the_timeout(site, store, box) -> None:
    client = build_lookup(box, load_identity(box))  # neither the broker fixture nor an uplink is running
    try:
        started = time.monotonic()
        verdict = build_verifier(box, client).verify(classify_payload(ACTIVE))
        assert time.monotonic() - started < 3
    finally:
        client.stop()
    assert (verdict.outcome, verdict.reason, verdict.pending) == (Outcome.YELLOW, "lookup_unavailable", "online_lookup")
    assert verdict.claims == {"card_index": ACTIVE[:64]}


def test_answers_not_signed_by_the_centre_are_ignored(running, box, site, uplink) -> None:
    identity = load_identity(box)
    central = keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key()
    client = LookupClient(relay_path(box), identity, central, timeout=1.0, seal_key=load_seal_key(box)).start()
    try:
        assert client.connected.wait(10)
        forged = lookup.sign_answer("clinic-a", "box-0001", "00" * 8, lookup.CardAnswer(True, "active", "green"),
                                    keyfiles.generate_key())
        client._on_message(client.reply_topic, forged)
        assert client.stats["bad_answers"] == 1
        assert client.lookup(ACTIVE[:64], 1) == lookup.CardAnswer(True, "active", "green")
    finally:
        client.stop()


def test_a_box_cannot_ask_on_another_box_s_topic(running, box, site, store, tmp_path) -> None:
    other = edge_config.load(add_device(site, store, "box-0002", "clinic-a", tmp_path / "other"))
    b = site.config.broker
    raw = RawClient(b.host, b.port, box.path(box.mqtt.ca), box.path(box.device.cert), box.path(box.device.key),
                    "clinic-a/box-0001").wait_connected()
    try:
        assert raw.publish(topics.request("clinic-a", other.device.id, "lookup"), b"x") == 135  # not authorised
        assert raw.publish(topics.request("clinic-a", box.device.id, "lookup"), b"x") == 0
    finally:
        raw.close()


def test_scans_recorded_without_an_answer_are_resolved_centrally(running, box, store, site) -> None:
    from central.ingest import resolve_lookup
    from edge.runtime import build_uplink

    up = build_uplink(box)
    up.outbox.start_boot()
    pending = up.outbox.enqueue("scan", {"flow": "checkin", "outcome": "yellow", "reason": "lookup_unavailable",
                                         "pending": "online_lookup", "code_type": 1},
                                personal={"card_index": SUSPENDED[:64]})
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 1, 10, "delivery")
    finally:
        up.stop()
    # resolved by the ingest as it stored the result
    wait_until(lambda: store.execute("SELECT found, status FROM card_lookups WHERE msg_id = ?",
                                     (str(pending.msg_id),)).fetchone() == (1, "suspended"), 10, "resolution")
    assert store.unresolved_lookups() == []
    # a platform that is down leaves it pending, for `ehc-central lookups` to retry
    class Down:
        def lookup(self, index, code_type):
            raise ConnectionError("platform down")
    assert not resolve_lookup(store, Down(), "m-1", ACTIVE[:64], 1)


def test_an_id_card_finds_its_holder_s_health_card(running, box, store, uplink) -> None:
    from edge.identity import pseudonym

    key = box.path(box.identity.pseudonym_key).read_bytes()
    holder = pseudonym(key, "resident", "11010519491231002X")
    store.register_card("AB" * 32, health="yellow", id_ref=holder)
    client = build_lookup(box, load_identity(box))
    try:
        assert client.connected.wait(10)
        verifier = build_verifier(box, client)
        found = verifier.verify_identity(holder, True)
        missing = verifier.verify_identity(pseudonym(key, "resident", "110105194912310021"), True)
    finally:
        client.stop()
    assert (found.outcome, found.reason, found.verified) == (Outcome.YELLOW, "status_yellow", True)
    assert (missing.outcome, missing.reason) == (Outcome.YELLOW, "no_health_card")


def test_a_box_without_the_sealing_key_asks_nothing_about_cards(running, box, site, uplink) -> None:
    identity = load_identity(box)
    central = keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key()
    client = LookupClient(relay_path(box), identity, central, timeout=1.0).start()
    try:
        assert client.connected.wait(10)
        assert client.lookup(ACTIVE[:64], 1) is None
        assert client.stats["no_seal_key"] == 1 and client.stats["asked"] == 0
    finally:
        client.stop()
    assert running.counters["lookup"] == 0


def test_the_ingest_refuses_a_request_sealed_for_another_message(running, box, site) -> None:
    from mqtt import envelope

    identity = load_identity(box)
    topic = topics.request("clinic-a", box.device.id, lookup.KIND)
    seal_key = load_seal_key(box)
    assert seal_key is not None
    other = envelope.Message(box.device.id, 0, 0, lookup.KIND, {})
    body = lookup.request_body("0123456789abcdef", ACTIVE[:64], 1, seal_key, topic, other.msg_id.bytes)
    data = envelope.sign(envelope.Message(box.device.id, 0, 0, lookup.KIND, body), topic, identity.key)
    b = site.config.broker
    raw = RawClient(b.host, b.port, box.path(box.mqtt.ca), box.path(box.device.cert), box.path(box.device.key),
                    "box-0001-raw").wait_connected()
    try:
        assert raw.publish(topic, data) == 0  # the part opens only for the message it was sealed for
        wait_until(lambda: running.counters["rejected:bad_request"] == 1, 10, "rejection")
    finally:
        raw.close()
