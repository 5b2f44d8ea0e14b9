"""A box on a read-only root (docs/hardware.md): its services write only where the writable partition goes.

Every box service runs with ``ProtectSystem=strict``, so the paths it may write are exactly its
``StateDirectory=`` / ``LogsDirectory=`` / ``CacheDirectory=`` / ``ReadWritePaths=``; these must stay within
the folders the read-only-root layout puts on the writable partition.
"""

from __future__ import annotations

from pathlib import Path

from edge.appliance.install import UNITS
from tests.conftest import REPO

# What docs/hardware.md ("Read-only root") bind-mounts from the writable partition; /run is a tmpfs anyway.
WRITABLE = {"/var/lib/ehc-edge", "/var/log/journal", "/run/log/journal"}
PREFIX = {"StateDirectory": "/var/lib/", "LogsDirectory": "/var/log/", "CacheDirectory": "/var/cache/"}


def writable_paths(unit: Path) -> tuple[set[str], str]:
    """The paths a unit may write under ProtectSystem=strict, and its ProtectSystem= value."""
    paths: set[str] = set()
    protect = ""
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key == "ProtectSystem":
            protect = value.strip()
        elif key == "ReadWritePaths":
            paths |= {p.lstrip("-") for p in value.split()}
        elif key in PREFIX:
            paths |= {PREFIX[key] + p for p in value.split()}
    return paths, protect


def test_box_services_write_only_to_the_writable_partition() -> None:
    services = [REPO / "systemd" / u for u in UNITS if u.endswith(".service")]
    assert len(services) >= 4
    seen: set[str] = set()
    for unit in services:
        paths, protect = writable_paths(unit)
        assert protect == "strict", f"{unit.name}: ProtectSystem={protect!r}, so it could write anywhere"
        assert paths <= WRITABLE, f"{unit.name} writes {sorted(paths - WRITABLE)}: add it to the read-only-root layout"
        seen |= paths
    assert "/var/lib/ehc-edge" in seen  # outbox, device key, counters


def test_the_parser_sees_what_a_unit_declares(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nProtectSystem=strict\nStateDirectory=ehc-edge\nReadWritePaths=/srv/x -/var/log/journal\n")
    assert writable_paths(unit) == ({"/var/lib/ehc-edge", "/srv/x", "/var/log/journal"}, "strict")
