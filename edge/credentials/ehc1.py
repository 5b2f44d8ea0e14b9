"""EHC1: the electronic health card's own signed offline credential, verifiable with no network.

``EHC1:`` + Base45( zlib( COSE_Sign1( CWT ) ) ), the same family as the EU DCC's ``HC1:``:

* COSE_Sign1 (CBOR tag 18), protected header ``{1: -7 (ES256), 4: kid}``, empty unprotected header,
  ``external_aad`` empty, the signature raw ``r‖s`` (64 bytes). ``kid`` is the first 8 bytes of SHA-256 over
  the issuer's SubjectPublicKeyInfo and must name an EHC1 issuer of the trust list.
* CWT claims: ``1`` iss (issuer id, must equal the trust list's for that kid), ``6`` iat, ``4`` exp, and
  ``-70001`` the card: ``{"v": 1, "cid": <32 hex pseudonymous card id>, "n": <name>, "dob": "YYYY-MM-DD",
  "sex": "F" | "M" | "U", "g": <guardian's cid, for a child managed by a parent>, "st": "green" | "yellow"
  | "red" (health status colour)}``.
* The code is **dynamic**: the holder's app asks for a fresh one every minute or so, and ``exp - iat`` may
  not exceed :data:`MAX_LIFETIME` seconds, so a screenshot stops working. ``at`` must fall within
  ``[iat - skew, exp + skew]``.
* Revocation: the trust list's ``revoked_cards`` holds the first 16 bytes of SHA-256 over revoked
  ``cid`` s (:func:`mqtt.trustlist.card_hash`), checked offline.

Checks, in order: decode (Base45, zlib bounded to 64 KiB, CBOR bounded in depth), ``kid`` known,
signature, issuer, lifetime, time window, revocation, claims' form. The first failure is the reason.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from edge.credentials.codecs import MAX_INFLATED, b45decode, inflate
from edge.credentials.result import CredentialCheck, CredentialError, Reason
from foundation import strictcbor
from mqtt.trustlist import card_hash, public_key_kid

PREFIX = "EHC1:"
CLAIM_CARD = -70001
MAX_LIFETIME = 300
MAX_TEXT = 4296
MAX_DEPTH = 8
STATUSES = ("green", "yellow", "red")
_CID = re.compile(r"^[0-9a-f]{32}\Z")
_ECDSA = ec.ECDSA(hashes.SHA256())
Issuers = Mapping[str, tuple[str, ec.EllipticCurvePublicKey]]


@dataclass(frozen=True)
class Card:
    """What an EHC1 credential says about its holder (personal data: never log it)."""

    card_id: str
    name: str
    birth_date: str
    sex: str
    status: str = "green"
    guardian: str | None = None

    def __repr__(self) -> str:
        return f"Card(status={self.status!r}, guardian={'yes' if self.guardian else 'no'})"

    def to_cbor_map(self) -> dict[str, Any]:
        out = {"v": 1, "cid": self.card_id, "n": self.name, "dob": self.birth_date, "sex": self.sex, "st": self.status}
        if self.guardian:
            out["g"] = self.guardian
        return out


def _check_card(card: Card) -> None:
    if not _CID.match(card.card_id) or (card.guardian is not None and not _CID.match(card.guardian)):
        raise ValueError("card and guardian ids are 32 lowercase hex digits")
    if card.sex not in ("F", "M", "U") or card.status not in STATUSES:
        raise ValueError("sex is F, M or U; status is green, yellow or red")
    dt.date.fromisoformat(card.birth_date)
    if not card.name or len(card.name) > 100:
        raise ValueError("name must be 1-100 characters")


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def issue(card: Card, key: ec.EllipticCurvePrivateKey, issuer: str, *, ttl: int = 60, now: float | None = None) -> str:
    """The ``EHC1:`` text for ``card``, signed by ``key`` for ``issuer``, valid ``ttl`` seconds from ``now``."""
    _check_card(card)
    if not 1 <= ttl <= MAX_LIFETIME:
        raise ValueError(f"ttl must be 1..{MAX_LIFETIME} s (a dynamic code)")
    iat = int(now if now is not None else time.time())
    kid = bytes.fromhex(public_key_kid(key.public_key()))
    protected = cbor2.dumps({1: -7, 4: kid}, canonical=True)
    payload = cbor2.dumps({1: issuer, 6: iat, 4: iat + ttl, CLAIM_CARD: card.to_cbor_map()}, canonical=True)
    r, s = decode_dss_signature(key.sign(_sig_structure(protected, payload), _ECDSA))
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))
    return PREFIX + base45.b45encode(zlib.compress(cose, 9)).decode("ascii")


def _loads(data: bytes, tags: frozenset[int] = frozenset()) -> Any:
    return strictcbor.loads(data, max_bytes=MAX_INFLATED, max_depth=MAX_DEPTH, max_items=MAX_INFLATED, tags=tags)


def _decode(text: str) -> tuple[bytes, bytes, bytes, bytes]:
    """``(protected, kid, payload, signature)``; raises :class:`CredentialError` naming the failed step."""
    if len(text) > MAX_TEXT:
        raise CredentialError(Reason.TOO_LARGE)
    if not text.startswith(PREFIX):
        raise CredentialError(Reason.BAD_PREFIX)
    raw = inflate(b45decode(text[len(PREFIX):]))
    try:
        obj = _loads(raw, frozenset({18}))
    except strictcbor.CborRefused:
        raise CredentialError(Reason.BAD_CBOR) from None
    if not (isinstance(obj, cbor2.CBORTag) and obj.tag == 18 and isinstance(obj.value, (list, tuple))
            and len(obj.value) == 4):
        raise CredentialError(Reason.BAD_COSE)
    protected, unprotected, payload, signature = obj.value
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping) and isinstance(payload, bytes)
            and isinstance(signature, bytes) and len(signature) == 64):
        raise CredentialError(Reason.BAD_COSE)
    try:
        header = _loads(protected)
    except strictcbor.CborRefused:
        raise CredentialError(Reason.BAD_COSE) from None
    if not isinstance(header, dict) or header.get(1) != -7 or unprotected:
        raise CredentialError(Reason.UNSUPPORTED_ALG)
    kid = header.get(4)
    if not isinstance(kid, bytes) or len(kid) != 8:
        raise CredentialError(Reason.BAD_COSE)
    return protected, kid, payload, signature


def verify(text: str, issuers: Issuers, revoked: frozenset[str] | set[str] = frozenset(), *,
           at: float | None = None, skew: float = 30.0) -> CredentialCheck:
    """Verify an ``EHC1:`` text offline; never raises. ``issuers``: ``{kid hex: (iss, public key)}``."""
    now = time.time() if at is None else at
    checks: dict[str, bool | None] = {"signature": None, "expiry": None, "revocation": None}
    try:
        protected, kid, payload, signature = _decode(text)
        entry = issuers.get(kid.hex())
        if entry is None:
            raise CredentialError(Reason.UNKNOWN_KID)
        iss, key = entry
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            key.verify(der, _sig_structure(protected, payload), _ECDSA)
        except InvalidSignature:
            checks["signature"] = False
            raise CredentialError(Reason.BAD_SIGNATURE) from None
        checks["signature"] = True
        try:
            cwt = _loads(payload)
        except strictcbor.CborRefused:
            raise CredentialError(Reason.BAD_CWT) from None
        if not isinstance(cwt, dict):
            raise CredentialError(Reason.BAD_CWT)
        card_map, iat, exp = cwt.get(CLAIM_CARD), cwt.get(6), cwt.get(4)
        if cwt.get(1) != iss:
            raise CredentialError(Reason.ISSUER_MISMATCH)
        if not (isinstance(iat, int) and isinstance(exp, int) and isinstance(card_map, dict)):
            raise CredentialError(Reason.BAD_CWT)
        if exp - iat > MAX_LIFETIME or exp < iat:
            raise CredentialError(Reason.NOT_DYNAMIC)
        if now < iat - skew:
            checks["expiry"] = False
            raise CredentialError(Reason.NOT_YET_VALID)
        if now > exp + skew:
            checks["expiry"] = False
            raise CredentialError(Reason.EXPIRED)
        checks["expiry"] = True
        try:
            card = Card(card_id=card_map["cid"], name=card_map["n"], birth_date=card_map["dob"], sex=card_map["sex"],
                        status=card_map.get("st", "green"), guardian=card_map.get("g"))
            _check_card(card)
        except (KeyError, TypeError, ValueError):
            raise CredentialError(Reason.BAD_CWT) from None
        if card_hash(card.card_id) in revoked:
            checks["revocation"] = False
            raise CredentialError(Reason.REVOKED)
        checks["revocation"] = True
    except CredentialError as refused:
        return CredentialCheck(valid=False, format="ehc1", reason=str(refused.reason), checks=checks)  # type: ignore[arg-type]
    except Exception:  # never let a crafted code escape as an exception
        return CredentialCheck(valid=False, format="ehc1", reason=str(Reason.INTERNAL_ERROR), checks=checks)  # type: ignore[arg-type]
    claims = {"card_id": card.card_id, "name": card.name, "birth_date": card.birth_date, "sex": card.sex,
              "status": card.status, "guardian": card.guardian, "issuer": iss, "iat": iat, "exp": exp}
    return CredentialCheck(valid=True, format="ehc1", checks=checks, claims=claims, kid=kid.hex())  # type: ignore[arg-type]
