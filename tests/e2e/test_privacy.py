"""Personal fields end to end: sealed on the box, opaque on the broker, opened and kept only centrally;
a sealed part moved to another message or sealed to another key is quarantined, never stored."""

from __future__ import annotations

import json

import pytest

from central.ingest import Inbound, Ingest
from central.site import add_device
from edge import config as edge_config
from edge.boxfiles import load_identity, open_outbox
from edge.flows.base import FlowContext, IdPresented
from edge.flows.checkin import CheckinFlow
from edge.identity import from_id_card
from edge.runtime import build_uplink
from mqtt import envelope, sealed, topics
from mqtt.outbox import NoSealKey, Outbox
from tests.hw_sim.idcard_reader import sample_cards
from tests.support.mqtt_helpers import TopicRecordingClient, central_tap, running_central, wait_until

PERSON = {"name": "王芳", "id_number": "11010519491231002X", "birth_date": "1949-12-31"}


def _leaks(data: bytes) -> list[str]:
    return [v for v in PERSON.values() if v.encode() in data] + (["1949"] if b"1949" in data else [])




@pytest.fixture
def ingest(site, store) -> Ingest:
    ing = Ingest(site.config, store)
    ing.client = TopicRecordingClient()
    return ing


def make_box(site, store, tmp_path, device="box-0001") -> Outbox:
    cfg = edge_config.load(add_device(site, store, device, "clinic-a", tmp_path / device))
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()
    return box


def process(ingest: Ingest, rows) -> dict[str, int]:
    return ingest.process([Inbound(i, 1, r[0], r[1]) for i, r in enumerate(rows, start=1)])


def test_personal_fields_are_sealed_opened_and_kept_apart(ingest, store, site, tmp_path):
    box = make_box(site, store, tmp_path)
    msg = box.enqueue("scan", {"outcome": "green", "id_ref": "ab" * 16}, personal=PERSON)
    (row,) = box.pending()
    assert _leaks(row.payload) == []
    assert process(ingest, [(row.topic, row.payload)]) == {"stored": 1, "presence": 0}
    assert store.personal(str(msg.msg_id)) == PERSON
    (stored,) = store.iter_results()
    assert stored["body"] == {"outcome": "green", "id_ref": "ab" * 16}  # the ciphertext is not kept twice


def test_a_sealed_part_copied_into_another_message_is_quarantined(ingest, store, site, tmp_path):
    box = make_box(site, store, tmp_path)
    original = box.enqueue("scan", {"outcome": "green"}, personal=PERSON)
    ident = box.identity
    topic = topics.event("clinic-a", ident.device, "scan")
    thief = envelope.Message(ident.device, original.boot, 50, "scan", {"outcome": "red",
                                                                       "personal": original.body["personal"]})
    out = process(ingest, [(topic, envelope.sign(thief, topic, ident.key))])
    assert out == {"quarantined": 1, "presence": 0}
    assert store.personal(str(thief.msg_id)) is None and list(store.iter_results()) == []
    assert store.counts()["rejections"] == {"bad_sealed": 1} and store.counts()["quarantined"] == 1
    assert ingest.client.published == [topics.device_topic("clinic-a", ident.device, "ack")]  # receipted


def test_a_part_sealed_to_another_key_is_quarantined(ingest, store, site, tmp_path):
    box = make_box(site, store, tmp_path)
    box.seal_key = sealed.generate_key().public_key()
    box.enqueue("scan", {"outcome": "green"}, personal=PERSON)
    assert process(ingest, [(r.topic, r.payload) for r in box.pending()])["quarantined"] == 1


def test_a_site_without_its_sealing_key_refuses_and_the_box_keeps_the_result(site, store, tmp_path):
    box = make_box(site, store, tmp_path)
    box.enqueue("scan", {"outcome": "green"}, personal=PERSON)
    (site.root / "pki" / "central-seal.key").unlink()
    ing = Ingest(site.config, store)
    ing.client = TopicRecordingClient()
    assert process(ing, [(r.topic, r.payload) for r in box.pending()]) == {"rejected:no_seal_key": 1, "presence": 0}
    assert ing.client.published == []  # no receipt: it is resent once the key is back


