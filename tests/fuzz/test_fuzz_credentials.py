"""Credential decoders (EHC1, HC1 / DDCC, SMART Health Cards) and their shared codecs under hostile input.

Each verifier answers ``valid=False`` with a stable reason, never raises and never reports ``internal_error``
(a contained crash); the codecs raise only :class:`CredentialError` with a reason; zlib / DEFLATE bombs, huge
CBOR lengths and oversized Base45 stay within a memory bound. ``tests/edge/credentials/test_cred_bad_input.py`` holds the hand-made
cases and the HC1 fuzzing; this file adds mutations of valid EHC1 and SHC codes and the memory bounds.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import example, given
from hypothesis import strategies as st

from edge.credentials import (
    MAX_CREDENTIAL_CHARS,
    CredentialCheck,
    CredentialError,
    Reason,
    TrustStore,
    codecs,
    ehc1,
    verify_credential,
)
from edge.credentials.shc import verify_shc
from mqtt.trustlist import public_key_kid
from tests.edge.credentials.test_cred_bad_input import shc_card
from tests.fuzz.harness import (
    CBOR_BOMBS,
    CBOR_HEAVY,
    assert_reason,
    cbor_values,
    fuzz,
    memory_bound,
    mutated,
    mutated_text,
    no_hang,
)

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
AT = NOW.timestamp()
KEY = ec.generate_private_key(ec.SECP256R1())
ISSUERS = {public_key_kid(KEY.public_key()): ("EHC-TEST", KEY.public_key())}
CARD = ehc1.Card("0123456789abcdef0123456789abcdef", "张三", "2019-05-01", "F", "green",
                 guardian="fedcba9876543210fedcba9876543210")
EHC1_TEXT = ehc1.issue(CARD, KEY, "EHC-TEST", ttl=120, now=AT)
EHC1_COSE = zlib.decompress(base45.b45decode(EHC1_TEXT[len(ehc1.PREFIX):]))
SHC_PAYLOAD = {"iss": "https://issuer.example", "nbf": AT - 60, "vc": {
    "type": ["https://smarthealth.cards#health-card"],
    "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "resource:0", "resource": {"resourceType": "Patient", "name": [{"family": "Doe"}],
                                               "birthDate": "1990-01-01"}}]}}}}
SHC_JWS, SHC_TRUST = shc_card(KEY, SHC_PAYLOAD)
MEMORY = 4 << 20  # no refusal may allocate more than 4 MiB on its way


def shc_numeric(jws: str) -> str:
    return "shc:/" + "".join(f"{ord(c) - 45:02d}" for c in jws)


def ehc1_check(text: str) -> CredentialCheck:
    with no_hang():
        result = ehc1.verify(text, ISSUERS, at=AT)
    assert result.valid or (result.reason in set(Reason) and result.reason != Reason.INTERNAL_ERROR), result
    return result


def shc_check(text: str) -> CredentialCheck:
    with no_hang():
        result = verify_shc(text, SHC_TRUST, NOW)
    assert result.valid or (result.reason in set(Reason) and result.reason != Reason.INTERNAL_ERROR), result
    whole = verify_credential(text, SHC_TRUST, NOW)
    assert whole.reason != Reason.INTERNAL_ERROR, whole
    return result


def test_the_samples_verify() -> None:
    assert ehc1_check(EHC1_TEXT).valid
    assert shc_check(shc_numeric(SHC_JWS)).valid


# -- EHC1 --------------------------------------------------------------------------------------------------

def _ehc1_of(cose: bytes) -> str:
    return ehc1.PREFIX + base45.b45encode(zlib.compress(cose)).decode()


@fuzz(300)
@given(mutated(EHC1_COSE))
def test_fuzz_ehc1_mutated_cose(cose: bytes) -> None:
    result = ehc1_check(_ehc1_of(cose))
    if result.valid:  # only an unchanged signed content can verify
        assert result.claims["card_id"] == CARD.card_id and result.checks["signature"]


@fuzz(200)
@given(mutated_text(EHC1_TEXT, alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:abc\x00"))
def test_fuzz_ehc1_mutated_text(text: str) -> None:
    ehc1_check(text)


@fuzz(200)
@given(st.dictionaries(st.integers(-70002, 10) | st.text(max_size=3), cbor_values, max_size=4),
       st.dictionaries(st.sampled_from(["v", "cid", "n", "dob", "sex", "st", "g", "x"]), cbor_values, max_size=7))
@example({}, {"v": 1, "cid": CARD.card_id + "\n", "n": "x", "dob": "2019-05-01", "sex": "F"})  # a line break after the id
def test_fuzz_ehc1_signed_claims_of_any_type(claims: dict, card: dict) -> None:
    """Correctly signed by a trusted issuer, with any claim values: refused with a reason, never a crash."""
    payload = cbor2.dumps({1: "EHC-TEST", 6: int(AT), 4: int(AT) + 60, ehc1.CLAIM_CARD: card, **claims})
    protected = cbor2.dumps({1: -7, 4: bytes.fromhex(next(iter(ISSUERS)))})
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(KEY.sign(cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(hashes.SHA256())))
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))
    result = ehc1_check(_ehc1_of(cose))
    if result.valid:
        assert len(result.claims["card_id"]) == 32 and result.claims["card_id"].isalnum()


@fuzz(100)
@given(st.binary(max_size=600))
def test_fuzz_ehc1_random_bytes(data: bytes) -> None:
    ehc1_check(_ehc1_of(data))
    ehc1_check(ehc1.PREFIX + base45.b45encode(data).decode())


@pytest.mark.parametrize("bomb", CBOR_BOMBS + CBOR_HEAVY, ids=lambda b: b[:6].hex())
def test_ehc1_cbor_bombs_are_refused_within_bounds(bomb: bytes) -> None:
    for cose in (bomb, cbor2.dumps(cbor2.CBORTag(18, [bomb, {}, bomb, bytes(64)]))):
        text = _ehc1_of(cose)
        if len(text) > ehc1.MAX_TEXT:
            continue
        with memory_bound(MEMORY):
            result = ehc1_check(text)
        assert not result.valid


def test_ehc1_zlib_bomb_is_refused_within_bounds() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)
    text = ehc1.PREFIX + base45.b45encode(bomb[:2800]).decode()  # still a bomb inside a QR code's capacity
    with memory_bound(MEMORY):
        assert ehc1_check(text).reason in (Reason.TOO_LARGE, Reason.BAD_ZLIB)
    small = ehc1.PREFIX + base45.b45encode(zlib.compress(b"\x00" * (8 << 20), 9)).decode()
    with memory_bound(MEMORY):
        assert ehc1_check(small).reason == Reason.TOO_LARGE


# -- SMART Health Cards ------------------------------------------------------------------------------------

@fuzz(200)
@given(mutated(SHC_JWS.encode()))
def test_fuzz_shc_mutated_jws(jws: bytes) -> None:
    text = jws.decode("latin-1")
    shc_check(text)
    if all(45 <= b <= 45 + 99 for b in jws):
        shc_check(shc_numeric(text))


@fuzz(200)
@given(mutated_text(shc_numeric(SHC_JWS), alphabet="0123456789/ \nshc:"))
def test_fuzz_shc_mutated_numeric(text: str) -> None:
    shc_check(text)


@fuzz(150)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.text("0123456789", max_size=40)), max_size=5))
def test_fuzz_shc_chunk_sets(chunks: list[tuple[int, int, str]]) -> None:
    shc_check(" ".join(f"shc:/{i}/{n}/{d}" for i, n, d in chunks))


@fuzz(200)
@given(st.dictionaries(st.text(max_size=6), cbor_values.map(lambda v: json.loads(json.dumps(v, default=str))),
                       max_size=5),
       st.sampled_from(["iss", "nbf", "exp", "vc"]), st.data())
def test_fuzz_shc_signed_payloads_of_any_shape(extra: dict, field: str, data: st.DataObject) -> None:
    """Validly signed cards whose payload fields hold anything: refused or verified, never a crash."""
    payload = dict(SHC_PAYLOAD, **extra)
    payload[field] = data.draw(st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
                               | st.lists(st.integers(), max_size=3) | st.just({"credentialSubject": {}}))
    if not isinstance(payload.get("iss"), str):
        payload["iss"] = "https://issuer.example"
    jws, trust = shc_card(KEY, payload)
    with no_hang():
        result = verify_shc(jws, trust, NOW)
    assert result.valid or (result.reason in set(Reason) and result.reason != Reason.INTERNAL_ERROR), result


def test_shc_deflate_bomb_is_refused_within_bounds() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflate.compress(b" " * (64 << 20)) + deflate.flush()
    header = codecs.b64url_encode(json.dumps({"zip": "DEF", "alg": "ES256", "kid": "k"}).encode())
    jws = f"{header}.{codecs.b64url_encode(bomb)}.AAAA"
    with memory_bound(MEMORY):
        assert verify_shc(jws, TrustStore(), NOW).reason == Reason.TOO_LARGE


# -- the shared codecs -------------------------------------------------------------------------------------

def _codec(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        with no_hang():
            return call(*args, **kwargs)
    except CredentialError as exc:
        assert exc.reason in set(Reason)
        assert_reason(exc)
        return None


@fuzz(200)
@given(st.text(max_size=300) | st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=300))
@example("GGW")  # one group over 65535
@example(":::")  # the largest three-character group
def test_fuzz_base45(text: str) -> None:
    out = _codec(codecs.b45decode, text)
    if out is not None:
        assert base45.b45encode(out).decode() == text  # strict: only canonical Base45 decodes


@fuzz(200)
@given(st.text(max_size=200))
def test_fuzz_base64url(text: str) -> None:
    out = _codec(codecs.b64url_decode, text)
    if out is not None:  # unused trailing bits are tolerated; the signed text, not the bytes, is what counts
        assert codecs.b64url_decode(codecs.b64url_encode(out)) == out and len(codecs.b64url_encode(out)) == len(text)


@fuzz(200)
@given(st.binary(max_size=400) | mutated(zlib.compress(b"a" * 500 + bytes(range(256)))), st.booleans())
def test_fuzz_inflate(data: bytes, raw: bool) -> None:
    out = _codec(codecs.inflate, data, raw=raw)
    assert out is None or len(out) <= codecs.MAX_INFLATED


@fuzz(300)
@given(st.binary(max_size=300) | cbor_values.map(cbor2.dumps).flatmap(mutated)
       | st.sampled_from(CBOR_BOMBS + CBOR_HEAVY).flatmap(mutated))
def test_fuzz_cbor_loads(data: bytes) -> None:
    _codec(codecs.cbor_loads, data, Reason.BAD_CBOR)


@fuzz(200)
@given(st.text(max_size=300) | st.binary(max_size=300) | st.sampled_from(["[" * 5000, '{"a":' * 3000, "1" * 5000,
                                                                          "1e999999", '"\\ud800"']))
def test_fuzz_json_loads(data: str | bytes) -> None:
    value = _codec(codecs.json_loads, data)
    if value is not None:
        assert codecs.json_depth(value) <= codecs.MAX_NESTING


@pytest.mark.parametrize("bomb", CBOR_BOMBS, ids=lambda b: b[:6].hex())
def test_cbor_bombs_stay_within_memory(bomb: bytes) -> None:
    with memory_bound(MEMORY), pytest.raises(CredentialError) as info:
        codecs.cbor_loads(bomb, Reason.BAD_CBOR)
    assert info.value.reason in (Reason.BAD_CBOR, Reason.TOO_DEEP)


@pytest.mark.parametrize("heavy", CBOR_HEAVY, ids=lambda b: b[:6].hex())
def test_expensive_cbor_stays_within_memory(heavy: bytes) -> None:
    with memory_bound(MEMORY):
        _codec(codecs.cbor_loads, heavy, Reason.BAD_CBOR)


def test_decompression_bombs_stay_within_memory() -> None:
    for raw in (False, True):
        packer = zlib.compressobj(9, zlib.DEFLATED, -15 if raw else 15)
        bomb = packer.compress(b"\x00" * (256 << 20)) + packer.flush()  # 256 MiB in about 256 KiB
        with memory_bound(MEMORY), pytest.raises(CredentialError) as info:
            codecs.inflate(bomb, raw=raw)
        assert info.value.reason == Reason.TOO_LARGE


def test_huge_base45_is_refused_before_decoding() -> None:
    text = "HC1:" + "0" * (3 * MAX_CREDENTIAL_CHARS)
    with memory_bound(MEMORY // 4):
        assert verify_credential(text, TrustStore(), NOW).reason == Reason.TOO_LARGE
    with memory_bound(MEMORY // 4):
        assert ehc1_check(ehc1.PREFIX + "0" * (3 * MAX_CREDENTIAL_CHARS)).reason == Reason.TOO_LARGE


def test_hc1_zlib_bomb_is_refused_within_bounds() -> None:
    bomb = zlib.compress(b"\x00" * (10 << 20), 9)  # 10 MiB of zeros: the most an HC1 text within the limit holds
    text = "HC1:" + base45.b45encode(bomb).decode()
    assert len(text) <= MAX_CREDENTIAL_CHARS
    with memory_bound(MEMORY):
        assert verify_credential(text, TrustStore(), NOW).reason == Reason.TOO_LARGE
