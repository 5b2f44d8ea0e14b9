"""The signed envelope (COSE_Sign1, ES256, topic as external AAD) and the topic layout.

Interoperability is checked against pycose, an independent COSE implementation: it verifies what we
sign, and we verify what it signs. Tampering, a different topic, another algorithm, ill-typed bodies and
payloads are refused with a specific :class:`envelope.EnvelopeError`; fuzzing checks that nothing else
ever escapes :func:`envelope.verify`.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key, OKPKey
from pycose.messages import Sign1Message

from mqtt import envelope, topics

DEVICE = "box-0001"
CLINIC = "clinic-a"
TOPIC = topics.event(CLINIC, DEVICE, "scan")
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# A fixed key and an envelope signed with it: the wire format must not drift.
VECTOR_KEY = ec.derive_private_key(0x1F2E3D4C5B6A79881F2E3D4C5B6A79881F2E3D4C5B6A79881F2E3D4C5B6A7988, ec.SECP256R1())
VECTOR_MESSAGE = envelope.Message(DEVICE, 3, 7, "scan", {"outcome": "green", "n": 1},
                                  msg_id=uuid.UUID("018f0000-0000-7000-8000-000000000001"), ts_ms=1_700_000_000_000)
VECTOR_PAYLOAD = bytes.fromhex(
    "a861760162696450018f00000000700080000000000000016274731b0000018bcfe568006364657668626f782d3030303163736571"
    "0764626f6479a2616e01676f7574636f6d6565677265656e64626f6f7403646b696e64647363616e")
VECTOR_ENVELOPE = bytes.fromhex(
    "d2844da201260448626f782d30303031a0585d" + VECTOR_PAYLOAD.hex() + "5840"
    "9c73ba76597a1bc268f2372fb6c26c971843e85b5583c428cd3c1d6550a17c96"
    "d606aacd7172971f94f8d6559e3f6e0bf069982849051f4a9adaa8b648dec7ce")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def message(**changes) -> envelope.Message:
    fields = {"device": DEVICE, "boot": 2, "seq": 41, "kind": "scan",
              "body": {"outcome": "green", "score": 0.93, "tags": ["a", None, True, -5], "名": "扫码"}}
    fields.update(changes)
    return envelope.Message(**fields)


def cose_key(key: ec.EllipticCurvePrivateKey, private: bool = False) -> EC2Key:
    numbers = key.private_numbers()
    pub = numbers.public_numbers
    d = numbers.private_value.to_bytes(32, "big") if private else b""
    return EC2Key(crv="P_256", x=pub.x.to_bytes(32, "big"), y=pub.y.to_bytes(32, "big"), d=d)


def pycose_decode(data: bytes) -> Sign1Message:
    """Decode our bytes with pycose's Sign1 decoder.

    pycose 1.1's ``CoseMessage.decode`` expects a list and a dict, while cbor2 6 returns a tagged array as a
    tuple with a frozen map; so the outer array is split here and the members are handed to pycose as is.
    """
    outer = cbor2.loads(data)
    assert isinstance(outer, cbor2.CBORTag) and outer.tag == Sign1Message.cbor_tag
    protected, unprotected, payload, signature = outer.value
    return Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)


def pycose_sign(key: ec.EllipticCurvePrivateKey, payload: bytes, topic: str, phdr: dict | None = None,
                tag: bool = True) -> bytes:
    msg = Sign1Message(phdr=phdr if phdr is not None else {Algorithm: Es256, KID: DEVICE.encode()},
                       payload=payload, external_aad=topic.encode())
    msg.key = cose_key(key, private=True)
    return msg.encode(tag=tag)


def replace_part(data: bytes, index: int, value: object) -> bytes:
    """Re-encode a COSE_Sign1 with member ``index`` replaced (no re-signing)."""
    parts = list(cbor2.loads(data).value)
    parts[index] = value
    return cbor2.dumps(cbor2.CBORTag(envelope.COSE_SIGN1_TAG, parts))


def raw_sign1(key: ec.EllipticCurvePrivateKey, protected_map: dict, payload: bytes, topic: str) -> bytes:
    """A COSE_Sign1 with an arbitrary protected header, correctly signed over ``topic``."""
    protected = cbor2.dumps(protected_map)
    to_sign = cbor2.dumps(["Signature1", protected, topic.encode(), payload])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))


# -- round trip and format --------------------------------------------------------------------------------

def test_sign_verify_round_trip(key):
    msg = message()
    data = envelope.sign(msg, TOPIC, key)
    assert envelope.verify(data, TOPIC, key.public_key()) == msg


def test_round_trip_at_the_edges_of_the_body_rules(key):
    deep: object = "leaf"  # the body is level 0, so the leaf sits at level MAX_BODY_DEPTH
    for _ in range(envelope.MAX_BODY_DEPTH - 1):
        deep = [deep]
    body = {"deep": deep, "max": 2**63 - 1, "min": -(2**63) + 1, "empty": {}, "list": [], "f": -0.0, "s": ""}
    msg = message(body=body, boot=0, seq=0)
    assert envelope.verify(envelope.sign(msg, TOPIC, key), TOPIC, key.public_key()) == msg


def test_message_payload_matches_the_documented_byte_vector():
    assert VECTOR_MESSAGE.to_cbor() == VECTOR_PAYLOAD


def test_stored_byte_vector_still_verifies():
    got = envelope.verify(VECTOR_ENVELOPE, TOPIC, VECTOR_KEY.public_key())
    assert got == VECTOR_MESSAGE


def test_sign1_structure(key):
    data = envelope.sign(message(), TOPIC, key)
    outer = cbor2.loads(data)
    assert outer.tag == 18
    protected, unprotected, payload, signature = outer.value
    assert cbor2.loads(protected) == {1: -7, 4: DEVICE.encode()}
    assert dict(unprotected) == {}
    assert len(signature) == 64
    assert set(cbor2.loads(payload)) == {"v", "dev", "boot", "seq", "id", "ts", "kind", "body"}
    assert envelope.parse(data).kid == DEVICE.encode()


def test_pycose_verifies_our_envelope(key):
    data = envelope.sign(message(), TOPIC, key)
    msg = pycose_decode(data)
    assert msg.phdr[Algorithm] is Es256
    assert msg.phdr[KID] == DEVICE.encode()
    msg.key = cose_key(key)
    msg.external_aad = TOPIC.encode()
    assert msg.verify_signature()
    # The topic really is the external AAD, and the key really matters.
    msg.external_aad = topics.event(CLINIC, DEVICE, "print").encode()
    assert not msg.verify_signature()
    msg.external_aad = TOPIC.encode()
    msg.key = cose_key(ec.generate_private_key(ec.SECP256R1()))
    assert not msg.verify_signature()


def test_we_verify_a_pycose_envelope(key):
    msg = message()
    data = pycose_sign(key, msg.to_cbor(), TOPIC)
    assert envelope.verify(data, TOPIC, key.public_key()) == msg


def test_we_verify_an_untagged_pycose_envelope(key):
    msg = message()
    data = pycose_sign(key, msg.to_cbor(), TOPIC, tag=False)
    assert data[0] == 0x84
    assert envelope.verify(data, TOPIC, key.public_key()) == msg


def test_pycose_envelope_for_another_topic_is_refused(key):
    data = pycose_sign(key, message().to_cbor(), topics.event(CLINIC, DEVICE, "print"))
    with pytest.raises(envelope.SignatureInvalid):
        envelope.verify(data, TOPIC, key.public_key())


# -- tampering, topic binding, algorithm --------------------------------------------------------------------

def _span(data: bytes, part: bytes) -> range:
    start = data.index(part)
    return range(start, start + len(part))


@pytest.mark.parametrize("member", [0, 2, 3], ids=["protected", "payload", "signature"])
def test_flipping_any_byte_inside_a_member_is_refused(key, member):
    data = envelope.sign(message(), TOPIC, key)
    part = cbor2.loads(data).value[member]
    for i in _span(data, part):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises(envelope.EnvelopeError) as info:
                envelope.verify(bytes(bad), TOPIC, key.public_key())
            if member in (2, 3):  # content changed, structure intact: the signature is what fails
                assert isinstance(info.value, envelope.SignatureInvalid), (i, mask, info.value)


def test_flipping_any_byte_anywhere_is_refused(key):
    data = envelope.sign(message(), TOPIC, key)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(envelope.EnvelopeError):
            envelope.verify(bytes(bad), TOPIC, key.public_key())


def test_changed_kid_is_a_bad_signature(key):
    data = envelope.sign(message(), TOPIC, key)
    forged = replace_part(data, 0, cbor2.dumps({1: -7, 4: b"box-0002"}, canonical=True))
    with pytest.raises(envelope.SignatureInvalid):
        envelope.verify(forged, TOPIC, key.public_key())


def test_trailing_bytes_after_the_envelope_are_refused(key):
    data = envelope.sign(message(), TOPIC, key)
    for extra in (b"\x00", b"\xf6", data):
        with pytest.raises(envelope.MalformedEnvelope):
            envelope.verify(data + extra, TOPIC, key.public_key())


@pytest.mark.parametrize("other", [
    topics.event(CLINIC, DEVICE, "print"),
    topics.event(CLINIC, "box-0002", "scan"),
    topics.event("clinic-b", DEVICE, "scan"),
    topics.device_topic(CLINIC, DEVICE, "health"),
    TOPIC + " ",
])
def test_other_topic_is_a_bad_signature(key, other):
    data = envelope.sign(message(), TOPIC, key)
    with pytest.raises(envelope.SignatureInvalid) as info:
        envelope.verify(data, other, key.public_key())
    assert info.value.reason == "bad_signature"


def test_other_key_is_a_bad_signature(key):
    data = envelope.sign(message(), TOPIC, key)
    with pytest.raises(envelope.SignatureInvalid):
        envelope.verify(data, TOPIC, ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize("header", [
    {1: -35, 4: DEVICE.encode()},  # ES384
    {1: -8, 4: DEVICE.encode()},  # EdDSA
    {1: "ES256", 4: DEVICE.encode()},
    {4: DEVICE.encode()},  # no algorithm
    {},
])
def test_algorithm_other_than_es256_is_refused(key, header):
    data = raw_sign1(key, header, message().to_cbor(), TOPIC)
    with pytest.raises(envelope.UnsupportedAlgorithm) as info:
        envelope.verify(data, TOPIC, key.public_key())
    assert info.value.reason == "bad_alg"


def test_algorithm_only_in_the_unprotected_header_is_refused(key):
    data = envelope.sign(message(), TOPIC, key)
    bad = replace_part(replace_part(data, 0, b""), 1, {1: -7})
    with pytest.raises(envelope.UnsupportedAlgorithm):
        envelope.verify(bad, TOPIC, key.public_key())


def test_pycose_eddsa_envelope_is_refused(key):
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: DEVICE.encode()}, payload=message().to_cbor(),
                       external_aad=TOPIC.encode())
    msg.key = OKPKey.generate_key(crv="ED25519")
    with pytest.raises(envelope.UnsupportedAlgorithm):
        envelope.verify(msg.encode(), TOPIC, key.public_key())


@pytest.mark.parametrize("data", [
    b"", b"\x00garbage", b"\xd2\x84\x40", b"\xd3\x84\x40\xa0\x40\x40", b"\x84\x40\xa0\x40",
    cbor2.dumps([b"", {}, b"", b""] * 2), cbor2.dumps({"a": 1}), cbor2.dumps(cbor2.CBORTag(18, "text")),
    cbor2.dumps(cbor2.CBORTag(18, ["p", {}, b"", b""])), cbor2.dumps(cbor2.CBORTag(18, [b"", [], b"", b""])),
    cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps([1, -7]), {}, b"", bytes(64)])),
    cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: "text-kid"}), {}, b"", bytes(64)])),
    b"\x81" * 100_000,  # nesting bomb
], ids=lambda d: d[:12].hex() or "empty")
def test_malformed_structures_are_refused(key, data):
    with pytest.raises(envelope.EnvelopeError) as info:
        envelope.verify(data, TOPIC, key.public_key())
    assert isinstance(info.value, (envelope.MalformedEnvelope, envelope.SignatureInvalid))


def test_short_signature_is_refused(key):
    data = envelope.sign(message(), TOPIC, key)
    with pytest.raises(envelope.SignatureInvalid):
        envelope.verify(replace_part(data, 3, cbor2.loads(data).value[3][:63]), TOPIC, key.public_key())


def test_der_signature_is_refused(key):
    data = envelope.sign(message(), TOPIC, key)
    der = key.sign(b"anything", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(envelope.SignatureInvalid):
        envelope.verify(replace_part(data, 3, der), TOPIC, key.public_key())


# -- what may be signed ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"b": b"bytes"},
    {"s": {1, 2}},
    {"t": (1, 2)},
    {"nan": math.nan},
    {"inf": math.inf},
    {"ninf": [-math.inf]},
    {"big": 2**63},
    {"huge": 10**30},
    {"date": dt.date(2024, 1, 1)},
    {"dec": Decimal("1.5")},
    {"nested": {1: "int key"}},
    {"u": uuid.UUID(int=1)},
], ids=lambda b: next(iter(b)))
def test_non_json_bodies_are_refused_at_sign_time(key, body):
    with pytest.raises(envelope.MalformedMessage):
        envelope.sign(message(body=body), TOPIC, key)


def test_body_nested_too_deeply_is_refused_at_sign_time(key):
    deep: object = 1
    for _ in range(envelope.MAX_BODY_DEPTH + 1):
        deep = {"x": deep}
    with pytest.raises(envelope.MalformedMessage, match="deeply"):
        envelope.sign(message(body={"d": deep}), TOPIC, key)


def test_very_deep_body_is_refused_without_recursion_error(key):
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(envelope.MalformedMessage):
        envelope.sign(message(body={"d": deep}), TOPIC, key)


def test_only_p256_keys_sign(key):
    with pytest.raises(ValueError, match="P-256"):
        envelope.sign(message(), TOPIC, ec.generate_private_key(ec.SECP384R1()))


# -- decode_message ------------------------------------------------------------------------------------

def payload_map(**changes) -> dict:
    m = dict(cbor2.loads(message().to_cbor()))
    m.update(changes)
    return m


def test_decode_message_accepts_a_well_formed_payload():
    msg = message()
    assert envelope.decode_message(msg.to_cbor()) == msg


@pytest.mark.parametrize("missing", sorted(envelope._MESSAGE_KEYS))
def test_decode_message_rejects_a_missing_key(missing):
    m = payload_map()
    del m[missing]
    with pytest.raises(envelope.MalformedMessage):
        envelope.decode_message(cbor2.dumps(m))


@pytest.mark.parametrize("extra", [{"x": 1}, {1: 1}, {"V": 1}])
def test_decode_message_rejects_an_extra_key(extra):
    with pytest.raises(envelope.MalformedMessage):
        envelope.decode_message(cbor2.dumps({**payload_map(), **extra}))


@pytest.mark.parametrize("changes", [
    {"v": 2}, {"v": 0}, {"v": "1"}, {"v": True}, {"v": 1.0},
    {"boot": True}, {"seq": True}, {"ts": False}, {"seq": 1.0}, {"boot": "1"}, {"seq": -1}, {"ts": -5},
    {"seq": 2**63}, {"boot": None},
    {"dev": 7}, {"dev": b"box"}, {"kind": None}, {"kind": ["scan"]},
    {"body": []}, {"body": "text"}, {"body": None}, {"body": {"b": b"x"}}, {"body": {"n": math.nan}},
    {"body": {1: 2}}, {"body": {"t": cbor2.CBORTag(99, 1)}}, {"body": {"u": cbor2.undefined}},
    {"id": b"\x00" * 15}, {"id": b"\x00" * 17}, {"id": str(uuid.UUID(int=1))}, {"id": 1},
], ids=repr)
def test_decode_message_rejects_wrong_types(changes):
    with pytest.raises(envelope.MalformedMessage):
        envelope.decode_message(cbor2.dumps(payload_map(**changes)))


@pytest.mark.parametrize("payload", [
    b"", b"\xff", cbor2.dumps([1, 2]), cbor2.dumps("text"), cbor2.dumps(None),
    bytes.fromhex("a2617601617601"),  # duplicate key "v"
], ids=lambda p: p.hex() or "empty")
def test_decode_message_rejects_non_maps_and_duplicates(payload):
    with pytest.raises(envelope.MalformedMessage):
        envelope.decode_message(payload)


def test_decode_message_rejects_duplicate_keys_shadowing_a_valid_value():
    good = message().to_cbor()
    # Append a second "seq" entry: the map header says 9 pairs, one key twice.
    dup = bytes([0xA9]) + good[1:] + cbor2.dumps("seq") + cbor2.dumps(999)
    with pytest.raises(envelope.MalformedMessage):
        envelope.decode_message(dup)


def test_signed_but_ill_typed_payload_is_malformed_payload(key):
    data = raw_sign1(key, {1: -7, 4: DEVICE.encode()}, cbor2.dumps(payload_map(seq=True)), TOPIC)
    with pytest.raises(envelope.MalformedMessage) as info:
        envelope.verify(data, TOPIC, key.public_key())
    assert info.value.reason == "malformed_payload"


# -- fuzzing: only EnvelopeError ever leaves verify -----------------------------------------------------------

FUZZ_KEY = ec.generate_private_key(ec.SECP256R1())
FUZZ_MESSAGE = message()
FUZZ_ENVELOPE = envelope.sign(FUZZ_MESSAGE, TOPIC, FUZZ_KEY)


def _verify_outcome(data: bytes) -> envelope.Message | None:
    """Run verify; return the message, or None after checking the refusal is a proper EnvelopeError."""
    try:
        return envelope.verify(data, TOPIC, FUZZ_KEY.public_key())
    except envelope.EnvelopeError as exc:
        assert isinstance(exc.reason, str) and exc.reason, f"{type(exc).__name__} without a reason"
        assert str(exc), f"{type(exc).__name__} without a message"
        return None


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(data):
    assert _verify_outcome(data) is None


@FUZZ
@given(st.binary(max_size=64).map(lambda b: b"\xd2\x84" + b))
def test_fuzz_bytes_behind_a_sign1_header(data):
    assert _verify_outcome(data) is None


@st.composite
def mutated_envelopes(draw) -> bytes:
    data = bytearray(FUZZ_ENVELOPE)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@FUZZ
@given(mutated_envelopes())
def test_fuzz_mutated_envelopes(data):
    got = _verify_outcome(data)
    # Whatever bytes verify must carry exactly the signed message: content cannot change unnoticed.
    assert got is None or got == FUZZ_MESSAGE


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.binary(max_size=8) | st.just(cbor2.undefined),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=4) | st.integers(-3, 3), children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(envelope._MESSAGE_KEYS) + ["x"]), cbor_values, max_size=9),
       st.booleans())
def test_fuzz_signed_payload_maps(changes, drop):
    """Correctly signed payloads with arbitrary values: a Message or MalformedMessage, nothing else."""
    m = payload_map()
    if drop and changes:
        for k in changes:
            m.pop(k, None)
    else:
        m.update(changes)
    data = raw_sign1(FUZZ_KEY, {1: -7, 4: DEVICE.encode()}, cbor2.dumps(m), TOPIC)
    try:
        got = envelope.verify(data, TOPIC, FUZZ_KEY.public_key())
    except envelope.MalformedMessage as exc:
        assert exc.reason == "malformed_payload"
        return
    assert type(got.boot) is int and type(got.seq) is int and type(got.ts_ms) is int
    assert isinstance(got.body, dict)
    envelope.check_json_like(got.body)


@FUZZ
@given(st.binary(max_size=64) | cbor_values.map(cbor2.dumps))
def test_fuzz_signed_arbitrary_payload_bytes(payload):
    data = raw_sign1(FUZZ_KEY, {1: -7, 4: DEVICE.encode()}, payload, TOPIC)
    with pytest.raises(envelope.MalformedMessage):
        envelope.verify(data, TOPIC, FUZZ_KEY.public_key())


@FUZZ
@given(st.dictionaries(st.integers(-5, 5) | st.text(max_size=3), cbor_values, max_size=4))
def test_fuzz_signed_protected_headers(header):
    data = raw_sign1(FUZZ_KEY, header, FUZZ_MESSAGE.to_cbor(), TOPIC)
    got = _verify_outcome(data)
    if got is not None:
        assert header.get(1) == -7 and isinstance(header.get(4, b""), bytes)
        assert got == FUZZ_MESSAGE


# -- topics ----------------------------------------------------------------------------------------------

def test_event_topic_round_trip():
    t = topics.event(CLINIC, DEVICE, "scan")
    assert t == "ehc/v1/clinic-a/box-0001/evt/scan"
    parsed = topics.parse(t)
    assert parsed == topics.Topic(CLINIC, DEVICE, "evt", "scan")
    assert str(parsed) == t


@pytest.mark.parametrize("channel", ["status", "state", "health", "ack"])
def test_device_topic_round_trip(channel):
    t = topics.device_topic("c.1", "Box_9", channel)
    assert t == f"ehc/v1/c.1/Box_9/{channel}"
    assert topics.parse(t) == topics.Topic("c.1", "Box_9", channel)
    assert str(topics.parse(t)) == t


def test_command_and_response_topics_round_trip():
    t = topics.command(CLINIC, DEVICE, "reboot")
    assert topics.parse(t) == topics.Topic(CLINIC, DEVICE, "cmd", "reboot")
    res = f"ehc/v1/{CLINIC}/{DEVICE}/res/reboot"
    assert str(topics.parse(res)) == res


@pytest.mark.parametrize("name", [
    "", "+", "#", "a+b", "a#", "a/b", "-lead", ".", "..", "_x", "a b", "café", "x" * 65, "$SYS", "a\n", "\na",
    "a\x00", "a\t",
], ids=repr)
def test_bad_names_are_refused(name):
    with pytest.raises(topics.TopicError):
        topics.check_name(name, "device")
    with pytest.raises(topics.TopicError):
        topics.event(CLINIC, name, "scan")
    with pytest.raises(topics.TopicError):
        topics.event(name, DEVICE, "scan")
    with pytest.raises(topics.TopicError):
        topics.event(CLINIC, DEVICE, name)


@pytest.mark.parametrize("name", ["a", "A9", "box-0001", "x" * 64, "c.1", "9_a-b.c"])
def test_good_names_are_accepted(name):
    assert topics.check_name(name, "device") == name


@pytest.mark.parametrize("topic", [
    "ehc/v1/+/box-0001/status",
    "ehc/v1/clinic-a/+/evt/scan",
    "ehc/v1/clinic-a/box-0001/evt/+",
    "ehc/v1/clinic-a/box-0001/evt/#",
    "ehc/v1/clinic-a/#",
    "ehc/v1/clinic-a/box-0001/#",
    "ehc/v2/clinic-a/box-0001/status",
    "EHC/v1/clinic-a/box-0001/status",
    "/ehc/v1/clinic-a/box-0001/status",
    "ehc/v1/clinic-a/box-0001",
    "ehc/v1/clinic-a/box-0001/",
    "ehc/v1//box-0001/status",
    "ehc/v1/clinic-a/box-0001/evt",
    "ehc/v1/clinic-a/box-0001/evt/",
    "ehc/v1/clinic-a/box-0001/evt/scan/extra",
    "ehc/v1/clinic-a/box-0001/cmd",
    "ehc/v1/clinic-a/box-0001/status/x",
    "ehc/v1/clinic-a/box-0001/ack/x",
    "ehc/v1/clinic-a/box-0001/bogus",
    "ehc/v1/clinic-a/box-0001/status\n",
    "ehc/v1/clinic-a/box-0001\n/status",
    "$share/ehc-ingest/ehc/v1/clinic-a/box-0001/status",
    "",
], ids=repr)
def test_parse_refuses_wildcards_and_foreign_topics(topic):
    with pytest.raises(topics.TopicError):
        topics.parse(topic)


@pytest.mark.parametrize("channel", ["evt", "cmd", "bogus"])
def test_device_topic_refuses_named_or_unknown_channels(channel):
    with pytest.raises(topics.TopicError):
        topics.device_topic(CLINIC, DEVICE, channel)


def test_ingest_filters_cover_exactly_what_the_ingest_handles():
    filters = topics.ingest_filters("grp")
    plain = []
    for f in filters:
        if f.startswith("$share/"):
            assert f.startswith("$share/grp/")
            f = f[len("$share/grp/"):]
        plain.append(f)

    def matched(topic: str) -> bool:
        return any(topic_matches_sub(f, topic) for f in plain)

    for wanted in (topics.event(CLINIC, DEVICE, "scan"), topics.device_topic(CLINIC, DEVICE, "state"),
                   topics.device_topic(CLINIC, DEVICE, "health"), topics.device_topic(CLINIC, DEVICE, "status")):
        assert matched(wanted), wanted
    for unwanted in (topics.device_topic(CLINIC, DEVICE, "ack"), topics.command(CLINIC, DEVICE, "reboot"),
                     f"ehc/v1/{CLINIC}/{DEVICE}/res/reboot"):
        assert not matched(unwanted), unwanted
