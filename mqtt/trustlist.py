"""The signed trust list: which credential issuers a box may trust, and which cards are revoked.

The central service signs it with its signing key (the key every box pinned at enrollment) in the same
COSE_Sign1 format as receipts, bound to the topic ``ehc/v1/central/trust`` (sender ``ehc-central``,
``seq`` = the list's version). It reaches boxes as a retained MQTT message and in the enrollment answer;
a box accepts a list only if it verifies and its version is newer than the one it holds
(:mod:`edge.trustlist_store`).

Body (JSON types only):

=================  =================================================================================
``version``        integer, strictly increasing
``issued``         Unix time the list was signed
``ehc1``           ``[{"kid": <16 hex>, "iss": <issuer id>, "key": <PEM public key>}]``: EHC1 issuers
``dcc``            ``[{"kid": <base64 of 8 bytes>, "cert": <base64 DER>}]``: EU DCC / DDCC signing
                   certificates
``shc``            ``[{"iss": <URL>, "jwks": {"keys": [...]}}]``: SMART Health Card issuers
``revoked_cards``  ``[<32 hex>]``: SHA-256 (first 16 bytes) of revoked health-card ids (EHC1 ``cid``)
``shc_crl``        ``{<iss>: {<kid>: [<rid>, ...]}}``: SMART Health Card revocations
``dcc_valuesets``  ``[{"id": <valueSetId>, "date": "YYYY-MM-DD", "codes": [<code>, ...]}]``: EU DCC
                   value sets newer than the ones the product ships (at most 32, 20,000 codes each)
=================  =================================================================================

A box also refuses a list that carries a value set older than the one of the same id in the list it holds
(:mod:`edge.trustlist_store`), as it refuses an older list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mqtt import envelope, topics
from mqtt.receipts import CENTRAL_ID, ReceiptInvalid, open_central

KIND = "trust"
MAX_ITEMS = 1 << 20  # a list may name many revoked cards; it is decoded only once its signature holds
_HEX16 = re.compile(r"^[0-9a-f]{16}\Z")
_HEX32 = re.compile(r"^[0-9a-f]{32}\Z")
_VALUESET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
MAX_VALUE_SETS = 32
MAX_VALUESET_CODES = 20_000


class TrustListInvalid(ValueError):
    """Not a trust list signed by the central service, or malformed."""


def card_hash(card_id: str) -> str:
    """How a revoked card id appears in the list: first 16 bytes of SHA-256, hex."""
    return hashlib.sha256(card_id.strip().lower().encode()).hexdigest()[:32]


def public_key_kid(key: ec.EllipticCurvePublicKey) -> str:
    """An EHC1 issuer's key id: first 8 bytes of SHA-256 over the SubjectPublicKeyInfo DER, hex."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class TrustList:
    """A trust list (see the module docstring for the fields)."""

    version: int
    issued: float = field(default_factory=time.time)
    ehc1: tuple[dict[str, str], ...] = ()
    dcc: tuple[dict[str, str], ...] = ()
    shc: tuple[dict[str, Any], ...] = ()
    revoked_cards: frozenset[str] = frozenset()
    shc_crl: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    dcc_valuesets: tuple[dict[str, Any], ...] = ()

    def body(self) -> dict[str, Any]:
        """The signed body."""
        return {"version": self.version, "issued": self.issued, "ehc1": [dict(e) for e in self.ehc1],
                "dcc": [dict(e) for e in self.dcc], "shc": [dict(e) for e in self.shc],
                "revoked_cards": sorted(self.revoked_cards), "shc_crl": self.shc_crl,
                "dcc_valuesets": [dict(v) for v in self.dcc_valuesets]}

    def valueset_dates(self) -> dict[str, str]:
        """``{value set id: date}`` of the DCC value sets the list carries."""
        return {v["id"]: v["date"] for v in self.dcc_valuesets}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> TrustList:
        """Check and load a body; raises :class:`TrustListInvalid`."""
        try:
            version, issued = body["version"], body["issued"]
            if not isinstance(version, int) or version < 1 or not isinstance(issued, (int, float)):
                raise TrustListInvalid("version / issued malformed")
            ehc1 = tuple(body.get("ehc1", []))
            for e in ehc1:
                if not (_HEX16.match(e["kid"]) and isinstance(e["iss"], str)):
                    raise TrustListInvalid("ehc1 entry malformed")
                serialization.load_pem_public_key(e["key"].encode())
            dcc = tuple(body.get("dcc", []))
            for d in dcc:
                if len(base64.b64decode(d["kid"], validate=True)) != 8:
                    raise TrustListInvalid("dcc kid must be 8 bytes")
                base64.b64decode(d["cert"], validate=True)
            shc = tuple(body.get("shc", []))
            for h in shc:
                if not (isinstance(h["iss"], str) and isinstance(h["jwks"].get("keys"), list)):
                    raise TrustListInvalid("shc entry malformed")
            revoked = body.get("revoked_cards", [])
            if not all(isinstance(r, str) and _HEX32.match(r) for r in revoked):
                raise TrustListInvalid("revoked_cards malformed")
            crl = body.get("shc_crl", {})
            if not (isinstance(crl, dict) and all(isinstance(by_kid, dict) and all(
                    isinstance(rids, list) and all(isinstance(r, str) for r in rids) for rids in by_kid.values())
                    for by_kid in crl.values())):
                raise TrustListInvalid("shc_crl malformed: {issuer: {kid: [rid, ...]}}")
            valuesets = tuple(body.get("dcc_valuesets", []))
            _check_valuesets(valuesets)
        except TrustListInvalid:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
            raise TrustListInvalid(f"malformed trust list: {type(exc).__name__}") from None
        return cls(version, float(issued), ehc1, dcc, shc, frozenset(revoked), crl, valuesets)

    def ehc1_keys(self) -> dict[str, tuple[str, ec.EllipticCurvePublicKey]]:
        """EHC1 issuers by kid: ``{kid: (iss, public key)}``."""
        out: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}
        for e in self.ehc1:
            key = serialization.load_pem_public_key(e["key"].encode())
            if isinstance(key, ec.EllipticCurvePublicKey):
                out[e["kid"]] = (e["iss"], key)
        return out


