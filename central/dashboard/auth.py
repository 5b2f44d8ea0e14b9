"""Passwords (scrypt), login throttling and server-side sessions with a CSRF token each.

The session cookie holds only a random 256-bit id (``__Host-`` prefixed, Secure, HttpOnly,
SameSite=Strict); the session itself — user, CSRF token, expiry — stays in this process, so logging out
or disabling a user ends it at once. A session ends after ``idle`` seconds without a page request (the live
update stream does not count) and ``lifetime`` seconds after the login, however busy.

Logins: every attempt is counted, per user name and per client address, under a lock *before* its password
is checked, so concurrent guesses cannot get past the limit; at most :data:`PASSWORD_CHECKS` scrypt
computations (32 MiB each) run at a time, and the tables of names and addresses are bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

COOKIE = "__Host-ehc-session"
LOGIN_COOKIE = "__Host-ehc-login"  # double-submit CSRF token of the login form
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 10
MAX_PASSWORD = 256
PASSWORD_CHECKS = 3  # concurrent scrypt computations at most: 3 × 32 MiB
PASSWORD_WAIT = 5.0  # seconds a login waits for a free check before it is refused
MAX_TRACKED = 10_000  # names (and addresses) whose recent attempts are remembered


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


class _Window:
    """Recent attempts per key (a name or an address), at most ``cap`` keys: the least recently used goes first."""

    def __init__(self, limit: int, window: float, cap: int) -> None:
        self.limit, self.window, self.cap = limit, window, cap
        self.attempts: dict[str, list[float]] = {}

    def recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self.attempts.pop(key, []) if now - t < self.window]
        if times:
            self.attempts[key] = times  # re-inserted: most recently used last
        return times

    def add(self, key: str, now: float) -> None:
        self.attempts.setdefault(key, []).append(now)
        while len(self.attempts) > self.cap:
            oldest = next(iter(self.attempts))
            if any(now - t < self.window for t in self.attempts[oldest]):
                logger.warning("login throttling: more than %d names or addresses tried within %.0f s", self.cap,
                               self.window)
            del self.attempts[oldest]


class Throttle:
    """Counts login attempts per user name (``limit`` within ``window`` seconds) and per client address
    (``address_limit``), before the password is checked; a successful login clears its name's count."""

    def __init__(self, limit: int = 5, window: float = 300.0, address_limit: int = 20, cap: int = MAX_TRACKED) -> None:
        self.limit, self.window = limit, window
        self._names = _Window(limit, window, cap)
        self._addresses = _Window(address_limit, window, cap)
        self._lock = threading.Lock()

    def attempt(self, name: str, address: str) -> bool:
        """Count an attempt for ``name`` from ``address``; False (and nothing counted) when either is over its
        limit already. Checking and counting happen under one lock, so concurrent attempts cannot overtake."""
        now = time.monotonic()
        with self._lock:
            if (len(self._names.recent(name, now)) >= self._names.limit
                    or len(self._addresses.recent(address, now)) >= self._addresses.limit):
                return False
            self._names.add(name, now)
            self._addresses.add(address, now)
            return True

    def blocked(self, name: str) -> bool:
        """Too many recent attempts for ``name``."""
        with self._lock:
            return len(self._names.recent(name, time.monotonic())) >= self.limit

    def succeeded(self, name: str, address: str) -> None:
        """The password was right: forget the name's attempts, and this attempt of the address."""
        with self._lock:
            self._names.attempts.pop(name, None)
            times = self._addresses.attempts.get(address)
            if times:
                times.pop()


class PasswordChecks:
    """At most :data:`PASSWORD_CHECKS` password checks at a time (scrypt takes 32 MiB each)."""

    def __init__(self, concurrent: int = PASSWORD_CHECKS, wait: float = PASSWORD_WAIT) -> None:
        self._slots = threading.BoundedSemaphore(concurrent)
        self.wait = wait
        self.busy = 0  # logins refused because every slot stayed taken

    def check(self, password: str, stored: str | None) -> bool | None:
        """:func:`check_login` in a free slot; None when no slot came free within ``wait`` seconds."""
        if not self._slots.acquire(timeout=self.wait):
            self.busy += 1
            return None
        try:
            return check_login(password, stored)
        finally:
            self._slots.release()


@dataclass
class Session:
    """One logged-in browser."""

    user: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    expires: float = 0.0  # idle expiry (monotonic)
    ends: float = float("inf")  # absolute end: login time + lifetime (monotonic)
    flash: list[tuple[str, str]] = field(default_factory=list)  # (level, text) shown once on the next page

    def live(self, now: float) -> bool:
        """Neither idle too long nor past its lifetime."""
        return now < self.expires and now < self.ends


class Sessions:
    """Server-side sessions by random id, with an idle timeout and an absolute lifetime."""

    def __init__(self, idle: float = 1800.0, lifetime: float = 12 * 3600.0) -> None:
        self.idle, self.lifetime = idle, lifetime
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> tuple[str, Session]:
        """A new session for ``user``; returns the cookie value and the session."""
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        session = Session(user, expires=now + self.idle, ends=now + self.lifetime)
        with self._lock:
            self._expire()
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None, touch: bool = True) -> Session | None:
        """The live session of a cookie value, or None. A page request (``touch``) restarts its idle timer; the
        live update stream checks with ``touch=False``, so an open tab alone does not keep a session alive."""
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None or not session.live(now):
                self._by_id.pop(sid, None)
                return None
            if touch:
                session.expires = now + self.idle
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
        for sid in [k for k, v in self._by_id.items() if not v.live(now)]:
            del self._by_id[sid]


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
