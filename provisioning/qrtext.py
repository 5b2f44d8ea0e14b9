"""The provisioning QR: what a technician's token sheet carries to the box.

``EHCPROV1;url=<https URL>;token=<token>;ca=<sha256 hex of the CA certificate>;clinic=<C>;serial=<S>``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "EHCPROV1"
_FIELD = re.compile(r"[A-Za-z0-9_.:/-]{1,256}")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class ProvisioningQrError(ValueError):
    """The text is not a provisioning QR of this product."""


@dataclass(frozen=True, slots=True)
class ProvisioningQr:
    """Enrollment URL, one-time token, pinned CA fingerprint, and what the token is bound to."""

    url: str
    token: str
    ca_fingerprint: str
    clinic: str
    serial: str

    def text(self) -> str:
        """The QR payload."""
        return (f"{PREFIX};url={self.url};token={self.token};ca={self.ca_fingerprint};clinic={self.clinic};"
                f"serial={self.serial}")


def parse(text: str) -> ProvisioningQr:
    """Parse and check a provisioning QR payload."""
    parts = text.strip().split(";")
    if not parts or parts[0] != PREFIX:
        raise ProvisioningQrError(f"not a provisioning code (expected it to start with {PREFIX};)")
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or key in fields or not _FIELD.fullmatch(value):
            raise ProvisioningQrError(f"bad field {key!r} in provisioning code")
        fields[key] = value
    missing = {"url", "token", "ca", "clinic", "serial"} - set(fields)
    if missing:
        raise ProvisioningQrError(f"provisioning code lacks {', '.join(sorted(missing))}")
    if not fields["url"].startswith("https://"):
        raise ProvisioningQrError("enrollment URL must be https://")
    if not _FINGERPRINT.match(fields["ca"]):
        raise ProvisioningQrError("CA fingerprint must be 64 lowercase hex digits (SHA-256)")
    return ProvisioningQr(fields["url"].rstrip("/"), fields["token"], fields["ca"], fields["clinic"], fields["serial"])
