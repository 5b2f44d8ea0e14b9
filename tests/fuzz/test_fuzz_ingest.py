"""The central ingest's message handling under arbitrary MQTT payloads and topics.

Deliveries go straight to :meth:`Ingest.process` (with a recording stand-in for the paho client, as in
``tests/central/test_ingest_unit.py``). Whatever a device or an attacker publishes, ``process`` returns: a refusal is
recorded with its reason and stores no result; a correctly signed message with a body of any shape is stored
or refused, and the next good message is handled normally (one bad message never blocks the worker).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from central.ingest import Inbound, Ingest
from central.store import SqlStore
from mqtt import envelope, topics
from tests.central.test_ingest_unit import Box, FakeClient
from tests.fuzz.harness import fuzz, json_values, mutated, no_hang

CLINIC = "clinic-a"
CHANNELS = ["evt/scan", "evt/vaccination", "evt/pool", "state", "health", "status", "req/lookup", "req/record", "ack",
            "cmd/x", "res/x", "evt/../x"]


@pytest.fixture
def ingest(site, store) -> Ingest:
    ing = Ingest(site.config, store)
    ing.client = FakeClient()
    return ing


@pytest.fixture
def box(site, store, tmp_path) -> Box:
    return Box(site, store, tmp_path, "box-0001")


class Tally:
    """Rejections and results in the store, to compare before and after one delivery."""

    def __init__(self, store: SqlStore) -> None:
        counts = store.counts()
        self.results = counts["results"]
        self.rejections = sum(counts["rejections"].values())


def deliver(ingest: Ingest, store: SqlStore, topic: str, payload: bytes) -> dict[str, int]:
    """Process one delivery; check that a refusal was recorded with a reason and stored nothing."""
    before = Tally(store)
    with no_hang():
        counts = ingest.process([Inbound(1, 1, topic, payload)])
    after = Tally(store)
    refused = {k: v for k, v in counts.items() if k.startswith("rejected:")}
    if refused:
        (reason,) = refused
        assert reason != "rejected:", "a refusal without a reason"
        assert after.rejections == before.rejections + 1 and after.results == before.results
    else:
        assert counts.get("presence") or counts.get("lookup") or set(counts) & {"stored", "duplicate", "seq_conflict"}
    return counts


def still_works(ingest: Ingest, store: SqlStore, box: Box) -> None:
    """A good result after the fuzzed one is stored and receipted."""
    before = store.counts()["results"]
    msg = box.message(body={"outcome": "green"}, seq=10**6 + box.seq)
    box.seq += 1
    assert ingest.process([Inbound(2, 1, box.topic(), box.signed(msg))]) == {"stored": 1, "presence": 0}
    assert store.counts()["results"] == before + 1


@fuzz(150, deadline=None)
@given(st.sampled_from(CHANNELS), st.binary(max_size=300))
@example("evt/scan", b"")
@example("status", b"\xff\xfe")
def test_fuzz_arbitrary_bytes_on_a_device_topic(ingest, store, box, channel: str, payload: bytes) -> None:
    counts = deliver(ingest, store, f"{topics.PREFIX}/{CLINIC}/{box.device}/{channel}", payload)
    assert "stored" not in counts


@fuzz(100, deadline=None)
@given(st.text(max_size=80) | st.sampled_from(CHANNELS).map(lambda c: f"{topics.PREFIX}/{CLINIC}/box-0001/{c}/x"),
       st.binary(max_size=40))
def test_fuzz_arbitrary_topics(ingest, store, box, topic: str, payload: bytes) -> None:
    counts = deliver(ingest, store, topic, payload)
    assert "stored" not in counts


@fuzz(150, deadline=None)
@given(st.data())
def test_fuzz_mutated_signed_results(ingest, store, box, data: st.DataObject) -> None:
    msg = box.message(body={"outcome": "green", "card_ref": "0123456789abcdef"}, seq=1)
    signed = box.signed(msg)
    payload = data.draw(mutated(signed))
    counts = deliver(ingest, store, box.topic(), payload)
    if payload != signed and "stored" in counts:  # only the signed bytes, or bytes that mean the same, are stored
        assert envelope.verify(payload, box.topic(), box.key.public_key()) == msg


@fuzz(200, deadline=None)
@given(st.sampled_from(["evt/scan", "evt/vaccination", "state", "health", "req/lookup", "req/record"]),
       st.dictionaries(st.sampled_from(["child_ref", "vaccine", "given_on", "product", "dose", "trace_code", "lot",
                                        "expiry", "override", "pending", "card_index", "code_type", "rid", "id_ref",
                                        "outcome", "x"]), json_values, max_size=8),
       st.integers(1, 2**40))
@example("evt/vaccination", {"vaccine": "HepB"}, 1)  # no child_ref
@example("evt/vaccination", {"child_ref": "a", "vaccine": {"a": 1}, "given_on": "2024-01-01"}, 2)
@example("evt/scan", {"pending": "online_lookup", "card_index": "x", "code_type": "abc"}, 3)
@example("evt/scan", {"pending": "online_lookup", "card_index": "x", "code_type": [1]}, 4)
@example("req/lookup", {"rid": "0123456789abcdef", "card_index": "A" * 64, "code_type": 2**62}, 5)
def test_fuzz_signed_bodies_of_any_shape(ingest, store, box, channel: str, body: dict, seq: int) -> None:
    """A device (or a stolen key) signs anything: the batch completes, and the next message is handled."""
    name = channel.split("/")[-1]
    topic = f"{topics.PREFIX}/{CLINIC}/{box.device}/{channel}"
    payload = envelope.sign(envelope.Message(box.device, 1, seq, name, body), topic, box.key)
    deliver(ingest, store, topic, payload)
    still_works(ingest, store, box)
