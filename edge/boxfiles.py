"""The box's files and keys as its configuration names them: the device identity, the outbox, the central
keys, the pseudonym key, the station status file, the uplink's relay socket, the certificate's validity and
the pairing text. Low-level helpers shared by the daemons, the appliance tools and provisioning; the
composition root (:mod:`edge.runtime`) wires the long-lived objects from them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from edge.config import EdgeConfig
from edge.station_status import STATUS_FILE
from foundation import keyfiles
from foundation.configbase import ConfigError
from foundation.keyfiles import common_name, device_cn, load_cert, load_private_key
from mqtt import sealed
from mqtt.outbox import DeviceIdentity, Outbox
from mqtt.relay import SOCKET_NAME


class IdentityMismatch(ValueError):
    """The configured device id or clinic differs from the certificate's CN."""


def load_identity(cfg: EdgeConfig) -> DeviceIdentity:
    """The device key, checked against the certificate (CN = ``<clinic>/<device id>``, same public key)."""
    key = load_private_key(cfg.path(cfg.device.key))
    cert = load_cert(cfg.path(cfg.device.cert))
    if common_name(cert) != device_cn(cfg.device.clinic, cfg.device.id):
        raise IdentityMismatch(f"device {cfg.device.clinic}/{cfg.device.id} differs from the certificate CN "
                               f"{common_name(cert)!r}")
    if cert.public_key() != key.public_key():
        raise IdentityMismatch("device key does not match the device certificate")
    return DeviceIdentity(cfg.device.id, cfg.device.clinic, key)


def load_seal_key(cfg: EdgeConfig) -> x25519.X25519PublicKey | None:
    """The central X25519 key personal fields are sealed to, or None on a box without one."""
    if not cfg.provisioning.seal_key:
        return None
    try:
        return sealed.load_public(cfg.path(cfg.provisioning.seal_key).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"provisioning.seal_key: {exc}") from None


def open_outbox(cfg: EdgeConfig, identity: DeviceIdentity | None, durable: bool = True) -> Outbox:
    """The outbox at its configured path and bound (``durable=False`` for the uplink's delete-only use)."""
    return Outbox(cfg.outbox_path, identity, cfg.outbox.max_bytes, cfg.outbox.alert_fraction, durable=durable,
                  seal_key=load_seal_key(cfg) if identity is not None else None)


STATUS_INTERVAL = 5.0
"""Seconds between station status writes."""


def station_status_path(cfg: EdgeConfig) -> Path:
    """Where the station daemon writes its status for the uplink's health report."""
    return cfg.path(cfg.device.state_dir) / STATUS_FILE


def load_central_key(cfg: EdgeConfig) -> ec.EllipticCurvePublicKey:
    """The central signing public key the box checks receipts with."""
    if not cfg.provisioning.central_key:
        raise ConfigError("provisioning.central_key: needed to verify the central service's receipts "
                          "(written by ehc-provision enroll)")
    key = serialization.load_pem_public_key(cfg.path(cfg.provisioning.central_key).read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("provisioning.central_key: not an EC public key")
    return key


def load_pseudonym_key(cfg: EdgeConfig) -> bytes | None:
    """The deployment's pseudonym key (``[identity] pseudonym_key``), or None when the box has none."""
    if not cfg.identity.pseudonym_key:
        return None
    key = cfg.path(cfg.identity.pseudonym_key).read_bytes()
    if len(key) < 16:
        raise ConfigError("identity.pseudonym_key: the key file holds fewer than 16 bytes")
    return key


def relay_path(cfg: EdgeConfig) -> Path:
    """The uplink's socket the station reaches the broker through (:mod:`mqtt.relay`)."""
    return cfg.path(cfg.device.state_dir) / SOCKET_NAME


@dataclass(frozen=True)
class CertStatus:
    """The device certificate's validity and whether renewal is due."""

    device_id: str
    clinic: str
    not_after: str
    days_left: float
    renew_due: bool


def cert_status(cfg: EdgeConfig) -> CertStatus:
    """Validity of the current certificate."""
    cert = keyfiles.load_cert(cfg.path(cfg.device.cert))
    now = dt.datetime.now(dt.UTC)
    life = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    left = (cert.not_valid_after_utc - now).total_seconds()
    return CertStatus(cfg.device.id, cfg.device.clinic, cert.not_valid_after_utc.isoformat(), left / 86400,
                      left < life * cfg.provisioning.renew_fraction)


def pairing_text(cfg: EdgeConfig) -> str:
    """The pairing QR: ``EHCPAIR1;device=ID;clinic=C;cert=<SHA-256 of the device certificate, hex>``."""
    try:
        fingerprint = keyfiles.fingerprint(keyfiles.load_cert(cfg.path(cfg.device.cert)))
    except (OSError, ValueError):
        fingerprint = "none"
    return f"EHCPAIR1;device={cfg.device.id};clinic={cfg.device.clinic};cert={fingerprint}"
