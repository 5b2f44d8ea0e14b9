"""Lay out a complete site on disk: central PKI and config, and boxes with keys made on the box.

Used by the demo, the tests and the benchmarks; the technician flow (enrollment tokens, CSRs over HTTPS)
builds on the same CA functions.
"""

from __future__ import annotations

import getpass
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives import serialization

from central import ca, trustlist_issuer
from central import config as central_config
from central.broker import DASHBOARD_ID, OPERATOR_ID
from central.crl import build_crl, write_crl
from central.store import SqlStore
from foundation import keyfiles
from foundation.files import write_atomic, write_secret
from mqtt import sealed

logger = logging.getLogger(__name__)

RESERVED_IDS = frozenset({"ehc-ingest", "ehc-central", "ehc-dashboard"})
"""Names of central identities. A device's certificate names ``<clinic>/<device>`` and so can never be one of
them; the names are refused as serials anyway, to keep logs and registry unambiguous."""
MIN_INGEST_CERTS = 2  # ingest worker certificates made by init, at least (``ehc-central init --workers N``)


@dataclass(frozen=True)
class Site:
    """Paths of a laid-out central service."""

    root: Path
    config_path: Path
    config: central_config.CentralConfig


def issue_central_identity(pki: Path, name: str, cn: str, days: int = 825) -> None:
    """``<pki>/<name>.key`` and ``.crt``: a client certificate from the site CA for a central identity ``cn``
    (CN without ``/``: never a device); kept when the key exists."""
    if "/" in cn:
        raise ValueError("a central identity's CN has no '/'")
    if (pki / f"{name}.key").exists():
        return
    ca_key, ca_cert = keyfiles.load_private_key(pki / "ca.key"), keyfiles.load_cert(pki / "ca.crt")
    key = keyfiles.generate_key()
    keyfiles.write_private_key(pki / f"{name}.key", key)
    keyfiles.write_cert(pki / f"{name}.crt", ca.issue_client_cert(ca_key, ca_cert, key.public_key(), cn, days))


def new_share_group() -> str:
    """A new, unguessable name for the ingest's shared-subscription group (``ehc-ingest-`` and 96 random bits)."""
    return f"{central_config.INGEST_SHARE_GROUP}-{secrets.token_hex(12)}"


def init_central(root: Path, port: int, db_url: str = "sqlite:central.db", host: str = "127.0.0.1",
                 workers: int = 1, extra: dict | None = None, enroll_port: int | None = None) -> Site:
    """Create what a central site needs under ``root``; idempotent, never overwrites a key or the config.

    The device CA, the broker's server certificate, a client certificate per ingest worker (at least
    :data:`MIN_INGEST_CERTS`), one for the dashboard and one for the ``ehc-central`` commands, the central
    signing key, the EHC1 card-issuer key, the deployment's pseudonym key, the X25519 key personal fields
    are sealed to, an empty CRL, ``central.toml`` (SQLite by default) and the first signed trust list.
    """
    root.mkdir(parents=True, exist_ok=True)
    pki = root / "pki"
    if not (pki / "ca.key").exists():
        ca_key, ca_cert = ca.create_ca()
        keyfiles.write_private_key(pki / "ca.key", ca_key)
        keyfiles.write_cert(pki / "ca.crt", ca_cert)
    ca_key, ca_cert = keyfiles.load_private_key(pki / "ca.key"), keyfiles.load_cert(pki / "ca.crt")
    if not (pki / "broker.key").exists():
        key = keyfiles.generate_key()
        keyfiles.write_private_key(pki / "broker.key", key)
        keyfiles.write_cert(pki / "broker.crt", ca.issue_server_cert(ca_key, ca_cert, key.public_key(), [host, "localhost"]))
    path = root / "central.toml"
    ingest = central_config.load(path).ingest if path.exists() else central_config.IngestSection()
    for n in range(max(workers, MIN_INGEST_CERTS)):
        issue_central_identity(pki, f"ingest-{n}", ingest.identity(n))
    issue_central_identity(pki, "dashboard", DASHBOARD_ID)
    issue_central_identity(pki, "operator", OPERATOR_ID)
    if not (pki / "central-sign.key").exists():
        keyfiles.write_private_key(pki / "central-sign.key", keyfiles.generate_key())
    if not (pki / "ehc1-issuer.key").exists():
        keyfiles.write_private_key(pki / "ehc1-issuer.key", keyfiles.generate_key())
    if not (pki / "pseudonym.key").exists():
        write_secret(pki / "pseudonym.key", secrets.token_bytes(32))
    if not (pki / "central-seal.key").exists():
        write_secret(pki / "central-seal.key", sealed.private_pem(sealed.generate_key()))
    if not (pki / "crl.pem").exists():
        write_crl(pki / "crl.pem", build_crl(ca_key, ca_cert, []))
    if path.exists():  # an existing configuration is the operator's: never rewritten
        return _with_trust_list(Site(root, path, central_config.load(path)))
    data = {
        "broker": {"host": host, "port": port, "bind": host, "ca": "pki/ca.crt", "cert": "pki/broker.crt",
                   "key": "pki/broker.key", "user": getpass.getuser()},
        # The shared-subscription group's name is a secret of the site: a box that does not know it cannot join
        # the ingest's group (Mosquitto grants any subscription and checks read access only per delivery, and
        # drops what it assigns to a member that may not read it).
        "ingest": {"cert": "pki/ingest-{worker}.crt", "key": "pki/ingest-{worker}.key", "workers": workers,
                   "share_group": new_share_group()},
        "database": {"url": db_url},
        "enrollment": {"bind": host, "port": enroll_port or port + 1},
    }
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    # May hold a database password: the services' group reads it (chgrp ehc-central), nobody else.
    write_atomic(path, tomli_w.dumps(data).encode(), 0o640)
    return _with_trust_list(Site(root, path, central_config.load(path)))


