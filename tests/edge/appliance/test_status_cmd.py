"""``ehc-edge status``: what a technician sees, and the exit status naming what needs attention."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tomli_w

from central.site import add_device
from edge import config as edge_config
from edge.appliance.status_screen import Probe, collect, render, status_main
from edge.boxfiles import load_identity, open_outbox, station_status_path
from edge.station_status import write_status


class FakeProbe(Probe):
    """A box whose services, journal, network and device nodes the test decides."""

    def __init__(self, *, systemd: bool = True, units: dict[str, str] | None = None, reachable: bool = True,
                 nodes: tuple[str, ...] = (), journal: list[str] | None = None) -> None:
        self._systemd = systemd
        self.units = units or {}
        self.reachable = reachable
        self.nodes = set(nodes)
        self.journal = journal
        self.connects: list[tuple[str, int]] = []

    def systemd(self) -> bool:
        return self._systemd

    def unit_state(self, unit: str) -> str:
        return self.units.get(unit, "active")

    def journal_errors(self, units, lines=5):
        return self.journal

    def tcp(self, host, port, timeout):
        self.connects.append((host, port))
        return None if self.reachable else "Connection refused"

    def exists(self, path):
        return path in self.nodes

    def glob(self, pattern):
        prefix = pattern.rstrip("*")
        return sorted(n for n in self.nodes if n.startswith(prefix))


def rewrite(path: Path, **sections) -> Path:
    import tomllib

    data = tomllib.loads(path.read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture
def box(site, store, tmp_path) -> Path:
    """A provisioned box (key, certificate, central key, trust list) with a fresh station status file."""
    path = add_device(site, store, "box-0042", "clinic-7", tmp_path / "box")
    cfg = edge_config.load(path)
    write_status(station_status_path(cfg), {"flow": "checkin", "camera": "ok", "frames": 10, "scans": 2,
                                            "dropped_frames": 0})
    outbox = open_outbox(cfg, load_identity(cfg))
    outbox.start_boot()
    outbox.close()
    return path


def test_healthy_box_exits_zero_and_shows_every_part(box, capsys):
    cfg = edge_config.load(box)
    probe = FakeProbe(journal=[])
    report = collect(cfg, probe)
    assert report.attention == [], render(report)
    names = [c.name for c in report.checks]
    for name in ("service ehc-station", "service ehc-uplink", "timer ehc-renew.timer", "timer ehc-retention.timer",
                 "station", "camera", "id_reader", "printer", "gpio", "certificate", "device_key", "broker",
                 "outbox", "trust_list", "disk", "last_errors"):
        assert name in names
    assert report.check("certificate").data["enrolled"] is True
    assert report.check("trust_list").data["version"] is not None
    assert report.check("outbox").data["depth"] == 0
    assert probe.connects == [(cfg.mqtt.host, cfg.mqtt.port)]
    assert status_main(["--config", str(box)], probe=probe) == 0
    out = capsys.readouterr().out
    assert "box-0042 at clinic-7" in out and out.rstrip().endswith("all good")


def test_json_names_what_needs_attention(box, capsys):
    cfg = edge_config.load(box)
    outbox = open_outbox(cfg, load_identity(cfg))
    outbox.start_boot()
    outbox.enqueue("scan", {"outcome": "green"})
    outbox.state(lambda conn: conn.execute("UPDATE outbox SET created = ?", (time.time() - 7200,)))
    outbox.close()
    probe = FakeProbe(units={"ehc-uplink.service": "failed"}, reachable=False,
                      journal=["uplink loop stuck for 31 s; not petting the watchdog"])
    assert status_main(["--config", str(box), "--json"], probe=probe) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert set(doc["attention"]) == {"service ehc-uplink", "broker", "outbox"}
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["outbox"]["data"]["depth"] == 1 and checks["outbox"]["data"]["oldest_age_s"] >= 7200
    assert checks["last_errors"]["data"]["lines"] == ["uplink loop stuck for 31 s; not petting the watchdog"]


def test_not_under_systemd_is_said_not_failed(box):
    report = collect(edge_config.load(box), FakeProbe(systemd=False, journal=None), check_broker=False)
    assert report.check("services").detail == "not under systemd"
    assert report.check("services").level == "info"
    assert report.check("broker").level == "info"
    assert report.check("last_errors").detail == "no journal here"
    assert report.attention == []


def test_devices_from_the_config(box, tmp_path):
    rewrite(box, station={"camera": "/dev/video0"}, idcard={"port": "/dev/ttyUSB0"},
            printer={"connection": "serial:/dev/ttyUSB1"}, gpio={"pin_factory": "auto"})
    cfg = edge_config.load(box)
    missing = collect(cfg, FakeProbe(journal=[]))
    assert {c.name for c in missing.attention} == {"camera", "id_reader", "printer", "gpio"}
    assert "/dev/ttyUSB0 does not exist" in missing.check("id_reader").detail
    present = collect(cfg, FakeProbe(nodes=("/dev/video0", "/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/gpiochip0"),
                                     journal=[]))
    assert present.attention == [], render(present)
    assert present.check("gpio").data["chips"] == ["/dev/gpiochip0"]


def test_station_down_camera_error_and_stale_trust(box):
    cfg = edge_config.load(box)
    status = station_status_path(cfg)
    write_status(status, {"flow": "checkin", "camera": "error"})
    report = collect(cfg, FakeProbe(journal=[]))
    assert {c.name for c in report.attention} == {"station", "camera"}
    old = time.time() - 3600
    status.write_text(json.dumps({"flow": "checkin", "camera": "ok", "written_at": old}))
    assert collect(cfg, FakeProbe(journal=[])).check("station").level == "error"
    status.unlink()
    assert "not running" in collect(cfg, FakeProbe(journal=[])).check("station").detail
    rewrite(box, trust={"max_age": 1e-6})  # the site signed its list before the box was made: older than that
    check = collect(edge_config.load(box), FakeProbe(journal=[])).check("trust_list")
    assert check.level == "warning" and "stale" in check.detail


def test_not_enrolled_and_no_trust_list(box):
    cfg = edge_config.load(box)
    cfg.path(cfg.device.cert).unlink()
    cfg.trust_path.unlink()
    report = collect(cfg, FakeProbe(journal=[]))
    assert report.check("certificate").level == "error"
    assert "ehc-provision enroll" in report.check("certificate").detail
    assert report.check("trust_list").level == "error"


def test_key_readable_by_others_and_credential_key(box):
    cfg = edge_config.load(box)
    cfg.path(cfg.device.key).chmod(0o644)
    assert collect(cfg, FakeProbe(journal=[])).check("device_key").level == "warning"
    rewrite(box, device={"key": "credential:device.key"})
    check = collect(edge_config.load(box), FakeProbe(journal=[])).check("device_key")
    assert check.level == "info" and "LoadCredential" in check.detail


def test_invalid_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "edge.toml"
    bad.write_text("[device]\nid = 'x'\n")
    assert status_main(["--config", str(bad)], probe=FakeProbe()) == 2
    assert "invalid configuration" in capsys.readouterr().err
