"""Sealed personal fields (mqtt/sealed.py): HPKE base mode to the central X25519 key, bound to one message."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from mqtt import sealed

TOPIC = "ehc/v1/clinic-a/box-0001/evt/scan"
MSG_ID = uuid.UUID("018f0000-0000-7000-8000-000000000001").bytes
FIELDS = {"name": "王芳", "id_number": "11010519491231002X", "birth_date": "1949-12-31"}


@pytest.fixture(scope="module")
def central():
    return sealed.generate_key()


def test_round_trip_and_nothing_readable(central):
    part = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    assert set(part) == {"v", "alg", "epk", "ct"} and part["alg"] == "HPKE-Base-X25519-SHA256-AES256GCM"
    text = json.dumps(part, ensure_ascii=False)
    assert all(value not in text for value in FIELDS.values())
    assert sealed.open_sealed(part, central, TOPIC, MSG_ID) == FIELDS


def test_each_seal_uses_a_fresh_ephemeral_key(central):
    a = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    b = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    assert a["epk"] != b["epk"] and a["ct"] != b["ct"]


def test_it_is_rfc9180_base_mode(central):
    """An independent HPKE call (the same suite, our info) opens what seal() made."""
    part = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    raw = sealed._unb64(part["epk"]) + sealed._unb64(part["ct"])
    plain = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM).decrypt(raw, central, sealed.info(TOPIC, MSG_ID))
    import cbor2

    assert cbor2.loads(plain) == FIELDS


@pytest.mark.parametrize("topic,msg_id", [
    ("ehc/v1/clinic-a/box-0002/evt/scan", MSG_ID),    # another device
    ("ehc/v1/clinic-b/box-0001/evt/scan", MSG_ID),    # another clinic
    ("ehc/v1/clinic-a/box-0001/evt/report", MSG_ID),  # another kind
    (TOPIC, uuid.uuid4().bytes),                      # another message
])
def test_a_part_moved_to_another_message_does_not_open(central, topic, msg_id):
    part = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    with pytest.raises(sealed.SealedInvalid):
        sealed.open_sealed(part, central, topic, msg_id)


def test_the_wrong_key_does_not_open(central):
    part = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    with pytest.raises(sealed.SealedInvalid):
        sealed.open_sealed(part, sealed.generate_key(), TOPIC, MSG_ID)


@pytest.mark.parametrize("change", [
    lambda p: {**p, "ct": p["ct"][:-2] + ("A" if p["ct"][-2] != "A" else "B") + p["ct"][-1]},
    lambda p: {**p, "epk": sealed._b64(bytes(32))},
    lambda p: {**p, "epk": p["epk"][:10]},
    lambda p: {**p, "ct": "!!not base64!!"},
    lambda p: {**p, "v": 2},
    lambda p: {**p, "v": True},
    lambda p: {**p, "alg": "none"},
    lambda p: {k: v for k, v in p.items() if k != "ct"},
    lambda p: {**p, "extra": 1},
    lambda p: [p],
    lambda p: {**p, "ct": 5},
])
def test_tampered_or_ill_formed_parts_are_refused(central, change):
    part = sealed.seal(FIELDS, central.public_key(), TOPIC, MSG_ID)
    with pytest.raises(sealed.SealedInvalid) as info:
        sealed.open_sealed(change(part), central, TOPIC, MSG_ID)
    assert info.value.reason == "bad_sealed"


def test_nothing_to_seal_and_non_json_fields_are_refused(central):
    with pytest.raises(ValueError):
        sealed.seal({}, central.public_key(), TOPIC, MSG_ID)
    with pytest.raises(ValueError):
        sealed.seal({"photo": b"\x00"}, central.public_key(), TOPIC, MSG_ID)


def test_key_files_round_trip(central, tmp_path):
    path = tmp_path / "seal.key"
    path.write_bytes(sealed.private_pem(central))
    assert sealed.load_private(path).public_key().public_bytes_raw() == central.public_key().public_bytes_raw()
    pub = sealed.load_public(sealed.public_pem(central.public_key()))
    assert pub.public_bytes_raw() == central.public_key().public_bytes_raw()
    from foundation import keyfiles

    keyfiles.write_private_key(tmp_path / "p256.key", keyfiles.generate_key())
    with pytest.raises(ValueError):
        sealed.load_private(tmp_path / "p256.key")