def _with_trust_list(site: Site) -> Site:
    """Sign the site's first trust list (its own EHC1 issuer) if it has none yet."""
    if trustlist_issuer.signed_bytes(site.config) is None:
        trustlist_issuer.update(site.config)
    return site


def add_device(site: Site, store: SqlStore, device_id: str, clinic: str, box_dir: Path,
               mqtt_extra: dict | None = None, register: bool = True) -> Path:
    """Make a box folder: key generated there, certificate from the site CA, registered; returns edge.toml.

    ``register=False`` leaves the device out of the registry (a certificate the central service never saw).
    """
    if device_id in RESERVED_IDS:
        raise ValueError(f"{device_id!r} is reserved for the central service")
    box_dir.mkdir(parents=True, exist_ok=True)
    key_path = box_dir / "device.key"
    if not key_path.exists():
        keyfiles.write_private_key(key_path, keyfiles.generate_key())
    public = keyfiles.load_private_key(key_path).public_key()
    ca_key = keyfiles.load_private_key(site.root / "pki" / "ca.key")
    ca_cert = keyfiles.load_cert(site.root / "pki" / "ca.crt")
    cert = ca.issue_device_cert(ca_key, ca_cert, public, clinic, device_id)
    keyfiles.write_cert(box_dir / "device.crt", cert)
    keyfiles.write_cert(box_dir / "ca.crt", ca_cert)
    write_secret(box_dir / "pseudonym.key", (site.root / "pki" / "pseudonym.key").read_bytes())
    signed = trustlist_issuer.signed_bytes(site.config)
    if signed is not None:
        (box_dir / "state").mkdir(parents=True, exist_ok=True)
        (box_dir / "state" / "trust-list.cose").write_bytes(signed)
    central = keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key()
    (box_dir / "central-sign.pub").write_bytes(central.public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    seal = sealed.load_private(site.config.path(site.config.enrollment.seal_key)).public_key()
    (box_dir / "central-seal.pub").write_bytes(sealed.public_pem(seal))
    if register:
        store.register_device(device_id, clinic, cert.public_bytes(serialization.Encoding.PEM).decode())
    b = site.config.broker
    mqtt = {"host": b.host, "port": b.port, "ca": "ca.crt"}
    mqtt.update(mqtt_extra or {})
    data = {"device": {"id": device_id, "clinic": clinic, "key": "device.key", "cert": "device.crt",
                       "state_dir": str(box_dir / "state")},
            "mqtt": mqtt,
            "provisioning": {"central_key": "central-sign.pub", "seal_key": "central-seal.pub"},
            "identity": {"pseudonym_key": "pseudonym.key"}}
    path = box_dir / "edge.toml"
    path.write_text(tomli_w.dumps(data))
    return path
