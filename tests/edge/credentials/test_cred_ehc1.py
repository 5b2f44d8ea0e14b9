"""EHC1: round trip, dynamic expiry, revocation, wrong issuer, tampering and bad input."""

from __future__ import annotations

import zlib

import base45
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.credentials import ehc1
from edge.credentials.ehc1 import Card, issue, verify
from foundation.keyfiles import generate_key
from mqtt.trustlist import card_hash, public_key_kid

KEY = generate_key()
ISSUERS = {public_key_kid(KEY.public_key()): ("EHC-TEST", KEY.public_key())}
CHILD = Card(card_id="0a" * 16, name="王小明", birth_date="2019-06-01", sex="M", status="green", guardian="1b" * 16)
NOW = 1_764_000_000.0


def test_round_trip_with_claims() -> None:
    text = issue(CHILD, KEY, "EHC-TEST", ttl=60, now=NOW)
    assert text.startswith("EHC1:") and len(text) < 400
    result = verify(text, ISSUERS, at=NOW + 10)
    assert result.valid and result.reason is None and result.format == "ehc1"
    assert result.checks == {"signature": True, "expiry": True, "revocation": True}
    assert result.claims["card_id"] == CHILD.card_id and result.claims["guardian"] == CHILD.guardian
    assert result.claims["name"] == "王小明" and result.claims["status"] == "green"
    assert "王小明" not in repr(result) and "王小明" not in repr(CHILD)


def test_a_screenshot_stops_working() -> None:
    text = issue(CHILD, KEY, "EHC-TEST", ttl=60, now=NOW)
    assert verify(text, ISSUERS, at=NOW + 60 + 29, skew=30).valid          # within the skew
    late = verify(text, ISSUERS, at=NOW + 60 + 31, skew=30)
    assert (late.valid, late.reason, late.checks["expiry"]) == (False, "expired", False)
    early = verify(text, ISSUERS, at=NOW - 31, skew=30)
    assert early.reason == "not_yet_valid"
    with pytest.raises(ValueError):
        issue(CHILD, KEY, "EHC-TEST", ttl=3600)


def test_revoked_unknown_and_wrong_issuer() -> None:
    text = issue(CHILD, KEY, "EHC-TEST", now=NOW)
    assert verify(text, ISSUERS, {card_hash(CHILD.card_id)}, at=NOW).reason == "revoked"
    other = generate_key()
    assert verify(text, {public_key_kid(other.public_key()): ("EHC-TEST", other.public_key())}, at=NOW).reason == \
        "unknown_kid"
    # a kid that names our key but another issuer id in the trust list
    assert verify(text, {public_key_kid(KEY.public_key()): ("EHC-OTHER", KEY.public_key())}, at=NOW).reason == \
        "issuer_mismatch"
    # signed by another key that claims our kid: the signature fails
    forged = _reencode(text, lambda parts: parts[:3] + [issue_sig(parts, other)])
    assert verify(forged, ISSUERS, at=NOW).reason == "bad_signature"


def issue_sig(parts: list, key) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(cbor2.dumps(["Signature1", parts[0], b"", parts[2]]), ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _reencode(text: str, change) -> str:
    cose = cbor2.loads(zlib.decompress(base45.b45decode(text[5:])))
    parts = change(list(cose.value))
    return "EHC1:" + base45.b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, parts)))).decode()


def test_tampered_payload_fails_the_signature() -> None:
    text = issue(CHILD, KEY, "EHC-TEST", now=NOW)

    def promote(parts):
        cwt = cbor2.loads(parts[2])
        cwt[ehc1.CLAIM_CARD]["st"] = "green" if cwt[ehc1.CLAIM_CARD]["st"] != "green" else "yellow"
        return parts[:2] + [cbor2.dumps(cwt)] + parts[3:]
    assert verify(_reencode(text, promote), ISSUERS, at=NOW).reason == "bad_signature"


@pytest.mark.parametrize("text, reason", [
    ("EHC1:", "bad_zlib"),
    ("EHC1:%%%%", "bad_base45"),
    ("EHC1:" + base45.b45encode(b"not zlib").decode(), "bad_zlib"),
    ("EHC1:" + base45.b45encode(zlib.compress(b"\xff\xff")).decode(), "bad_cbor"),
    ("EHC1:" + base45.b45encode(zlib.compress(cbor2.dumps([1, 2]))).decode(), "bad_cose"),
    ("EHC1:" + base45.b45encode(zlib.compress(b"\x81" * 5000 + b"\x00")).decode(), "bad_cbor"),  # deep nesting
    ("EHC1:" + base45.b45encode(zlib.compress(b"\x00" * 200_000, 9)).decode(), "too_large"),   # zlib bomb
    ("EHC1:" + "A" * 5000, "too_large"),
    ("HC1:ABC", "bad_prefix"),
])
def test_bad_input_has_a_reason(text: str, reason: str) -> None:
    result = verify(text, ISSUERS, at=NOW)
    assert (result.valid, result.reason) == (False, reason)


def test_es256_only() -> None:
    text = issue(CHILD, KEY, "EHC-TEST", now=NOW)
    ps256 = _reencode(text, lambda p: [cbor2.dumps({1: -37, 4: cbor2.loads(p[0])[4]})] + p[1:])
    assert verify(ps256, ISSUERS, at=NOW).reason == "unsupported_alg"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: "EHC1:" + base45.b45encode(b).decode()))
def test_never_raises(text: str) -> None:
    result = verify(text, ISSUERS, at=NOW)
    assert not result.valid and result.reason
