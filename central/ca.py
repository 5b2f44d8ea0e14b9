"""The device certificate authority (central only): the CA, the broker's server certificate, client certificates.

Keys are written with mode 0600 and never overwritten. Device keys are made on the box; the CA only
ever sees a public key (or a CSR).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from foundation.keyfiles import device_cn, generate_key, subject_name

logger = logging.getLogger(__name__)


DEVICE_CERT_DAYS = 90
CA_DAYS = 3650

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(common_name: str = "EHC Device CA", days: int = CA_DAYS,
              key: ec.EllipticCurvePrivateKey | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA that may only sign end-entity certificates."""
    key = key or generate_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject_name(common_name)).issuer_name(subject_name(common_name))
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
        .subject_name(subject_name(common_name)).issuer_name(ca_cert.subject)
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


def issue_device_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                      public_key: ec.EllipticCurvePublicKey, clinic: str, device_id: str,
                      days: int = DEVICE_CERT_DAYS) -> x509.Certificate:
    """A device's TLS client certificate, CN ``<clinic>/<device>``."""
    return issue_client_cert(ca_key, ca_cert, public_key, device_cn(clinic, device_id), days)


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
