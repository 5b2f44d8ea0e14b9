"""Hostile and broken input: every failure is a ``valid=False`` result with a stable reason, never an exception.

Certificates here are made on the fly (own keys, own signer certificates), so the file needs no shared data.
"""

from __future__ import annotations

import json
import logging
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge.credentials as credentials
from edge.credentials import MAX_CREDENTIAL_CHARS, CredentialError, Reason, TrustStore, codecs, verify_credential
from edge.credentials.anchors import dcc_kid, jwk_thumbprint
from edge.credentials.schemas import DccSchemas
from tests.conftest import shared_dir

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
EKU_TEST, EKU_VACC, EKU_RECOVERY = (x509.ObjectIdentifier(f"1.3.6.1.4.1.1847.2021.1.{i}") for i in (1, 2, 3))
DCC = {
    "ver": "1.3.0",
    "nam": {"fn": "Musterfrau", "fnt": "MUSTERFRAU", "gn": "Erika", "gnt": "ERIKA"},
    "dob": "1964-08-12",
    "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2,
           "dt": "2021-06-11", "co": "DE", "is": "Robert Koch-Institut", "ci": "URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W"}],
}


def signer(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None, ekus: list[x509.ObjectIdentifier] | None = None,
           not_before: datetime = NOW - timedelta(days=365), days: int = 730) -> tuple[Any, x509.Certificate]:
    """A key and a self-signed document signer certificate (with the given EKU OIDs, if any)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DSC test"), x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before)
               .not_valid_after(not_before + timedelta(days=days)))
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    return key, builder.sign(key, hashes.SHA256())


def trust_for(*certs: x509.Certificate, schemas: DccSchemas | None = None) -> TrustStore:
    t = TrustStore(schemas)
    for cert in certs:
        t.add_dcc_certificate(cert)
    return t


def claims(payload: Any = None, exp: Any = NOW + timedelta(days=30), iat: Any = NOW - timedelta(days=1),
           hcert: Any = None) -> bytes:
    c: dict[int, Any] = {1: "DE", -260: hcert if hcert is not None else {1: payload if payload is not None else DCC}}
    if exp is not None:
        c[4] = int(exp.timestamp()) if isinstance(exp, datetime) else exp
    if iat is not None:
        c[6] = int(iat.timestamp()) if isinstance(iat, datetime) else iat
    return cbor2.dumps(c)


def cose(key: Any, cert: x509.Certificate, payload: bytes, *, alg: int = -7, kid: bytes | None = None,
         protected: dict[int, Any] | None = None, unprotected: dict[int, Any] | None = None,
         tags: tuple[int, ...] = (18,), raw_signature: bytes | None = None) -> bytes:
    """COSE_Sign1 bytes signed with ``key`` (ES256 raw r||s, or PS256 with salt 32) under the given headers."""
    kid = dcc_kid(cert.public_bytes(_der())) if kid is None else kid
    prot = cbor2.dumps(protected if protected is not None else {1: alg, 4: kid})
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    if raw_signature is not None:
        sig = raw_signature
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        size = (key.curve.key_size + 7) // 8
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        sig = key.sign(tbs, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    obj: Any = [prot, unprotected or {}, payload, sig]
    for tag in reversed(tags):
        obj = cbor2.CBORTag(tag, obj)
    return cbor2.dumps(obj)


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def hc1(cose_bytes: bytes, compress: bool = True) -> str:
    data = zlib.compress(cose_bytes, 9) if compress else cose_bytes
    return "HC1:" + base45.b45encode(data).decode()


@pytest.fixture(scope="module")
def ec_signer() -> tuple[Any, x509.Certificate]:
    return signer()


@pytest.fixture(scope="module")
def good(ec_signer: tuple[Any, x509.Certificate]) -> tuple[str, TrustStore]:
    key, cert = ec_signer
    return hc1(cose(key, cert, claims())), trust_for(cert)


def reason(text: Any, trust: TrustStore | None = None, at: datetime = NOW) -> str | None:
    result = verify_credential(text, trust or TrustStore(), at)
    assert result.valid is False and result.reason, result
    return result.reason


# -- the baseline --------------------------------------------------------------------------------------------------

def test_a_well_formed_certificate_verifies(good: tuple[str, TrustStore]) -> None:
    text, trust = good
    result = verify_credential(text, trust, NOW)
    assert result.valid and result.format == "hc1" and result.reason is None
    assert result.checks == {"decode": True, "signature": True, "certificate": True, "key_usage": True,
                             "expiry": True, "schema": None, "value_set": True}
    assert result.claims["name"] == "Erika Musterfrau" and result.claims["type"] == "v"
    assert result.claims["doses"] == "2/2" and result.claims["issuer"] == "DE"
    assert "Erika" not in repr(result) and "1964" not in repr(result)


def test_nothing_personal_is_logged(good: tuple[str, TrustStore], caplog: pytest.LogCaptureFixture) -> None:
    text, trust = good
    caplog.set_level(logging.DEBUG, logger="edge.credentials")
    verify_credential(text, trust, NOW)
    verify_credential(text, TrustStore(), NOW)
    verify_credential(text[:-3], trust, NOW)
    for secret in ("Erika", "Musterfrau", "1964", text[4:40]):
        assert secret not in caplog.text


# -- transport -----------------------------------------------------------------------------------------------------

def test_truncated_or_foreign_base45(good: tuple[str, TrustStore]) -> None:
    text, trust = good
    cut = text[:-1] if len(text[4:]) % 3 == 2 else text[:-2]  # a lone trailing character is never Base45
    assert len(cut[4:]) % 3 == 1
    assert reason(cut, trust) == "bad_base45"
    assert reason(text[:40] + "a" + text[41:], trust) == "bad_base45"
    assert reason("HC1:" + "GGW", trust) == "bad_base45"  # 3 characters over 65535
    assert reason(text[:-3], trust) == "bad_zlib"  # whole groups cut off: a truncated stream


def test_broken_and_missing_compression(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    raw = cose(key, cert, claims())
    trust = trust_for(cert)
    assert reason(hc1(raw, compress=False), trust) == "bad_zlib"
    packed = zlib.compress(raw)
    assert reason("HC1:" + base45.b45encode(packed[:-6]).decode(), trust) == "bad_zlib"
    assert reason("HC1:" + base45.b45encode(packed + b"junk").decode(), trust) == "bad_zlib"
    assert reason("HC1:" + base45.b45encode(b"\x78\x9c" + bytes(range(40))).decode(), trust) == "bad_zlib"


def test_zlib_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b"\0" * (1 << 20), 9)  # 1 MiB of zeros in about 1 KiB
    assert len(bomb) < 2048
    assert reason("HC1:" + base45.b45encode(bomb).decode()) == "too_large"
    big = zlib.compress(b"\0" * (200 << 20), 9)  # 200 MiB: the decoder stops at the limit
    with pytest.raises(CredentialError) as exc:
        codecs.inflate(big)
    assert exc.value.reason == Reason.TOO_LARGE
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_bomb = deflate.compress(b"{" * (1 << 20)) + deflate.flush()
    with pytest.raises(CredentialError) as exc:
        codecs.inflate(raw_bomb, raw=True)
    assert exc.value.reason == Reason.TOO_LARGE


# -- CBOR and COSE ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cbor, why", [
    (bytes.fromhex("9bffffffffffffffff"), "bad_cose"),  # an array claiming 2^64-1 items
    (bytes.fromhex("5bffffffffffffffff"), "bad_cose"),  # a byte string claiming 2^64-1 bytes
    (bytes.fromhex("bbffffffffffffffff"), "bad_cose"),  # a map claiming 2^64-1 pairs
    (b"\x81" * 5000, "too_deep"),                       # 5000 nested arrays
    (b"\x9f" * 5000, "too_deep"),                       # 5000 nested indefinite arrays
    (b"\xd8\x1c" * 3000 + b"\x00", "too_deep"),         # 3000 nested shareable tags
    (b"\xd8\x1c\x81\xd8\x1d\x00", "bad_cose"),           # a list that contains itself
    (b"\xc1" * 3000 + b"\x00", "too_deep"),             # 3000 nested tags
    (b"\xff", "bad_cose"),                              # a lone break
    (b"\x84\x40\xa0\x40\x40\x00", "bad_cose"),          # trailing bytes after the item
    (b"", "bad_cose"),
])
def test_cbor_bombs_and_garbage(cbor: bytes, why: str) -> None:
    assert reason(hc1(cbor)) == why


def test_deep_nesting_inside_a_signed_payload(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    payload = dict(DCC, extra=deep)
    assert reason(hc1(cose(key, cert, claims(payload))), trust_for(cert)) == "too_deep"


def test_cyclic_shared_references_are_refused(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    # {1: "DE", 4: exp, -260: {1: <shareable [sharedref 0]>}}: a list that contains itself
    cyclic = bytes.fromhex("a3") + cbor2.dumps(1) + cbor2.dumps("DE") + cbor2.dumps(4) + cbor2.dumps(2**31) + \
        cbor2.dumps(-260) + bytes.fromhex("a101d81c81d81d00")
    assert reason(hc1(cose(key, cert, cyclic)), trust_for(cert)) == "bad_cbor"


@pytest.mark.parametrize("tags, ok", [((18,), True), ((), True), ((61, 18), True), ((61,), True),
                                      ((98,), False), ((17,), False), ((61, 17), False), ((18, 18), False)])
def test_cose_tags(ec_signer: tuple[Any, x509.Certificate], tags: tuple[int, ...], ok: bool) -> None:
    key, cert = ec_signer
    result = verify_credential(hc1(cose(key, cert, claims(), tags=tags)), trust_for(cert), NOW)
    assert result.valid is ok and (ok or result.reason == "bad_cose")


def test_cose_shape(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    trust = trust_for(cert)
    good = list(cbor2.loads(cose(key, cert, claims())).value)
    for bad in (good[:3], good + [b""], [good[0], [], good[2], good[3]], [good[0], {}, "text", good[3]],
                [cbor2.dumps([1, 2]), {}, good[2], good[3]], [b"\xff", {}, good[2], good[3]], {"a": 1}, 7):
        assert reason(hc1(cbor2.dumps(cbor2.CBORTag(18, bad))), trust) == "bad_cose", bad
    assert reason(hc1(cose(key, cert, claims(), protected={1: -7, 4: "text kid"})), trust) == "bad_cose"
    assert reason(hc1(cose(key, cert, claims(), protected={1: "ES256"})), trust) == "bad_cose"


def test_cwt_claims(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    trust = trust_for(cert)

    def why(payload: bytes) -> str | None:
        return reason(hc1(cose(key, cert, payload)), trust)

    assert why(cbor2.dumps([1, 2, 3])) == "bad_cwt"
    assert why(claims(exp=None)) == "bad_cwt"
    assert why(claims(exp="tomorrow")) == "bad_cwt"
    assert why(claims(exp=True)) == "bad_cwt"
    assert why(claims(exp=2**40)) == "bad_cwt"  # past the year 9999
    assert why(claims(exp=-1)) == "bad_cwt"
    assert why(claims(exp=float("nan"))) == "bad_cwt"
    assert why(claims(iat=2**64 - 1)) == "bad_cwt"  # the largest untagged integer
    assert why(claims(iat=2**64)) == "bad_cbor"  # a bignum: tag 2, which the format does not define
    assert why(claims(hcert={1: b"\xa1\x01\x02"})) == "bad_cwt"  # upstream CBO1: the payload is a byte string
    assert why(claims(hcert=[1])) == "bad_cwt"
    assert why(claims(payload=dict(DCC, dob=b"\x01"))) == "bad_cbor"  # not a JSON type
    assert why(cbor2.dumps({1: "DE", 4: 2**31, -260: {1: {"ver": "1.3.0", 7: "int key"}}})) == "bad_cbor"
    assert why(bytes.fromhex("a2") + cbor2.dumps(4) + cbor2.dumps(2**31) + cbor2.dumps(4) + cbor2.dumps(1)) == \
        "bad_cbor"  # duplicate map key


# -- keys and signatures -------------------------------------------------------------------------------------------

def test_unknown_kid_and_header_precedence(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    trust = trust_for(cert)
    kid = dcc_kid(cert.public_bytes(_der()))
    result = verify_credential(hc1(cose(key, cert, claims(), kid=b"12345678")), trust, NOW)
    assert (result.reason, result.checks["signature"], result.kid) == ("unknown_kid", False, "MTIzNDU2Nzg=")
    assert result.claims == {}
    assert reason(hc1(cose(key, cert, claims(), protected={1: -7})), trust) == "unknown_kid"  # no kid at all
    only_unprotected = cose(key, cert, claims(), protected={1: -7}, unprotected={4: kid})
    assert verify_credential(hc1(only_unprotected), trust, NOW).valid
    everything_unprotected = cose(key, cert, claims(), protected={}, unprotected={1: -7, 4: kid})
    assert verify_credential(hc1(everything_unprotected), trust, NOW).valid
    protected_wins = cose(key, cert, claims(), protected={1: -7, 4: b"wrongkid"}, unprotected={4: kid})
    assert reason(hc1(protected_wins), trust) == "unknown_kid"
    assert verify_credential(hc1(cose(key, cert, claims(), unprotected={4: b"wrongkid"})), trust, NOW).valid


def test_algorithms(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    trust = trust_for(cert)
    assert reason(hc1(cose(key, cert, claims(), alg=-37)), trust) == "alg_mismatch"  # PS256 header, EC key
    assert reason(hc1(cose(key, cert, claims(), alg=-8)), trust) == "unsupported_alg"  # EdDSA
    assert reason(hc1(cose(key, cert, claims(), raw_signature=b"\1" * 64)), trust) == "bad_signature"
    assert reason(hc1(cose(key, cert, claims(), raw_signature=b"\0" * 64)), trust) == "bad_signature"
    assert reason(hc1(cose(key, cert, claims(), raw_signature=b"\1" * 70)), trust) == "bad_signature"
    rsa_key, rsa_cert = signer(rsa.generate_private_key(65537, 2048))
    rsa_trust = trust_for(rsa_cert)
    assert verify_credential(hc1(cose(rsa_key, rsa_cert, claims(), alg=-37)), rsa_trust, NOW).valid
    assert reason(hc1(cose(rsa_key, rsa_cert, claims(), alg=-7, raw_signature=b"\1" * 64)), rsa_trust) == \
        "alg_mismatch"
    p384_key, p384_cert = signer(ec.generate_private_key(ec.SECP384R1()))
    assert reason(hc1(cose(p384_key, p384_cert, claims(), alg=-7)), trust_for(p384_cert)) == "alg_mismatch"


def test_signature_over_other_content_fails(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    signed = cbor2.loads(cose(key, cert, claims())).value
    forged = cbor2.dumps(cbor2.CBORTag(18, [signed[0], {}, claims(payload=dict(DCC, dob="1990-01-01")), signed[3]]))
    assert reason(hc1(forged), trust_for(cert)) == "bad_signature"


def test_validity_periods_and_key_usage(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    trust = trust_for(cert)
    text = hc1(cose(key, cert, claims()))
    assert reason(text, trust, NOW + timedelta(days=31)) == "expired"
    assert reason(text, trust, NOW - timedelta(days=2)) == "not_yet_valid"
    late = verify_credential(text, trust, NOW + timedelta(days=400))
    assert late.reason == "cert_expired" and late.checks["expiry"] is False  # every check still reported
    old_key, old_cert = signer(not_before=NOW - timedelta(days=800), days=365)
    assert reason(hc1(cose(old_key, old_cert, claims())), trust_for(old_cert)) == "cert_expired"
    new_key, new_cert = signer(not_before=NOW + timedelta(days=1))
    assert reason(hc1(cose(new_key, new_cert, claims())), trust_for(new_cert)) == "cert_not_yet_valid"
    test_key, test_cert = signer(ekus=[EKU_TEST])
    assert reason(hc1(cose(test_key, test_cert, claims())), trust_for(test_cert)) == "wrong_key_usage"
    both_key, both_cert = signer(ekus=[EKU_TEST, x509.ObjectIdentifier("1.3.6.1.4.1.0.1847.2021.1.2")])
    assert verify_credential(hc1(cose(both_key, both_cert, claims())), trust_for(both_cert), NOW).valid
    tls_key, tls_cert = signer(ekus=[x509.ObjectIdentifier("1.3.6.1.5.5.7.3.2")])  # no DCC OID: all types
    assert verify_credential(hc1(cose(tls_key, tls_cert, claims())), trust_for(tls_cert), NOW).valid


def test_ddcc_payload(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    ddcc = {"name": "Test Person", "birthDate": "1990-01-01", "vaccination": {"date": "2021-05-01", "dose": 1}}
    for hcert in ({1: ddcc}, {-6: ddcc}, {"ddcc": ddcc}):
        result = verify_credential(hc1(cose(key, cert, claims(hcert=hcert))), trust_for(cert), NOW)
        assert result.valid and result.format == "ddcc" and result.checks["schema"] is None
        assert result.claims["name"] == "Test Person" and result.claims["type"] == "v"


@pytest.mark.skipif(not shared_dir().is_dir(),
                    reason=f"shared test data folder not found: {shared_dir()} (set EHC_SHARED_DIR)")
def test_schema_check_when_schemas_are_configured(ec_signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = ec_signer
    schemas = DccSchemas.from_dir(shared_dir() / "testdata" / "dcc" / "schemas")
    trust = trust_for(cert, schemas=schemas)
    assert verify_credential(hc1(cose(key, cert, claims())), trust, NOW).checks["schema"] is True
    partial_date = dict(DCC, dob="1964-08")  # format: date is not enforced
    assert verify_credential(hc1(cose(key, cert, claims(partial_date))), trust, NOW).valid
    assert reason(hc1(cose(key, cert, claims(dict(DCC, dob=19640812)))), trust) == "schema_error"
    assert reason(hc1(cose(key, cert, claims(dict(DCC, ver="9.9.9")))), trust) == "unknown_schema_version"
    assert verify_credential(hc1(cose(key, cert, claims(dict(DCC, ver="1.3.9")))), trust, NOW).valid  # newest 1.3
    two = dict(DCC, ver="1.0.0", t=[{"tg": "840539006"}])
    assert reason(hc1(cose(key, cert, claims(two))), trust) == "schema_error"


# -- the entry point -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, why", [
    ("", "unsupported_format"),
    ("hello", "unsupported_format"),
    ("EHC1:abc", "unsupported_format"),
    ("hc1:NCF", "unsupported_format"),
    ("HC2:NCF", "unsupported_format"),
    ("HC1:", "bad_zlib"),
    ("HC1:" + "A" * (MAX_CREDENTIAL_CHARS + 1), "too_large"),
    ("HC1:" + "A" * 9000, "too_large"),
    ("shc:/" + "5" * (MAX_CREDENTIAL_CHARS + 1), "too_large"),
    ("HC1:\udcff\udcfe", "undecodable"),
    ("HC1:NCF\ufffd", "undecodable"),
    (b"HC1:\xff\xfe\x00", "undecodable"),
    (b"\x00" * (5 * MAX_CREDENTIAL_CHARS), "too_large"),
    (None, "unsupported_format"),
    (12345, "unsupported_format"),
    ("shc:/", "bad_numeric"),
    ("shc:/5676290952432060346029243740446031222959532654603460292540772804336028702865", "bad_jws"),
])
def test_entry_point_reasons(text: Any, why: str) -> None:
    assert reason(text) == why


def test_bytes_are_accepted_as_utf8(good: tuple[str, TrustStore]) -> None:
    text, trust = good
    assert verify_credential(text.encode(), trust, NOW).valid


def test_internal_errors_are_contained(good: tuple[str, TrustStore], monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    text, trust = good

    def boom(*_: Any) -> None:
        raise RuntimeError("secret " + text)

    monkeypatch.setattr(credentials, "verify_hc1", boom)
    caplog.set_level(logging.DEBUG, logger="edge.credentials")
    result = verify_credential(text, trust, NOW)
    assert (result.valid, result.format, result.reason) == (False, "hc1", "internal_error")
    assert "secret" not in caplog.text and text[4:30] not in caplog.text
    assert verify_credential(text, trust, "not a time").reason == "internal_error"  # type: ignore[arg-type]


def shc_card(key: ec.EllipticCurvePrivateKey, payload: dict[str, Any]) -> tuple[str, TrustStore]:
    """A SMART Health Card signed by ``key`` and a trust store holding that key for its issuer."""
    n = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": codecs.b64url_encode(n.x.to_bytes(32, "big")),
           "y": codecs.b64url_encode(n.y.to_bytes(32, "big"))}
    jwk["kid"] = jwk_thumbprint(jwk)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(json.dumps(payload).encode()) + deflate.flush()
    header = codecs.b64url_encode(json.dumps({"zip": "DEF", "alg": "ES256", "kid": jwk["kid"]}).encode())
    data = f"{header}.{codecs.b64url_encode(body)}"
    r, s = decode_dss_signature(key.sign(data.encode(), ec.ECDSA(hashes.SHA256())))
    trust = TrustStore()
    trust.add_shc_jwks(payload["iss"], {"keys": [jwk]})
    return f"{data}.{codecs.b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", trust


def test_smart_health_card_with_extreme_times() -> None:
    from edge.credentials.shc import verify_shc

    key = ec.generate_private_key(ec.SECP256R1())
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "resource:0", "resource": {"resourceType": "Patient", "birthDate": "1990"}}]}
    for nbf, exp in ((1e300, None), (-1e300, 1e300), (0, -5), (1e18, 1e19), (1700000000, None)):
        payload: dict[str, Any] = {"iss": "https://issuer.example", "nbf": nbf, "vc": {
            "type": ["https://smarthealth.cards#health-card"],
            "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": bundle}}}
        if exp is not None:
            payload["exp"] = exp
        card, trust = shc_card(key, payload)
        result = verify_shc(card, trust, NOW)
        assert result.checks["signature"] is True and result.reason != "internal_error", (nbf, exp)
    assert result.valid and result.claims["issued_at"] == "2023-11-14T22:13:20Z"


def test_smart_health_card_garbage() -> None:
    from edge.credentials.shc import verify_shc

    t = TrustStore()
    jws = lambda h, p, s="AAAA": f"{codecs.b64url_encode(h)}.{codecs.b64url_encode(p)}.{s}"  # noqa: E731

    def deflated(data: bytes) -> bytes:
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        return deflate.compress(data) + deflate.flush()

    kid = "A" * 43  # the form of a SHA-256 thumbprint
    header = json.dumps({"alg": "ES256", "kid": kid, "zip": "DEF"}).encode()
    assert verify_shc(jws(header, deflated(b" " * (1 << 20))), t, NOW).reason == "too_large"
    assert verify_shc(jws(header, deflated(b"[" * 5000 + b"]" * 5000)), t, NOW).reason == "too_deep"
    assert verify_shc(jws(header, b"not deflate"), t, NOW).reason == "bad_zlib"
    assert verify_shc(jws(header, deflated(b"[1]")), t, NOW).reason == "bad_jws"
    assert verify_shc(jws(header, deflated(b'{"iss": "x"}')), t, NOW).reason == "unknown_issuer"
    assert verify_shc(jws(header, deflated(b"{nope")), t, NOW).reason == "bad_json"
    assert verify_shc(jws(header, deflated(b'{"iss": NaN}')), t, NOW).reason == "bad_json"
    plain = json.dumps({"alg": "ES256", "kid": kid}).encode()  # no zip: an uncompressed payload is refused
    assert verify_shc(jws(plain, b'{"iss": "x"}'), t, NOW).reason == "bad_jws"
    assert verify_shc(jws(json.dumps({"alg": "ES256", "zip": "DEF"}).encode(), deflated(b"{}")), t, NOW).reason == \
        "bad_jws"  # no kid
    assert verify_shc(jws(json.dumps({"kid": kid, "zip": "GZ"}).encode(), b"{}"), t, NOW).reason == "bad_jws"
    assert verify_shc("a.b", t, NOW).reason == "bad_jws"
    assert verify_shc("a.b=.c", t, NOW).reason == "bad_jws"
    assert verify_shc("{", t, NOW).reason == "bad_json"
    assert verify_shc("x" * 70000, t, NOW).reason == "too_large"


# -- fuzz ----------------------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_sane(value: Any, trust: TrustStore) -> None:
    result = verify_credential(value, trust, NOW)
    assert isinstance(result, credentials.CredentialCheck)
    assert result.valid or (result.reason and result.reason in set(Reason)), result
    assert result.reason != "internal_error", result


@FUZZ
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(data: bytes) -> None:
    _assert_sane(data, TrustStore())
    _assert_sane(b"HC1:" + data, TrustStore())
    _assert_sane("HC1:" + base45.b45encode(data).decode(), TrustStore())
    _assert_sane("HC1:" + base45.b45encode(zlib.compress(data)).decode(), TrustStore())


@FUZZ
@given(st.text(max_size=2000))
def test_fuzz_random_text(text: str) -> None:
    for prefix in ("", "HC1:", "shc:/", "shc:/1/2/"):
        _assert_sane(prefix + text, TrustStore())


@FUZZ
@given(st.data())
def test_fuzz_mutated_certificate(good: tuple[str, TrustStore], data: st.DataObject) -> None:
    text, trust = good
    raw = bytearray(zlib.decompress(base45.b45decode(text[4:])))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    mutated = "HC1:" + base45.b45encode(zlib.compress(bytes(raw))).decode()
    result = verify_credential(mutated, trust, NOW)
    assert result.reason != "internal_error"
    if bytes(raw) != zlib.decompress(base45.b45decode(text[4:])):
        assert not result.valid or result.checks["signature"]  # a valid result is only ever a verified one


@FUZZ
@given(st.data())
def test_fuzz_mutated_cbor_structure(ec_signer: tuple[Any, x509.Certificate], data: st.DataObject) -> None:
    key, cert = ec_signer
    junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
                        | st.binary(max_size=5), lambda c: st.lists(c, max_size=3) | st.dictionaries(
                            st.integers(-300, 10) | st.text(max_size=3), c, max_size=3), max_leaves=12)
    hcert = data.draw(st.dictionaries(st.integers(-10, 10) | st.text(max_size=3), junk, max_size=3))
    payload = data.draw(st.sampled_from([claims(hcert=hcert), cbor2.dumps(data.draw(junk)),
                                         claims(payload=data.draw(junk))]))
    _assert_sane(hc1(cose(key, cert, payload)), trust_for(cert))


# -- the trust store -------------------------------------------------------------------------------------------------

def test_trust_store_from_files(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    (_, c1), (_, c2), (k3, c3) = signer(), signer(ekus=[EKU_TEST]), signer()
    (tmp_path / "bundle.pem").write_bytes(c1.public_bytes(Encoding.PEM) + c2.public_bytes(Encoding.PEM))
    (tmp_path / "one.der").write_bytes(c3.public_bytes(Encoding.DER))
    issuer = tmp_path / "issuer" / ".well-known"
    (issuer / "crl").mkdir(parents=True)
    card, shc_trust = shc_card(ec.generate_private_key(ec.SECP256R1()), {"iss": "https://issuer.example"})
    key = shc_trust.shc_key("https://issuer.example", json.loads(codecs.b64url_decode(card.split(".")[0]))["kid"])
    assert key is not None
    n = key.public_key.public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": codecs.b64url_encode(n.x.to_bytes(32, "big")),
           "y": codecs.b64url_encode(n.y.to_bytes(32, "big")), "kid": key.kid, "crlVersion": 2}
    (issuer / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (issuer / "crl" / f"{key.kid}.json").write_text(json.dumps({"kid": key.kid, "method": "rid", "ctr": 2,
                                                               "rids": ["abc"]}))
    trust = TrustStore.from_files(dcc_certificates=[tmp_path / "bundle.pem", tmp_path / "one.der"],
                                  shc_issuers={"https://issuer.example": tmp_path / "issuer"})
    assert trust.dcc_schemas is None
    for cert in (c1, c2, c3):
        (found,) = trust.dcc_signers(dcc_kid(cert.public_bytes(Encoding.DER)))
        assert found.cert_types == (frozenset({"t"}) if cert is c2 else None)
    assert verify_credential(hc1(cose(k3, c3, claims())), trust, NOW).valid
    assert trust.shc_key("https://issuer.example", key.kid).crl_version == 2  # type: ignore[union-attr]
    assert trust.shc_revocations("https://issuer.example", key.kid).rids == {"abc": None}  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        TrustStore().add_dcc_certificate((tmp_path / "bundle.pem").read_bytes())  # two certificates: use the file call
