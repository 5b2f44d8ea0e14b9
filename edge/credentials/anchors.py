"""What a box trusts offline: DCC document signers by kid, SMART Health Card issuer keys by ``iss``, SHC revocation
lists, the DCC value sets (shipped, and newer ones from the trust list) and (travelling with the trust list) the DCC
JSON schemas.

* **DCC signers** come from X.509 certificates (DER or PEM). The kid is the first 8 bytes of SHA-256 over the
  certificate DER. The certificate's validity period and its extended key usage (which certificate types it may
  sign: test, vaccination, recovery; both OID spellings; no DCC OID means all types) are kept for the verifier.
* **SHC issuers** come from a JWK set (``/.well-known/jwks.json``): only P-256 keys whose ``kid`` equals their
  RFC 7638 thumbprint are taken; others are skipped with a warning.
* **SHC revocation lists** come from ``/.well-known/crl/<kid>.json`` (``{"kid", "method": "rid", "ctr", "rids"}``);
  a ``rid`` may carry a ``.timestamp`` suffix: then only cards issued (``nbf``) before it are revoked.
* **DCC value sets** start as the ones shipped in the package; the trust list's replace them when newer (by
  ``valueSetDate``), and an older one is refused (:mod:`edge.credentials.valuesets`).

A store is filled once (constructors and ``add_*`` methods) and then only read by the verifiers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from edge.credentials.codecs import b64url_decode, b64url_encode
from edge.credentials.schemas import DccSchemas
from edge.credentials.valuesets import DccValueSets, ValueSet

logger = logging.getLogger(__name__)

_EKU_TYPES = {
    "1.3.6.1.4.1.1847.2021.1.1": "t", "1.3.6.1.4.1.0.1847.2021.1.1": "t",
    "1.3.6.1.4.1.1847.2021.1.2": "v", "1.3.6.1.4.1.0.1847.2021.1.2": "v",
    "1.3.6.1.4.1.1847.2021.1.3": "r", "1.3.6.1.4.1.0.1847.2021.1.3": "r",
}
"""DCC extended-key-usage OIDs (both spellings seen in the wild) and the certificate type each allows."""

_EKU_EXTENSION = bytes.fromhex("0603551d25")  # OID 2.5.29.37, DER
_DER = Encoding.DER
_RID_RE = re.compile(r"[A-Za-z0-9_-]{1,24}")


@dataclass(frozen=True, slots=True)
class DccSigner:
    """A DCC document signer: public key, validity period and the certificate types it may sign (None: all)."""

    kid: bytes
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    not_before: datetime
    not_after: datetime
    cert_types: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class ShcKey:
    """A SMART Health Card issuer key (P-256) with the JWK's ``alg``, ``use`` and ``crlVersion`` members."""

    iss: str
    kid: str
    public_key: ec.EllipticCurvePublicKey
    alg: str | None = None
    use: str | None = None
    crl_version: int | None = None


@dataclass(slots=True)
class ShcRevocations:
    """One key's card revocation list: ``rids`` maps a revocation id to None (always revoked) or a cut-off time."""

    kid: str
    ctr: int
    rids: dict[str, float | None] = field(default_factory=dict)

    def is_revoked(self, rid: str, nbf: float) -> bool:
        """True when ``rid`` is listed without a time, or with a time after the card's ``nbf``."""
        if rid not in self.rids:
            return False
        cutoff = self.rids[rid]
        return cutoff is None or nbf < cutoff


