"""Documents the box receives from the centre, and the envelope under length bombs.

Signed trust lists, lookup and record answers, receipts and the central status arrive over MQTT (retained
topics, replies) or in the enrollment answer. Forged, mutated or ill-shaped ones raise only
:class:`TrustListInvalid`, :class:`LookupInvalid` or :class:`ReceiptInvalid` with a message; the box's trust list
file is never replaced by one of them. The envelope decoder (fuzzed in ``tests/mqtt/test_envelope.py``) is checked
here for bounded memory under CBOR length bombs.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import example, given
from hypothesis import strategies as st

from edge.trustlist_store import TrustListFile
from foundation.keyfiles import generate_key
from mqtt import envelope, lookup, receipts, topics
from mqtt.receipts import CENTRAL_ID, ReceiptInvalid
from mqtt.trustlist import KIND as TRUST_KIND
from mqtt.trustlist import TrustList, TrustListInvalid, card_hash, open_signed, public_key_kid, sign
from tests.fuzz.harness import (
    CBOR_BOMBS,
    CBOR_HEAVY,
    assert_reason,
    fuzz,
    json_values,
    memory_bound,
    mutated,
    no_hang,
    with_unknown_curve,
)

CENTRAL = generate_key()
ISSUER = generate_key()
PEM = ISSUER.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()
LIST = TrustList(4, issued=1.7e9, ehc1=({"kid": public_key_kid(ISSUER.public_key()), "iss": "EHC-TEST", "key": PEM},),
                 dcc=({"kid": base64.b64encode(b"12345678").decode(), "cert": base64.b64encode(b"der").decode()},),
                 shc=({"iss": "https://issuer.example", "jwks": {"keys": []}},),
                 revoked_cards=frozenset({card_hash("ab" * 16)}))
SIGNED_LIST = sign(LIST, CENTRAL)
CLINIC, DEVICE, RID = "clinic-a", "box-0001", "0123456789abcdef"
ANSWER_TOPIC = topics.reply(CLINIC, DEVICE, lookup.KIND)
RECORD_TOPIC = topics.reply(CLINIC, DEVICE, lookup.RECORD_KIND)
ACK_TOPIC = topics.device_topic(CLINIC, DEVICE, "ack")
SIGNED_ANSWER = lookup.sign_answer(CLINIC, DEVICE, RID, lookup.CardAnswer(True, "active", "green"), CENTRAL)
SIGNED_RECORD = lookup.sign_record(CLINIC, DEVICE, RID, lookup.ChildRecord(True, "2020-01-01", (
    {"vaccine": "HepB", "product": "x", "dose": 1, "date": "2020-01-02"},)), CENTRAL)
SIGNED_RECEIPT = receipts.sign_receipt([bytes(16), bytes(range(16))], ACK_TOPIC, CENTRAL)
SIGNED_STATUS = receipts.sign_status(bytes(8), CENTRAL)
HEX = re.compile(r"[0-9a-fA-F]+")


def refused(call, errors, *args):  # type: ignore[no-untyped-def]
    """Run a parser; return its value, or None after checking the refusal is documented and explained."""
    try:
        with no_hang():
            return call(*args)
    except errors as exc:
        assert_reason(exc)
        return None


# -- trust lists -------------------------------------------------------------------------------------------

@fuzz(300)
@given(st.dictionaries(st.sampled_from(["version", "issued", "ehc1", "dcc", "shc", "revoked_cards", "shc_crl", "x"]),
                       json_values, max_size=7),
       st.booleans())
@example({"ehc1": [{"kid": "0" * 16, "iss": "x", "key": "\ud800"}]}, True)
@example({"dcc": [{"kid": "é", "cert": ""}]}, True)
@example({"issued": 2**63 - 1, "version": 2**63 - 1}, True)
@example({"revoked_cards": ["ab" * 16 + "\n"]}, True)  # a line break after the hex
@example({"ehc1": [dict(LIST.ehc1[0], key=with_unknown_curve(PEM, "PUBLIC KEY"))]}, True)  # UnsupportedAlgorithm
@example({"ehc1": [dict(LIST.ehc1[0], kid=LIST.ehc1[0]["kid"] + "\n")]}, True)
def test_fuzz_trust_list_bodies(changes: dict, merge: bool) -> None:
    body = dict(LIST.body(), **changes) if merge else changes
    trust = refused(TrustList.from_body, TrustListInvalid, body)
    if trust is not None:
        assert all(HEX.fullmatch(r) and len(r) == 32 for r in trust.revoked_cards)
        assert all(HEX.fullmatch(e["kid"]) and len(e["kid"]) == 16 for e in trust.ehc1)
        refused(trust.ehc1_keys, TrustListInvalid)


@fuzz(200)
@given(mutated(SIGNED_LIST))
def test_fuzz_mutated_signed_lists(payload: bytes) -> None:
    trust = refused(open_signed, TrustListInvalid, payload, CENTRAL.public_key())
    assert trust is None or trust == open_signed(SIGNED_LIST, CENTRAL.public_key())


@fuzz(150)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.integers(0, 2**40))
def test_fuzz_centrally_signed_bodies_of_any_shape(body: dict, seq: int) -> None:
    """Even with the central key, only a well-formed body becomes a trust list."""
    payload = envelope.sign(envelope.Message(CENTRAL_ID, 0, seq, TRUST_KIND, body), topics.TRUST_LIST, CENTRAL)
    refused(open_signed, TrustListInvalid, payload, CENTRAL.public_key())


@fuzz(100, deadline=None)
@given(st.binary(max_size=200) | mutated(SIGNED_LIST))
def test_fuzz_offers_never_replace_the_held_list(tmp_path: Path, payload: bytes) -> None:
    held = TrustListFile(tmp_path / "trust.cose", CENTRAL.public_key())
    if held.current() is None:
        assert held.offer(SIGNED_LIST)
    with no_hang():
        kept = held.offer(payload)
    assert not kept and held.current() == open_signed(SIGNED_LIST, CENTRAL.public_key())


# -- lookup requests (central side) and answers (box side) --------------------------------------------

@fuzz(300)
@given(st.dictionaries(st.sampled_from(["rid", "card_index", "code_type", "id_ref", "child_ref", "x"]),
                       json_values | st.sampled_from([RID, "A" * 64, "a" * 32, "\ud800"]), max_size=4))
@example({"rid": RID + "\n", "card_index": "A" * 64, "code_type": 1})  # a line break after the hex
@example({"rid": RID, "card_index": "A" * 64 + "\n", "code_type": 1})
@example({"rid": RID, "child_ref": "a" * 32 + "\n"})
def test_fuzz_lookup_requests(body: dict) -> None:
    got = refused(lookup.check_request, lookup.LookupInvalid, body)
    if got is not None:
        rid, index, code_type = got
        assert HEX.fullmatch(rid) and HEX.fullmatch(index.removeprefix("id:")) and 0 <= code_type <= 99
    record = refused(lookup.check_record_request, lookup.LookupInvalid, body)
    assert record is None or all(HEX.fullmatch(v) for v in record)


@fuzz(100)
@given(json_values)
def test_fuzz_code_type_of_stored_bodies(value: object) -> None:
    assert 0 <= lookup.code_type_of(value) <= 99


@fuzz(200)
@given(st.sampled_from([(SIGNED_ANSWER, ANSWER_TOPIC, lookup.open_answer), (SIGNED_RECORD, RECORD_TOPIC, lookup.open_record)])
       .flatmap(lambda s: st.tuples(mutated(s[0]), st.just(s[1]), st.just(s[2]))))
def test_fuzz_mutated_answers(case: tuple) -> None:
    payload, topic, opener = case
    refused(opener, lookup.LookupInvalid, payload, topic, CENTRAL.public_key())


@fuzz(200)
@given(st.dictionaries(st.sampled_from(["rid", "found", "status", "health", "birth_date", "doses", "x"]),
                       json_values | st.sampled_from([RID, True, "active", "green", [{"vaccine": 1}]]), max_size=6),
       st.sampled_from([lookup.KIND, lookup.RECORD_KIND]))
def test_fuzz_centrally_signed_answers_of_any_shape(body: dict, kind: str) -> None:
    topic = topics.reply(CLINIC, DEVICE, kind)
    payload = envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, kind, body), topic, CENTRAL)
    opener = lookup.open_answer if kind == lookup.KIND else lookup.open_record
    refused(opener, lookup.LookupInvalid, payload, topic, CENTRAL.public_key())


# -- receipts and the central status (box side) --------------------------------------------------------

@fuzz(200)
@given(mutated(SIGNED_RECEIPT) | st.binary(max_size=200))
def test_fuzz_receipts(payload: bytes) -> None:
    ids = refused(receipts.open_receipt, ReceiptInvalid, payload, ACK_TOPIC, CENTRAL.public_key())
    assert ids is None or ids == [bytes(16), bytes(range(16))]


@fuzz(150)
@given(st.dictionaries(st.sampled_from(["ids", "epoch", "x"]), json_values, max_size=3), st.sampled_from(["ack", "status"]))
def test_fuzz_centrally_signed_receipts_of_any_shape(body: dict, kind: str) -> None:
    payload = envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, kind, body), ACK_TOPIC, CENTRAL)
    refused(receipts.open_receipt, ReceiptInvalid, payload, ACK_TOPIC, CENTRAL.public_key())
    status = envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, kind, body), topics.CENTRAL_STATUS, CENTRAL)
    refused(receipts.open_status, ReceiptInvalid, status, CENTRAL.public_key())


@fuzz(150)
@given(mutated(SIGNED_STATUS) | st.binary(max_size=100))
def test_fuzz_central_status(payload: bytes) -> None:
    refused(receipts.open_status, ReceiptInvalid, payload, CENTRAL.public_key())


# -- the envelope under length bombs -------------------------------------------------------------------

@pytest.mark.parametrize("bomb", CBOR_BOMBS + CBOR_HEAVY, ids=lambda b: b[:6].hex())
def test_envelope_length_bombs_stay_within_memory(bomb: bytes) -> None:
    topic = topics.event(CLINIC, DEVICE, "scan")
    signed = envelope.sign(envelope.Message(DEVICE, 1, 1, "scan", {}), topic, CENTRAL)
    head = cbor2.loads(signed).value
    for payload in (bomb, cbor2.dumps(cbor2.CBORTag(18, [bomb, {}, head[2], head[3]])),
                    cbor2.dumps(cbor2.CBORTag(18, [head[0], {}, bomb, head[3]]))):
        with memory_bound(4 << 20):
            refused(envelope.verify, envelope.EnvelopeError, payload, topic, CENTRAL.public_key())


@fuzz(200)
@given(st.dictionaries(st.sampled_from(["dcc", "shc", "shc_crl"]),
                       json_values | st.lists(st.dictionaries(st.sampled_from(["kid", "cert", "iss", "jwks", "keys"]),
                                                              json_values, max_size=4), max_size=2)
                       | st.dictionaries(st.text(max_size=4), json_values, max_size=2), max_size=3))
@example({"shc_crl": {"https://issuer.example": [1, 2]}})
@example({"dcc": [{"kid": base64.b64encode(b"12345678").decode(), "cert": base64.b64encode(b"\x30\x03\x02\x01\x00").decode()}]})
@example({"shc": [{"iss": "https://issuer.example", "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": 1}]}}]})
def test_fuzz_trust_store_from_any_accepted_list(changes: dict) -> None:
    """A list the box accepted (signed, well-formed at the top) builds a credential trust store: bad entries
    are skipped, the station's verifier never fails on them."""
    from edge.credentials.anchors import TrustStore

    trust = refused(TrustList.from_body, TrustListInvalid, dict(LIST.body(), **changes))
    if trust is not None:
        with no_hang():
            TrustStore.from_trust_list(trust)
