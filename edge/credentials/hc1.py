"""EU Digital COVID Certificates and WHO DDCC (``HC1:``): decode and verify offline.

Transport, each step with its failure reason::

    "HC1:" prefix (bad_prefix) -> Base45 (bad_base45) -> zlib, at most 64 KiB out (bad_zlib, too_large)
    -> COSE_Sign1: tag 18, untagged, or inside CWT tag 61 (bad_cose, too_deep)
    -> CWT claims {1: iss, 4: exp, 5: nbf, 6: iat, -260: hcert} (bad_cbor, bad_cwt)

No other CBOR tag is accepted, except date-times (tag 0 RFC 3339 text, tag 1 epoch seconds) where the DCC schema
expects a date-time string (``t[].sc``, ``t[].dr``): they become that string before the schema check. NumericDates
(iat, exp, nbf) may be non-integer (RFC 8392) and are floored to whole seconds.

``alg`` and ``kid`` are read from the protected header, falling back to the unprotected one only when the protected
header lacks them. ``hcert[1]`` holding a map with ``ver`` is an EU DCC (format ``hc1``); any other map in ``hcert``
is a WHO DDCC payload (format ``ddcc``, no EU schema check).

Checks, in the order their failures are reported: signature (unknown_kid, unsupported_alg, alg_mismatch,
bad_signature), signing certificate validity (cert_not_yet_valid, cert_expired), extended key usage for the
certificate type (wrong_key_usage), CWT iat / nbf / exp (not_yet_valid, expired), JSON schema by ``ver`` (schema_error,
unknown_schema_version; None when the trust store has no schemas), value sets of the coded fields (unknown_code,
naming the field, the code and the value set with its date). See ``docs/credentials.md``.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.credentials.anchors import DccSigner, TrustStore
from edge.credentials.codecs import DATE_TIME_TAGS, b45decode, cbor_loads, inflate, to_json_value
from edge.credentials.result import CredentialCheck, CredentialError, Format, Reason, iso_utc
from edge.credentials.schemas import CERT_TYPES, DCC_DATE_TIME_FIELDS
from edge.credentials.valuesets import UnknownCode

logger = logging.getLogger(__name__)

PREFIX = "HC1:"
MAX_HC1_CHARS = 8192
"""Longest ``HC1:`` text accepted (a QR code holds at most 4296 alphanumeric characters)."""

COSE_SIGN1_TAG = 18
CWT_TAG = 61
HDR_ALG, HDR_KID = 1, 4
ALG_ES256, ALG_PS256 = -7, -37
CWT_ISS, CWT_EXP, CWT_NBF, CWT_IAT, CWT_HCERT = 1, 4, 5, 6, -260
COSE_TAGS = frozenset({COSE_SIGN1_TAG, CWT_TAG})
PS256_SALT_LENGTH = 32
MAX_KID_BYTES = 64
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z

CHECK_ORDER = ("decode", "signature", "certificate", "key_usage", "expiry", "schema", "value_set")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PS256_SALT_LENGTH)


@dataclass(frozen=True, slots=True)
class CoseSign1:
    """The parts of a COSE_Sign1 message, not yet trusted. ``alg`` / ``kid`` are None when absent."""

    protected: bytes
    alg: int | None
    kid: bytes | None
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        """The Sig_structure the signature covers (no external AAD)."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])


@dataclass(frozen=True, slots=True)
class HealthCertificate:
    """The CWT claims: issuer, expiry, issue and not-before times (whole seconds since the epoch) and the
    certificate payload (JSON types only)."""

    format: Format
    issuer: str | None
    expires: int
    issued: int | None
    payload: dict[str, Any] = field(repr=False)
    not_before: int | None = None


@dataclass(frozen=True, slots=True)
class DecodedHC1:
    """An ``HC1:`` text taken apart (nothing verified yet)."""

    cose: CoseSign1
    cert: HealthCertificate


