"""The central side of the trust list: what it holds (``source.json``), signing, storing, publishing.

``source.json`` in ``[trust] dir`` is the editable truth (EHC1 issuers, DCC signing certificates, SMART
Health Card issuers, revoked cards, DCC value sets); :func:`update` applies changes, raises the version, signs the list
with the central signing key and writes ``trust-list.cose`` next to it. The ingest publishes that file
retained on ``ehc/v1/central/trust`` whenever it connects, and the enrollment answer carries it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from central.config import CentralConfig
from edge.credentials.valuesets import DccValueSets, ValueSet
from foundation import keyfiles
from foundation.files import write_atomic
from mqtt.trustlist import TrustList, card_hash, public_key_kid, sign

logger = logging.getLogger(__name__)

SOURCE = "source.json"
SIGNED = "trust-list.cose"


@dataclass
class Changes:
    """What to add or revoke in one update."""

    dcc_certs: list[Path] = field(default_factory=list)
    shc_jwks: dict[str, Path] = field(default_factory=dict)
    ehc1_issuers: dict[str, Path] = field(default_factory=dict)   # iss -> PEM public key file
    revoke_cards: list[str] = field(default_factory=list)
    value_sets: list[Path] = field(default_factory=list)  # EU DCC value sets as the gateway publishes them


def trust_dir(cfg: CentralConfig) -> Path:
    return cfg.path(cfg.trust.dir)


def signed_path(cfg: CentralConfig) -> Path:
    """The signed list the ingest publishes and enrollment hands out."""
    return trust_dir(cfg) / SIGNED


def _pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def dcc_entry(cert_der: bytes) -> dict[str, str]:
    """A DCC signing certificate as a list entry (kid = first 8 bytes of SHA-256 of the DER)."""
    cert = x509.load_der_x509_certificate(cert_der)
    kid = cert.fingerprint(hashes.SHA256())[:8]
    return {"kid": base64.b64encode(kid).decode(), "cert": base64.b64encode(cert_der).decode()}


def _read_cert_der(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    try:
        return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    except ValueError:  # upstream test contexts keep the DER in base64
        return x509.load_der_x509_certificate(base64.b64decode(data)).public_bytes(serialization.Encoding.DER)


def valueset_entry(path: Path) -> dict[str, Any]:
    """An EU DCC value set file (``{"valueSetId", "valueSetDate", "valueSetValues"}``, as the DCC gateway and the
    product's package data hold them) as a list entry ``{"id", "date", "codes"}``."""
    try:
        return ValueSet.from_upstream(json.loads(path.read_text(encoding="utf-8"))).compact()
    except (AttributeError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a DCC value set ({exc})") from None


def _merge_valuesets(held: list[dict[str, Any]], paths: list[Path]) -> list[dict[str, Any]]:
    """The value sets after adding ``paths``: newest per id. One older than the list's, or than the one the
    product ships, is an error (boxes would refuse it)."""
    shipped = DccValueSets.packaged()
    by_id = {v["id"]: v for v in held}
    for path in paths:
        entry = valueset_entry(path)
        packaged = shipped.get(entry["id"])
        floor = by_id[entry["id"]]["date"] if entry["id"] in by_id else packaged.date if packaged else None
        if floor is not None and entry["date"] < floor:
            raise ValueError(f"{path}: value set {entry['id']} of {entry['date']} is older than the one of {floor} "
                             "the boxes hold")
        if packaged is None:
            logger.warning("value set %s is not one the DCC verifier checks fields against", entry["id"])
        by_id[entry["id"]] = entry
    return sorted(by_id.values(), key=lambda v: v["id"])


def load_source(cfg: CentralConfig) -> dict[str, Any]:
    """The list's editable content (empty when there is none yet)."""
    path = trust_dir(cfg) / SOURCE
    if not path.exists():
        return {"version": 0, "ehc1": [], "dcc": [], "shc": [], "revoked_cards": [], "shc_crl": {},
                "dcc_valuesets": []}
    return json.loads(path.read_text(encoding="utf-8"))


def update(cfg: CentralConfig, changes: Changes | None = None) -> TrustList:
    """Apply ``changes`` (always including the site's own EHC1 issuer), raise the version, sign, store."""
    changes = changes or Changes()
    src = load_source(cfg)
    issuer = keyfiles.load_private_key(cfg.path(cfg.trust.ehc1_issuer_key)).public_key()
    issuers = {e["kid"]: e for e in src["ehc1"]}
    issuers[public_key_kid(issuer)] = {"kid": public_key_kid(issuer), "iss": cfg.trust.ehc1_issuer_id,
                                       "key": _pem(issuer)}
    for iss, path in changes.ehc1_issuers.items():
        key = keyfiles.load_public_key(path)
        issuers[public_key_kid(key)] = {"kid": public_key_kid(key), "iss": iss, "key": _pem(key)}
    dcc = {e["kid"] + e["cert"]: e for e in src["dcc"]}
    for path in changes.dcc_certs:
        entry = dcc_entry(_read_cert_der(path))
        dcc[entry["kid"] + entry["cert"]] = entry
    shc = {e["iss"]: e for e in src["shc"]}
    for iss, path in changes.shc_jwks.items():
        shc[iss] = {"iss": iss, "jwks": json.loads(path.read_text(encoding="utf-8"))}
    revoked = set(src["revoked_cards"]) | {card_hash(c) for c in changes.revoke_cards}
    valuesets = _merge_valuesets(src.get("dcc_valuesets", []), changes.value_sets)
    trust = TrustList(int(src["version"]) + 1, time.time(), tuple(issuers.values()), tuple(dcc.values()),
                      tuple(shc.values()), frozenset(revoked), src.get("shc_crl", {}), tuple(valuesets))
    key = keyfiles.load_private_key(cfg.path(cfg.enrollment.signing_key))
    folder = trust_dir(cfg)
    write_atomic(folder / SIGNED, sign(trust, key))
    body = trust.body()
    body.pop("issued")
    write_atomic(folder / SOURCE, json.dumps(body, indent=1, sort_keys=True).encode())
    logger.info("trust list version %d signed: %d EHC1, %d DCC, %d SHC issuers, %d revoked cards, %d value sets",
                trust.version, len(trust.ehc1), len(trust.dcc), len(trust.shc), len(trust.revoked_cards),
                len(trust.dcc_valuesets))
    return trust


def signed_bytes(cfg: CentralConfig) -> bytes | None:
    """The signed list as stored, or None when the site has none."""
    try:
        return signed_path(cfg).read_bytes()
    except FileNotFoundError:
        return None
