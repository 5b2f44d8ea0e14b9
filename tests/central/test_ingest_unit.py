"""Central ingest without a broker: the Verifier's refusal reasons and caching, and Ingest.process.

``process`` is driven with a recording stand-in for the paho client; the tests check the ordering that
makes delivery exactly once: a delivery is acknowledged, and a receipt published, only after its outcome
is committed. The same flow against a real Mosquitto is covered by ``test_e2e_delivery.py``.
"""

from __future__ import annotations

import types
from pathlib import Path

import cbor2
import pytest

from central import ingest as ingest_mod
from central.ingest import Inbound, Ingest, RejectedMessage, Verifier
from central.site import Site, add_device
from central.store import SqlStore, StoreUnavailable, open_store
from foundation import keyfiles
from mqtt import envelope, receipts, topics

CLINIC = "clinic-a"


class Box:
    """A registered device: its id, clinic and key."""

    def __init__(self, site: Site, store: SqlStore, root: Path, device: str, clinic: str = CLINIC,
                 register: bool = True) -> None:
        add_device(site, store, device, clinic, root / device, register=register)
        self.device, self.clinic = device, clinic
        self.key = keyfiles.load_private_key(root / device / "device.key")
        self.seq = 0

    def topic(self, kind: str = "scan") -> str:
        return topics.event(self.clinic, self.device, kind)

    def message(self, kind: str = "scan", body: dict | None = None, seq: int | None = None,
                device: str | None = None) -> envelope.Message:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return envelope.Message(device or self.device, 1, seq, kind, body if body is not None else {"seq": seq})

    def signed(self, msg: envelope.Message | None = None, topic: str | None = None, key=None) -> bytes:
        msg = msg or self.message()
        return envelope.sign(msg, topic or self.topic(msg.kind), key or self.key)


@pytest.fixture
def boxes(site, store, tmp_path):
    a = Box(site, store, tmp_path, "box-0001")
    b = Box(site, store, tmp_path, "box-0002")
    return a, b


@pytest.fixture
def verifier(store) -> Verifier:
    return Verifier(store, max_bytes=4096)


def reason_of(verifier: Verifier, topic: str, payload: bytes) -> str:
    with pytest.raises(RejectedMessage) as info:
        verifier.verify(topic, payload)
    return info.value.reason


# -- Verifier -------------------------------------------------------------------------------------------------

def test_good_message_verifies(verifier, boxes):
    a, _ = boxes
    msg = a.message(body={"outcome": "green"})
    t, got = verifier.verify(a.topic(), a.signed(msg))
    assert got == msg
    assert (t.clinic, t.device, t.channel, t.name) == (CLINIC, a.device, "evt", "scan")


def test_oversized(verifier, boxes):
    a, _ = boxes
    big = a.signed(a.message(body={"pad": "x" * 5000}))
    assert reason_of(verifier, a.topic(), big) == "oversized"


@pytest.mark.parametrize("topic", [
    "ehc/v1/clinic-a/box-0001/bogus", "ehc/v2/clinic-a/box-0001/evt/scan", "ehc/v1/clinic-a/+/evt/scan",
    "ehc/v1/clinic-a/box-0001/evt", "something/else", "",
])
def test_bad_topic(verifier, boxes, topic):
    a, _ = boxes
    assert reason_of(verifier, topic, a.signed()) == "bad_topic"


def test_unknown_device(verifier, site, store, tmp_path):
    ghost = Box(site, store, tmp_path, "box-ghost", register=False)
    with pytest.raises(RejectedMessage) as info:
        verifier.verify(ghost.topic(), ghost.signed())
    assert (info.value.reason, info.value.device) == ("unknown_device", "box-ghost")


def test_revoked_device(verifier, store, boxes):
    a, _ = boxes
    store.set_device_status(a.device, "revoked")
    assert reason_of(verifier, a.topic(), a.signed()) == "revoked_device"


def test_wrong_clinic(verifier, boxes):
    a, _ = boxes
    topic = topics.event("clinic-b", a.device, "scan")
    assert reason_of(verifier, topic, a.signed(topic=topic)) == "wrong_clinic"


def test_bad_signature(verifier, boxes):
    a, b = boxes
    assert reason_of(verifier, a.topic(), a.signed(key=b.key)) == "bad_signature"
    assert reason_of(verifier, a.topic(), a.signed(key=keyfiles.generate_key())) == "bad_signature"
    # Signed for another topic (the AAD): moved from evt/scan to evt/print.
    assert reason_of(verifier, a.topic("print"), a.signed(a.message("scan"))) == "bad_signature"


