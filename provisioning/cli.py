"""``ehc-provision``: give a box its identity (key made on the box, certificate by enrollment), renew it,
check the box, and decommission it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from foundation import keyfiles


def cmd_keygen(args: argparse.Namespace) -> int:
    key_path = Path(args.key)
    try:
        keyfiles.write_private_key(key_path, keyfiles.generate_key())
    except keyfiles.KeyExists as exc:
        if not args.reuse:
            print(f"ehc-provision: {exc} (use --reuse to make a CSR for it)", file=sys.stderr)
            return 1
    csr = keyfiles.make_csr(keyfiles.load_private_key(key_path), args.device_id)
    Path(args.csr).write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    print(f"key {key_path} (0600), CSR {args.csr} for {args.device_id}")
    return 0


def _scan_provisioning_code(camera: str, timeout: float):  # type: ignore[no-untyped-def]
    """Show the technician's token sheet to the camera until a provisioning code is read."""
    import time

    from edge.config import StationSection
    from edge.scanner import DecodeOptions, FrameScanner
    from edge.sources import frame_source
    from edge.symbology import QR_ONLY
    from provisioning import qrtext

    raise_later: Exception | None = None
    scanner = FrameScanner(DecodeOptions(symbologies=QR_ONLY))
    print(f"hold the provisioning QR in front of the camera ({timeout:.0f} s)…", file=sys.stderr)
    with frame_source(StationSection(camera=camera)) as source:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = source.read()
            if frame is None:
                if source.finished:
                    break
                continue
            for code in scanner.decode(frame):
                if code.text.startswith(qrtext.PREFIX):
                    try:
                        return qrtext.parse(code.text)
                    except qrtext.ProvisioningQrError as exc:
                        raise_later = exc
    raise raise_later or qrtext.ProvisioningQrError("no provisioning code seen by the camera")


def cmd_enroll(args: argparse.Namespace) -> int:
    from provisioning import qrtext
    from provisioning.box import EnrollFailed, enroll

    try:
        if args.scan:
            qr = _scan_provisioning_code(args.scan, args.scan_timeout)
        elif args.qr_text:
            qr = qrtext.parse(args.qr_text)
        elif args.token and args.central and args.ca_fingerprint and args.serial and args.clinic:
            qr = qrtext.parse(qrtext.ProvisioningQr(args.central.rstrip("/"), args.token, args.ca_fingerprint.lower(),
                                                    args.clinic, args.serial).text())
        else:
            print("ehc-provision: give --qr-text, or all of --token --central --ca-fingerprint --serial --clinic",
                  file=sys.stderr)
            return 2
        done = enroll(qr, Path(args.state_dir), Path(args.config), force=args.force)
    except (qrtext.ProvisioningQrError, EnrollFailed) as exc:
        print(f"ehc-provision: enrollment failed: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled {done.device_id} at {done.clinic}\n  certificate valid until {done.cert_expires}\n"
          f"  broker {done.broker}\n  configuration {done.config_path}\n"
          f"  next: ehc-provision selftest, then systemctl enable --now ehc-edge.target")
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from edge import config as edge_config

    return edge_config.load(args.config)


def cmd_status(args: argparse.Namespace) -> int:
    from edge.boxfiles import cert_status, open_outbox

    cfg = _load(args)
    st = cert_status(cfg)
    box = open_outbox(cfg, None)
    depth = box.stats().depth
    box.close()
    print(f"device {st.device_id} at {st.clinic}\n  certificate valid until {st.not_after} "
          f"({st.days_left:.0f} days left{', renewal due' if st.renew_due else ''})\n"
          f"  broker {cfg.mqtt.host}:{cfg.mqtt.port}\n  outbox {depth} results waiting")
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    from edge.boxfiles import cert_status
    from provisioning.box import EnrollFailed, renew

    cfg = _load(args)
    before = cert_status(cfg)
    try:
        after = renew(cfg, force=args.force)
    except EnrollFailed as exc:
        print(f"ehc-provision: renewal failed: {exc}", file=sys.stderr)
        return 1
    if after.not_after == before.not_after:
        print(f"not due: {after.days_left:.0f} days left (use --force to renew now)")
        return 0
    print(f"renewed: valid until {after.not_after}")
    if args.restart:  # the daemons read the certificate when they start
        import subprocess

        subprocess.run(["systemctl", "try-restart", *args.restart], check=False)
    return 0


