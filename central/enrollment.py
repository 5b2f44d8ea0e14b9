"""Central side of provisioning: one-time tokens, enrollment (CSR → device certificate), revocation.

Tokens are random (192 bits), bound to a clinic and a box serial, short-lived, and stored only as their
SHA-256. Enrollment spends the token and registers the device in one transaction, so a refused or
interrupted enrollment leaves nothing behind; the device id is the box serial.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from central import ca, crl, trustlist_issuer
from central.broker import reload_broker
from central.config import CentralConfig
from central.site import RESERVED_IDS
from central.store import DeviceRecord, SqlStore
from foundation import keyfiles
from mqtt import envelope, sealed
from mqtt.topics import TopicError, check_name, proof_topic
from provisioning.qrtext import ProvisioningQr

logger = logging.getLogger(__name__)

MAX_CSR_CHARS = 4096
MAX_FACTS_KEYS = 32
CONFIG_REVISION = 1
PROOF_WINDOW = 600.0  # seconds of clock difference accepted on signed renewal/decommission requests


class EnrollmentError(Exception):
    """An enrollment request is refused; ``code`` is stable, ``status`` the HTTP status to answer."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class SerialRegistered(ValueError):
    """A token for a registered box serial was asked without the right to re-enroll it."""


def token_hash(token: str) -> str:
    """How a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Enrollment:
    """Token issuing, enrollment and revocation against one site's CA and store."""

    cfg: CentralConfig
    store: SqlStore

    def __post_init__(self) -> None:
        self.ca_cert = keyfiles.load_cert(self.cfg.path(self.cfg.broker.ca))
        self._ca_key = keyfiles.load_private_key(self.cfg.path(self.cfg.enrollment.ca_key))

    # -- tokens --------------------------------------------------------------------------------------
    def create_token(self, clinic: str, serial: str, ttl: int | None = None, reenroll: bool = False) -> ProvisioningQr:
        """Issue a one-time token for box ``serial`` at ``clinic``; returns the provisioning QR content.

        A serial already registered (in any clinic, active or revoked) needs ``reenroll``, which only an admin may
        ask for: the enrollment then replaces the box and revokes every certificate it had.
        """
        check_name(clinic, "clinic")
        check_name(serial, "serial")
        if serial in RESERVED_IDS:
            raise ValueError(f"serial {serial!r} is reserved")
        if self.store.get_device(serial) is not None and not reenroll:
            raise SerialRegistered(f"{serial} is already registered; re-enrolling it (which revokes its certificate) "
                                   "needs an admin")
        token = secrets.token_urlsafe(24)
        expires = time.time() + (ttl or self.cfg.enrollment.token_ttl)
        self.store.add_token(token_hash(token), clinic, serial, expires, reenroll)
        logger.info("enrollment token issued for %s at %s, valid %d s%s", serial, clinic,
                    ttl or self.cfg.enrollment.token_ttl, " (re-enrollment)" if reenroll else "")
        return ProvisioningQr(self.cfg.enrollment_url, token, keyfiles.fingerprint(self.ca_cert), clinic, serial)

    # -- enrollment ----------------------------------------------------------------------------------
    def enroll(self, request: Any) -> dict[str, Any]:
        """Check a request ``{token, serial, csr, facts}``; sign, register, spend the token; answer."""
        token, serial, csr_pem, facts = _fields(request)
        record = self.store.token(token_hash(token))
        now = time.time()
        if record is None:
            raise self._refuse("token_unknown", "this enrollment token does not exist", serial)
        if record["used_at"] is not None:
            raise self._refuse("token_used", "this enrollment token was already used", serial)
        if record["expires_at"] <= now:
            raise self._refuse("token_expired", "this enrollment token has expired; ask for a new one", serial)
        if record["serial"] != serial:
            raise self._refuse("serial_mismatch", "this token was issued for another box serial", serial)
        if not record["reenroll"] and self.store.get_device(serial) is not None:
            raise self._refuse("serial_registered", "this box serial is already registered; re-enrolling it needs a "
                                                    "token made by an admin", serial)
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
            cert = ca.sign_csr(self._ca_key, self.ca_cert, csr, serial, record["clinic"], self.cfg.enrollment.cert_days)
        except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            raise self._refuse("bad_csr", f"certificate request refused: {exc}", serial, 400) from None
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        refused = self.store.burn_token_and_register(token_hash(token), serial, serial, record["clinic"], cert_pem, now)
        if refused == "serial_registered":
            raise self._refuse(refused, "this box serial is already registered; re-enrolling it needs a token made "
                                        "by an admin", serial)
        if refused is not None:
            raise self._refuse("token_used", "this enrollment token was already used", serial)
        if record["reenroll"]:  # the replaced box's certificates are in the CRL now: make the broker load it
            self.refresh_crl()
            reload_broker(self.cfg)
        logger.info("enrolled %s at %s%s (facts: %s)", serial, record["clinic"],
                    " replacing the registered box" if record["reenroll"] else "", sorted(facts),
                    extra={"EHC_DEVICE": serial, "EHC_EVENT": "enrolled"})
        b = self.cfg.broker
        return {
            "device_id": serial,
            "clinic": record["clinic"],
            "certificate": cert_pem,
            "ca_chain": [self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()],
            "broker": {"host": b.host, "port": b.port},
            "config_revision": CONFIG_REVISION,
            "central_keys": {"signing": self.signing_public_pem(), **self._seal_public_pem()},
            "pseudonym_key": self._pseudonym_key(),
            "trust_lists": self._trust_lists(),
        }

    def _trust_lists(self) -> dict[str, str]:
        """``{"signed": <base64 of the signed trust list>}``, or ``{}`` when the site has none."""
        signed = trustlist_issuer.signed_bytes(self.cfg)
        return {"signed": base64.b64encode(signed).decode()} if signed else {}

    def _seal_public_pem(self) -> dict[str, str]:
        """``{"seal": <PEM of the central X25519 public key>}``, or ``{}`` when the site has no sealing key."""
        path = self.cfg.path(self.cfg.enrollment.seal_key)
        try:
            key = sealed.load_private(path)
        except FileNotFoundError:
            logger.warning("no sealing key at %s: boxes will refuse results with personal fields", path)
            return {}
        return {"seal": sealed.public_pem(key.public_key()).decode()}

    def _pseudonym_key(self) -> str | None:
        """The deployment's ID-pseudonym key (base64), or None when the site has none."""
        path = self.cfg.path(self.cfg.enrollment.pseudonym_key)
        try:
            return base64.b64encode(path.read_bytes()).decode()
        except FileNotFoundError:
            logger.warning("no pseudonym key at %s: boxes will send no ID pseudonyms", path)
            return None

    # -- requests signed with the current device key ------------------------------------------------
    def _proven(self, request: Any, action: str) -> tuple[DeviceRecord, envelope.Message]:
        """Check ``{device_id, proof}``: proof is a COSE_Sign1 by the registered device key over
        ``ehc/v1/<clinic>/<device>/<action>``, issued within PROOF_WINDOW seconds."""
        if not isinstance(request, dict) or not isinstance(request.get("device_id"), str) \
                or not isinstance(request.get("proof"), str):
            raise EnrollmentError("malformed", "device_id and proof are required", 400)
        device = request["device_id"]
        try:
            check_name(device, "device_id")
        except TopicError as exc:
            raise EnrollmentError("malformed", str(exc), 400) from None
        rec = self.store.get_device(device)
        if rec is None or rec.status != "active":
            raise self._refuse("not_active", "this device is not an active registered device", device)
        cert = x509.load_pem_x509_certificate(rec.cert_pem.encode())
        try:
            msg = envelope.verify(base64.b64decode(request["proof"], validate=True), proof_topic(rec.clinic, device,
                                                                                                 action),
                                  cert.public_key())
        except (envelope.EnvelopeError, ValueError):
            raise self._refuse("bad_proof", "the request is not signed by this device's key", device) from None
        if msg.device != device or msg.kind != action or abs(msg.ts_ms / 1000 - time.time()) > PROOF_WINDOW:
            raise self._refuse("bad_proof", "the signed request is stale or for another purpose", device)
        return rec, msg

    def renew(self, request: Any) -> dict[str, Any]:
        """A new certificate for the same key, asked with a CSR and a proof signed by the current key."""
        rec, msg = self._proven(request, "renew")
        csr_pem = request.get("csr")
        if not isinstance(csr_pem, str) or len(csr_pem) > MAX_CSR_CHARS \
                or msg.body.get("csr_sha256") != hashlib.sha256(csr_pem.encode()).hexdigest():
            raise self._refuse("bad_csr", "the CSR is missing or not the one the proof covers", rec.device_id, 400)
        current = x509.load_pem_x509_certificate(rec.cert_pem.encode())
        if current.not_valid_after_utc.timestamp() <= time.time():
            raise self._refuse("cert_expired", "the certificate has expired; enroll the box again with a new token",
                               rec.device_id)
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
            if csr.public_key() != current.public_key():
                raise ValueError("renewal keeps the device key; this CSR holds another key")
            cert = ca.sign_csr(self._ca_key, self.ca_cert, csr, rec.device_id, rec.clinic, self.cfg.enrollment.cert_days)
        except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            raise self._refuse("bad_csr", f"certificate request refused: {exc}", rec.device_id, 400) from None
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.store.register_device(rec.device_id, rec.clinic, cert_pem)
        logger.info("renewed the certificate of %s", rec.device_id,
                    extra={"EHC_DEVICE": rec.device_id, "EHC_EVENT": "renewed"})
        return {"device_id": rec.device_id, "certificate": cert_pem}

    def decommission(self, request: Any) -> dict[str, Any]:
        """A box being wiped says goodbye: it is revoked like a lost box, with its own signature as proof."""
        rec, _ = self._proven(request, "decommission")
        self.revoke(rec.device_id)
        return {"device_id": rec.device_id, "status": "revoked"}

    def _refuse(self, code: str, message: str, serial: str, status: int = 403) -> EnrollmentError:
        logger.warning("enrollment refused for serial %s: %s", serial[:64], code,
                       extra={"EHC_EVENT": "enrollment_refused", "EHC_REASON": code})
        return EnrollmentError(code, message, status)

    def signing_public_pem(self) -> str:
        """Public half of the central signing key (boxes verify central-signed documents with it)."""
        key = keyfiles.load_private_key(self.cfg.path(self.cfg.enrollment.signing_key))
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    # -- revocation ----------------------------------------------------------------------------------
    def refresh_crl(self) -> None:
        """Rewrite the CRL: every unexpired certificate ever issued to a revoked device (renewals included)."""
        crl.write_crl(self.cfg.path(self.cfg.enrollment.crl),
                      crl.build_crl(self._ca_key, self.ca_cert, self.store.revoked_serials()))

    def revoke(self, device_id: str) -> bool:
        """Revoke a device: registry (the ingest refuses it), CRL (the broker refuses it), broker reload."""
        if not self.store.set_device_status(device_id, "revoked"):
            return False
        self.refresh_crl()
        reload_broker(self.cfg)
        logger.warning("device %s revoked", device_id, extra={"EHC_DEVICE": device_id, "EHC_EVENT": "revoked"})
        return True


def _fields(request: Any) -> tuple[str, str, str, dict]:
    if not isinstance(request, dict):
        raise EnrollmentError("malformed", "request must be a JSON object", 400)
    token, serial, csr_pem = request.get("token"), request.get("serial"), request.get("csr")
    facts = request.get("facts", {})
    if not (isinstance(token, str) and 16 <= len(token) <= 128 and token.isascii()):
        raise EnrollmentError("malformed", "token missing, of the wrong length or not ASCII", 400)
    if not isinstance(serial, str):
        raise EnrollmentError("malformed", "serial missing", 400)
    try:
        check_name(serial, "serial")
    except TopicError as exc:
        raise EnrollmentError("malformed", str(exc), 400) from None
    if not (isinstance(csr_pem, str) and len(csr_pem) <= MAX_CSR_CHARS):
        raise EnrollmentError("malformed", "csr missing or too long", 400)
    if not (isinstance(facts, dict) and len(facts) <= MAX_FACTS_KEYS):
        raise EnrollmentError("malformed", "facts must be an object of at most 32 keys", 400)
    return token, serial, csr_pem, facts