def unprefix(text: str) -> str:
    """The Base45 part of an ``HC1:`` text."""
    if not text.startswith(PREFIX):
        raise CredentialError(Reason.BAD_PREFIX, "does not start with HC1:")
    if len(text) > MAX_HC1_CHARS:
        raise CredentialError(Reason.TOO_LARGE, "HC1 text too long")
    return text[len(PREFIX):]


def _header(raw: Any, reason: Reason) -> Mapping[Any, Any]:
    if not isinstance(raw, Mapping):
        raise CredentialError(reason, "COSE header is not a map")
    return raw


def parse_cose(data: bytes) -> CoseSign1:
    """Split COSE_Sign1 bytes (tag 18, untagged, or wrapped in CWT tag 61) into their parts."""
    obj = cbor_loads(data, Reason.BAD_COSE, tags=COSE_TAGS)
    if isinstance(obj, cbor2.CBORTag) and obj.tag == CWT_TAG:
        obj = obj.value
    if isinstance(obj, cbor2.CBORTag) and obj.tag == COSE_SIGN1_TAG:
        obj = obj.value
    if isinstance(obj, cbor2.CBORTag):
        raise CredentialError(Reason.BAD_COSE, f"unexpected CBOR tag {obj.tag}")
    if not (isinstance(obj, (list, tuple)) and len(obj) == 4):
        raise CredentialError(Reason.BAD_COSE, "COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = obj
    if not (isinstance(protected, bytes) and isinstance(payload, bytes) and isinstance(signature, bytes)):
        raise CredentialError(Reason.BAD_COSE, "COSE_Sign1 members have wrong types")
    prot = _header(cbor_loads(protected, Reason.BAD_COSE), Reason.BAD_COSE) if protected else {}
    unprot = _header(unprotected, Reason.BAD_COSE)
    alg = prot[HDR_ALG] if HDR_ALG in prot else unprot.get(HDR_ALG)
    kid = prot[HDR_KID] if HDR_KID in prot else unprot.get(HDR_KID)
    if alg is not None and (not isinstance(alg, int) or isinstance(alg, bool)):
        raise CredentialError(Reason.BAD_COSE, "alg must be an integer")
    if kid is not None and not (isinstance(kid, bytes) and len(kid) <= MAX_KID_BYTES):
        raise CredentialError(Reason.BAD_COSE, "kid must be a byte string of at most 64 bytes")
    return CoseSign1(protected, alg, kid, payload, signature)


def _numeric_date(claims: Mapping[Any, Any], key: int, required: bool) -> int | None:
    """A NumericDate claim (RFC 8392: an untagged number, possibly non-integer), floored to whole seconds."""
    value = claims.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= MAX_NUMERIC_DATE):
        raise CredentialError(Reason.BAD_CWT, f"claim {key} must be a NumericDate")
    return math.floor(value)


def eu_payload(value: Any) -> dict[str, Any]:
    """An EU DCC payload as decoded CBOR, made of JSON types: tagged date-times become text where the schema
    expects a date-time string, and are refused anywhere else (``bad_cbor``)."""
    out = to_json_value(value, Reason.BAD_CBOR, date_times=DCC_DATE_TIME_FIELDS)
    if not isinstance(out, dict):
        raise CredentialError(Reason.BAD_CWT, "the EU DCC payload is not a map")
    return out


