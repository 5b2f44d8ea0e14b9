"""Device registry: registered boxes, their certificates (for revocation lists) and status."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from central.store.base import SAFE_SUM, SqlBase, safe_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device."""

    device_id: str
    clinic: str
    cert_pem: str
    status: str  # active | revoked


class DevicesMixin(SqlBase):
    """Tables ``devices`` and ``certificates``."""

    def register_device(self, device_id: str, clinic: str, cert_pem: str) -> None:
        """Add a device or replace its certificate (re-enrollment, renewal); it becomes active."""
        with self.transaction():
            self._upsert_device(device_id, clinic, cert_pem, time.time())

    def device_certs(self) -> list[tuple[str, str]]:
        """(device id, current certificate PEM) of every registered device."""
        rows = self.query("SELECT device_id, cert_pem FROM devices")
        self.end_read()
        return [(r[0], r[1]) for r in rows]

    def _upsert_device(self, device_id: str, clinic: str, cert_pem: str, now: float) -> None:
        """Register or re-register a device, and remember its certificate for revocation lists."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        # A revoked device's certificates stay revoked when it is registered again (with a new certificate).
        self.execute("""UPDATE certificates SET revoked_at = ? WHERE revoked_at IS NULL AND device_id IN
                        (SELECT device_id FROM devices WHERE device_id = ? AND status = 'revoked')""", (now, device_id))
        self.execute("""INSERT INTO devices (device_id, clinic, cert_pem, status, registered_at)
                        VALUES (?, ?, ?, 'active', ?)
                        ON CONFLICT (device_id) DO UPDATE SET clinic = excluded.clinic,
                        cert_pem = excluded.cert_pem, status = 'active'""", (device_id, clinic, cert_pem, now))
        self.execute("""INSERT INTO certificates (serial, device_id, not_after, issued_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT DO NOTHING""",
                     (format(cert.serial_number, "x"), device_id, cert.not_valid_after_utc.timestamp(), now))

    def revoked_serials(self, now: float | None = None) -> list[int]:
        """Serial numbers of every unexpired certificate ever issued to a revoked device, and of every certificate
        revoked on its own (replaced by a re-enrollment)."""
        rows = self.query("""SELECT c.serial FROM certificates c JOIN devices d ON d.device_id = c.device_id
                             WHERE (d.status = 'revoked' OR c.revoked_at IS NOT NULL) AND c.not_after > ?
                             ORDER BY c.serial""",
                          (now if now is not None else time.time(),))
        self.end_read()
        return [int(r[0], 16) for r in rows]

    def set_device_status(self, device_id: str, status: str) -> bool:
        """Mark a device active or revoked; False when it is unknown."""
        self.begin()
        cur = self.execute("UPDATE devices SET status = ? WHERE device_id = ?", (status, device_id))
        self.commit()
        return cur.rowcount > 0

    def get_device(self, device_id: str) -> DeviceRecord | None:
        """Look up a device."""
        row = self.query_one("SELECT device_id, clinic, cert_pem, status FROM devices WHERE device_id = ?",
                             (device_id,))
        self.end_read()
        return DeviceRecord(*row) if row else None

    def devices(self) -> list[dict[str, Any]]:
        """All devices with presence, last seen and sequence bookkeeping."""
        rows = self.query(f"""SELECT d.device_id, d.clinic, d.status, d.presence, d.last_seen,
                                     {SAFE_SUM.format("b.received")}, {SAFE_SUM.format("b.max_seq - b.received")}
                              FROM devices d LEFT JOIN device_boots b ON b.device_id = d.device_id
                              GROUP BY d.device_id, d.clinic, d.status, d.presence, d.last_seen
                              ORDER BY d.device_id""")
        self.end_read()
        keys = ("device_id", "clinic", "status", "presence", "last_seen", "results", "missing")
        return [dict(zip(keys, (*r[:5], safe_count(r[5]), safe_count(r[6])))) for r in rows]