def test_wrong_topic_device_inside_differs(verifier, boxes):
    a, b = boxes
    # Correctly signed by box-0001 for its own topic, but the message claims to be from box-0002.
    lying = a.signed(a.message(device=b.device), topic=a.topic())
    with pytest.raises(RejectedMessage) as info:
        verifier.verify(a.topic(), lying)
    assert (info.value.reason, info.value.device) == ("wrong_topic", a.device)


def test_wrong_topic_kind_inside_differs(verifier, boxes):
    a, _ = boxes
    liar = a.signed(a.message("scan"), topic=a.topic("print"))
    assert reason_of(verifier, a.topic("print"), liar) == "wrong_topic"


@pytest.mark.parametrize("payload", [b"", b"\x00garbage", b"\xd2\x84\x40", cbor2.dumps({"not": "cose"})])
def test_malformed(verifier, boxes, payload):
    a, _ = boxes
    assert reason_of(verifier, a.topic(), payload) == "malformed"


def test_envelope_reasons_pass_through(verifier, boxes):
    a, _ = boxes
    data = a.signed()
    parts = list(cbor2.loads(data).value)
    parts[0] = cbor2.dumps({1: -35, 4: a.device.encode()})
    assert reason_of(verifier, a.topic(), cbor2.dumps(cbor2.CBORTag(18, parts))) == "bad_alg"


def test_checks_run_before_signature_work(verifier, store, boxes, monkeypatch):
    """Cheap refusals (size, topic, registry) never reach the signature check."""
    a, _ = boxes
    calls = []
    monkeypatch.setattr(ingest_mod.envelope, "verify", lambda *args: calls.append(args))
    store.set_device_status(a.device, "revoked")
    for topic, payload in [(a.topic(), b"x" * 5000), ("bad", b""), (a.topic(), b"")]:
        with pytest.raises(RejectedMessage):
            verifier.verify(topic, payload)
    assert calls == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def install(self, monkeypatch) -> None:
        fake = types.SimpleNamespace(monotonic=lambda: self.now, time=lambda: self.now)
        monkeypatch.setattr(ingest_mod, "time", fake)


def count_lookups(monkeypatch, store: SqlStore) -> list[str]:
    seen: list[str] = []
    real = store.get_device

    def wrapper(device_id: str):
        seen.append(device_id)
        return real(device_id)

    monkeypatch.setattr(store, "get_device", wrapper)
    return seen


def test_unknown_device_is_cached_then_found_after_ttl(verifier, site, store, tmp_path, monkeypatch):
    clock = Clock()
    clock.install(monkeypatch)
    lookups = count_lookups(monkeypatch, store)
    late = Box(site, store, tmp_path, "box-late", register=False)
    payloads = [late.signed() for _ in range(20)]
    for p in payloads:
        assert reason_of(verifier, late.topic(), p) == "unknown_device"
    assert lookups == ["box-late"]

    # Registered now; the negative cache still answers until its TTL runs out.
    add_device(site, store, "box-late", CLINIC, tmp_path / "box-late")
    clock.now += ingest_mod.UNKNOWN_DEVICE_TTL / 2
    assert reason_of(verifier, late.topic(), payloads[0]) == "unknown_device"
    assert lookups == ["box-late"]
    clock.now += ingest_mod.UNKNOWN_DEVICE_TTL
    _, msg = verifier.verify(late.topic(), payloads[1])
    assert msg.device == "box-late"
    assert lookups == ["box-late", "box-late"]
    # A known key is cached too.
    for p in payloads[2:]:
        verifier.verify(late.topic(), p)
    assert len(lookups) == 2


def test_revocation_reaches_a_running_verifier(verifier, store, boxes, monkeypatch):
    """``ehc-central device revoke`` runs in another process; the ingest must notice by itself."""
    a, _ = boxes
    clock = Clock()
    clock.install(monkeypatch)
    verifier.verify(a.topic(), a.signed())
    store.set_device_status(a.device, "revoked")
    clock.now += 300  # five minutes
    assert reason_of(verifier, a.topic(), a.signed()) == "revoked_device"


def test_re_enrolment_reaches_a_running_verifier(verifier, site, store, boxes, tmp_path, monkeypatch):
    a, _ = boxes
    clock = Clock()
    clock.install(monkeypatch)
    verifier.verify(a.topic(), a.signed())
    new_dir = tmp_path / "reenrolled"
    add_device(site, store, a.device, CLINIC, new_dir)
    new_key = keyfiles.load_private_key(new_dir / "device.key")
    clock.now += 300  # five minutes
    verifier.verify(a.topic(), a.signed(key=new_key))
    assert reason_of(verifier, a.topic(), a.signed()) == "bad_signature"