def parse_cwt(payload: bytes) -> HealthCertificate:
    """The CWT claims of a health certificate: EU DCC under ``hcert[1]`` (with ``ver``), else a WHO DDCC payload."""
    claims = cbor_loads(payload, Reason.BAD_CBOR, tags=DATE_TIME_TAGS)
    if not isinstance(claims, Mapping):
        raise CredentialError(Reason.BAD_CWT, "CWT claims are not a map")
    issuer = claims.get(CWT_ISS)
    if issuer is not None and not isinstance(issuer, str):
        raise CredentialError(Reason.BAD_CWT, "iss must be text")
    expires = _numeric_date(claims, CWT_EXP, required=True)
    issued = _numeric_date(claims, CWT_IAT, required=False)
    not_before = _numeric_date(claims, CWT_NBF, required=False)
    hcert = claims.get(CWT_HCERT)
    if not isinstance(hcert, Mapping):
        raise CredentialError(Reason.BAD_CWT, "no hcert claim (-260)")
    eu = hcert.get(1)
    if isinstance(eu, Mapping) and "ver" in eu:
        return HealthCertificate("hc1", issuer, expires, issued, eu_payload(eu), not_before)
    maps = [hcert[k] for k in sorted(hcert, key=lambda k: (k != 1, repr(k))) if isinstance(hcert[k], Mapping)]
    if not maps:
        raise CredentialError(Reason.BAD_CWT, "hcert holds no certificate map")
    return HealthCertificate("ddcc", issuer, expires, issued, to_json_value(maps[0], Reason.BAD_CBOR),  # type: ignore[arg-type]
                             not_before)


def decode(text: str) -> DecodedHC1:
    """Take an ``HC1:`` text apart without verifying anything; raises :class:`CredentialError`."""
    cose = parse_cose(inflate(b45decode(unprefix(text))))
    return DecodedHC1(cose, parse_cwt(cose.payload))


def _check_signature(signer: DccSigner, cose: CoseSign1) -> Reason | None:
    """None when ``signer`` made the signature, else why not."""
    key = signer.public_key
    data = cose.to_be_signed()
    try:
        if cose.alg == ALG_ES256:
            if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
                return Reason.ALG_MISMATCH
            if len(cose.signature) != 64:
                return Reason.BAD_SIGNATURE
            r, s = int.from_bytes(cose.signature[:32], "big"), int.from_bytes(cose.signature[32:], "big")
            key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
        elif cose.alg == ALG_PS256:
            if not isinstance(key, rsa.RSAPublicKey):
                return Reason.ALG_MISMATCH
            key.verify(cose.signature, data, _PSS, hashes.SHA256())
        else:
            return Reason.UNSUPPORTED_ALG
    except (InvalidSignature, ValueError):
        return Reason.BAD_SIGNATURE
    return None


def _types_present(cert: HealthCertificate) -> list[str]:
    """The certificate types (v, t, r) the payload holds entries for."""
    p = cert.payload
    if cert.format == "hc1":
        return [t for t in CERT_TYPES if p.get(t)]
    ddcc = {"vaccination": "v", "test": "t", "recovery": "r"}
    return [t for k, t in ddcc.items() if p.get(k)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _claims(cert: HealthCertificate, kid: str | None) -> dict[str, Any]:
    """The few claims a flow needs (personal data: never log them)."""
    p = cert.payload
    types = _types_present(cert)
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else None, "issuer": cert.issuer,
                           "issued_at": iso_utc(cert.issued), "expires_at": iso_utc(cert.expires), "kid": kid}
    if cert.format == "hc1":
        nam = p.get("nam") if isinstance(p.get("nam"), dict) else {}
        given = _text(nam.get("gn")) or _text(nam.get("gnt"))
        family = _text(nam.get("fn")) or _text(nam.get("fnt"))
        out["name"] = " ".join(x for x in (given, family) if x) or None
        out["birth_date"] = _text(p.get("dob"))
        entries = p.get(out["type"]) if out["type"] else None
        entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else {}
        if out["type"] == "v":
            out["date"] = _text(entry.get("dt"))
            out["doses"] = f"{entry.get('dn')}/{entry.get('sd')}" if "dn" in entry and "sd" in entry else None
        elif out["type"] == "t":
            out["date"] = _text(entry.get("sc"))
            out["result"] = _text(entry.get("tr"))
        elif out["type"] == "r":
            out["date"] = _text(entry.get("fr"))
            out["valid_until"] = _text(entry.get("du"))
    else:
        name = p.get("name")
        out["name"] = name if isinstance(name, str) else None
        out["birth_date"] = _text(p.get("birthDate")) or _text(p.get("dob"))
    return out


