"""EU DCC date-times as real issuers encode them: CBOR tag 0 / tag 1 date-times where the schema expects a date-time
string (Sweden's test certificates tag ``sc`` and ``dr`` with tag 0), non-integer NumericDates (Hungary's ``iat`` /
``exp`` are floats), and every other CBOR tag still refused (shared references 28/29 above all).

Certificates are made here with own keys, in the encodings those issuers use, so no shared data is needed (except the
schemas, for the checks that run them).
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import base45
import cbor2
import pytest

from edge.credentials import CredentialError, Reason, codecs, hc1, verify_credential
from edge.credentials.schemas import DCC_DATE_TIME_FIELDS, DccSchemas
from tests.conftest import shared_dir
from tests.edge.credentials.test_cred_bad_input import DCC, NOW, claims, cose, signer, trust_for

SCHEMAS_DIR = shared_dir() / "testdata" / "dcc" / "schemas"
T0, T1 = cbor2.CBORTag(0, "2021-06-15T09:24:02Z"), cbor2.CBORTag(1, 1623749042)

TEST_DCC: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fn": "Lövström", "fnt": "LOEVSTROEM", "gn": "Oscar", "gnt": "OSCAR"},
    "dob": "1958-11-11",
    "t": [{"tg": "840539006", "tt": "LP6464-4", "nm": "Roche LightCycler qPCR", "sc": T0, "tr": "260415000",
           "tc": "Arlanda Airport Covid Center 1", "co": "SE", "is": "Swedish eHealth Agency",
           "ci": "URN:UVCI:01:SE:EHM/TARN89875439877"}],
}


def hc1_text(cose_bytes: bytes) -> str:
    return "HC1:" + base45.b45encode(zlib.compress(cose_bytes, 9)).decode()


@pytest.fixture(scope="module")
def ec_signer() -> tuple[Any, Any]:
    return signer()


@pytest.fixture(scope="module")
def schemas() -> DccSchemas | None:
    return DccSchemas.from_dir(SCHEMAS_DIR) if SCHEMAS_DIR.is_dir() else None


def _test_entry(**fields: Any) -> dict[str, Any]:
    return dict(TEST_DCC, t=[dict(TEST_DCC["t"][0], **fields)])


def _verify(signed: tuple[Any, Any], payload: bytes, schemas: DccSchemas | None = None, at: datetime = NOW) -> Any:
    key, cert = signed
    return verify_credential(hc1_text(cose(key, cert, payload)), trust_for(cert, schemas=schemas), at)


# -- Swedish tag-0 date-times ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sc, text", [
    (T0, "2021-06-15T09:24:02Z"),
    (cbor2.CBORTag(0, "2021-06-15T11:24:02+02:00"), "2021-06-15T11:24:02+02:00"),  # its own text, offset kept
    (cbor2.CBORTag(0, "2022-01-18T08:11:51.000Z"), "2022-01-18T08:11:51.000Z"),
    (T1, "2021-06-15T09:24:02Z"),                                                   # tag 1, epoch seconds
    (cbor2.CBORTag(1, 1623749042.75), "2021-06-15T09:24:02Z"),                     # tag 1 float: floored
])
def test_tagged_date_times_where_the_schema_expects_one(ec_signer: Any, schemas: DccSchemas | None, sc: Any,
                                                        text: str) -> None:
    result = _verify(ec_signer, claims(_test_entry(sc=sc, dr=sc)), schemas)
    assert result.valid, (result.reason, result.detail)
    assert result.checks["decode"] is True and result.checks["schema"] is (True if schemas else None)
    assert result.claims["type"] == "t" and result.claims["date"] == text
    decoded = hc1.decode(hc1_text(cose(*ec_signer, claims(_test_entry(sc=sc, dr=sc)))))
    assert decoded.cert.payload["t"][0]["sc"] == text and decoded.cert.payload["t"][0]["dr"] == text


@pytest.mark.skipif(not SCHEMAS_DIR.is_dir(), reason=f"shared DCC schemas not found: {SCHEMAS_DIR}")
def test_date_time_fields_are_the_schemas_date_times() -> None:
    """DCC_DATE_TIME_FIELDS is exactly where some schema version says ``format: date-time``."""
    import json

    found: set[tuple[str, ...]] = set()
    group_of = {"vaccination_entry": "v", "test_entry": "t", "recovery_entry": "r"}
    for path in sorted(SCHEMAS_DIR.glob("*.json")):
        defs = json.loads(path.read_text(encoding="utf-8"))["$defs"]
        for name, group in group_of.items():
            for field, spec in defs.get(name, {}).get("properties", {}).items():
                if spec.get("format") == "date-time":
                    found.add((group, "*", field))
    assert found == set(DCC_DATE_TIME_FIELDS)


@pytest.mark.parametrize("payload", [
    dict(TEST_DCC, dob=T0),                                                    # a date field, not a date-time
    dict(TEST_DCC, nam=dict(TEST_DCC["nam"], fn=T0)),                          # a name
    _test_entry(ci=T0),
    dict(DCC, v=[dict(DCC["v"][0], dt=cbor2.CBORTag(0, "2021-06-11T00:00:00Z"))]),  # vaccination date: a date
    _test_entry(sc=cbor2.CBORTag(0, "2021-06-15")),                            # not a date-time
    _test_entry(sc=cbor2.CBORTag(0, "2021-13-15T09:24:02Z")),                  # month 13
    _test_entry(sc=cbor2.CBORTag(0, "2021-06-15 09:24:02Z")),                  # space, not T
    _test_entry(sc=cbor2.CBORTag(0, 1623749042)),                              # tag 0 holds text
    _test_entry(sc=cbor2.CBORTag(1, "2021-06-15T09:24:02Z")),                  # tag 1 holds a number
    _test_entry(sc=cbor2.CBORTag(1, -1)),
    _test_entry(sc=cbor2.CBORTag(1, float("nan"))),
    _test_entry(sc=cbor2.CBORTag(1, 2**40)),                                   # past the year 9999
    _test_entry(sc=cbor2.CBORTag(1004, "2021-06-15")),                         # RFC 8943 date: not in the format
    _test_entry(sc=cbor2.CBORTag(0, cbor2.CBORTag(0, "2021-06-15T09:24:02Z"))),
])
def test_tagged_date_times_anywhere_else_are_refused(ec_signer: Any, payload: dict[str, Any]) -> None:
    result = _verify(ec_signer, claims(payload))
    assert (result.valid, result.reason, result.checks["decode"]) == (False, "bad_cbor", False)


def test_tagged_date_time_in_a_who_ddcc_is_refused(ec_signer: Any) -> None:
    ddcc = {"name": "Test Person", "birthDate": "1990-01-01", "vaccination": {"date": T0}}
    assert _verify(ec_signer, claims(hcert={1: ddcc})).reason == "bad_cbor"


def test_cwt_numeric_dates_must_stay_untagged(ec_signer: Any) -> None:
    """RFC 8392: a NumericDate is the number without tag 1."""
    for tagged in ({"exp": cbor2.CBORTag(1, int((NOW + timedelta(days=30)).timestamp()))},
                   {"iat": cbor2.CBORTag(1, int(NOW.timestamp()))}, {"exp": T0}):
        assert _verify(ec_signer, claims(DCC, **tagged)).reason == "bad_cwt", tagged


# -- Hungarian float NumericDates ------------------------------------------------------------------------------------

def test_float_numeric_dates_are_floored() -> None:
    ec_signer = signer(not_before=datetime(2021, 1, 1, tzinfo=UTC))
    iat, exp = 1623793522.345, 1655329522.9  # as Hungary encodes them: float64
    at = datetime.fromtimestamp(1623793522.2, UTC)  # after the floored iat, before the float one
    result = _verify(ec_signer, claims(DCC, exp=exp, iat=iat), at=at)
    assert result.valid, result.reason
    assert (result.claims["issued_at"], result.claims["expires_at"]) == ("2021-06-15T21:45:22Z", "2022-06-15T21:45:22Z")
    cert = hc1.decode(hc1_text(cose(*ec_signer, claims(DCC, exp=exp, iat=iat)))).cert
    assert (cert.issued, cert.expires) == (1623793522, 1655329522)
    assert isinstance(cert.issued, int) and isinstance(cert.expires, int)
    past = datetime.fromtimestamp(1655329523, UTC)  # one second after the floored exp
    assert _verify(ec_signer, claims(DCC, exp=exp, iat=iat), at=past).reason == "expired"
    before = datetime.fromtimestamp(1623793521.9, UTC)
    assert _verify(ec_signer, claims(DCC, exp=exp, iat=iat), at=before).reason == "not_yet_valid"


@pytest.mark.parametrize("encoded", [
    bytes.fromhex("fb41d832368d124dd3"),             # float64, as in Hungary's certificates
    b"\xfa" + struct.pack(">f", 1623793522.0),        # float32
])
def test_float_widths(ec_signer: Any, encoded: bytes) -> None:
    exp = int((NOW + timedelta(days=30)).timestamp())
    payload = (bytes.fromhex("a4") + cbor2.dumps(1) + cbor2.dumps("HU") + cbor2.dumps(4) + cbor2.dumps(exp)
               + cbor2.dumps(6) + encoded + cbor2.dumps(-260) + cbor2.dumps({1: DCC}))
    cert = hc1.decode(hc1_text(cose(*ec_signer, payload))).cert
    assert isinstance(cert.issued, int) and cert.issued == int(cbor2.loads(encoded))


def test_not_before_claim(ec_signer: Any) -> None:
    """CWT ``nbf`` (claim 5), float or integer, is honoured like ``iat``."""
    key, cert = ec_signer
    base = cbor2.loads(claims(DCC))
    for nbf in (NOW.timestamp() + 3600.5, int(NOW.timestamp()) + 3600):
        payload = cbor2.dumps({**base, 5: nbf})
        text = hc1_text(cose(key, cert, payload))
        assert verify_credential(text, trust_for(cert), NOW).reason == "not_yet_valid"
        assert verify_credential(text, trust_for(cert), NOW + timedelta(hours=2)).valid
    assert _verify(ec_signer, cbor2.dumps({**base, 5: "soon"})).reason == "bad_cwt"


# -- every other tag ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag, value", [
    (28, [1]), (29, 0),                 # shared references, even without a cycle
    (2, b"\x01"), (3, b"\x01"),         # bignums
    (4, [-1, 15]), (5, [-1, 3]),        # decimal fraction, bigfloat
    (24, b"\xa0"), (25, 0), (30, [1, 2]), (32, "https://x"), (35, "a+"), (37, b"\0" * 16),
    (258, [1, 2]), (55799, "x"), (100, 18000), (1004, "2021-06-15"), (42, "x"), (256, ["a"]),
])
def test_tags_the_format_does_not_define_are_refused(ec_signer: Any, tag: int, value: Any) -> None:
    tagged = cbor2.CBORTag(tag, value)
    assert _verify(ec_signer, claims(dict(DCC, extra=tagged))).reason == "bad_cbor"       # in the payload
    assert _verify(ec_signer, claims(DCC, iat=tagged)).reason in {"bad_cbor", "bad_cwt"}  # as a claim
    key, cert = ec_signer
    wrapped = cbor2.dumps(cbor2.CBORTag(tag, cbor2.loads(cose(key, cert, claims()))))    # around COSE_Sign1
    assert verify_credential(hc1_text(wrapped), trust_for(cert), NOW).reason == "bad_cose"


def test_shared_references_are_refused_in_the_cose_structure(ec_signer: Any) -> None:
    key, cert = ec_signer
    parts = list(cbor2.loads(cose(key, cert, claims())).value)
    shared = cbor2.dumps(cbor2.CBORTag(18, [cbor2.CBORTag(28, parts[0]), {}, parts[2], parts[3]]))
    assert verify_credential(hc1_text(shared), trust_for(cert), NOW).reason == "bad_cose"


def test_every_tag_number_is_refused_unless_named() -> None:
    """Exhaustive over the tag numbers up to 2**16 and some larger: with no tags named nothing decodes, with the
    date-time tags named only 0 and 1 do, with the COSE tags named only 18 and 61 do (as tags)."""
    numbers = [*range(2**16), 2**16, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
    accepted: dict[frozenset[int], set[int]] = {frozenset(): set(), codecs.DATE_TIME_TAGS: set(),
                                                hc1.COSE_TAGS: set()}
    for number in numbers:
        data = cbor2.dumps(cbor2.CBORTag(number, "2021-06-15T09:24:02Z" if number == 0 else 0))
        for allowed, seen in accepted.items():
            try:
                codecs.cbor_loads(data, Reason.BAD_CBOR, tags=allowed)
            except CredentialError:
                continue
            seen.add(number)
    assert accepted == {frozenset(): set(), codecs.DATE_TIME_TAGS: {0, 1}, hc1.COSE_TAGS: {18, 61}}