def test_a_box_without_the_sealing_key_refuses_personal_fields(tmp_path):
    from foundation import keyfiles
    from mqtt.outbox import DeviceIdentity

    box = Outbox(tmp_path / "o.db", DeviceIdentity("box-0001", "clinic-a", keyfiles.generate_key()))
    box.start_boot()
    with pytest.raises(NoSealKey):
        box.enqueue("scan", {"outcome": "green"}, personal=PERSON)
    assert box.pending() == [] and box.enqueue("scan", {"outcome": "green"}).seq == 1


# -- through the real broker --------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    db = "sqlite:central.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with running_central(tmp_path, db) as (site, store, _):
        yield site, store


def test_the_broker_sees_pseudonyms_only_and_the_store_keeps_the_person(central, tmp_path):
    site, store = central
    cfg = edge_config.load(add_device(site, store, "box-0001", "clinic-a", tmp_path / "box-0001",
                                      {"receipt_timeout": 2.0}))
    # A tap with the ingest's own certificate, outside its shared group: it reads everything the boxes send.
    tap = central_tap(site)
    tap.client.subscribe("ehc/v1/+/+/evt/+", qos=1)
    wait_until(lambda: tap.suback, what="tap subscription")
    up = build_uplink(cfg, ["qr"])
    up.outbox.start_boot()
    ctx = FlowContext(up.outbox, clinic="clinic-a", pseudonym_key=b"k" * 32, send_id_number=True)
    card = sample_cards()["resident"]
    outcome = CheckinFlow(ctx).handle(IdPresented(from_id_card(card)))
    assert outcome is not None and outcome.message_id
    other, error = ctx.publish("scan", {"flow": "test"}, personal=PERSON)
    assert error is None and other is not None
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 2 and up.drained() and len(tap.messages) >= 2,
                   what="delivery and tap")
    finally:
        up.stop()
        tap.close()
    seen = b"".join(payload for _, payload in tap.messages)
    assert _leaks(seen) == [] and card.id_number.encode() not in seen and card.display_name.encode() not in seen
    assert store.personal(outcome.message_id) == {"id_number": card.id_number}
    assert store.personal(str(other.msg_id)) == PERSON
    rows = {r["msg_id"]: r for r in store.iter_results()}
    assert "id_number" not in json.dumps(rows[outcome.message_id]["body"])
    assert len(rows[outcome.message_id]["body"]["id_ref"]) == 32
    # The audit links came along: one head, no alert.
    from central import audit_check as central_audit

    found = central_audit.report(store, "box-0001")
    assert found["alerts"] == [] and found["heads"][0]["pos"] >= 3


class _NoAnswer:
    """A lookup client whose central service does not answer in time."""

    def lookup(self, card_index: str, code_type: int) -> None:
        return None


