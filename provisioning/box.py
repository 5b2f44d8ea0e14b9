"""Box side of provisioning: make the key here, enroll over TLS pinned to the CA fingerprint, write config.

Nothing is left half-done: the key, certificate and configuration are written only after the central
service has answered with a certificate for this key; on any failure the freshly made key is removed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import platform
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge import audit_events
from edge import config as edge_config
from edge.boxfiles import CertStatus, cert_status, load_identity, open_outbox
from edge.config import EdgeConfig
from edge.trustlist_store import TrustListFile
from foundation import keyfiles
from foundation.configbase import ConfigError
from foundation.files import write_atomic, write_secret
from mqtt import envelope, sealed
from mqtt.topics import proof_topic
from provisioning.qrtext import ProvisioningQr

logger = logging.getLogger(__name__)

TIMEOUT = 20.0


class EnrollFailed(RuntimeError):
    """Enrollment did not complete; the message says why and what to do."""


@dataclass(frozen=True)
class Enrolled:
    """What enrollment produced on this box."""

    device_id: str
    clinic: str
    config_path: Path
    cert_expires: str
    broker: str


def fetch_pinned_ca(url: str, fingerprint: str) -> bytes:
    """Fetch the CA certificate and accept it only if its SHA-256 equals the pinned fingerprint.

    This first request cannot verify the server (the box has no CA yet); the pin is what makes it safe:
    a man in the middle would have to present our CA's exact certificate, which does not give him its key.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{url}/v1/ca", timeout=TIMEOUT, context=ctx) as resp:
            pem = resp.read(16 * 1024)
    except (urllib.error.URLError, OSError) as exc:
        raise EnrollFailed(f"cannot reach the enrollment service at {url}: {exc}") from None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise EnrollFailed("the enrollment service did not send a CA certificate") from None
    if hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest() != fingerprint:
        raise EnrollFailed("the enrollment service presented a different CA than the provisioning code names: "
                           "possible man in the middle, or a code for another central service. Nothing was changed.")
    return pem


def post_enroll(url: str, ca_pem: bytes, request: dict[str, Any], path: str = "/v1/enroll") -> dict[str, Any]:
    """POST a request over TLS verified against the pinned CA (host name checked)."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(request).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=ctx) as resp:
            return json.loads(resp.read(64 * 1024))
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read(4096))
            reason = f"{err.get('error')}: {err.get('message')}"
        except ValueError:
            reason = f"HTTP {exc.code}"
        raise EnrollFailed(f"the central service refused the request ({reason})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnrollFailed(f"enrollment request failed: {exc}") from None


def enroll(qr: ProvisioningQr, state_dir: Path, config_path: Path, force: bool = False) -> Enrolled:
    """Run the whole box-side enrollment for ``qr``."""
    key_path, cert_path, ca_path = state_dir / "device.key", state_dir / "device.crt", state_dir / "ca.crt"
    if not force and (key_path.exists() or config_path.exists()):
        raise EnrollFailed(f"this box is already provisioned ({key_path if key_path.exists() else config_path} "
                           "exists); run 'ehc-provision wipe' first, or pass --force")
    ca_pem = fetch_pinned_ca(qr.url, qr.ca_fingerprint)
    if force:
        key_path.unlink(missing_ok=True)
        (state_dir / "trust-list.cose").unlink(missing_ok=True)
    key = keyfiles.generate_key()
    keyfiles.write_private_key(key_path, key)
    try:
        csr = keyfiles.make_csr(key, qr.serial).public_bytes(serialization.Encoding.PEM).decode()
        facts = {"model": _model(), "machine": platform.machine(), "software": "0.1.0"}
        answer = post_enroll(qr.url, ca_pem, {"token": qr.token, "serial": qr.serial, "csr": csr, "facts": facts})
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
        if cert.public_key() != key.public_key() or answer["device_id"] != qr.serial \
                or keyfiles.common_name(cert) != keyfiles.device_cn(answer["clinic"], qr.serial):
            raise EnrollFailed("the certificate returned is not for this box's key")
        broker = answer["broker"]
        write_atomic(cert_path, answer["certificate"].encode())
        write_atomic(ca_path, "".join(answer["ca_chain"]).encode())
        write_atomic(state_dir / "central-sign.pub", answer["central_keys"]["signing"].encode())
        config = {"device": {"id": answer["device_id"], "clinic": answer["clinic"], "key": str(key_path),
                             "cert": str(cert_path), "state_dir": str(state_dir)},
                  "mqtt": {"host": broker["host"], "port": int(broker["port"]), "ca": str(ca_path)},
                  "provisioning": {"url": qr.url, "central_key": str(state_dir / "central-sign.pub")}}
        signed_trust = (answer.get("trust_lists") or {}).get("signed")
        if signed_trust:
            central_key = serialization.load_pem_public_key(answer["central_keys"]["signing"].encode())
            if not TrustListFile(state_dir / "trust-list.cose", central_key).offer(base64.b64decode(signed_trust)):  # type: ignore[arg-type]
                raise EnrollFailed("the trust list sent by the central service does not verify")
        seal_pem = answer["central_keys"].get("seal")
        if seal_pem:
            sealed.load_public(seal_pem.encode())  # ValueError when it is not an X25519 key
            write_atomic(state_dir / "central-seal.pub", seal_pem.encode())
            config["provisioning"]["seal_key"] = str(state_dir / "central-seal.pub")
        if answer.get("pseudonym_key"):
            pseudonym_key = base64.b64decode(answer["pseudonym_key"], validate=True)
            if len(pseudonym_key) < 16:
                raise EnrollFailed("the pseudonym key sent by the central service is too short")
            write_secret(state_dir / "pseudonym.key", pseudonym_key)
            config["identity"] = {"pseudonym_key": str(state_dir / "pseudonym.key")}
        write_atomic(config_path, tomli_w.dumps(config).encode())
    except (EnrollFailed, KeyError, TypeError, ValueError, binascii.Error) as exc:
        key_path.unlink(missing_ok=True)
        for leftover in (cert_path, ca_path, state_dir / "pseudonym.key", state_dir / "trust-list.cose",
                         state_dir / "central-seal.pub"):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, EnrollFailed):
            raise
        raise EnrollFailed(f"the central service's answer was not understood: {exc}") from None
    _audit_enrollment(config_path, answer["device_id"], answer["clinic"], keyfiles.fingerprint(cert))
    return Enrolled(answer["device_id"], answer["clinic"], config_path, cert.not_valid_after_utc.isoformat(),
                    f"{broker['host']}:{broker['port']}")


def _audit_enrollment(config_path: Path, device: str, clinic: str, cert_sha256: str) -> None:
    """Link the enrollment into the box's audit chain (it opens the chain on a new box)."""
    try:
        cfg = edge_config.load(config_path)
    except (ConfigError, OSError) as exc:
        logger.error("enrollment not written to the audit log: %s", exc)
        return
    audit_events.record(cfg, "enrollment", {"device": device, "clinic": clinic, "cert_sha256": cert_sha256})


