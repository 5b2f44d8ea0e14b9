"""What an authorised technician may do from the dashboard, each written to the audit log.

The same code paths as the ``ehc-central`` commands: :meth:`central.enrollment.Enrollment.create_token`
(``token create``), :meth:`~central.enrollment.Enrollment.revoke` (``device revoke``: registry, CRL,
broker reload) and :class:`central.commands.CommandClient` (``command``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import segno

from central.broker import DASHBOARD_ID
from central.commands import CommandClient, CommandTimeout
from central.config import CentralConfig
from central.dashboard.accounts import Accounts, User
from central.enrollment import Enrollment
from mqtt.envelope import EnvelopeError

logger = logging.getLogger(__name__)

# Remote commands offered on the device page: name → label.
COMMANDS = {"rebirth": "Rebirth (send state again)", "print_test": "Print a test ticket",
            "diagnostics": "Diagnostics", "ping": "Ping"}
COMMAND_TIMEOUT = 15.0


class NotAllowed(PermissionError):
    """The user may not do this (role, or a device or clinic outside their scope)."""


@dataclass(frozen=True, slots=True)
class TokenResult:
    """A new enrollment token as the page shows it: the QR (inline SVG) and what it is bound to."""

    clinic: str
    serial: str
    expires_in: int
    qr_svg: str


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A command's outcome: ``ok`` and a short summary of the box's signed answer (device facts only)."""

    device: str
    name: str
    ok: bool
    summary: dict[str, Any]


