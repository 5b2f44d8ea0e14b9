"""The certificate revocation list Mosquitto loads (``crlfile``), rebuilt from the device registry."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from foundation.files import write_atomic

logger = logging.getLogger(__name__)

# Mosquitto refuses every client once its CRL is past nextUpdate, and the CRL is rewritten only when a
# device is revoked: give it the CA's lifetime rather than let a quiet month lock every box out.
CRL_DAYS = 3650


def build_crl(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
              revoked_serials: list[int]) -> x509.CertificateRevocationList:
    """A CRL listing the given certificate serial numbers."""
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=CRL_DAYS)))
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(ca_key, hashes.SHA256())


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    """Replace the CRL file atomically (Mosquitto may read it at any moment)."""
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM))
    logger.info("CRL written with %d revoked certificates", len(list(crl)))
