"""``ehc-edge status``: one screen for a technician at the box.

Every part of the box is one :class:`Check` with a level: ``ok``, ``info`` (nothing to do, e.g. no printer
configured), ``warning`` or ``error``. The command prints one line per check (or JSON with ``--json``) and
exits 1 when any check is a warning or an error, naming each one, 0 otherwise, 2 on an invalid configuration.

>>> report = collect(edge_config.load("/etc/ehc-edge/edge.toml"))    # doctest: +SKIP
>>> [c.name for c in report.attention]                                # doctest: +SKIP
['broker', 'trust_list']

Nothing here changes the box: the outbox and the print queue are opened read-only, and only when they exist.
The probes that leave the box (``systemctl``, ``journalctl``, TCP connects, device nodes) go through a
:class:`Probe`, which tests replace.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge import config as edge_config
from edge.boxfiles import STATUS_INTERVAL, cert_status, load_central_key, station_status_path
from edge.config import EdgeConfig
from edge.station_status import read_status
from edge.trustlist_store import TrustListFile
from foundation.configbase import CREDENTIAL_PREFIX, ConfigError

Level = Literal["ok", "info", "warning", "error"]

SERVICES = ("ehc-station.service", "ehc-uplink.service")
TIMERS = ("ehc-renew.timer", "ehc-retention.timer")
JOURNAL_UNITS = ("ehc-station", "ehc-uplink")
OLDEST_WARNING_S = 3600.0
"""A result waiting longer than this (seconds) needs attention: the uplink is not delivering."""
DISK_MIN_FREE_BYTES = 200 * 1024 * 1024
DISK_MIN_FREE_FRACTION = 0.10
BROKER_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the status screen."""

    name: str
    level: Level
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_attention(self) -> bool:
        return self.level in ("warning", "error")


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Every check, in screen order."""

    device: str
    clinic: str
    checks: tuple[Check, ...]
    taken_at: float

    @property
    def attention(self) -> list[Check]:
        """The checks that need a technician."""
        return [c for c in self.checks if c.needs_attention]

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if absent)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device, "clinic": self.clinic, "taken_at": round(self.taken_at, 3),
                "ok": not self.attention, "attention": [c.name for c in self.attention],
                "checks": [dataclasses.asdict(c) for c in self.checks]}


class Probe:
    """The box's surroundings: services, journal, network, device nodes. Tests override the methods."""

    def systemd(self) -> bool:
        """Is systemd the service manager here (and systemctl available)?"""
        return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None

    def unit_state(self, unit: str) -> str:
        """``systemctl is-active UNIT``: active, inactive, failed, activating …"""
        res = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, timeout=10)
        return res.stdout.strip() or "unknown"

    def journal_errors(self, units: Sequence[str], lines: int = 5) -> list[str] | None:
        """The last error lines the units logged, or None when there is no journal to ask."""
        if shutil.which("journalctl") is None:
            return None
        args = ["journalctl", "-p", "err", "-n", str(lines), "--no-pager", "-o", "cat"]
        for unit in units:
            args += ["-u", unit]
        try:
            res = subprocess.run(args, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if res.returncode != 0:
            return None
        return [line for line in res.stdout.splitlines() if line.strip() and not line.startswith("-- ")]

    def tcp(self, host: str, port: int, timeout: float) -> str | None:
        """None when a TCP connection opens, else why not."""
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            return str(exc) or type(exc).__name__

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def glob(self, pattern: str) -> list[str]:
        import glob

        return sorted(glob.glob(pattern))

    def usb_present(self, vendor: int, product: int) -> bool:
        """Is a USB device with these ids plugged in (from sysfs)?"""
        for dev in Path("/sys/bus/usb/devices").glob("*"):
            try:
                v = int((dev / "idVendor").read_text().strip(), 16)
                p = int((dev / "idProduct").read_text().strip(), 16)
            except (OSError, ValueError):
                continue
            if (v, p) == (vendor, product):
                return True
        return False

    def disk(self, path: Path) -> tuple[int, int]:
        """Free and total bytes of the file system holding ``path``."""
        usage = shutil.disk_usage(path)
        return usage.free, usage.total


# -- the checks -------------------------------------------------------------------------------------------------

def _services(probe: Probe) -> list[Check]:
    if not probe.systemd():
        return [Check("services", "info", "not under systemd", {"systemd": False})]
    checks = []
    for unit in SERVICES + TIMERS:
        state = probe.unit_state(unit)
        if state == "active":
            level: Level = "ok"
        else:
            level = "error" if unit in SERVICES else "warning"
        checks.append(Check(f"service {unit.rsplit('.', 1)[0]}" if unit in SERVICES else f"timer {unit}", level,
                            state, {"unit": unit, "state": state}))
    return checks


def _camera(cfg: EdgeConfig, probe: Probe, station: dict[str, Any] | None) -> Check:
    cam = cfg.station.camera
    reported = station.get("camera") if station else None
    said = f"; station reports camera {reported}" if reported else ""
    data = {"camera": cam, "station_reports": reported}
    if reported == "error":
        return Check("camera", "error", f"{cam}{said}", data)
    if cam == "sim":
        return Check("camera", "info", f"simulated camera (sim){said}", data)
    if cam == "picamera2":
        nodes = probe.glob("/dev/media*") + probe.glob("/dev/video*")
        if not nodes:
            return Check("camera", "error", "picamera2: no /dev/media* or /dev/video* (camera cable? "
                                            "camera_auto_detect in config.txt?)", data)
        return Check("camera", "ok", f"picamera2 ({len(nodes)} camera device nodes){said}", data)
    path = f"/dev/video{cam}" if cam.isdigit() else cam
    if not probe.exists(path):
        return Check("camera", "error", f"{path} does not exist", data)
    return Check("camera", "ok", f"{path}{said}", data)


def _idcard(cfg: EdgeConfig, probe: Probe) -> Check:
    port = cfg.idcard.port
    if not port:
        return Check("id_reader", "info", "not configured", {"port": None})
    if not probe.exists(port):
        return Check("id_reader", "error", f"{port} does not exist (reader unplugged?)", {"port": port})
    return Check("id_reader", "ok", port, {"port": port})


def _print_queue(cfg: EdgeConfig) -> dict[str, Any]:
    path = cfg.printer.queue_file(cfg.path(cfg.device.state_dir))
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            rows = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    return {"waiting": rows.get("queued", 0) + rows.get("printing", 0), "failed": rows.get("failed", 0)}


def _printer(cfg: EdgeConfig, probe: Probe) -> Check:
    conn = cfg.printer.link
    data: dict[str, Any] = {"connection": cfg.printer.connection, **_print_queue(cfg)}
    waiting = f"; {data['waiting']} tickets waiting" if data.get("waiting") else ""
    if conn.kind == "none":
        return Check("printer", "info", "not configured", data)
    if conn.kind == "serial":
        ok, where = probe.exists(conn.path), conn.path
    elif conn.kind == "usb":
        ok, where = probe.usb_present(conn.vendor, conn.product), f"USB {conn.vendor:04x}:{conn.product:04x}"
    else:
        why = probe.tcp(conn.host, conn.port, BROKER_TIMEOUT_S)
        ok, where = why is None, f"{conn.host}:{conn.port}" + (f" ({why})" if why else "")
    if not ok:
        return Check("printer", "error", f"{where} not found{waiting}", data)
    level: Level = "warning" if data.get("waiting", 0) > 5 else "ok"
    return Check("printer", level, f"{where}{waiting}", data)


def _gpio(cfg: EdgeConfig, probe: Probe) -> Check:
    if cfg.gpio is None:
        return Check("gpio", "info", "not configured (no lights, buzzer or button)", {"configured": False})
    if cfg.gpio.pin_factory == "mock":
        return Check("gpio", "info", "simulated pins (pin_factory = mock)", {"configured": True, "mock": True})
    chips = probe.glob("/dev/gpiochip*")
    if not chips:
        return Check("gpio", "error", "configured, but no /dev/gpiochip*", {"configured": True, "chips": []})
    return Check("gpio", "ok", f"{cfg.gpio.light} lights on {', '.join(chips)}", {"configured": True, "chips": chips})


def _certificate(cfg: EdgeConfig) -> Check:
    try:
        cert_path = cfg.path(cfg.device.cert)
    except ConfigError as exc:
        return Check("certificate", "error", str(exc), {})
    if not cert_path.exists():
        return Check("certificate", "error", f"not enrolled: no {cert_path} (ehc-provision enroll)",
                     {"enrolled": False})
    try:
        st = cert_status(cfg)
    except (OSError, ValueError) as exc:
        return Check("certificate", "error", f"{cert_path}: {exc}", {"enrolled": False})
    data = {"enrolled": True, "not_after": st.not_after, "days_left": round(st.days_left, 1),
            "renew_due": st.renew_due}
    if st.days_left <= 0:
        return Check("certificate", "error", f"expired {st.not_after} (ehc-provision renew --force)", data)
    if st.renew_due:
        return Check("certificate", "warning", f"valid until {st.not_after}, {st.days_left:.0f} days left: renewal "
                                               "due (is ehc-renew.timer running?)", data)
    return Check("certificate", "ok", f"valid until {st.not_after} ({st.days_left:.0f} days left)", data)


def _key(cfg: EdgeConfig) -> Check:
    if cfg.device.key.startswith(CREDENTIAL_PREFIX):
        return Check("device_key", "info", f"{cfg.device.key}: passed by systemd (LoadCredential=)",
                     {"credential": True})
    path = cfg.path(cfg.device.key)
    if not path.exists():
        return Check("device_key", "error", f"{path} missing (ehc-provision enroll)", {"credential": False})
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return Check("device_key", "warning", f"{path} is readable by others (mode {mode:o}; chmod 600)",
                     {"credential": False, "mode": f"{mode:o}"})
    return Check("device_key", "ok", str(path), {"credential": False, "mode": f"{mode:o}"})


def _broker(cfg: EdgeConfig, probe: Probe, check: bool) -> Check:
    where = f"{cfg.mqtt.host}:{cfg.mqtt.port}"
    if not check:
        return Check("broker", "info", f"{where} (not checked)", {"host": cfg.mqtt.host, "port": cfg.mqtt.port})
    why = probe.tcp(cfg.mqtt.host, cfg.mqtt.port, BROKER_TIMEOUT_S)
    data = {"host": cfg.mqtt.host, "port": cfg.mqtt.port, "reachable": why is None}
    if why is not None:
        return Check("broker", "warning", f"{where} unreachable: {why} (results wait in the outbox)", data)
    return Check("broker", "ok", f"{where} reachable (TCP)", data)


def outbox_stats(cfg: EdgeConfig) -> dict[str, Any] | None:
    """Depth, bytes, fill and oldest age of the outbox, read-only; None when there is no outbox yet."""
    path = cfg.outbox_path
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        depth, oldest = conn.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        row = conn.execute("SELECT v FROM meta WHERE k = 'bytes'").fetchone()
        size = int(row[0]) if row else 0
    finally:
        conn.close()
    return {"depth": int(depth), "bytes": int(size), "fill": round(size / cfg.outbox.max_bytes, 4),
            "oldest_age_s": round(time.time() - oldest, 1) if oldest is not None else None}


def _outbox(cfg: EdgeConfig) -> Check:
    try:
        st = outbox_stats(cfg)
    except sqlite3.Error as exc:
        return Check("outbox", "error", f"{cfg.outbox_path}: {exc}", {})
    if st is None:
        return Check("outbox", "info", f"no outbox yet ({cfg.outbox_path})", {"depth": 0})
    oldest = st["oldest_age_s"]
    text = f"{st['depth']} results waiting, {st['fill'] * 100:.1f}% full"
    if oldest is not None:
        text += f", oldest {_age(oldest)}"
    if st["fill"] >= cfg.outbox.alert_fraction:
        return Check("outbox", "error", text + " (nearly full: check the uplink and the broker)", st)
    if oldest is not None and oldest > OLDEST_WARNING_S:
        return Check("outbox", "warning", text + " (not delivering: check the uplink and the broker)", st)
    return Check("outbox", "ok", text, st)


def _trust(cfg: EdgeConfig) -> Check:
    try:
        key = load_central_key(cfg)
    except (ConfigError, OSError, ValueError) as exc:
        return Check("trust_list", "warning", f"no central key: {exc}", {"version": None})
    held = TrustListFile(cfg.trust_path, key)
    current, age = held.current(), held.age()
    if current is None:
        return Check("trust_list", "error", f"no valid trust list at {cfg.trust_path}: credentials cannot be "
                                            "verified (the uplink fetches it from the central service)",
                     {"version": None})
    data = {"version": current.version, "age_s": round(age) if age is not None else None}
    text = f"version {current.version}, signed {_age(age or 0.0)} ago"
    if age is not None and age > cfg.trust.max_age:
        return Check("trust_list", "warning", f"{text}: stale (older than {_age(cfg.trust.max_age)})", data)
    return Check("trust_list", "ok", text, data)


def _disk(cfg: EdgeConfig, probe: Probe) -> Check:
    where = cfg.path(cfg.device.state_dir)
    probe_at = where if where.exists() else where.parent
    try:
        free, total = probe.disk(probe_at)
    except OSError as exc:
        return Check("disk", "error", f"{where}: {exc}", {})
    data = {"path": str(where), "free_bytes": free, "total_bytes": total}
    text = f"{free / 2**20:.0f} MiB free of {total / 2**20:.0f} MiB ({where})"
    if free < DISK_MIN_FREE_BYTES or (total and free / total < DISK_MIN_FREE_FRACTION):
        return Check("disk", "warning", text + ": low", data)
    return Check("disk", "ok", text, data)


def _station(cfg: EdgeConfig, station: dict[str, Any] | None, alerts: list[str]) -> Check:
    if station is None and not alerts:
        return Check("station", "warning", "no station status file: the station daemon is not running", {})
    if "station_down" in alerts:
        return Check("station", "error", "station status is stale or unreadable: the station is stopped or stuck",
                     station or {})
    assert station is not None
    text = (f"{station.get('flow', '?')}: camera {station.get('camera', '?')}, scans {station.get('scans', 0)}, "
            f"frames {station.get('frames', 0)}, dropped {station.get('dropped_frames', 0)}")
    return Check("station", "error" if "camera_error" in alerts else "ok", text, station)


def _journal(probe: Probe) -> Check:
    lines = probe.journal_errors(JOURNAL_UNITS)
    if lines is None:
        return Check("last_errors", "info", "no journal here", {"lines": []})
    if not lines:
        return Check("last_errors", "ok", "none logged", {"lines": []})
    return Check("last_errors", "info", f"{len(lines)} (see below)", {"lines": lines})


def collect(cfg: EdgeConfig, probe: Probe | None = None, *, check_broker: bool = True) -> StatusReport:
    """Run every check; never raises for a broken part, which becomes an ``error`` check instead."""
    probe = probe or Probe()
    station, alerts = read_status(station_status_path(cfg), 3 * STATUS_INTERVAL)
    checks: list[Check] = []
    checks += _services(probe)
    checks.append(_station(cfg, station, alerts))
    checks.append(_camera(cfg, probe, station))
    checks.append(_idcard(cfg, probe))
    checks.append(_printer(cfg, probe))
    checks.append(_gpio(cfg, probe))
    checks.append(_certificate(cfg))
    checks.append(_key(cfg))
    checks.append(_broker(cfg, probe, check_broker))
    checks.append(_outbox(cfg))
    checks.append(_trust(cfg))
    checks.append(_disk(cfg, probe))
    checks.append(_journal(probe))
    return StatusReport(cfg.device.id, cfg.device.clinic, tuple(checks), time.time())


# -- output -----------------------------------------------------------------------------------------------------

_MARK = {"ok": " ok ", "info": " -- ", "warning": "WARN", "error": "FAIL"}


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render(report: StatusReport) -> str:
    """The technician's screen."""
    width = max(len(c.name) for c in report.checks)
    out = [f"ehc-edge box {report.device} at {report.clinic}"]
    for c in report.checks:
        out.append(f"[{_MARK[c.level]}] {c.name.ljust(width)}  {c.detail}")
        for line in c.data.get("lines", []) if c.name == "last_errors" else []:
            out.append(f"{'':{width + 9}}{line}")
    bad = report.attention
    out.append("needs attention: " + ", ".join(c.name for c in bad) if bad else "all good")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehc-edge status", description="One screen for a technician: services, "
                                "devices, certificate, broker, outbox, trust list, disk, station, last errors. "
                                "Exit 1 when something needs attention.")
    p.add_argument("--config", default=str(edge_config.DEFAULT_PATH))
    p.add_argument("--json", action="store_true", help="print the same as one JSON document")
    p.add_argument("--no-broker", action="store_true", help="do not try a TCP connection to the broker")
    return p


def status_main(argv: list[str], probe: Probe | None = None) -> int:
    """``ehc-edge status [--config F] [--json] [--no-broker]``: 0 all good, 1 something needs attention,
    2 invalid configuration."""
    args = build_parser().parse_args(argv)
    try:
        cfg = edge_config.load(args.config)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"ok": False, "attention": ["config"], "error": str(exc)}))
        else:
            print(f"ehc-edge status: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    report = collect(cfg, probe, check_broker=not args.no_broker)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, sort_keys=True))
    else:
        print(render(report))
    return 1 if report.attention else 0
