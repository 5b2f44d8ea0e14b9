"""SMART Health Cards, the validation SDK's rules: compressed payloads only (``zip: "DEF"``), ES256, a ``kid`` that
is the key's RFC 7638 thumbprint, an ``iss`` that is the key's issuer, ``nbf``, the FHIR bundle's shape, the chunks
of a multi-part QR code, and the bound on inflating.

Cards are signed here by own issuer keys, so no shared data is needed (the upstream examples are in
``test_cred_shc.py``).
"""

from __future__ import annotations

import copy
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edge.credentials import TrustStore, verify_credential
from edge.credentials.anchors import jwk_thumbprint
from edge.credentials.codecs import MAX_INFLATED, b64url_decode, b64url_encode
from edge.credentials.shc import MAX_CHUNKS, verify_shc

ISS_A, ISS_B = "https://a.issuer.example", "https://b.issuer.example"
AT = datetime(2023, 7, 1, tzinfo=UTC)
NBF = 1687450764

PAYLOAD: dict[str, Any] = {
    "iss": ISS_A, "nbf": NBF,
    "vc": {"type": ["https://smarthealth.cards#health-card", "https://smarthealth.cards#immunization"],
           "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": {
               "resourceType": "Bundle", "type": "collection", "entry": [
                   {"fullUrl": "resource:0", "resource": {"resourceType": "Patient", "birthDate": "1951-01-20",
                                                          "name": [{"family": "Anyperson", "given": ["John"]}]}},
                   {"fullUrl": "resource:1", "resource": {
                       "resourceType": "Immunization", "status": "completed",
                       "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
                       "patient": {"reference": "resource:0"}, "occurrenceDateTime": "2021-01-01"}}]}}},
}


def jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    n = key.public_key().public_numbers()
    out = {"kty": "EC", "crv": "P-256", "x": b64url_encode(n.x.to_bytes(32, "big")),
           "y": b64url_encode(n.y.to_bytes(32, "big")), "use": "sig", "alg": "ES256"}
    out["kid"] = jwk_thumbprint(out)
    return out


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def card(key: ec.EllipticCurvePrivateKey, payload: dict[str, Any] | bytes = PAYLOAD, *, header: dict[str, Any] | None
         = None, compress: bool = True) -> str:
    """A compact JWS signed by ``key``: by default ``{"zip": "DEF", "alg": "ES256", "kid": <thumbprint>}`` over the
    raw-DEFLATE payload."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    head = {"zip": "DEF", "alg": "ES256", "kid": jwk(key)["kid"]} if header is None else header
    data = f"{b64url_encode(json.dumps(head).encode())}.{b64url_encode(deflate(body) if compress else body)}"
    r, s = decode_dss_signature(key.sign(data.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{data}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def numeric(jws: str) -> str:
    return "".join(f"{ord(c) - 45:02d}" for c in jws)


@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: ec.generate_private_key(ec.SECP256R1()) for name in ("a", "a2", "b", "stranger")}


@pytest.fixture(scope="module")
def trust(keys: dict[str, ec.EllipticCurvePrivateKey]) -> TrustStore:
    t = TrustStore()
    assert t.add_shc_jwks(ISS_A, {"keys": [jwk(keys["a"]), jwk(keys["a2"])]}) == 2
    assert t.add_shc_jwks(ISS_B, {"keys": [jwk(keys["b"])]}) == 1
    return t


def test_a_well_formed_card_verifies(keys: dict[str, Any], trust: TrustStore) -> None:
    result = verify_shc(card(keys["a"]), trust, AT)
    assert result.valid and result.checks == {"decode": True, "signature": True, "key_usage": True, "expiry": True,
                                              "revocation": None, "schema": True}
    assert result.claims["name"] == "John Anyperson" and result.claims["type"] == "immunization"
    assert verify_credential("shc:/" + numeric(card(keys["a"])), trust, AT).valid


# -- the SDK's negatives --------------------------------------------------------------------------------------------

def test_no_deflate_is_refused(keys: dict[str, Any], trust: TrustStore) -> None:
    """An uncompressed payload, validly signed, with the header saying nothing about compression."""
    plain = card(keys["a"], header={"alg": "ES256", "kid": jwk(keys["a"])["kid"]}, compress=False)
    result = verify_shc(plain, trust, AT)
    assert (result.valid, result.reason, result.checks["decode"]) == (False, "bad_jws", False)
    assert "zip" in result.detail
    lying = card(keys["a"], compress=False)  # says zip: DEF, payload is plain JSON
    assert verify_shc(lying, trust, AT).reason in {"bad_zlib", "bad_json"}
    zlib_wrapped = f"{lying.split('.')[0]}.{b64url_encode(zlib.compress(json.dumps(PAYLOAD).encode()))}.AAAA"
    assert verify_shc(zlib_wrapped, trust, AT).reason == "bad_zlib"  # zlib, not raw DEFLATE


@pytest.mark.parametrize("zip_value", ["GZIP", "def", "", None, True])
def test_wrong_zip_header_is_refused(keys: dict[str, Any], trust: TrustStore, zip_value: Any) -> None:
    header = {"zip": zip_value, "alg": "ES256", "kid": jwk(keys["a"])["kid"]}
    assert verify_shc(card(keys["a"], header=header), trust, AT).reason == "bad_jws"


def test_bad_kid(keys: dict[str, Any], trust: TrustStore) -> None:
    a = jwk(keys["a"])["kid"]
    for kid in ("k", a[:-1], a + "A", a.replace(a[5], "+" if a[5] != "+" else "/"), 7, None):
        header = {"zip": "DEF", "alg": "ES256", "kid": kid}
        assert verify_shc(card(keys["a"], header=header), trust, AT).reason == "bad_jws", kid
    other_key_of_a = {"zip": "DEF", "alg": "ES256", "kid": jwk(keys["a2"])["kid"]}  # signed by a, names a2
    assert verify_shc(card(keys["a"], header=other_key_of_a), trust, AT).reason == "bad_signature"
    unknown = {"zip": "DEF", "alg": "ES256", "kid": jwk(keys["stranger"])["kid"]}
    assert verify_shc(card(keys["stranger"], header=unknown), trust, AT).reason == "unknown_kid"


@pytest.mark.parametrize("alg", ["ES384", "RS256", "none", "HS256", None])
def test_only_es256(keys: dict[str, Any], trust: TrustStore, alg: Any) -> None:
    header = {"zip": "DEF", "alg": alg, "kid": jwk(keys["a"])["kid"]}
    assert verify_shc(card(keys["a"], header=header), trust, AT).reason == "unsupported_alg"


def test_tampered_payload(keys: dict[str, Any], trust: TrustStore) -> None:
    header, _, signature = card(keys["a"]).split(".")
    changed = copy.deepcopy(PAYLOAD)
    changed["vc"]["credentialSubject"]["fhirBundle"]["entry"][0]["resource"]["birthDate"] = "1990-01-20"
    forged = f"{header}.{b64url_encode(deflate(json.dumps(changed, separators=(',', ':')).encode()))}.{signature}"
    result = verify_shc(forged, trust, AT)
    assert (result.valid, result.reason, result.checks["signature"], result.claims) == (False, "bad_signature", False,
                                                                                         {})
    flipped = bytearray(b64url_decode(signature))
    flipped[10] ^= 1
    assert verify_shc(f"{header}.{card(keys['a']).split('.')[1]}.{b64url_encode(bytes(flipped))}", trust, AT).reason \
        == "bad_signature"


def test_wrong_issuer(keys: dict[str, Any], trust: TrustStore) -> None:
    claims_a = dict(PAYLOAD, iss=ISS_A)
    signed_by_b = verify_shc(card(keys["b"], claims_a), trust, AT)  # B's key, a card saying it is A's
    assert (signed_by_b.valid, signed_by_b.reason, signed_by_b.checks["signature"]) == (False, "issuer_mismatch",
                                                                                        False)
    assert verify_shc(card(keys["a"], dict(PAYLOAD, iss="https://c.issuer.example")), trust, AT).reason == \
        "issuer_mismatch"  # an issuer nobody trusts, under A's key
    assert verify_shc(card(keys["stranger"], dict(PAYLOAD, iss="https://c.issuer.example")), trust, AT).reason == \
        "unknown_issuer"
    assert verify_shc(card(keys["b"], dict(PAYLOAD, iss=ISS_B)), trust, AT).valid


# -- nbf and the bundle's shape -------------------------------------------------------------------------------------

def _without(path: list[Any]) -> dict[str, Any]:
    payload = copy.deepcopy(PAYLOAD)
    node = payload
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return payload


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(PAYLOAD)
    node = payload
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return payload


BUNDLE = ["vc", "credentialSubject", "fhirBundle"]
ENTRIES = BUNDLE + ["entry"]


@pytest.mark.parametrize("payload, detail", [
    (_without(["nbf"]), "nbf"),
    (_with(["nbf"], "2023-06-22"), "nbf"),
    (_with(["exp"], "never"), "exp"),
    (_with(["iss"], "http://a.issuer.example"), "https"),
    (_with(["iss"], ISS_A + "/"), "trailing slash"),
    (_with(["vc", "type"], ["https://smarthealth.cards#immunization"]), "health-card"),
    (_without(["vc", "credentialSubject", "fhirVersion"]), "fhirVersion"),
    (_with(["vc", "credentialSubject", "fhirVersion"], "R4"), "fhirVersion"),
    (_with(["vc", "rid"], "not base64url!"), "rid"),
    (_with(BUNDLE + ["type"], "document"), "collection"),
    (_without(BUNDLE + ["type"]), "collection"),
    (_with(BUNDLE + ["resourceType"], "Parameters"), "Bundle"),
    (_with(ENTRIES, []), "entry"),
    (_without(ENTRIES + [1, "fullUrl"]), "entry[1].fullUrl"),
    (_with(ENTRIES + [1, "fullUrl"], "urn:uuid:4b9a3e63-3e44-4d46-9c5b-0e5c9f2a1f00"), "entry[1].fullUrl"),
    (_with(ENTRIES + [1, "fullUrl"], "resource:0"), "entry[1].fullUrl"),       # the same URL twice
    (_with(ENTRIES + [1, "fullUrl"], "resource:01"), "entry[1].fullUrl"),
    (_with(ENTRIES + [1, "resource"], {"status": "completed"}), "entry[1]"),
    (_with(ENTRIES + [0, "resource", "resourceType"], "Practitioner"), "Patient"),  # immunizations, no Patient
    (_with(ENTRIES, PAYLOAD["vc"]["credentialSubject"]["fhirBundle"]["entry"] + [
        {"fullUrl": "resource:2", "resource": {"resourceType": "Patient"}}]), "more than one Patient"),
])
def test_bundle_shape_and_nbf(keys: dict[str, Any], payload: dict[str, Any], detail: str) -> None:
    trust = TrustStore()
    trust.add_shc_jwks(payload["iss"], {"keys": [jwk(keys["a"])]})
    result = verify_shc(card(keys["a"], payload), trust, AT)
    assert (result.valid, result.reason, result.checks["signature"], result.checks["schema"]) == (
        False, "schema_error", True, False)
    assert detail in result.detail, result.detail
    if "nbf" not in payload or not isinstance(payload["nbf"], (int, float)):
        assert result.checks["expiry"] is None


def test_a_lab_card_without_a_patient_is_accepted(keys: dict[str, Any], trust: TrustStore) -> None:
    """Upstream's example 02 (a lab report) holds no Patient, and the SDK does not ask for one there."""
    lab = _with(ENTRIES, [{"fullUrl": "resource:0", "resource": {"resourceType": "Observation", "status": "final"}}])
    lab["vc"]["type"] = ["https://smarthealth.cards#health-card", "https://smarthealth.cards#laboratory"]
    result = verify_shc(card(keys["a"], lab), trust, AT)
    assert result.valid and result.claims["name"] is None and result.claims["type"] == "laboratory"


