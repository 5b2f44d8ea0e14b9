"""The ``reload_config`` remote command: a new edge.toml, checked before it replaces the old one, rolled
back when the station does not come up with it.

Arguments: ``{"config": <the whole new edge.toml text>}`` (commands are at most 4 KiB of CBOR). Steps:
validate the text as an :class:`~edge.config.EdgeConfig` (relative paths resolved beside the live file);
refuse a change of the box's identity (``[device]`` id, clinic, key, certificate: that is re-enrollment);
keep the old file as ``edge.toml.previous``; write the new one atomically; restart the station and wait
until it is active. If it does not become active, the old file is put back and the station restarted
again, and the answer says ``rolled_back``. The uplink itself reads the new file at its next restart
(the answer says so), so that it can always report the outcome.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge import config as edge_config
from foundation.configbase import ConfigError
from foundation.files import write_atomic
from mqtt.outbox import OutboxError

logger = logging.getLogger(__name__)

IDENTITY = ("id", "clinic", "key", "cert")


def revision(text: str) -> str:
    """A short name for a config text: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def systemd_restart(units: tuple[str, ...] = ("ehc-station.service",), timeout: float = 60.0) -> bool:
    """Restart ``units`` and wait until every one is active (False when one fails or the wait ends)."""
    if subprocess.run(["systemctl", "restart", "--no-block", *units], capture_output=True).returncode:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [subprocess.run(["systemctl", "is-active", u], capture_output=True, text=True).stdout.strip()
                  for u in units]
        if all(s == "active" for s in states):
            return True
        if any(s == "failed" for s in states):
            return False
        time.sleep(0.5)
    return False


def reload_config(path: Path, text: str, restart: Callable[[], bool] = systemd_restart,
                  audit: Callable[[str, dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Replace the config at ``path`` with ``text`` if it is valid and the station comes up with it.

    ``audit(kind, facts)`` links the change (revisions and outcome, never the text) into the audit chain.
    """
    if not isinstance(text, str) or not text.strip():
        return {"ok": False, "error": "no_config"}
    candidate = path.with_name(path.name + ".candidate")
    try:
        write_atomic(candidate, text.encode("utf-8"))
        new = edge_config.load(candidate)
        old = edge_config.load(path)
    except (ConfigError, OSError, ValueError) as exc:
        return {"ok": False, "error": "invalid", "detail": str(exc)[:500]}
    finally:
        candidate.unlink(missing_ok=True)
    changed = [k for k in IDENTITY if getattr(new.device, k) != getattr(old.device, k)]
    if changed:
        return {"ok": False, "error": "identity_change", "fields": changed}
    previous = path.read_bytes()
    write_atomic(path.with_name(path.name + ".previous"), previous)
    write_atomic(path, text.encode("utf-8"))
    logger.info("config revision %s written; restarting the station", revision(text))
    def note(kind: str, facts: dict[str, Any]) -> None:
        try:
            if audit is not None:
                audit(kind, facts)
        except OutboxError as exc:  # the change itself stands; the log says why it is not linked
            logger.error("configuration change not written to the audit log: %s", exc)

    if restart():
        note("config", {"from": revision(previous.decode()), "to": revision(text), "outcome": "ok"})
        return {"ok": True, "revision": revision(text), "uplink": "takes the new file at its next restart"}
    logger.error("the station did not come up with revision %s; rolling back", revision(text))
    write_atomic(path, previous)
    restart()
    note("config", {"from": revision(previous.decode()), "to": revision(text), "outcome": "rolled_back"})
    return {"ok": False, "error": "not_ready", "rolled_back": True, "revision": revision(previous.decode())}


def command_handlers(path: Path, restart: Callable[[], bool] = systemd_restart,
                     audit: Callable[[str, dict[str, Any]], Any] | None = None
                     ) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The ``reload_config`` handler for ``Uplink.command_handlers``."""
    return {"reload_config": lambda args: reload_config(path, args.get("config"), restart, audit)}