def _refused(fmt: Format, exc: CredentialError, checks: dict[str, bool | None]) -> CredentialCheck:
    logger.debug("hc1 refused: %s", exc.reason)
    return CredentialCheck.refused(fmt, exc.reason, checks, detail=exc.detail)


def verify_hc1(text: str, trust: TrustStore, at: datetime) -> CredentialCheck:
    """Verify an ``HC1:`` text at time ``at`` (aware; naive means UTC) against ``trust``.

    Raises nothing for bad input: a credential that fails decoding or any check comes back with ``valid=False``
    and the reason. Every check runs even after one failed, so ``checks`` shows them all.
    """
    checks: dict[str, bool | None] = dict.fromkeys(CHECK_ORDER)
    try:
        decoded = decode(text)
    except CredentialError as exc:
        checks["decode"] = False
        return _refused("hc1", exc, checks)
    checks["decode"] = True
    cose, cert = decoded.cose, decoded.cert
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    now = at.timestamp()
    failures: dict[str, Reason] = {}
    kid = base64.b64encode(cose.kid).decode("ascii") if cose.kid is not None else None

    # signature: the kid's signers, each tried (a kid collision is possible)
    signers = trust.dcc_signers(cose.kid) if cose.kid is not None else []
    signer = None
    if not signers:
        failures["signature"] = Reason.UNKNOWN_KID
    else:
        outcomes = [(s, _check_signature(s, cose)) for s in signers]
        signer = next((s for s, why in outcomes if why is None), None)
        if signer is None:
            failures["signature"] = outcomes[0][1]  # type: ignore[assignment]
    checks["signature"] = signer is not None

    # signing certificate: validity at `at`, and the certificate types its EKU allows
    subject = signer or (signers[0] if signers else None)
    if subject is not None:
        if at < subject.not_before:
            failures["certificate"] = Reason.CERT_NOT_YET_VALID
        elif at > subject.not_after:
            failures["certificate"] = Reason.CERT_EXPIRED
        checks["certificate"] = "certificate" not in failures
        types = _types_present(cert)
        if subject.cert_types is None:
            checks["key_usage"] = True
        elif types:
            checks["key_usage"] = all(t in subject.cert_types for t in types)
            if not checks["key_usage"]:
                failures["key_usage"] = Reason.WRONG_KEY_USAGE

    # CWT validity period
    starts = max((t for t in (cert.issued, cert.not_before) if t is not None), default=None)
    if starts is not None and now < starts:
        failures["expiry"] = Reason.NOT_YET_VALID
    elif now > cert.expires:
        failures["expiry"] = Reason.EXPIRED
    checks["expiry"] = "expiry" not in failures

    # EU DCC JSON schema (not for DDCC; not when the box has no schemas)
    if cert.format == "hc1" and trust.dcc_schemas is not None:
        outcome = trust.dcc_schemas.check(cert.payload)
        checks["schema"] = outcome.ok
        if outcome.reason is not None:
            failures["schema"] = outcome.reason

    # value sets of the coded fields (EU DCC only)
    unknown: tuple[UnknownCode, ...] = ()
    if cert.format == "hc1":
        misses = trust.dcc_value_sets.check(cert.payload)
        if misses is not None:
            unknown = misses
            checks["value_set"] = not misses
            if misses:
                failures["value_set"] = Reason.UNKNOWN_CODE

    reason = next((name for name in CHECK_ORDER if name in failures), None)
    claims = _claims(cert, kid) if checks["signature"] else {}
    if reason is not None:
        detail = "; ".join(u.describe() for u in unknown) if reason == "value_set" else None
        logger.debug("%s refused: %s %s", cert.format, failures[reason], detail or "")
        return CredentialCheck(False, cert.format, str(failures[reason]), checks, claims, kid, detail=detail,
                               unknown_codes=unknown)
    return CredentialCheck(True, cert.format, None, checks, claims, kid)
