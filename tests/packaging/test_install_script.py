"""scripts/install.sh's choices per machine, through ``--print-packages`` (no apt, no venv touched).

A board model file and an apt folder stand in for ``/proc/device-tree/model`` and ``/etc/apt``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

PI_ONLY = {"python3-picamera2", "python3-lgpio"}


def _packages(tmp_path: Path, model: str | None, archive: str | None, *args: str) -> subprocess.CompletedProcess:
    model_file = tmp_path / "model"
    if model is not None:
        model_file.write_bytes(model.encode() + b"\0")  # the device tree's string ends with a NUL
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    if archive is not None:
        (apt / "sources.list.d" / "raspi.list").write_text(f"deb {archive} bookworm main\n")
    env = dict(os.environ, EHC_DEVICE_MODEL_FILE=str(model_file), EHC_APT_ETC=str(apt))
    return subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), "--print-packages", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_plain_machine_gets_no_pi_packages(tmp_path: Path) -> None:
    done = _packages(tmp_path, None, None)
    assert done.returncode == 0 and "mosquitto" in done.stdout.split()
    assert not PI_ONLY & set(done.stdout.split())


@pytest.mark.parametrize("model", ["Raspberry Pi 4 Model B Rev 1.4", "Raspberry Pi 5 Model B Rev 1.0"])
def test_raspberry_pi_os_gets_the_camera_and_lgpio(tmp_path: Path, model: str) -> None:
    done = _packages(tmp_path, model, "http://archive.raspberrypi.com/debian/")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) >= PI_ONLY


def test_plain_debian_on_a_pi_fails_clearly_or_goes_on_without(tmp_path: Path) -> None:
    done = _packages(tmp_path, "Raspberry Pi 5 Model B Rev 1.0", None)
    assert done.returncode == 1 and not done.stdout
    assert "archive.raspberrypi.com" in done.stderr and "--no-pi-packages" in done.stderr
    done = _packages(tmp_path, "Raspberry Pi 5 Model B Rev 1.0", None, "--no-pi-packages")
    assert done.returncode == 0 and "skipping python3-picamera2" in done.stderr
    assert not PI_ONLY & set(done.stdout.split()) and "python3-opencv" in done.stdout.split()


def test_test_mode_adds_the_test_machine_packages(tmp_path: Path) -> None:
    box = set(_packages(tmp_path, None, None).stdout.split())
    test = set(_packages(tmp_path, None, None, "--test").stdout.split())
    assert box < test and {"postgresql", "chromium"} <= test - box