def _summary(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of an answer: the diagnostics bundle is reduced to versions and check levels."""
    if name == "diagnostics":
        versions = body.get("versions") if isinstance(body.get("versions"), dict) else {}
        checks = [c for c in body.get("checks") or [] if isinstance(c, dict)]
        return {"software": versions.get("software"), "python": versions.get("python"),
                "checks": {str(c.get("name")): str(c.get("level")) for c in checks},
                "station_alerts": body.get("station_alerts")}
    if name == "ping":
        return {k: body.get(k) for k in ("pong", "connected", "queue_depth", "oldest_queued_s", "uptime_s", "alerts")}
    return {k: v for k, v in body.items() if isinstance(v, (str, int, float, bool)) or v is None}


class Actions:
    """Token, revoke and command for a user, checked against their role and clinic, and audited."""

    def __init__(self, cfg: CentralConfig, accounts: Accounts,
                 command_client: Callable[[], Any] | None = None) -> None:
        self.cfg, self.accounts = cfg, accounts
        self._command_client = command_client or (lambda: CommandClient(
            cfg, accounts, cfg.path(cfg.dashboard.mqtt_cert), cfg.path(cfg.dashboard.mqtt_key), DASHBOARD_ID))

    def _device_clinic(self, user: User, device_id: str) -> str:
        if not user.can_act:
            raise NotAllowed("this account may only look")
        rec = self.accounts.get_device(device_id)
        if rec is None or not user.sees(rec.clinic):
            raise NotAllowed("no such device")
        return rec.clinic

    def create_token(self, user: User, clinic: str, serial: str, ttl: int | None = None,
                     reenroll: bool = False) -> TokenResult:
        """A one-time enrollment token for box ``serial`` at ``clinic``, with its provisioning QR.

        A user acts only within their clinics, and the serial is part of that: a serial registered in a clinic the
        user does not see is refused (as if the user asked for another clinic), and re-enrolling a registered
        serial at all (``reenroll``: it replaces the box and revokes its certificates) is for admins only.
        """
        target = f"{serial}@{clinic}"[:128]
        if not user.can_act or not user.sees(clinic):
            self.accounts.audit(user.name, "token_create", target, "refused", "not allowed")
            raise NotAllowed("this account may not enroll boxes for that clinic")
        registered = self.accounts.get_device(serial)
        if registered is not None and not user.sees(registered.clinic):
            self.accounts.audit(user.name, "token_create", target, "refused", "serial registered outside the scope")
            raise NotAllowed("this account may not enroll that box")
        if registered is not None and not (user.is_admin and reenroll):
            self.accounts.audit(user.name, "token_create", target, "refused", "re-enrollment needs an admin")
            raise NotAllowed(f"{serial} is already registered: re-enrolling it (which revokes its certificate) is "
                             "for an admin, who ticks 're-enroll'")
        try:
            with self.accounts.db() as store:
                qr = Enrollment(self.cfg, store).create_token(clinic, serial, ttl, reenroll and user.is_admin)
        except ValueError as exc:
            self.accounts.audit(user.name, "token_create", f"{serial}@{clinic}"[:128], "error", str(exc))
            raise
        self.accounts.audit(user.name, "token_create", target, "ok", f"valid {ttl or self.cfg.enrollment.token_ttl} s"
                            + (", re-enrollment" if reenroll else ""))
        svg = segno.make(qr.text(), error="m").svg_inline(scale=5, border=4, title="provisioning QR")
        return TokenResult(clinic, serial, ttl or self.cfg.enrollment.token_ttl, svg)

    def revoke(self, user: User, device_id: str) -> bool:
        """Revoke a device (registry, CRL, broker reload); False when it was unknown."""
        try:
            self._device_clinic(user, device_id)
        except NotAllowed:
            self.accounts.audit(user.name, "revoke", device_id, "refused", "not allowed")
            raise
        with self.accounts.db() as store:
            done = Enrollment(self.cfg, store).revoke(device_id)
        self.accounts.audit(user.name, "revoke", device_id, "ok" if done else "unknown_device")
        return done

    def faces(self, user: User) -> list[dict[str, Any]]:
        """Enrolled face templates an admin may see (no template: who, where, consent, revoked or not)."""
        if not user.is_admin:
            raise NotAllowed("face templates are for admins")
        with self.accounts.db() as store:
            rows = store.face_templates()
        return [r for r in rows if user.sees(r["clinic"])]

    def revoke_face(self, user: User, id_ref: str) -> bool:
        """Revoke the face template enrolled for ``id_ref`` (admins only, within their clinics); audited.
        False when there is none or it was revoked already."""
        target = id_ref[:64]
        if not user.is_admin:
            self.accounts.audit(user.name, "face_revoke", target, "refused", "admins only")
            raise NotAllowed("revoking a face template is for admins")
        with self.accounts.db() as store:
            row = store.face_template(id_ref)
            if row is not None and not user.sees(row["clinic"]):
                self.accounts.audit(user.name, "face_revoke", target, "refused", "outside the scope")
                raise NotAllowed("no such template")
            done = row is not None and store.revoke_face_template(id_ref, user.name)
        self.accounts.audit(user.name, "face_revoke", target, "ok" if done else "unknown_template")
        return done

    def command(self, user: User, device_id: str, name: str) -> CommandResult:
        """Send a remote command and wait for the box's signed answer."""
        if name not in COMMANDS:
            self.accounts.audit(user.name, "command", f"{device_id}:{name}"[:128], "refused", "unknown command")
            raise NotAllowed("unknown command")
        try:
            self._device_clinic(user, device_id)
        except NotAllowed:
            self.accounts.audit(user.name, "command", f"{device_id}:{name}", "refused", "not allowed")
            raise
        try:
            with self._command_client() as client:
                body = client.request(device_id, name, {}, COMMAND_TIMEOUT)
        except CommandTimeout:
            self.accounts.audit(user.name, "command", f"{device_id}:{name}", "timeout")
            return CommandResult(device_id, name, False, {"error": "the box did not answer (offline or busy)"})
        except (ConnectionError, OSError, KeyError, EnvelopeError) as exc:
            self.accounts.audit(user.name, "command", f"{device_id}:{name}", "error", type(exc).__name__)
            return CommandResult(device_id, name, False, {"error": f"not sent: {type(exc).__name__}"})
        ok = "error" not in body and body.get("ok", True) is not False
        self.accounts.audit(user.name, "command", f"{device_id}:{name}", "ok" if ok else "failed",
                            str(body.get("error", ""))[:100])
        return CommandResult(device_id, name, ok, _summary(name, body))