def dcc_kid(der: bytes) -> bytes:
    """The DCC key id of a certificate: the first 8 bytes of SHA-256 over its DER."""
    return hashlib.sha256(der).digest()[:8]


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint (base64url) of an EC public JWK."""
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
                           separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _der_items(data: bytes) -> Iterable[tuple[int, bytes]]:
    """(tag, content) of each DER element in ``data`` (definite lengths only)."""
    i = 0
    while i < len(data):
        tag = data[i]
        length = data[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 4:
                raise ValueError("unsupported DER length")
            length = int.from_bytes(data[i:i + n], "big")
            i += n
        if i + length > len(data):
            raise ValueError("truncated DER")
        yield tag, data[i:i + length]
        i += length


def _oid_text(content: bytes) -> str:
    first, value = content[0], 0
    arcs = [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
    for b in content[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(str(value))
            value = 0
    return ".".join(arcs)


def _eku_from_der(der: bytes) -> list[str] | None:
    """The EKU OIDs read straight from the DER, for certificates whose extensions ``cryptography`` refuses (such as
    an empty EKU sequence, which upstream's test data uses for "no OID"). None when there is no EKU extension."""
    ((_, cert),) = list(_der_items(der))
    tbs = next(content for tag, content in _der_items(cert) if tag == 0x30)
    for tag, content in _der_items(tbs):
        if tag != 0xA3:  # [3] extensions
            continue
        ((_, extensions),) = list(_der_items(content))
        for _, ext in _der_items(extensions):
            parts = list(_der_items(ext))
            if bytes([parts[0][0], len(parts[0][1])]) + parts[0][1] != _EKU_EXTENSION:
                continue
            octets = parts[-1][1]
            ((_, seq),) = list(_der_items(octets))
            return [_oid_text(c) for t, c in _der_items(seq) if t == 0x06]
    return None


def _eku_oids(cert: x509.Certificate) -> list[str] | None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        try:
            return _eku_from_der(cert.public_bytes(_DER))
        except (ValueError, IndexError, StopIteration):
            raise ValueError("certificate extensions are unreadable") from None
    return [oid.dotted_string for oid in eku]


def _cert_types(cert: x509.Certificate) -> frozenset[str] | None:
    oids = _eku_oids(cert) or []
    types = frozenset(_EKU_TYPES[o] for o in oids if o in _EKU_TYPES)
    return types or None


def _load_certificates(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _ec_p256_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("not an EC P-256 key")
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    if len(x) != 32 or len(y) != 32:
        raise ValueError("P-256 coordinates must be 32 bytes")
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1())
    return numbers.public_key()


def _as_json(data: Mapping[str, Any] | str | bytes) -> Any:
    return data if isinstance(data, Mapping) else json.loads(data)


class TrustStore:
    """The signers, issuer keys, revocation lists and schemas a box trusts.

    >>> trust = TrustStore.from_files(dcc_certificates=[Path("dsc.pem")],
    ...                               shc_issuers={"https://issuer.example": Path("issuer")},
    ...                               dcc_schemas=Path("schemas"))  # doctest: +SKIP
    """

    def __init__(self, dcc_schemas: DccSchemas | None = None, dcc_value_sets: DccValueSets | None = None) -> None:
        """``dcc_value_sets`` defaults to the value sets shipped with the product; pass an empty
        ``DccValueSets()`` to skip the value-set check."""
        self._dcc: dict[bytes, list[DccSigner]] = {}
        self._shc_keys: dict[str, dict[str, ShcKey]] = {}
        self._shc_issuers_by_kid: dict[str, set[str]] = {}
        self._shc_crls: dict[tuple[str, str], ShcRevocations] = {}
        self.dcc_schemas = dcc_schemas
        self.dcc_value_sets = DccValueSets.packaged() if dcc_value_sets is None else dcc_value_sets

    # -- DCC -------------------------------------------------------------------------------------------------------

    def add_dcc_certificate(self, cert: x509.Certificate | bytes) -> DccSigner:
        """Trust one DCC document signer certificate (a ``cryptography`` certificate, DER or PEM bytes)."""
        if isinstance(cert, bytes):
            certs = _load_certificates(cert)
            if len(certs) != 1:
                raise ValueError(f"expected one certificate, got {len(certs)} (use add_dcc_certificate_file)")
            cert = certs[0]
        der = cert.public_bytes(_DER)
        key = cert.public_key()
        if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise ValueError("DCC signer keys must be EC or RSA")
        signer = DccSigner(dcc_kid(der), key, cert.not_valid_before_utc, cert.not_valid_after_utc, _cert_types(cert))
        self._dcc.setdefault(signer.kid, []).append(signer)
        return signer

    def add_dcc_certificate_file(self, path: Path) -> int:
        """Trust every certificate in a DER file or a PEM bundle; returns how many were added."""
        certs = _load_certificates(path.read_bytes())
        for cert in certs:
            self.add_dcc_certificate(cert)
        return len(certs)

    def dcc_signers(self, kid: bytes) -> list[DccSigner]:
        """The signers with this kid (several only in the rare case of a kid collision)."""
        return self._dcc.get(kid, [])

    # -- SMART Health Cards ----------------------------------------------------------------------------------------

    def add_shc_jwks(self, iss: str, jwks: Mapping[str, Any] | str | bytes) -> int:
        """Trust the P-256 keys of issuer ``iss`` from its JWK set; returns how many were taken."""
        taken = 0
        for jwk in _as_json(jwks).get("keys", []):
            kid = jwk.get("kid")
            try:
                public_key = _ec_p256_from_jwk(jwk)
                thumbprint = jwk_thumbprint(jwk)
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("issuer %s: skipping key %s: %s", iss, kid, exc)
                continue
            if kid != thumbprint:
                logger.warning("issuer %s: skipping key %s: kid is not its RFC 7638 thumbprint", iss, kid)
                continue
            crl_version = jwk.get("crlVersion")
            self._shc_keys.setdefault(iss, {})[kid] = ShcKey(
                iss, kid, public_key, alg=jwk.get("alg"), use=jwk.get("use"),
                crl_version=crl_version if isinstance(crl_version, int) else None)
            self._shc_issuers_by_kid.setdefault(kid, set()).add(iss)
            taken += 1
        return taken

    def add_shc_crl(self, iss: str, crl: Mapping[str, Any] | str | bytes) -> ShcRevocations:
        """Add issuer ``iss``'s card revocation list for one key (``method`` must be ``rid``)."""
        doc = _as_json(crl)
        kid, ctr, rids = doc.get("kid"), doc.get("ctr"), doc.get("rids")
        if doc.get("method", "rid") != "rid":
            raise ValueError(f"unsupported revocation method {doc.get('method')!r}")
        if not isinstance(kid, str) or not isinstance(ctr, int) or not isinstance(rids, list):
            raise ValueError("a CRL needs kid (text), ctr (integer) and rids (list)")
        crl_obj = ShcRevocations(kid, ctr)
        for entry in rids:
            if not isinstance(entry, str):
                raise ValueError("rids must be text")
            rid, _, stamp = entry.partition(".")
            if not _RID_RE.fullmatch(rid):
                raise ValueError("rid must be 1 to 24 base64url characters")
            cutoff = float(stamp) if stamp else None
            if cutoff is not None and not math.isfinite(cutoff):
                raise ValueError("rid timestamp must be a number")
            if rid in crl_obj.rids:
                previous = crl_obj.rids[rid]
                cutoff = None if previous is None or cutoff is None else max(previous, cutoff)
            crl_obj.rids[rid] = cutoff
        key = self.shc_key(iss, kid)
        if key is not None and key.crl_version is not None and ctr < key.crl_version:
            logger.warning("issuer %s key %s: CRL counter %d is older than the key's crlVersion %d",
                           iss, kid, ctr, key.crl_version)
        self._shc_crls[(iss, kid)] = crl_obj
        return crl_obj

    def add_shc_issuer_dir(self, iss: str, folder: Path) -> int:
        """Trust issuer ``iss`` from a copy of its site: ``.well-known/jwks.json`` and ``.well-known/crl/*.json``
        (or ``jwks.json`` and ``crl/`` directly in ``folder``). Returns the number of keys taken."""
        base = folder / ".well-known" if (folder / ".well-known").is_dir() else folder
        taken = self.add_shc_jwks(iss, (base / "jwks.json").read_bytes())
        for crl in sorted((base / "crl").glob("*.json")):
            self.add_shc_crl(iss, crl.read_bytes())
        return taken

    def shc_issuer_known(self, iss: str) -> bool:
        """True when any key of ``iss`` is trusted."""
        return bool(self._shc_keys.get(iss))

    def shc_key(self, iss: str, kid: str) -> ShcKey | None:
        """Issuer ``iss``'s key ``kid``, if trusted."""
        return self._shc_keys.get(iss, {}).get(kid)

    def shc_issuers_of(self, kid: str) -> frozenset[str]:
        """The trusted issuers that hold key ``kid`` (a card naming another issuer than its key's is refused)."""
        return frozenset(self._shc_issuers_by_kid.get(kid, ()))

    def shc_revocations(self, iss: str, kid: str) -> ShcRevocations | None:
        """The revocation list of issuer ``iss``'s key ``kid``, if one was loaded."""
        return self._shc_crls.get((iss, kid))

    # -- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def from_trust_list(cls, trust: Any, dcc_schemas: DccSchemas | None = None) -> TrustStore:
        """A store from the box's signed trust list (:class:`mqtt.trustlist.TrustList`): its DCC signing
        certificates, SMART Health Card issuer key sets and revocation lists, and its DCC value sets where newer
        than the shipped ones. Bad entries are skipped with a warning (the rest of the list stays usable)."""
        import base64

        store = cls(dcc_schemas)
        source = f"trust list {trust.version}"
        for doc in trust.dcc_valuesets:
            try:
                store.dcc_value_sets.offer(ValueSet.from_compact(doc, source))
            except (ValueError, TypeError) as exc:
                logger.warning("trust list: DCC value set skipped (%s)", exc)
        for entry in trust.dcc:
            try:
                store.add_dcc_certificate(base64.b64decode(entry["cert"]))
            except ValueError as exc:
                logger.warning("trust list: DCC certificate skipped (%s)", exc)
        for entry in trust.shc:
            try:
                store.add_shc_jwks(entry["iss"], entry["jwks"])
            except ValueError as exc:
                logger.warning("trust list: SHC issuer skipped (%s)", exc)
        for iss, by_kid in trust.shc_crl.items():
            for kid, rids in by_kid.items():
                try:
                    store.add_shc_crl(iss, {"kid": kid, "method": "rid", "ctr": 1, "rids": rids})
                except ValueError as exc:
                    logger.warning("trust list: SHC revocations skipped (%s)", exc)
        return store

    @classmethod
    def from_files(cls, dcc_certificates: Iterable[Path] = (), shc_issuers: Mapping[str, Path] | None = None,
                   dcc_schemas: Path | None = None) -> TrustStore:
        """A store from certificate files (DER or PEM bundles), issuer folders by ``iss`` and a schema folder."""
        store = cls(DccSchemas.from_dir(dcc_schemas) if dcc_schemas is not None else None)
        signers = sum(store.add_dcc_certificate_file(p) for p in dcc_certificates)
        keys = sum(store.add_shc_issuer_dir(iss, p) for iss, p in (shc_issuers or {}).items())
        logger.info("trust store: %d DCC signers, %d SHC issuer keys, %d SHC revocation lists, schemas %s",
                    signers, keys, len(store._shc_crls), "loaded" if store.dcc_schemas else "not configured")
        return store
