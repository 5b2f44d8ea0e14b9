"""Passwords (scrypt), login throttling and server-side sessions with a CSRF token each.

The session cookie holds only a random 256-bit id (``__Host-`` prefixed, Secure, HttpOnly,
SameSite=Strict); the session itself — user, CSRF token, expiry — stays in this process, so logging out
or disabling a user ends it at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "__Host-ehc-session"
LOGIN_COOKIE = "__Host-ehc-login"  # double-submit CSRF token of the login form
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 10
MAX_PASSWORD = 256


class PasswordError(ValueError):
    """A new password is refused (too short or too long)."""


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``password`` with a fresh salt."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise PasswordError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20,
                            dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by :func:`hash_password` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=64 << 20, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# A hash to check against when the user does not exist, so that the answer takes as long either way.
_DUMMY_HASH = hash_password("not-a-real-password")


def check_login(password: str, stored: str | None) -> bool:
    """Check a password against a user's hash, or against a dummy one when there is no such user."""
    ok = check_password(password, stored or _DUMMY_HASH)
    return ok and stored is not None


class Throttle:
    """Refuse further logins for a name after ``limit`` failures within ``window`` seconds."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, name: str) -> bool:
        """Too many recent failures for ``name``."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < self.window]
            self._failures[name] = recent
            return len(recent) >= self.limit

    def failed(self, name: str) -> None:
        """Count a failed login."""
        with self._lock:
            self._failures.setdefault(name, []).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        """Forget the failures of ``name``."""
        with self._lock:
            self._failures.pop(name, None)


@dataclass
class Session:
    """One logged-in browser."""

    user: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    expires: float = 0.0
    flash: list[tuple[str, str]] = field(default_factory=list)  # (level, text) shown once on the next page


class Sessions:
    """Server-side sessions by random id, with an idle timeout."""

    def __init__(self, idle: float = 1800.0) -> None:
        self.idle = idle
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> tuple[str, Session]:
        """A new session for ``user``; returns the cookie value and the session."""
        sid = secrets.token_urlsafe(32)
        session = Session(user, expires=time.monotonic() + self.idle)
        with self._lock:
            self._expire()
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        """The live session of a cookie value (its idle timer restarts), or None."""
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is None or session.expires < time.monotonic():
                self._by_id.pop(sid, None)
                return None
            session.expires = time.monotonic() + self.idle
            return session

    def end(self, sid: str | None) -> None:
        """Log out."""
        with self._lock:
            self._by_id.pop(sid or "", None)

    def end_user(self, user: str) -> None:
        """End every session of ``user`` (disabled or changed by an admin)."""
        with self._lock:
            for sid in [k for k, v in self._by_id.items() if v.user == user]:
                del self._by_id[sid]

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [k for k, v in self._by_id.items() if v.expires < now]:
            del self._by_id[sid]


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
