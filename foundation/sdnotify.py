"""systemd notification (READY, STATUS, WATCHDOG); a no-op when not started by systemd."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

try:  # systemd-python; absent on non-Linux development machines
    from systemd import daemon as _daemon  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the platform
    _daemon = None


def notify(state: str) -> bool:
    """Send a notification such as ``READY=1`` or ``STATUS=…``; False when not under systemd."""
    if not os.environ.get("NOTIFY_SOCKET") or _daemon is None:
        return False
    try:
        return bool(_daemon.notify(state))
    except OSError as exc:  # the manager's socket is gone: notifying is best effort, never fatal
        logger.debug("sd_notify failed: %s", exc)
        return False


def ready(status: str = "") -> None:
    """Tell systemd the service is ready."""
    notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> None:
    """One-line status shown by ``systemctl status``."""
    notify(f"STATUS={text}")


def watchdog() -> None:
    """Pet the watchdog."""
    notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Half of ``WatchdogSec`` in seconds, or None when no watchdog is configured."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() else None