def test_inflating_is_bounded(keys: dict[str, Any], trust: TrustStore) -> None:
    """A signed card whose payload inflates past 64 KiB is refused without inflating the rest."""
    padded = json.dumps(dict(PAYLOAD, pad=" " * (MAX_INFLATED + 1))).encode()
    assert len(deflate(padded)) < 1000
    assert verify_shc(card(keys["a"], padded), trust, AT).reason == "too_large"
    just_fits = json.dumps(dict(PAYLOAD, pad="x" * (MAX_INFLATED - 2000))).encode()
    assert verify_shc(card(keys["a"], just_fits), trust, AT).valid


# -- chunks ---------------------------------------------------------------------------------------------------------

def chunks(jws: str, n: int) -> list[str]:
    size = -(-len(jws) // n)
    return [f"shc:/{i + 1}/{n}/{numeric(jws[i * size:(i + 1) * size])}" for i in range(n)]


def test_chunks_complete_in_any_order(keys: dict[str, Any], trust: TrustStore) -> None:
    parts = chunks(card(keys["a"]), 3)
    assert verify_credential(" ".join(parts), trust, AT).valid
    assert verify_credential("\n".join(reversed(parts)), trust, AT).valid
    assert verify_credential(chunks(card(keys["a"]), 1)[0], trust, AT).valid  # shc:/1/1/ is a whole card


@pytest.mark.parametrize("make, reason, missing", [
    (lambda p, q, w: p[:1], "missing_chunks", (2, 3)),
    (lambda p, q, w: [p[0], p[2]], "missing_chunks", (2,)),
    (lambda p, q, w: p + [p[1]], "bad_chunks", ()),                                          # duplicate, same data
    (lambda p, q, w: p[:2] + [q[2].replace("shc:/3/3/", "shc:/1/3/")], "bad_chunks", ()),   # duplicate, other data
    (lambda p, q, w: p[:2] + [p[2].replace("shc:/3/3/", "shc:/4/3/")], "bad_chunks", ()),   # out of range
    (lambda p, q, w: p[:2] + [p[2].replace("shc:/3/3/", "shc:/0/3/")], "bad_chunks", ()),   # chunk 0
    (lambda p, q, w: p[:2] + [p[2].replace("shc:/3/3/", "shc:/03/3/")], "bad_chunks", ()),  # leading zero
    (lambda p, q, w: p[:2] + [p[2].replace("shc:/3/3/", "shc:/3/4/")], "bad_chunks", ()),   # disagree on N
    (lambda p, q, w: p + q, "bad_chunks", ()),                                               # two sets mixed
    (lambda p, q, w: p[:2] + [w], "bad_chunks", ()),                                         # chunks and a whole card
])
def test_chunk_sets(keys: dict[str, Any], trust: TrustStore, make: Any, reason: str,
                    missing: tuple[int, ...]) -> None:
    card_b = card(keys["b"], dict(PAYLOAD, iss=ISS_B))
    p, q = chunks(card(keys["a"]), 3), chunks(card_b, 3)
    result = verify_credential("\n".join(make(p, q, "shc:/" + numeric(card_b))), trust, AT)
    assert (result.valid, result.reason, result.missing_chunks) == (False, reason, missing)


def test_chunks_of_two_cards_with_distinct_numbers_do_not_verify(keys: dict[str, Any], trust: TrustStore) -> None:
    p, q = chunks(card(keys["a"]), 3), chunks(card(keys["b"], dict(PAYLOAD, iss=ISS_B)), 3)
    result = verify_credential("\n".join([p[0], q[1], p[2]]), trust, AT)
    assert not result.valid and result.reason in {"bad_jws", "bad_zlib", "bad_json", "bad_signature"}


def test_chunk_count_bounds(keys: dict[str, Any], trust: TrustStore) -> None:
    jws = card(keys["a"])
    assert verify_credential("\n".join(chunks(jws, MAX_CHUNKS)), trust, AT).valid
    assert verify_credential("\n".join(chunks(jws, MAX_CHUNKS + 1)), trust, AT).reason == "bad_chunks"
    assert verify_credential(f"shc:/{numeric(jws)}\nshc:/{numeric(jws)}", trust, AT).reason == "multiple_credentials"

