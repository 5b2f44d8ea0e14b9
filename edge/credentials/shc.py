"""SMART Health Cards (``shc:/``): decode and verify offline.

Accepted forms: the numeric QR text ``shc:/<digits>`` (each pair of digits is a character code minus 45), the
deprecated chunked form ``shc:/C/N/<digits>`` (all N chunks, each once, in any order, separated by whitespace;
missing ones are reported), the bare compact JWS, and a ``.smart-health-card`` file
(``{"verifiableCredential": [jws]}``).

As the specification and its validation SDK require, the JWS header must say ``zip: "DEF"`` and the payload must be
raw DEFLATE (at most 64 KiB out); ``kid`` must have the form of an RFC 7638 SHA-256 thumbprint, and the key is the
issuer's (``iss``) JWK whose thumbprint it is.

Checks, in the order their failures are reported: signature (unsupported_alg unless ``alg`` is ES256,
unknown_issuer, unknown_kid, issuer_mismatch when the key belongs to another trusted issuer, alg_mismatch,
bad_signature), key usage (the JWK's ``use`` is ``sig``: wrong_key_usage), ``nbf`` / ``exp`` (not_yet_valid,
expired), revocation by ``vc.rid`` against the key's revocation list (revoked; None without a list or a rid), the
health-card structure (schema_error, with ``detail`` naming the rule). See ``docs/credentials.md``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.credentials.anchors import ShcKey, TrustStore
from edge.credentials.codecs import b64url_decode, inflate, json_loads
from edge.credentials.result import CredentialCheck, CredentialError, Reason, iso_utc

logger = logging.getLogger(__name__)

PREFIX = "shc:/"
MAX_JWS_CHARS = 64 * 1024
MAX_CHUNKS = 16
MAX_NESTING = 32
"""Deepest JSON nesting accepted in a card (FHIR bundles nest about 10 deep)."""
HEALTH_CARD_TYPE = "https://smarthealth.cards#health-card"
CHECK_ORDER = ("decode", "signature", "key_usage", "expiry", "revocation", "schema")
MAX_IMMUNIZATIONS = 20

_QR_RE = re.compile(r"shc:/(?:([0-9]{1,3})/([0-9]{1,3})/)?([0-9]+)")
_CHUNK_NUMBER_RE = re.compile(r"[1-9][0-9]{0,2}")
_RID_RE = re.compile(r"[A-Za-z0-9_-]{1,24}")
_KID_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 thumbprint
_FULL_URL_RE = re.compile(r"resource:(0|[1-9][0-9]*)")
_FHIR_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
IMMUNIZATION_TYPE = "https://smarthealth.cards#immunization"
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class MissingChunks(CredentialError):
    """Some chunks of a chunked card are absent; ``missing`` lists their numbers (1-based)."""

    def __init__(self, missing: tuple[int, ...]) -> None:
        super().__init__(Reason.MISSING_CHUNKS, f"missing chunks {list(missing)}")
        self.missing = missing


@dataclass(frozen=True, slots=True)
class Jws:
    """A compact JWS taken apart, not yet trusted."""

    header: dict[str, Any]
    signing_input: bytes
    signature: bytes
    payload: dict[str, Any] = field(repr=False)

    @property
    def kid(self) -> str:
        return self.header["kid"]

    @property
    def iss(self) -> str:
        return self.payload["iss"]


def numeric_to_jws(digits: str) -> str:
    """Decode the numeric QR encoding: each two digits are a character code minus 45."""
    if len(digits) % 2 or not digits.isascii() or not digits.isdigit():
        raise CredentialError(Reason.BAD_NUMERIC, "not an even number of digits")
    codes = [int(digits[i:i + 2]) for i in range(0, len(digits), 2)]
    if max(codes, default=0) > ord("z") - 45:
        raise CredentialError(Reason.BAD_NUMERIC, "digit pair out of range")
    return "".join(chr(c + 45) for c in codes)


def assemble(text: str) -> str:
    """The JWS of one ``shc:/`` text, or of all chunks ``shc:/C/N/…`` separated by whitespace.

    Raises :class:`MissingChunks` when chunks are absent; ``bad_chunks`` when they do not fit together (numbers
    without the form ``[1-9][0-9]*``, C outside 1..N, N above :data:`MAX_CHUNKS`, chunks that disagree on N, a
    chunk given twice, chunks mixed with a whole card); ``multiple_credentials`` for several whole cards. Chunks of
    two cards with the same N and distinct numbers cannot be told apart here: the joined JWS then fails to decode
    or to verify.
    """
    parts = []
    for token in text.split():
        m = _QR_RE.fullmatch(token)
        if not m:
            raise CredentialError(Reason.BAD_NUMERIC, "not shc:/ followed by digits")
        parts.append(m.groups())
    if not parts:
        raise CredentialError(Reason.BAD_NUMERIC, "empty")
    whole = [p for p in parts if p[0] is None]
    if len(whole) == len(parts):
        if len(parts) > 1:
            raise CredentialError(Reason.MULTIPLE_CREDENTIALS, "several whole cards")
        return numeric_to_jws(parts[0][2])
    if whole:
        raise CredentialError(Reason.BAD_CHUNKS, "chunks mixed with a whole card")
    if not all(_CHUNK_NUMBER_RE.fullmatch(c) and _CHUNK_NUMBER_RE.fullmatch(n) for c, n, _ in parts):  # type: ignore[arg-type]
        raise CredentialError(Reason.BAD_CHUNKS, "chunk numbers must be positive, without leading zeros")
    totals = {int(n) for _, n, _ in parts}  # type: ignore[arg-type]
    if len(totals) != 1:
        raise CredentialError(Reason.BAD_CHUNKS, "chunks disagree on the number of chunks")
    total = totals.pop()
    if total > MAX_CHUNKS:
        raise CredentialError(Reason.BAD_CHUNKS, f"more than {MAX_CHUNKS} chunks")
    chunks: dict[int, str] = {}
    for c, _, digits in parts:
        index = int(c)  # type: ignore[arg-type]
        if index > total:
            raise CredentialError(Reason.BAD_CHUNKS, f"chunk {index} of {total}")
        if index in chunks:
            raise CredentialError(Reason.BAD_CHUNKS, f"chunk {index} given twice")
        chunks[index] = digits
    missing = tuple(i for i in range(1, total + 1) if i not in chunks)
    if missing:
        raise MissingChunks(missing)
    return "".join(numeric_to_jws(chunks[i]) for i in range(1, total + 1))


def jws_from_file(text: str) -> list[str]:
    """The JWS strings of a ``.smart-health-card`` file."""
    doc = json_loads(text, Reason.BAD_JSON, max_depth=3)
    vcs = doc.get("verifiableCredential") if isinstance(doc, dict) else None
    if not (isinstance(vcs, list) and vcs and all(isinstance(v, str) for v in vcs)):
        raise CredentialError(Reason.BAD_JSON, "no verifiableCredential list")
    return vcs


def jws_from_text(text: str) -> str:
    """The one JWS in a numeric QR text (whole or chunks), a ``.smart-health-card`` file or a bare JWS."""
    stripped = text.strip()
    if stripped.startswith(PREFIX):
        return assemble(stripped)
    if stripped.startswith("{"):
        vcs = jws_from_file(stripped)
        if len(vcs) != 1:
            raise CredentialError(Reason.MULTIPLE_CREDENTIALS, "file holds several cards")
        return vcs[0]
    return stripped


def parse_jws(jws: str) -> Jws:
    """Split and decode a compact JWS: the header must say ``zip: "DEF"`` and hold a thumbprint-shaped ``kid``; the
    payload is raw DEFLATE, inflated to at most 64 KiB."""
    if len(jws) > MAX_JWS_CHARS:
        raise CredentialError(Reason.TOO_LARGE, "JWS too long")
    parts = jws.split(".")
    if len(parts) != 3:
        raise CredentialError(Reason.BAD_JWS, "a compact JWS has three parts")
    header = json_loads(b64url_decode(parts[0]), Reason.BAD_JWS, max_depth=2)
    if not isinstance(header, dict) or "crit" in header:
        raise CredentialError(Reason.BAD_JWS, "header must be an object without crit")
    if header.get("zip") != "DEF":
        raise CredentialError(Reason.BAD_JWS, "header lacks zip: DEF (the payload must be DEFLATE-compressed)")
    if not (isinstance(header.get("kid"), str) and _KID_RE.fullmatch(header["kid"])):
        raise CredentialError(Reason.BAD_JWS, "header kid is not an RFC 7638 SHA-256 thumbprint")
    raw = inflate(b64url_decode(parts[1]), raw=True)
    payload = json_loads(raw, Reason.BAD_JSON, max_depth=MAX_NESTING)
    if not isinstance(payload, dict) or not isinstance(payload.get("iss"), str):
        raise CredentialError(Reason.BAD_JWS, "payload must be an object with iss")
    signature = b64url_decode(parts[2])
    return Jws(header, f"{parts[0]}.{parts[1]}".encode("ascii"), signature, payload)


def _check_signature(key: ShcKey, jws: Jws) -> Reason | None:
    if key.alg not in (None, "ES256"):
        return Reason.ALG_MISMATCH
    if len(jws.signature) != 64:
        return Reason.BAD_SIGNATURE
    r, s = int.from_bytes(jws.signature[:32], "big"), int.from_bytes(jws.signature[32:], "big")
    try:
        key.public_key.verify(encode_dss_signature(r, s), jws.signing_input, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return Reason.BAD_SIGNATURE
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _entries(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of the card's FHIR bundle (empty when the structure is off)."""
    vc = payload.get("vc")
    subject = vc.get("credentialSubject") if isinstance(vc, dict) else None
    bundle = subject.get("fhirBundle") if isinstance(subject, dict) else None
    entry = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entry, list):
        return []
    return [e["resource"] for e in entry if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def structure_problem(payload: dict[str, Any]) -> str | None:
    """What breaks the health-card shape, or None: ``iss`` an https URL without a trailing slash, numeric ``nbf``
    (and ``exp`` if present), ``vc.type`` with the health-card type, ``credentialSubject.fhirVersion``
    (``x.y.z``), a FHIR Bundle of type ``collection`` whose entries each have a ``fullUrl`` ``resource:N`` (distinct)
    and a resource with a ``resourceType``, at most one Patient (exactly one on an immunization card), and a
    well-formed ``rid`` if present."""
    iss = payload.get("iss")
    if not (isinstance(iss, str) and iss.startswith("https://") and not iss.endswith("/")):
        return "iss is not an https URL without a trailing slash"
    if _number(payload.get("nbf")) is None:
        return "nbf missing or not a number"
    if "exp" in payload and _number(payload["exp"]) is None:
        return "exp not a number"
    vc = payload.get("vc")
    if not isinstance(vc, dict):
        return "vc missing"
    types, subject = vc.get("type"), vc.get("credentialSubject")
    if not (isinstance(types, list) and HEALTH_CARD_TYPE in types):
        return f"vc.type lacks {HEALTH_CARD_TYPE}"
    if "rid" in vc and not (isinstance(vc["rid"], str) and _RID_RE.fullmatch(vc["rid"])):
        return "vc.rid is not 1-24 base64url characters"
    if not isinstance(subject, dict):
        return "vc.credentialSubject missing"
    if not (isinstance(subject.get("fhirVersion"), str) and _FHIR_VERSION_RE.fullmatch(subject["fhirVersion"])):
        return "vc.credentialSubject.fhirVersion missing or not x.y.z"
    bundle = subject.get("fhirBundle")
    if not (isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle"):
        return "vc.credentialSubject.fhirBundle is not a FHIR Bundle"
    if bundle.get("type") != "collection":
        return "fhirBundle.type is not collection"
    entries = bundle.get("entry")
    if not (isinstance(entries, list) and entries):
        return "fhirBundle.entry empty or missing"
    urls: set[str] = set()
    kinds: list[str] = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not (isinstance(resource, dict) and isinstance(resource.get("resourceType"), str)):
            return f"fhirBundle.entry[{i}] has no resource with a resourceType"
        url = entry.get("fullUrl")
        if not (isinstance(url, str) and _FULL_URL_RE.fullmatch(url)) or url in urls:
            return f"fhirBundle.entry[{i}].fullUrl is not a distinct resource:N"
        urls.add(url)
        kinds.append(resource["resourceType"])
    patients = kinds.count("Patient")
    if patients > 1:
        return "more than one Patient"
    if patients == 0 and ("Immunization" in kinds or IMMUNIZATION_TYPE in types):
        return "an immunization card without its Patient"
    return None


def _name(patient: dict[str, Any]) -> str | None:
    names = patient.get("name")
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
    given = first.get("given") if isinstance(first.get("given"), list) else []
    words = [g for g in given if isinstance(g, str)]
    if isinstance(first.get("family"), str):
        words.append(first["family"])
    return " ".join(words) or None


def _immunization(resource: dict[str, Any]) -> dict[str, Any]:
    coding = (resource.get("vaccineCode") or {}).get("coding") if isinstance(resource.get("vaccineCode"), dict) else None
    first = coding[0] if isinstance(coding, list) and coding and isinstance(coding[0], dict) else {}
    system, code = first.get("system"), first.get("code")
    return {"code": f"{system}|{code}" if isinstance(system, str) and isinstance(code, str) else None,
            "date": resource.get("occurrenceDateTime") if isinstance(resource.get("occurrenceDateTime"), str) else None,
            "status": resource.get("status") if isinstance(resource.get("status"), str) else None}


def _claims(jws: Jws) -> dict[str, Any]:
    """The few claims a flow needs (personal data: never log them)."""
    p = jws.payload
    resources = _entries(p)
    kinds = {r.get("resourceType") for r in resources}
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    immunizations = [_immunization(r) for r in resources if r.get("resourceType") == "Immunization"]
    vc = p.get("vc") if isinstance(p.get("vc"), dict) else {}
    return {
        "type": "immunization" if immunizations else "laboratory" if kinds & {"Observation", "DiagnosticReport"}
        else "other",
        "name": _name(patient),
        "birth_date": patient.get("birthDate") if isinstance(patient.get("birthDate"), str) else None,
        "immunizations": immunizations[:MAX_IMMUNIZATIONS],
        "issuer": jws.iss,
        "issued_at": iso_utc(_number(p.get("nbf"))),
        "expires_at": iso_utc(_number(p.get("exp"))),
        "kid": jws.kid,
        "types": [t for t in vc.get("type", []) if isinstance(t, str)] if isinstance(vc.get("type"), list) else [],
    }


def _verify_jws(jws: Jws, trust: TrustStore, at: datetime) -> CredentialCheck:
    checks: dict[str, bool | None] = dict.fromkeys(CHECK_ORDER)
    checks["decode"] = True
    failures: dict[str, Reason] = {}
    now = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()

    key = trust.shc_key(jws.iss, jws.kid)
    if jws.header.get("alg") != "ES256":
        failures["signature"] = Reason.UNSUPPORTED_ALG
    elif key is None:
        if trust.shc_issuers_of(jws.kid) - {jws.iss}:
            failures["signature"] = Reason.ISSUER_MISMATCH  # the key is another issuer's
        elif trust.shc_issuer_known(jws.iss):
            failures["signature"] = Reason.UNKNOWN_KID
        else:
            failures["signature"] = Reason.UNKNOWN_ISSUER
    else:
        why = _check_signature(key, jws)
        if why is not None:
            failures["signature"] = why
    checks["signature"] = "signature" not in failures
    if key is not None:
        checks["key_usage"] = key.use in (None, "sig")
        if not checks["key_usage"]:
            failures["key_usage"] = Reason.WRONG_KEY_USAGE

    nbf, exp = _number(jws.payload.get("nbf")), _number(jws.payload.get("exp"))
    if nbf is not None:  # without nbf the card is malformed (schema), the period is not checked
        if now < nbf:
            failures["expiry"] = Reason.NOT_YET_VALID
        elif exp is not None and now > exp:
            failures["expiry"] = Reason.EXPIRED
        checks["expiry"] = "expiry" not in failures

    crl = trust.shc_revocations(jws.iss, jws.kid) if key is not None else None
    vc = jws.payload.get("vc")
    rid = vc.get("rid") if isinstance(vc, dict) else None
    if crl is not None and isinstance(rid, str):
        checks["revocation"] = not crl.is_revoked(rid, nbf if nbf is not None else 0.0)
        if not checks["revocation"]:
            failures["revocation"] = Reason.REVOKED

    problem = structure_problem(jws.payload)
    checks["schema"] = problem is None
    if problem is not None:
        failures["schema"] = Reason.SCHEMA_ERROR

    first = next((name for name in CHECK_ORDER if name in failures), None)
    claims = _claims(jws) if checks["signature"] else {}
    if first is None:
        return CredentialCheck(True, "shc", None, checks, claims, jws.kid)
    logger.debug("shc refused: %s", failures[first])
    return CredentialCheck(False, "shc", str(failures[first]), checks, claims, jws.kid,
                           detail=problem if first == "schema" else None)


def _refused(exc: CredentialError) -> CredentialCheck:
    logger.debug("shc refused: %s", exc.reason)
    checks: dict[str, bool | None] = dict.fromkeys(CHECK_ORDER)
    checks["decode"] = False
    return CredentialCheck.refused("shc", exc.reason, checks, detail=exc.detail,
                                   missing_chunks=exc.missing if isinstance(exc, MissingChunks) else ())


def verify_shc(text: str, trust: TrustStore, at: datetime) -> CredentialCheck:
    """Verify a SMART Health Card at time ``at`` (aware; naive means UTC) against ``trust``.

    ``text`` is a numeric QR text (whole, or all chunks separated by whitespace), a bare compact JWS or a
    ``.smart-health-card`` file holding one card. Bad input gives ``valid=False`` with the reason; never raises
    for bad input.
    """
    try:
        jws = parse_jws(jws_from_text(text))
    except CredentialError as exc:
        return _refused(exc)
    return _verify_jws(jws, trust, at)


def verify_shc_file(text: str, trust: TrustStore, at: datetime) -> list[CredentialCheck]:
    """Verify every card of a ``.smart-health-card`` file (one result per card, in file order)."""
    try:
        vcs = jws_from_file(text)
    except CredentialError as exc:
        return [_refused(exc)]
    out = []
    for vc in vcs:
        try:
            out.append(_verify_jws(parse_jws(vc), trust, at))
        except CredentialError as exc:
            out.append(_refused(exc))
    return out

