"""The systemd units pass ``scripts/check_units.sh`` (verify, security exposure, sysusers, tmpfiles), and the
script does catch a typo and a weakened unit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_units.sh"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (apt-get install systemd)")


def run_check(units: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = ["bash", str(SCRIPT)] + ([str(units)] if units else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def copy_units(tmp_path: Path) -> Path:
    dest = tmp_path / "systemd"
    shutil.copytree(REPO / "systemd", dest)
    return dest


def test_repository_units_pass():
    res = run_check()
    assert res.returncode == 0, res.stdout + res.stderr
    for unit in ("ehc-station.service", "ehc-uplink.service", "ehc-renew.service", "ehc-retention.service"):
        assert f"security {unit}: exposure" in res.stdout
        assert f"verify {unit}: ok" in res.stdout
    assert "check_units: OK" in res.stdout


def test_hardening_the_issue_asks_for_is_there():
    station = (REPO / "systemd" / "ehc-station.service").read_text()
    for line in ("User=ehc", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "SystemCallFilter=@system-service", "RestrictAddressFamilies=", "DevicePolicy=closed",
                 "DeviceAllow=char-video4linux rw", "DeviceAllow=char-gpiochip rw", "DeviceAllow=char-ttyUSB rw",
                 "DeviceAllow=char-usb_device rw", "SupplementaryGroups=video dialout gpio lp",
                 "LoadCredential=device.key:"):
        assert line in station, line
    for name in ("ehc-station.service", "ehc-uplink.service", "ehc-renew.service", "ehc-retention.service"):
        text = (REPO / "systemd" / name).read_text()
        settings = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert "PrivateDevices=yes" not in settings, name
        assert "DevicePolicy=closed" in text, name


def test_unknown_key_in_our_unit_fails(tmp_path):
    units = copy_units(tmp_path)
    unit = units / "ehc-uplink.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    res = run_check(units)
    assert res.returncode == 1
    assert "Unknown key" in res.stderr and "verify ehc-uplink.service" in res.stderr


def test_weakened_service_fails_the_exposure_threshold(tmp_path):
    units = copy_units(tmp_path)
    unit = units / "ehc-retention.service"
    text = "\n".join(line for line in unit.read_text().splitlines()
                     if not line.startswith(("User=", "Group=", "Protect", "Private", "SystemCall", "Restrict",
                                             "CapabilityBoundingSet", "NoNewPrivileges", "IPAddressDeny")))
    unit.write_text(text + "\n")
    res = run_check(units)
    assert res.returncode == 1
    assert "systemd-analyze security ehc-retention.service" in res.stderr


def test_missing_command_fails(tmp_path):
    units = copy_units(tmp_path)
    (units / "ehc-bogus.service").write_text("[Service]\nType=oneshot\nExecStart=/usr/bin/ehc-no-such-tool\n")
    res = run_check(units)
    assert res.returncode == 1
    assert "/usr/bin/ehc-no-such-tool" in res.stderr


CENTRAL_SERVICES = ("ehc-central.service", "ehc-enroll.service", "ehc-dashboard.service")


def test_every_service_is_checked_and_the_central_ones_are_hardened_too():
    import re

    res = run_check()
    assert res.returncode == 0, res.stdout + res.stderr
    services = sorted(p.name for p in (REPO / "systemd").glob("*.service"))
    assert set(CENTRAL_SERVICES) <= set(services)
    for unit in services:
        found = re.search(rf"security {re.escape(unit)}: exposure ([0-9.]+)", res.stdout)
        assert found and float(found.group(1)) <= 2.5, unit
    for name in CENTRAL_SERVICES:
        settings = [line.strip() for line in (REPO / "systemd" / name).read_text().splitlines()
                    if not line.lstrip().startswith("#")]
        assert "UMask=0077" in settings and "NoNewPrivileges=yes" in settings, name
        assert "StateDirectory=ehc-central" not in settings or "User=ehc-central" in settings, name  # no chown to root


@pytest.mark.parametrize("name", CENTRAL_SERVICES)
def test_a_weakened_central_service_fails_the_exposure_threshold(tmp_path, name):
    units = copy_units(tmp_path)
    unit = units / name
    text = "\n".join(line for line in unit.read_text().splitlines()
                     if not line.startswith(("User=", "Group=", "Protect", "Private", "SystemCall", "Restrict",
                                             "CapabilityBoundingSet", "NoNewPrivileges", "MemoryDeny")))
    unit.write_text(text + "\n")
    res = run_check(units)
    assert res.returncode == 1
    assert f"systemd-analyze security {name}" in res.stderr