def _check_valuesets(valuesets: tuple[Any, ...]) -> None:
    """The ``dcc_valuesets`` entries: at most 32, each ``{"id", "date", "codes"}`` with a unique id, a
    ``YYYY-MM-DD`` date and at most 20,000 distinct text codes of 1-128 characters."""
    if len(valuesets) > MAX_VALUE_SETS:
        raise TrustListInvalid(f"more than {MAX_VALUE_SETS} value sets")
    ids = set()
    for v in valuesets:
        if not (isinstance(v, dict) and isinstance(v.get("id"), str) and _VALUESET_ID.match(v["id"])
                and isinstance(v.get("date"), str) and _ISO_DATE.match(v["date"]) and isinstance(v.get("codes"), list)):
            raise TrustListInvalid("dcc_valuesets entry malformed: {id, date: YYYY-MM-DD, codes: [...]}")
        time.strptime(v["date"], "%Y-%m-%d")  # ValueError for a date that does not exist
        codes = v["codes"]
        if len(codes) > MAX_VALUESET_CODES or not all(isinstance(c, str) and 0 < len(c) <= 128 for c in codes):
            raise TrustListInvalid(f"value set {v['id']}: codes must be at most {MAX_VALUESET_CODES} texts")
        if len(set(codes)) != len(codes) or v["id"] in ids:
            raise TrustListInvalid(f"value set {v['id']}: repeated code or id")
        ids.add(v["id"])


def sign(trust: TrustList, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed trust list, ready to publish on ``ehc/v1/central/trust`` or put in an enrollment answer."""
    return envelope.sign(envelope.Message(CENTRAL_ID, 0, trust.version, KIND, trust.body()), topics.TRUST_LIST, key)


def open_signed(payload: bytes, central: ec.EllipticCurvePublicKey) -> TrustList:
    """Verify a signed trust list with the central public key and load it."""
    try:
        msg = open_central(payload, topics.TRUST_LIST, central, KIND, MAX_ITEMS)
    except ReceiptInvalid as exc:
        raise TrustListInvalid(str(exc)) from None
    trust = TrustList.from_body(msg.body)
    if trust.version != msg.seq:
        raise TrustListInvalid("version differs from the signed sequence number")
    return trust