def test_the_broker_sees_no_card_index_and_the_store_still_resolves_lookups_and_pools(central, tmp_path):
    from edge.credentials.verifier import TrustedVerifier
    from edge.flows.base import ButtonPress, Scan
    from edge.flows.masstest import MassTestFlow, PoolSettings
    from edge.runtime import build_lookup, build_verifier
    from tests.hw_sim.camera import health_card_tokens
    from tests.support.flow_helpers import qr, tube

    site, store = central
    active, suspended, first, second = health_card_tokens(4, seed=41)
    indexes = [t[:64].upper() for t in (active, suspended, first, second)]
    store.register_card(indexes[0])
    store.register_card(indexes[1], status="suspended")
    cfg = edge_config.load(add_device(site, store, "box-0001", "clinic-a", tmp_path / "box-0001",
                                      {"receipt_timeout": 2.0}))
    tap = central_tap(site)
    for pattern in ("ehc/v1/+/+/evt/+", "ehc/v1/+/+/req/+", "ehc/v1/+/+/rsp/+"):
        tap.client.subscribe(pattern, qos=1)
    wait_until(lambda: len(tap.suback) == 3, what="tap subscriptions")
    up = build_uplink(cfg, ["qr"])
    up.outbox.start_boot()
    up.start()  # the box's one MQTT session: the station's lookups go through it
    lookups = build_lookup(cfg, load_identity(cfg))
    try:
        assert lookups.connected.wait(10)
        online = FlowContext(up.outbox, clinic="clinic-a", verifier=build_verifier(cfg, lookups))
        answered = CheckinFlow(online).handle(qr(active))   # asked online: sealed request, green answer
        offline = FlowContext(up.outbox, clinic="clinic-a",
                              verifier=TrustedVerifier(trust=None, lookup=_NoAnswer()))  # type: ignore[arg-type]
        left = CheckinFlow(offline).handle(qr(suspended))  # no answer: left for the central service
        pool = MassTestFlow(FlowContext(up.outbox, clinic="clinic-a"), PoolSettings(capacity=3))
        events: list[Scan | ButtonPress] = [tube("TUBE-900001"), qr(first), qr(second), ButtonPress()]
        pooled = [pool.handle(e) for e in events][-1]
    finally:
        lookups.stop()
    assert answered is not None and (answered.signal.value, answered.reason) == ("accepted", None)
    assert left is not None and left.reason == "lookup_unavailable"
    assert pooled is not None and pooled.message_id
    try:
        wait_until(lambda: store.counts()["results"] == 3 and up.drained(), what="delivery")
        wait_until(lambda: sum(t.split("/")[4] == "evt" for t, _ in tap.messages) >= 3, what="tap")
    finally:
        up.stop()
        tap.close()
    seen = b"".join(payload for _, payload in tap.messages)
    assert {t.split("/")[4] for t, _ in tap.messages} >= {"evt", "req", "rsp"}
    assert [i for i in indexes if i.encode() in seen or i.lower().encode() in seen] == []
    # the central service still resolves the scan it was left and recalls the pool's people
    wait_until(lambda: store.execute("SELECT found, status FROM card_lookups WHERE msg_id = ?",
                                     (left.message_id,)).fetchone() == (1, "suspended"), 10, "resolution")
    assert store.unresolved_lookups() == []
    (binding,) = store.pool_members("TUBE-900001")
    assert binding["msg_id"] == pooled.message_id and binding["members"] == indexes[2:]
    rows = {r["msg_id"]: r for r in store.iter_results()}
    assert not any(i in json.dumps(r["body"]) for r in rows.values() for i in indexes)


def test_late_lookups_read_the_card_index_from_the_sealed_part(ingest, store, site, tmp_path):
    sealed_index, clear_index = "AB" * 32, "CD" * 32
    store.register_card(sealed_index, status="suspended")
    store.register_card(clear_index)

    class Down:
        def lookup(self, card_index: str, code_type: int):
            raise ConnectionError("platform down")

    ingest.platform = Down()
    box = make_box(site, store, tmp_path)
    pending = {"flow": "checkin", "outcome": "yellow", "reason": "lookup_unavailable", "pending": "online_lookup",
               "code_type": 1}
    sealed_scan = box.enqueue("scan", pending, personal={"card_index": sealed_index})
    clear_scan = box.enqueue("scan", {**pending, "card_index": clear_index})  # a box not yet updated
    assert process(ingest, [(r.topic, r.payload) for r in box.pending()]) == {"stored": 2, "presence": 0}
    assert sorted(store.unresolved_lookups()) == sorted([(str(sealed_scan.msg_id), sealed_index, 1),
                                                         (str(clear_scan.msg_id), clear_index, 1)])
    from central.ingest import resolve_lookup
    from mqtt import lookup

    registry = lookup.LocalCardRegistry(store)
    assert all(resolve_lookup(store, registry, *row) for row in store.unresolved_lookups())
    assert store.unresolved_lookups() == []
    assert store.execute("SELECT found, status FROM card_lookups WHERE msg_id = ?",
                         (str(sealed_scan.msg_id),)).fetchone() == (1, "suspended")