def test_forget_drops_a_cached_key(verifier, store, boxes):
    a, _ = boxes
    verifier.verify(a.topic(), a.signed())
    store.set_device_status(a.device, "revoked")
    verifier.forget(a.device)
    assert reason_of(verifier, a.topic(), a.signed()) == "revoked_device"


# -- Ingest.process ------------------------------------------------------------------------------------------

class FakeClient:
    """Records ack/publish calls; ``check`` runs at each call to inspect the committed state."""

    def __init__(self, check=None) -> None:
        self.calls: list[tuple] = []
        self.check = check

    def ack(self, mid: int, qos: int) -> None:
        if self.check:
            self.check("ack", mid)
        self.calls.append(("ack", mid, qos))

    def publish(self, topic: str, payload: bytes, qos: int = 0, **kwargs) -> None:
        if self.check:
            self.check("publish", topic)
        self.calls.append(("publish", topic, payload, qos))

    @property
    def acked(self) -> list[int]:
        return [c[1] for c in self.calls if c[0] == "ack"]

    central_key = None  # set by the fixture: receipts must verify with the central public key

    @property
    def receipts(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for c in self.calls:
            if c[0] == "publish":
                assert c[3] == 1
                assert c[1] not in out, "one receipt per device per batch"
                out[c[1]] = receipts.open_receipt(c[2], c[1], self.central_key)
        return out


@pytest.fixture
def ingest(site, store) -> Ingest:
    ing = Ingest(site.config, store)
    ing.client = FakeClient()
    ing.client.central_key = ing.signing_key.public_key()
    return ing


@pytest.fixture
def observer(site) -> SqlStore:
    """A second connection: sees only what the ingest has committed."""
    s = open_store(site.config.database_url)
    yield s
    s.close()


def committed_ids(store: SqlStore) -> set[str]:
    return {r["msg_id"] for r in store.iter_results()}


class Deliveries:
    def __init__(self) -> None:
        self.items: list[Inbound] = []
        self.msg_of: dict[int, envelope.Message] = {}

    def add(self, topic: str, payload: bytes, msg: envelope.Message | None = None, qos: int = 1) -> Inbound:
        item = Inbound(len(self.items) + 1, qos, topic, payload)
        self.items.append(item)
        if msg is not None:
            self.msg_of[item.mid] = msg
        return item


def ack_topic(box: Box) -> str:
    return topics.device_topic(box.clinic, box.device, "ack")


def test_process_acks_after_storing_and_receipts_per_device(ingest, observer, boxes):
    a, b = boxes
    d = Deliveries()
    a_msgs = [a.message() for _ in range(3)]
    b_msgs = [b.message() for _ in range(2)]
    for m in a_msgs:
        d.add(a.topic(), a.signed(m), m)
    for m in b_msgs:
        d.add(b.topic(), b.signed(m), m)
    d.add(a.topic(), b"\x00garbage")  # rejected: acked, not receipted
    d.add(topics.event(CLINIC, "box-ghost", "scan"), b.signed(b.message()))  # unknown device

    def check(what: str, ref) -> None:
        stored = committed_ids(observer)
        if what == "ack" and ref in d.msg_of:
            assert str(d.msg_of[ref].msg_id) in stored, f"delivery {ref} acked before it was committed"
        if what == "publish":
            assert len(stored) == 5, "receipt published before the batch was committed"

    ingest.client.check = check
    counts = ingest.process(d.items)
    assert counts["stored"] == 5
    assert counts["rejected:malformed"] == 1 and counts["rejected:unknown_device"] == 1
    assert sorted(ingest.client.acked) == [i.mid for i in d.items]
    assert ingest.client.receipts == {
        ack_topic(a): [m.msg_id.bytes for m in a_msgs],
        ack_topic(b): [m.msg_id.bytes for m in b_msgs],
    }
    assert observer.counts()["rejections"] == {"malformed": 1, "unknown_device": 1}
    assert ingest.counters["stored"] == 5


def test_redelivered_batch_is_stored_once_and_receipted_again(ingest, store, boxes):
    a, _ = boxes
    d = Deliveries()
    msgs = [a.message() for _ in range(4)]
    for m in msgs:
        d.add(a.topic(), a.signed(m), m)
    assert ingest.process(d.items)["stored"] == 4
    ingest.client.calls.clear()
    again = ingest.process(d.items)
    assert again.get("stored", 0) == 0 and again["duplicate"] == 4
    assert sorted(ingest.client.acked) == [i.mid for i in d.items]
    assert ingest.client.receipts == {ack_topic(a): [m.msg_id.bytes for m in msgs]}
    assert store.counts()["results"] == 4
    assert ingest.counters == {"stored": 4, "duplicate": 4, "presence": 0}


def test_receipt_names_stored_duplicate_and_quarantined_results(ingest, store, boxes):
    a, _ = boxes
    first = a.message(seq=1)
    ingest.process([Inbound(1, 1, a.topic(), a.signed(first))])
    ingest.client.calls.clear()
    clash = a.message(seq=1, body={"different": True})  # same (boot, seq), other message: quarantined
    fresh = a.message(seq=2)
    clash_bytes = a.signed(clash)
    items = [Inbound(2, 1, a.topic(), a.signed(first)), Inbound(3, 1, a.topic(), clash_bytes),
             Inbound(4, 1, a.topic(), a.signed(fresh))]
    counts = ingest.process(items)
    assert (counts["duplicate"], counts["seq_conflict"], counts["stored"]) == (1, 1, 1)
    assert sorted(ingest.client.acked) == [2, 3, 4]
    # The box deletes what a receipt names: only results the store really holds may be named. The
    # conflicting one is not a result, but its whole envelope is committed to quarantine.
    assert ingest.client.receipts == {ack_topic(a): [first.msg_id.bytes, clash.msg_id.bytes, fresh.msg_id.bytes]}
    assert str(clash.msg_id) not in committed_ids(store)
    held = store.execute("SELECT msg_id, envelope FROM quarantine").fetchall()
    store.end_read()
    assert [(r[0], bytes(r[1])) for r in held] == [(str(clash.msg_id), clash_bytes)]


def test_rejected_only_batch_acks_without_receipts(ingest, store, boxes):
    a, b = boxes
    items = [Inbound(1, 1, a.topic(), a.signed(key=b.key)), Inbound(2, 1, "ehc/v1/x", b"junk"),
             Inbound(3, 1, a.topic(), b"")]
    counts = ingest.process(items)
    assert counts == {"rejected:bad_signature": 1, "rejected:bad_topic": 1, "rejected:malformed": 1,
                      "presence": 0}
    assert [c[0] for c in ingest.client.calls] == ["ack", "ack", "ack"]
    assert store.counts()["rejections"] == {"bad_signature": 1, "bad_topic": 1, "malformed": 1}


def test_qos0_deliveries_are_not_acked(ingest, boxes):
    a, _ = boxes
    ingest.process([Inbound(1, 0, a.topic(), a.signed()), Inbound(2, 1, a.topic(), a.signed())])
    assert ingest.client.acked == [2]


def test_presence_status_state_and_health(ingest, store, boxes):
    a, _ = boxes
    state_topic = topics.device_topic(CLINIC, a.device, "state")
    health_topic = topics.device_topic(CLINIC, a.device, "health")
    state = a.message("state", {"version": "1.2"})
    health = a.message("health", {"depth": 7})
    items = [Inbound(1, 1, topics.device_topic(CLINIC, a.device, "status"), b"online"),
             Inbound(2, 1, state_topic, a.signed(state, state_topic)),
             Inbound(3, 1, health_topic, a.signed(health, health_topic)),
             Inbound(4, 1, topics.device_topic(CLINIC, a.device, "status"), b"sleepy"),
             Inbound(5, 1, health_topic, a.signed(a.message("scan"), health_topic))]
    counts = ingest.process(items)
    assert counts["presence"] == 3
    assert counts["rejected:bad_status"] == 1 and counts["rejected:wrong_topic"] == 1
    assert sorted(ingest.client.acked) == [1, 2, 3, 4, 5]
    assert ingest.client.receipts == {}
    row = [d for d in store.devices() if d["device_id"] == a.device][0]
    assert row["presence"] == "online"
    raw = store.conn.execute("SELECT state_json, health_json FROM devices WHERE device_id = ?",
                             (a.device,)).fetchone()
    assert raw == ('{"version": "1.2"}', '{"depth": 7}')


def test_store_unavailable_acks_nothing(ingest, store, boxes, monkeypatch):
    a, _ = boxes
    items = [Inbound(1, 1, a.topic(), a.signed()), Inbound(2, 1, a.topic(), b"garbage")]

    def down(*args, **kwargs):
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(store, "store_results", down)
    with pytest.raises(StoreUnavailable):
        ingest.process(items)
    assert ingest.client.calls == []
    assert sum(ingest.counters.values()) == 0
    # Once the store is back, the held batch goes through and is acknowledged.
    monkeypatch.undo()
    assert ingest.process(items)["stored"] == 1
    assert sorted(ingest.client.acked) == [1, 2]


def test_closed_store_connection_acks_nothing(ingest, store, boxes):
    a, _ = boxes
    m = a.message()
    items = [Inbound(1, 1, a.topic(), a.signed(m))]
    ingest.verifier.verify(a.topic(), items[0].payload)  # key cached before the database goes away
    store.conn.close()
    with pytest.raises(StoreUnavailable):
        ingest.process(items)
    assert ingest.client.calls == []
