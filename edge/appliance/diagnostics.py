"""The ``diagnostics`` remote command: a bundle a support engineer can read, without personal data.

The bundle holds software versions, the configuration with every key-like value replaced by
``"<redacted>"``, outbox statistics, the station status file (counters only), the trust-list version and
the levels and one-line details of ``ehc-edge status`` (without journal lines, which may quote a payload).
No result bodies, no card data, no tube or person references, no key material.

Registration (``edge/runtime.py``, ``build_uplink``)::

    uplink.command_handlers.update(command_handlers(cfg, uplink))
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

from edge.appliance.logrotate import read_result
from edge.appliance.status_screen import Probe, collect, outbox_stats
from edge.boxfiles import STATUS_INTERVAL, station_status_path
from edge.config import EdgeConfig
from edge.station_status import read_status
from mqtt.uplink import SOFTWARE_VERSION

REDACTED = "<redacted>"
SECRET_WORDS = ("key", "secret", "password", "token", "credential")
PACKAGES = ("ehc-edge", "cryptography", "paho-mqtt", "pydantic", "numpy", "zxing-cpp", "pyzbar", "picamera2",
            "gpiozero", "systemd-python")


def redact(value: Any, name: str = "") -> Any:
    """``value`` with every entry whose name looks secret (``key``, ``token`` …) replaced by ``<redacted>``."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    if value is not None and any(word in name.lower() for word in SECRET_WORDS):
        return REDACTED
    if isinstance(value, str) and value.startswith("credential:"):
        return REDACTED
    return value


def versions() -> dict[str, Any]:
    """Software versions on the box."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"software": SOFTWARE_VERSION, "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "packages": found}


def bundle(cfg: EdgeConfig, uplink: Any = None) -> dict[str, Any]:
    """The diagnostics bundle (JSON-ready)."""
    class _NoJournal(Probe):
        def journal_errors(self, units: Any, lines: int = 5) -> list[str] | None:
            return None

    station, alerts = read_status(station_status_path(cfg), 3 * STATUS_INTERVAL)
    report = collect(cfg, _NoJournal(), check_broker=False)
    out: dict[str, Any] = {
        "taken_at": round(time.time(), 3),
        "versions": versions(),
        "config": redact(cfg.model_dump(mode="json")),
        "outbox": outbox_stats(cfg),
        "station": station,
        "station_alerts": alerts,
        "trust_list": report.check("trust_list").data,
        "last_log_rotation": read_result(cfg.path(cfg.device.state_dir)),
        "checks": [{"name": c.name, "level": c.level, "detail": c.detail} for c in report.checks
                   if c.name != "last_errors"],
    }
    if uplink is not None:
        out["uplink"] = {"connected": uplink.connected.is_set(), "inflight": len(uplink.inflight),
                         "delivered": uplink.delivered, "boot": uplink.outbox.boot}
    return out


def command_handlers(cfg: EdgeConfig, uplink: Any = None) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The remote commands this module answers, for ``Uplink.command_handlers``."""

    def diagnostics(args: dict[str, Any]) -> dict[str, Any]:
        return bundle(cfg, uplink)

    return {"diagnostics": diagnostics}
