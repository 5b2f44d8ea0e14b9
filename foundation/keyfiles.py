"""Keys and certificates on disk: P-256 keys (written 0600, never overwritten), PEM certificates, CSRs,
and the CN conventions (``<clinic>/<device>`` for a box). Shared by the box and the central CA."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

logger = logging.getLogger(__name__)


class KeyExists(FileExistsError):
    """Refusing to overwrite an existing private key."""


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a PEM private key with mode 0600; refuse to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExists(f"{path}: key already exists, not overwriting") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a PEM P-256 private key."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 private key")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Load a PEM P-256 public key (SubjectPublicKeyInfo)."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 public key")
    return key


def write_cert(path: Path, cert: x509.Certificate) -> None:
    """Write a PEM certificate (public; mode 0644 whatever the umask: Mosquitto reads the broker's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def load_cert(path: Path) -> x509.Certificate:
    """Load a PEM certificate."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def subject_name(common_name: str, org: str = "EHC") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def device_cn(clinic: str, device_id: str) -> str:
    """The CN of a device certificate: ``<clinic>/<device>``, which Mosquitto uses as user name and client id,
    so that the ACL pattern ``ehc/v1/%u/…`` binds both the clinic and the device segment of its topics."""
    if "/" in clinic or "/" in device_id:
        raise ValueError("clinic and device id cannot hold '/'")
    return f"{clinic}/{device_id}"


def split_device_cn(cn: str) -> tuple[str, str]:
    """``(clinic, device id)`` of a device certificate's CN; ValueError for any other CN."""
    clinic, sep, device = cn.partition("/")
    if not sep or not clinic or not device or "/" in device:
        raise ValueError(f"{cn!r} is not a device certificate CN (<clinic>/<device>)")
    return clinic, device


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> x509.CertificateSigningRequest:
    """A CSR for ``device_id`` signed by the key made on the box."""
    return (x509.CertificateSigningRequestBuilder().subject_name(subject_name(device_id))
            .sign(key, hashes.SHA256()))


def common_name(cert: x509.Certificate) -> str:
    """The certificate's subject CN."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise ValueError("certificate has no CN")
    return str(attrs[0].value)
