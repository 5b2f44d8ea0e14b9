"""``ehc-edge install`` / ``uninstall``: put the box's services in place, or take them away again.

``install`` (as root, idempotent):

1. the virtual environment under ``--prefix`` (``/opt/ehc-edge/.venv``) through ``scripts/install.sh``,
   which installs the Debian packages and, on a Raspberry Pi, gives the venv the system site packages
   (``python3-picamera2`` comes from apt);
2. the units (``ehc-station``, ``ehc-uplink``, ``ehc-renew`` and ``ehc-retention`` with their timers,
   ``ehc-logrotate`` with its path unit, the ``ehc-edge.target``) into ``/etc/systemd/system``, the sysusers.d and tmpfiles.d files into
   ``/usr/lib``, then ``systemd-sysusers`` (the ``ehc`` user and its groups) and ``systemd-tmpfiles``
   (``/etc/ehc-edge``);
3. ``systemctl daemon-reload`` and ``enable ehc-edge.target`` (started once the box is enrolled:
   ``ehc-provision enroll``, ``ehc-provision selftest``, ``systemctl start ehc-edge.target``).

Files already identical are left alone, so a second run changes nothing. ``uninstall`` stops and
disables the target and removes what ``install`` put in place; ``--purge`` also deletes the state
(``/var/lib/ehc-edge``: keys, outbox) and the configuration, after the outbox is empty unless ``--force``.
``--root DIR`` works on another root (an image being prepared, or the tests) and then runs no systemctl.
"""

from __future__ import annotations

import argparse
import filecmp
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from mqtt.uplink import queued_results

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
UNITS = ("ehc-edge.target", "ehc-station.service", "ehc-uplink.service", "ehc-renew.service", "ehc-renew.timer",
         "ehc-retention.service", "ehc-retention.timer", "ehc-logrotate.service", "ehc-logrotate.path")
SYSUSERS = ("ehc-edge.sysusers.conf", "usr/lib/sysusers.d/ehc-edge.conf")
TMPFILES = ("ehc-edge.tmpfiles.conf", "usr/lib/tmpfiles.d/ehc-edge.conf")


def _place(source: Path, target: Path, done: list[str]) -> None:
    if target.exists() and filecmp.cmp(source, target, shallow=False):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o644)
    done.append(f"installed {target}")


def _run(cmd: list[str], done: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    done.append("ran " + " ".join(cmd))


def install(root: Path = Path("/"), prefix: Path = Path("/opt/ehc-edge"), *, venv: bool = True) -> list[str]:
    """Install the box's services under ``root``; returns what was done (empty when nothing changed)."""
    done: list[str] = []
    live = root == Path("/")
    if venv:
        _run(["bash", str(REPO / "scripts" / "install.sh"), "--venv", str(root / prefix.relative_to("/") / ".venv")],
             done)
    units = root / "etc" / "systemd" / "system"
    for name in UNITS:
        _place(REPO / "systemd" / name, units / name, done)
    for source, target in (SYSUSERS, TMPFILES):
        _place(REPO / "systemd" / source, root / target, done)
    root_args = [] if live else [f"--root={root}"]
    _run(["systemd-sysusers", *root_args, str(root / SYSUSERS[1])], done)
    _run(["systemd-tmpfiles", "--create", *root_args, str(root / TMPFILES[1])], done)
    if live:
        _run(["systemctl", "daemon-reload"], done)
        _run(["systemctl", "enable", "ehc-edge.target"], done)
    return done


def uninstall(root: Path = Path("/"), *, purge: bool = False, force: bool = False) -> list[str]:
    """Remove what :func:`install` placed (and with ``purge`` the state and configuration)."""
    done: list[str] = []
    live = root == Path("/")
    if live:
        subprocess.run(["systemctl", "disable", "--now", "ehc-edge.target", *UNITS], capture_output=True)
    if purge:
        state = root / "var" / "lib" / "ehc-edge"
        outbox = state / "outbox.db"
        if outbox.exists() and not force:
            waiting = queued_results(outbox)
            if waiting:
                raise RuntimeError(f"{waiting} results are not delivered yet; deliver them or pass --force")
        for folder in (state, root / "etc" / "ehc-edge"):
            if folder.exists():
                shutil.rmtree(folder)
                done.append(f"removed {folder}")
    for path in [root / "etc" / "systemd" / "system" / n for n in UNITS] + [root / SYSUSERS[1], root / TMPFILES[1]]:
        if path.exists():
            path.unlink()
            done.append(f"removed {path}")
    if live:
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True)
    return done


def install_main(argv: list[str]) -> int:
    """``ehc-edge install [--root DIR] [--prefix DIR] [--no-venv]``."""
    p = argparse.ArgumentParser(prog="ehc-edge install", description="install the box's services (idempotent)")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--prefix", type=Path, default=Path("/opt/ehc-edge"))
    p.add_argument("--no-venv", action="store_true", help="the virtual environment is already in place")
    args = p.parse_args(argv)
    try:
        done = install(args.root, args.prefix, venv=not args.no_venv)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        print(f"ehc-edge install: failed: {detail.strip()}", file=sys.stderr)
        return 1
    placed = [d for d in done if d.startswith("installed")]
    print("\n".join(done) + ("" if placed else "\nunits already in place; nothing changed"))
    return 0


def uninstall_main(argv: list[str]) -> int:
    """``ehc-edge uninstall [--root DIR] [--purge [--force]]``."""
    p = argparse.ArgumentParser(prog="ehc-edge uninstall", description="remove the box's services")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--purge", action="store_true", help="also delete keys, outbox and configuration")
    p.add_argument("--force", action="store_true", help="purge even with undelivered results")
    args = p.parse_args(argv)
    try:
        done = uninstall(args.root, purge=args.purge, force=args.force)
    except (OSError, RuntimeError) as exc:
        print(f"ehc-edge uninstall: {exc}", file=sys.stderr)
        return 1
    print("\n".join(done) if done else "nothing to remove")
    return 0
