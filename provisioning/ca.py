"""Device certificate authority: P-256 keys, the CA, the broker's server certificate and client certificates.

Keys are written with mode 0600 and never overwritten. Device keys are made on the box; the CA only
ever sees a public key (or a CSR).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

DEVICE_CERT_DAYS = 90
CA_DAYS = 3650


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


def _name(common_name: str, org: str = "EHC") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_ca(common_name: str = "EHC Device CA", days: int = CA_DAYS,
              key: ec.EllipticCurvePrivateKey | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA that may only sign end-entity certificates."""
    key = key or generate_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, public_key: ec.EllipticCurvePublicKey,
          common_name: str, days: int, usage: x509.ObjectIdentifier,
          san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError("certificate key must be P-256")
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def issue_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                      public_key: ec.EllipticCurvePublicKey, hosts: list[str], days: int = 825) -> x509.Certificate:
    """TLS server certificate for the broker, valid for the given host names and IP addresses."""
    san: list[x509.GeneralName] = []
    for host in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
    return _leaf(ca_key, ca_cert, public_key, hosts[0], days, ExtendedKeyUsageOID.SERVER_AUTH, san)


def issue_client_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                      public_key: ec.EllipticCurvePublicKey, common_name: str,
                      days: int = DEVICE_CERT_DAYS) -> x509.Certificate:
    """TLS client certificate; the broker takes its CN as the MQTT user name and client id. A device's CN is
    :func:`device_cn` (use :func:`issue_device_cert`); a CN without ``/`` is a central identity."""
    logger.info("issuing client certificate for %s (%d days)", common_name, days)
    return _leaf(ca_key, ca_cert, public_key, common_name, days, ExtendedKeyUsageOID.CLIENT_AUTH)


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


def issue_device_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                      public_key: ec.EllipticCurvePublicKey, clinic: str, device_id: str,
                      days: int = DEVICE_CERT_DAYS) -> x509.Certificate:
    """A device's TLS client certificate, CN ``<clinic>/<device>``."""
    return issue_client_cert(ca_key, ca_cert, public_key, device_cn(clinic, device_id), days)


def common_name(cert: x509.Certificate) -> str:
    """The certificate's subject CN."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise ValueError("certificate has no CN")
    return str(attrs[0].value)


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> x509.CertificateSigningRequest:
    """A CSR for ``device_id`` signed by the key made on the box."""
    return (x509.CertificateSigningRequestBuilder().subject_name(_name(device_id))
            .sign(key, hashes.SHA256()))


def sign_csr(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, csr: x509.CertificateSigningRequest,
             device_id: str, clinic: str, days: int = DEVICE_CERT_DAYS) -> x509.Certificate:
    """Sign a box's CSR after checking its self-signature and that it names ``device_id``; the certificate
    names ``<clinic>/<device_id>`` (the clinic comes from the registry, never from the box)."""
    if not csr.is_signature_valid:
        raise ValueError("CSR signature is invalid")
    attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs or attrs[0].value != device_id:
        raise ValueError("CSR does not name the expected device id")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ValueError("CSR key must be P-256")
    return issue_device_cert(ca_key, ca_cert, public, clinic, device_id, days)
