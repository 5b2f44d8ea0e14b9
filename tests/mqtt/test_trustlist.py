"""Trust lists: signed by the central key, newer only, rollback refused, malformed refused."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from edge.trustlist_store import TrustListFile
from foundation.files import write_atomic
from foundation.keyfiles import generate_key
from mqtt import envelope, topics
from mqtt.trustlist import TrustList, TrustListInvalid, card_hash, open_signed, public_key_kid, sign


def _pem(key) -> str:
    from cryptography.hazmat.primitives import serialization
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _list(version: int, issuer=None) -> TrustList:
    issuer = issuer or generate_key()
    return TrustList(version, ehc1=({"kid": public_key_kid(issuer.public_key()), "iss": "CN-TEST", "key": _pem(issuer)},),
                     dcc=({"kid": base64.b64encode(b"12345678").decode(), "cert": base64.b64encode(b"der").decode()},),
                     revoked_cards=frozenset({card_hash("ab" * 16)}))


def test_round_trip_and_only_the_central_key(tmp_path: Path) -> None:
    central, other = generate_key(), generate_key()
    signed = sign(_list(3), central)
    trust = open_signed(signed, central.public_key())
    assert trust.version == 3 and len(trust.ehc1_keys()) == 1 and card_hash("AB" * 16) in trust.revoked_cards
    with pytest.raises(TrustListInvalid, match="not signed"):
        open_signed(signed, other.public_key())
    with pytest.raises(TrustListInvalid):
        open_signed(sign(_list(3), other), central.public_key())
    # a central receipt re-used as a trust list is refused (another topic, another kind)
    with pytest.raises(TrustListInvalid):
        open_signed(envelope.sign(envelope.Message("ehc-central", 0, 0, "status", {}), topics.CENTRAL_STATUS,
                                  central), central.public_key())


def test_file_keeps_newer_refuses_rollback_and_forgery(tmp_path: Path) -> None:
    central = generate_key()
    store = TrustListFile(tmp_path / "trust-list.cose", central.public_key())
    assert store.current() is None and store.age() is None
    assert store.offer(sign(_list(2), central))
    assert not store.offer(sign(_list(1), central))            # rollback
    assert not store.offer(sign(_list(2), central))            # same version
    assert not store.offer(sign(_list(9), generate_key()))     # forged
    assert not store.offer(b"\x00garbage")
    assert store.current().version == 2                        # type: ignore[union-attr]
    assert store.offer(sign(_list(5), central))
    assert TrustListFile(tmp_path / "trust-list.cose", central.public_key()).current().version == 5  # type: ignore[union-attr]
    assert 0 <= store.age() < 60                               # type: ignore[operator]
    write_atomic(tmp_path / "trust-list.cose", b"corrupted on disk")
    assert store.current() is None


@pytest.mark.parametrize("body", [
    {"version": 0, "issued": 1.0},
    {"version": 1, "issued": "x"},
    {"version": 1, "issued": 1.0, "ehc1": [{"kid": "zz", "iss": "x", "key": "-"}]},
    {"version": 1, "issued": 1.0, "dcc": [{"kid": "AAAA", "cert": "AAAA"}]},
    {"version": 1, "issued": 1.0, "revoked_cards": ["nothex"]},
    {"version": 1, "issued": 1.0, "shc": [{"iss": "https://x"}]},
])
def test_malformed_bodies_are_refused(body) -> None:
    with pytest.raises(TrustListInvalid):
        TrustList.from_body(body)
