"""``ehc-edge install`` / ``uninstall`` on a separate root: units, user, folders; idempotent; purge guards."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.appliance.install import UNITS, install, uninstall

pytestmark = pytest.mark.skipif(shutil.which("systemd-sysusers") is None,
                                reason="systemd-sysusers not found (not a systemd system)")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=120)


def test_install_twice_then_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = install(root, venv=False)
    for name in UNITS:
        assert (root / "etc/systemd/system" / name).is_file()
    assert (root / "usr/lib/sysusers.d/ehc-edge.conf").is_file()
    passwd = (root / "etc/passwd").read_text()
    assert passwd.count("\nehc:") + passwd.startswith("ehc:") == 1  # the service user exists once
    assert (root / "etc/ehc-edge").is_dir() and (root / "etc/ehc-edge/credentials").stat().st_mode & 0o777 == 0o700
    assert sum(d.startswith("installed") for d in done) == len(UNITS) + 2
    again = _cli("install", "--root", str(root), "--no-venv")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert (root / "etc/passwd").read_text().count("ehc:") == passwd.count("ehc:")

    removed = uninstall(root)
    assert not any((root / "etc/systemd/system" / n).exists() for n in UNITS)
    assert len(removed) == len(UNITS) + 2 and (root / "etc/ehc-edge").is_dir()  # configuration kept


def test_purge_refuses_while_results_wait(tmp_path: Path) -> None:
    from foundation.keyfiles import generate_key
    from mqtt.outbox import DeviceIdentity, Outbox

    root = tmp_path / "root"
    install(root, venv=False)
    state = root / "var/lib/ehc-edge"
    box = Outbox(state / "outbox.db", DeviceIdentity("box-1", "clinic-a", generate_key()))
    box.start_boot()
    box.enqueue("scan", {"outcome": "green"})
    box.close()
    refused = _cli("uninstall", "--root", str(root), "--purge")
    assert refused.returncode == 1 and "not delivered" in refused.stderr and state.is_dir()
    forced = _cli("uninstall", "--root", str(root), "--purge", "--force")
    assert forced.returncode == 0 and not state.exists() and not (root / "etc/ehc-edge").exists()