def cmd_wipe(args: argparse.Namespace) -> int:
    from provisioning.box import EnrollFailed, wipe

    if not args.yes:
        print("ehc-provision: wipe deletes this box's identity and undelivered results; add --yes to confirm",
              file=sys.stderr)
        return 2
    cfg = _load(args)
    try:
        removed, told = wipe(cfg, Path(args.config), force=args.force)
    except EnrollFailed as exc:
        print(f"ehc-provision: wipe refused: {exc}", file=sys.stderr)
        return 1
    print(f"decommissioned {cfg.device.id}: removed {len(removed)} files; " +
          ("the central service revoked it" if told else
           f"the central service was NOT told: run 'ehc-central device revoke --id {cfg.device.id}' there"))
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from provisioning import selftest

    cfg = _load(args)
    results = selftest.run(cfg)
    if not args.no_ticket and any(r.part == "printer" and r.status in (selftest.PASS, selftest.WARN) for r in results):
        results.append(selftest.print_ticket(cfg, results))
    for r in results:
        print(f"{r.status:>11}  {r.part:<16} {r.detail}" + (f"\n{'':>13}fix: {r.fix}" if r.fix else ""))
    ok = selftest.passed(results)
    from edge import audit_events

    audit_events.record(cfg, "selftest", {"passed": ok, "checks": [[r.part, r.status] for r in results]})
    print("selftest: PASS" if ok else "selftest: FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ehc-provision``."""
    p = argparse.ArgumentParser(prog="ehc-provision", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("keygen", help="create the device key (never leaves the box) and a CSR")
    s.add_argument("--device-id", required=True)
    s.add_argument("--key", default="/var/lib/ehc-edge/device.key", help="where the key is written (0600)")
    s.add_argument("--csr", default="/var/lib/ehc-edge/device.csr")
    s.add_argument("--reuse", action="store_true", help="keep an existing key")
    s.set_defaults(func=cmd_keygen)
    s = sub.add_parser("enroll", help="enroll this box with a provisioning code from the central service")
    s.add_argument("--qr-text", default=None, help="the provisioning QR's text")
    s.add_argument("--scan", default=None, metavar="CAMERA",
                   help="read the provisioning QR with the box's camera: picamera2, /dev/videoN, or an image file")
    s.add_argument("--scan-timeout", type=float, default=60.0)
    s.add_argument("--token", default=None)
    s.add_argument("--central", default=None, help="enrollment URL, https://host:port")
    s.add_argument("--ca-fingerprint", default=None, help="SHA-256 of the central CA certificate (hex)")
    s.add_argument("--serial", default=None)
    s.add_argument("--clinic", default=None)
    s.add_argument("--state-dir", default="/var/lib/ehc-edge", help="where the key (0600) and certificate go")
    s.add_argument("--config", default="/etc/ehc-edge/edge.toml", help="the box configuration to write")
    s.add_argument("--force", action="store_true", help="replace an existing key and configuration")
    s.set_defaults(func=cmd_enroll)
    for name, func, text in (("status", cmd_status, "identity, certificate lifetime, outbox"),
                             ("renew", cmd_renew, "renew the certificate when a third of its life is left"),
                             ("wipe", cmd_wipe, "decommission: tell the central service, delete keys and data"),
                             ("selftest", cmd_selftest, "check key, certificate, clock, outbox, camera, broker, "
                                                        "ID reader, printer, lights; print the self-test ticket")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", default="/etc/ehc-edge/edge.toml")
        if name in ("renew", "wipe"):
            s.add_argument("--force", action="store_true",
                           help="renew now" if name == "renew" else "even with undelivered results or no answer")
        if name == "wipe":
            s.add_argument("--yes", action="store_true", help="confirm")
        if name == "selftest":
            s.add_argument("--no-ticket", action="store_true", help="do not print the self-test ticket")
        if name == "renew":
            s.add_argument("--restart", nargs="*", default=[], metavar="UNIT",
                           help="systemd units to restart after a renewal (they load the certificate at start)")
        s.set_defaults(func=func)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
