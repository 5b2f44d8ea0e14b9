"""Dashboard users and the audit log of their actions, as two tables in the central store.

``dashboard_users``: name, role, clinic (viewers and clinic technicians), scrypt hash, created / disabled.
``admin_audit``: time, user, action, target, result, detail — one row per login, logout and action.
The tables are created here, on the store's own connection, so the store module need not know them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from central.store import DeviceRecord, SqlStore
from mqtt.topics import check_name

ROLES = ("viewer", "technician", "admin")


class UserError(ValueError):
    """A user cannot be added or changed as asked (bad name, role, clinic)."""


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard account. ``clinic`` None means every clinic (technicians and admins only)."""

    name: str
    role: str
    clinic: str | None
    password_hash: str
    disabled: bool = False

    @property
    def can_act(self) -> bool:
        """May create tokens, revoke devices and send commands."""
        return self.role in ("technician", "admin")

    @property
    def is_admin(self) -> bool:
        """May manage users and read the whole audit log."""
        return self.role == "admin"

    def sees(self, clinic: str) -> bool:
        """May see devices and counts of ``clinic``."""
        return self.clinic is None or self.clinic == clinic


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log."""

    at: float
    user: str
    action: str
    target: str
    result: str
    detail: str


def _schema(real: str, serial: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS dashboard_users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, clinic TEXT, password_hash TEXT NOT NULL,
            created_at {real} NOT NULL, disabled BIGINT NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS admin_audit (
            id {serial}, at {real} NOT NULL, username TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
            result TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX IF NOT EXISTS admin_audit_at ON admin_audit (at)",
    ]


def check_user(name: str, role: str, clinic: str | None) -> None:
    """Raise :class:`UserError` unless the name, role and clinic make a valid account."""
    try:
        check_name(name, "user name")
        if clinic is not None:
            check_name(clinic, "clinic")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if role == "viewer" and clinic is None:
        raise UserError("a viewer belongs to one clinic: give --clinic")


class Accounts:
    """Users, audit log and the store they live in, behind one lock (the store has one connection)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        postgres = store.param != "?"
        with self.db() as s:
            for stmt in _schema("DOUBLE PRECISION" if postgres else "REAL",
                                "BIGSERIAL PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"):
                s.execute(stmt)
            if postgres:
                s.commit()

    @contextmanager
    def db(self) -> Iterator[SqlStore]:
        """The store, held for this thread."""
        with self.lock:
            yield self.store

    def get_device(self, device_id: str) -> DeviceRecord | None:
        """The registry record of a device (thread-safe; the shape the command client and verifier expect)."""
        with self.db() as s:
            return s.get_device(device_id)

    def _write(self, sql: str, params: tuple) -> int:
        with self.db() as s:
            s.begin()
            try:
                cur = s.execute(sql, params)
                s.commit()
            except Exception:
                s.rollback()
                raise
            return cur.rowcount

    # -- users -----------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, clinic: str | None, password_hash: str) -> None:
        """Add a user, or replace the role, clinic and password of an existing one (enabling it again)."""
        check_user(name, role, clinic)
        self._write("""INSERT INTO dashboard_users (name, role, clinic, password_hash, created_at, disabled)
                       VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (name) DO UPDATE SET role = excluded.role,
                       clinic = excluded.clinic, password_hash = excluded.password_hash, disabled = 0""",
                    (name, role, clinic, password_hash, time.time()))

    def disable_user(self, name: str) -> bool:
        """Disable a user (existing sessions end at their next request); False when unknown."""
        return self._write("UPDATE dashboard_users SET disabled = 1 WHERE name = ?", (name,)) > 0

    def user(self, name: str) -> User | None:
        """A user by name, or None."""
        with self.db() as s:
            row = s.execute("SELECT name, role, clinic, password_hash, disabled FROM dashboard_users WHERE name = ?",
                            (name,)).fetchone()
            s.end_read()
        return User(row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    def users(self) -> list[User]:
        """Every user, by name."""
        with self.db() as s:
            rows = s.execute("SELECT name, role, clinic, password_hash, disabled FROM dashboard_users "
                             "ORDER BY name").fetchall()
            s.end_read()
        return [User(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    # -- audit -----------------------------------------------------------------------------------------
    def audit(self, user: str, action: str, target: str, result: str, detail: str = "") -> None:
        """Append one entry to the audit log."""
        self._write("INSERT INTO admin_audit (at, username, action, target, result, detail) VALUES (?, ?, ?, ?, ?, ?)",
                    (time.time(), user[:64], action[:64], target[:128], result[:64], detail[:500]))

    def audit_log(self, limit: int = 200, user: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """The newest entries first, optionally for one user or one action."""
        sql = "SELECT at, username, action, target, result, detail FROM admin_audit"
        where: list[str] = []
        params: list[Any] = []
        if user:
            where.append("username = ?")
            params.append(user)
        if action:
            where.append("action = ?")
            params.append(action)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY at DESC, id DESC LIMIT {int(limit)}"
        with self.db() as s:
            rows = s.execute(sql, params).fetchall()
            s.end_read()
        return [AuditEntry(*r) for r in rows]