def _model() -> str:
    try:
        return Path("/proc/device-tree/model").read_text().strip("\x00\n") or "unknown"
    except OSError:
        return platform.node() or "unknown"


# -- after enrollment: status, renewal, decommissioning ------------------------------------------------

def _proof(cfg: EdgeConfig, action: str, body: dict[str, Any]) -> str:
    ident = load_identity(cfg)
    msg = envelope.Message(ident.device, 0, 0, action, body)
    return base64.b64encode(envelope.sign(msg, proof_topic(ident.clinic, ident.device, action), ident.key)).decode()


def _central(cfg: EdgeConfig) -> tuple[str, bytes]:
    if not cfg.provisioning.url:
        raise EnrollFailed("edge.toml has no [provisioning] url; enroll the box first")
    return cfg.provisioning.url, cfg.path(cfg.mqtt.ca).read_bytes()


def renew(cfg: EdgeConfig, force: bool = False) -> CertStatus:
    """Renew the certificate (same key) when due, or always with ``force``; returns the new status."""
    status = cert_status(cfg)
    if not (force or status.renew_due):
        return status
    url, ca_pem = _central(cfg)
    key = load_identity(cfg).key
    csr = keyfiles.make_csr(key, cfg.device.id).public_bytes(serialization.Encoding.PEM).decode()
    proof = _proof(cfg, "renew", {"csr_sha256": hashlib.sha256(csr.encode()).hexdigest()})
    answer = post_enroll(url, ca_pem, {"device_id": cfg.device.id, "csr": csr, "proof": proof}, "/v1/renew")
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    if cert.public_key() != key.public_key() or keyfiles.common_name(cert) != keyfiles.device_cn(cfg.device.clinic, cfg.device.id):
        raise EnrollFailed("the renewed certificate is not for this box's key")
    write_atomic(cfg.path(cfg.device.cert), answer["certificate"].encode())
    logger.info("certificate renewed until %s", cert.not_valid_after_utc.isoformat())
    return cert_status(cfg)


def wipe(cfg: EdgeConfig, config_path: Path, force: bool = False) -> tuple[list[Path], bool]:
    """Decommission: tell the central service (it revokes the device), then delete keys, certificates,
    outbox and configuration. Refuses while results wait for delivery, unless ``force``.

    Returns the removed files and whether the central service confirmed the revocation.
    """
    box = open_outbox(cfg, None)
    depth = box.stats().depth
    box.close()
    if depth and not force:
        raise EnrollFailed(f"{depth} results still wait for delivery; let the uplink drain them, or use --force "
                           "(they will be lost)")
    told = True
    try:
        url, ca_pem = _central(cfg)
        post_enroll(url, ca_pem, {"device_id": cfg.device.id, "proof": _proof(cfg, "decommission", {})},
                    "/v1/decommission")
    except EnrollFailed:
        if not force:
            raise
        told = False
        logger.warning("the central service was not told; revoke %s there by hand", cfg.device.id)
    outbox = cfg.outbox_path
    doomed = [cfg.path(cfg.device.key), cfg.path(cfg.device.cert), cfg.path(cfg.mqtt.ca),
              outbox, outbox.with_name(outbox.name + "-wal"), outbox.with_name(outbox.name + "-shm"),
              cfg.path(cfg.device.state_dir) / "central-sign.pub", cfg.path(cfg.device.state_dir) / "pseudonym.key",
              cfg.path(cfg.device.state_dir) / "central-seal.pub",
              cfg.trust_path,
              config_path]
    removed = [p for p in doomed if p.exists()]
    for p in removed:
        p.unlink()
    return removed, told
