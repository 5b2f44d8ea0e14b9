"""Enrollment tokens: one-time tokens (only their hashes), spent in the transaction that registers the box."""

from __future__ import annotations

import logging
import time
from typing import Any

from central.store.devices import DevicesMixin

logger = logging.getLogger(__name__)


class TokensMixin(DevicesMixin):
    """Table ``enrollment_tokens`` (spending one registers a device: :class:`DevicesMixin`)."""

    def add_token(self, token_hash: str, clinic: str, serial: str, expires_at: float, reenroll: bool = False) -> None:
        """Store a new one-time token (only its hash); ``reenroll``: it may replace a registered box (admin)."""
        self.begin()
        self.execute("""INSERT INTO enrollment_tokens (token_hash, clinic, serial, created_at, expires_at, reenroll)
                        VALUES (?, ?, ?, ?, ?, ?)""", (token_hash, clinic, serial, time.time(), expires_at, int(reenroll)))
        self.commit()

    def token(self, token_hash: str) -> dict[str, Any] | None:
        """A token's record: clinic, serial, expires_at, used_at, device_id, reenroll."""
        row = self.query_one("""SELECT clinic, serial, expires_at, used_at, device_id, reenroll FROM enrollment_tokens
                                WHERE token_hash = ?""", (token_hash,))
        self.end_read()
        keys = ("clinic", "serial", "expires_at", "used_at", "device_id", "reenroll")
        return {**dict(zip(keys, row)), "reenroll": bool(row[5])} if row else None

    def burn_token_and_register(self, token_hash: str, serial: str, device_id: str, clinic: str,
                                cert_pem: str, now: float) -> str | None:
        """In one transaction: spend an unused, unexpired token for ``serial`` and register the device.

        A device already registered under ``device_id`` (active or revoked, in any clinic) is replaced only with
        a re-enrollment token, and then every certificate it had is revoked (:meth:`revoked_serials`). Returns
        None when done, else why nothing changed: ``token_used`` (spent or expired meanwhile, e.g. by a
        concurrent request) or ``serial_registered``.
        """
        self.begin()
        try:
            cur = self.execute("""UPDATE enrollment_tokens SET used_at = ?, device_id = ?
                                  WHERE token_hash = ? AND serial = ? AND used_at IS NULL AND expires_at > ?""",
                               (now, device_id, token_hash, serial, now))
            if cur.rowcount != 1:
                self.rollback()
                return "token_used"
            reenroll = self.query_one("SELECT reenroll FROM enrollment_tokens WHERE token_hash = ?", (token_hash,))[0]
            registered = self.query_one(f"SELECT 1 FROM devices WHERE device_id = ?{self.lock_rows}", (device_id,))
            if registered and not reenroll:
                self.rollback()
                return "serial_registered"
            if registered:
                self.execute("UPDATE certificates SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                             (now, device_id))
            self._upsert_device(device_id, clinic, cert_pem, now)
            self.commit()
            return None
        except Exception:
            self.rollback()
            raise
