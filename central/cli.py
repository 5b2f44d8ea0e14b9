"""``ehc-central``: the central service (ingest, broker config, registry, results)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from central import config as central_config
from central.broker import write_config
from central.site import RESERVED_IDS
from central.store import open_store
from foundation import keyfiles
from foundation.cliargs import parse_pairs
from foundation.configbase import ConfigError
from foundation.logs import setup_logging
from mqtt import topics


def _store(args: argparse.Namespace):
    return open_store(central_config.load(args.config).database_url)


def cmd_check_config(args: argparse.Namespace) -> int:
    central_config.load(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_mosquitto_conf(args: argparse.Namespace) -> int:
    cfg = central_config.load(args.config)
    print(write_config(cfg))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from central.service import serve

    return serve(Path(args.config), args.workers)


def cmd_results(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        for row in store.iter_results(args.since, args.limit, args.device):
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        store.close()
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    store = _store(args)
    print(json.dumps(store.counts(), indent=2))
    store.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit-chain heads and alerts (forks, gaps, resets) as JSON; exit 1 while an alert is open."""
    from central.audit_check import acknowledge, report

    store = _store(args)
    try:
        if args.ack:
            print(json.dumps({"acknowledged": acknowledge(store, args.ack, time.time())}))
            return 0
        found = report(store, args.device, open_only=args.open)
    finally:
        store.close()
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 1 if any(a["resolved_at"] is None for a in found["alerts"]) else 0


def cmd_devices(args: argparse.Namespace) -> int:
    store = _store(args)
    certs = dict(store.device_certs())
    for row in store.devices():
        cert = x509.load_pem_x509_certificate(certs[row["device_id"]].encode())
        row["cert_expires"] = cert.not_valid_after_utc.isoformat()
        if args.clinic is None or row["clinic"] == args.clinic:
            print(json.dumps(row))
    store.close()
    return 0


def cmd_device_add(args: argparse.Namespace) -> int:
    if args.id in RESERVED_IDS:
        raise SystemExit(f"ehc-central: device id {args.id!r} is reserved")
    cert = keyfiles.load_cert(Path(args.cert))
    if keyfiles.common_name(cert) != keyfiles.device_cn(args.clinic, args.id):
        raise SystemExit(f"ehc-central: certificate CN {keyfiles.common_name(cert)!r} is not "
                         f"{keyfiles.device_cn(args.clinic, args.id)!r}")
    store = _store(args)
    store.register_device(args.id, args.clinic, cert.public_bytes(serialization.Encoding.PEM).decode())
    store.close()
    print(f"registered {args.id} at {args.clinic}")
    return 0


def cmd_device_revoke(args: argparse.Namespace) -> int:
    from central.enrollment import Enrollment

    cfg = central_config.load(args.config)
    store = open_store(cfg.database_url)
    found = Enrollment(cfg, store).revoke(args.id)
    store.close()
    if not found:
        print(f"ehc-central: no device {args.id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}: the ingest refuses its messages, the broker's CRL refuses its certificate")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from central.site import init_central

    root = Path(args.dir)
    site = init_central(root, args.port, db_url=args.database, host=args.host, enroll_port=args.enroll_port,
                        workers=args.workers)
    open_store(site.config.database_url).close()
    conf = write_config(site.config)
    print(f"central site in {root}: config {site.config_path}, broker config {conf}, "
          f"CA fingerprint {keyfiles.fingerprint(keyfiles.load_cert(root / 'pki' / 'ca.crt'))}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    import segno

    from central.enrollment import Enrollment

    cfg = central_config.load(args.config)
    store = open_store(cfg.database_url)
    try:
        qr = Enrollment(cfg, store).create_token(args.clinic, args.serial, _duration(args.ttl), args.reenroll)
    except ValueError as exc:
        print(f"ehc-central: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    code = segno.make(qr.text(), error="m")
    if args.qr:
        code.save(args.qr, scale=6, border=4)
    print(qr.text())
    if not args.quiet:
        code.terminal(compact=True)
    return 0


def _duration(text: str | None) -> int | None:
    """'30m', '2h', '900s' or '900' → seconds."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except ValueError:
        raise SystemExit(f"ehc-central: bad duration {text!r} (use e.g. 30m, 2h)") from None


def cmd_enroll_serve(args: argparse.Namespace) -> int:
    from central.enrollment import Enrollment
    from central.enrollment_server import make_server
    from foundation import sdnotify

    cfg = central_config.load(args.config)
    store = open_store(cfg.database_url)
    server = make_server(cfg, Enrollment(cfg, store))
    sdnotify.ready(f"enrollment on {cfg.enrollment.bind}:{cfg.enrollment.port}")
    server.run()
    store.close()
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    from central.commands import CommandClient, CommandTimeout

    cfg = central_config.load(args.config)
    store = open_store(cfg.database_url)
    try:
        with CommandClient(cfg, store) as client:
            body = client.request(args.device, args.name, json.loads(args.args), args.timeout)
    except (CommandTimeout, KeyError, ConnectionError) as exc:
        print(f"ehc-central: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(body, ensure_ascii=False))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from central.dashboard.server import run

    return run(args.config)


def cmd_user_add(args: argparse.Namespace) -> int:
    """Add or change a dashboard user; the password comes from the terminal or one line of stdin."""
    import getpass

    from central.dashboard.accounts import Accounts, UserError, check_user
    from central.dashboard.auth import PasswordError, hash_password

    try:
        check_user(args.name, args.role, args.clinic)
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise UserError("the passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        hashed = hash_password(password)
    except (UserError, PasswordError) as exc:
        print(f"ehc-central: {exc}", file=sys.stderr)
        return 1
    store = _store(args)
    try:
        accounts = Accounts(store)
        accounts.add_user(args.name, args.role, args.clinic, hashed)
        accounts.audit(os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli", "user_add", args.name, "ok",
                       f"{args.role} {args.clinic or 'all clinics'} (ehc-central user add)")
    finally:
        store.close()
    print(f"user {args.name}: {args.role}" + (f" of {args.clinic}" if args.clinic else ", all clinics"))
    return 0


def cmd_card_issue(args: argparse.Namespace) -> int:
    """Issue an EHC1 credential signed by the site's card-issuer key; print its text (and a QR PNG)."""
    import segno

    from edge.credentials.ehc1 import Card, issue

    cfg = central_config.load(args.config)
    try:
        card = Card(card_id=args.card_id.lower(), name=args.name, birth_date=args.birth, sex=args.sex,
                    status=args.status, guardian=args.guardian.lower() if args.guardian else None)
        text = issue(card, keyfiles.load_private_key(cfg.path(cfg.trust.ehc1_issuer_key)), cfg.trust.ehc1_issuer_id,
                     ttl=args.ttl)
    except ValueError as exc:
        print(f"ehc-central: {exc}", file=sys.stderr)
        return 1
    if args.qr:
        segno.make(text, error="m").save(args.qr, scale=6, border=4)
    print(text)
    return 0


def cmd_lookups(args: argparse.Namespace) -> int:
    """Resolve scans the boxes recorded while they could not reach the card platform."""
    from central.ingest import resolve_lookup
    from mqtt import lookup

    cfg = central_config.load(args.config)
    store = open_store(cfg.database_url)
    try:
        pending = store.unresolved_lookups()
        platform = lookup.LocalCardRegistry(store)
        done = sum(resolve_lookup(store, platform, msg_id, index, code_type) for msg_id, index, code_type in pending)
    finally:
        store.close()
    print(json.dumps({"pending": len(pending), "resolved": done}))
    return 0 if done == len(pending) else 1


def cmd_trust_update(args: argparse.Namespace) -> int:
    """Change the trust list, sign the new version, and publish it retained (unless --no-publish)."""
    from central import trustlist_issuer

    cfg = central_config.load(args.config)
    try:
        shc = parse_pairs(args.add_shc_jwks, "--add-shc-jwks")
        ehc1 = parse_pairs(args.add_ehc1_issuer, "--add-ehc1-issuer")
    except ValueError as exc:
        print(f"ehc-central: {exc}", file=sys.stderr)
        return 2
    try:
        new = trustlist_issuer.update(cfg, trustlist_issuer.Changes(dcc_certs=[Path(p) for p in args.add_dcc_cert], shc_jwks=shc,
                                              ehc1_issuers=ehc1, revoke_cards=args.revoke_card,
                                              value_sets=[Path(p) for p in args.add_valueset]))
    except (OSError, ValueError) as exc:
        print(f"ehc-central: trust list not changed: {exc}", file=sys.stderr)
        return 1
    print(f"trust list version {new.version}: {len(new.ehc1)} EHC1, {len(new.dcc)} DCC, {len(new.shc)} SHC issuers, "
          f"{len(new.revoked_cards)} revoked cards, {len(new.dcc_valuesets)} DCC value sets; {trustlist_issuer.signed_path(cfg)}")
    if not args.no_publish:
        from central.commands import publish_retained

        publish_retained(cfg, topics.TRUST_LIST, trustlist_issuer.signed_bytes(cfg) or b"")
        print("published retained on", topics.TRUST_LIST)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehc-central", description=__doc__)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="cmd", required=True)
    cfg_default = str(central_config.DEFAULT_PATH)

    s = sub.add_parser("check-config", help="validate a central.toml")
    s.add_argument("file")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("init", help="create a central site: CA, keys, database, broker config (idempotent)")
    s.add_argument("--dir", required=True)
    s.add_argument("--host", default="127.0.0.1", help="broker host name boxes connect to")
    s.add_argument("--port", type=int, default=8883, help="broker TLS port")
    s.add_argument("--enroll-port", type=int, default=8443, help="enrollment HTTPS port")
    s.add_argument("--database", default="sqlite:central.db")
    s.add_argument("--workers", type=int, default=1,
                   help="ingest workers (each gets its own certificate; at least two are made)")
    s.set_defaults(func=cmd_init)

    card = sub.add_parser("card", help="EHC1 health-card credentials").add_subparsers(dest="ccmd", required=True)
    s = card.add_parser("issue", help="issue a signed EHC1 credential (a short-lived dynamic code)")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--card-id", required=True, help="pseudonymous card id, 32 hex digits")
    s.add_argument("--name", required=True)
    s.add_argument("--birth", required=True, help="YYYY-MM-DD")
    s.add_argument("--sex", required=True, choices=["F", "M", "U"])
    s.add_argument("--guardian", help="card id of the parent managing a child's card")
    s.add_argument("--status", default="green", choices=["green", "yellow", "red"])
    s.add_argument("--ttl", type=int, default=60, help="seconds the code is valid (at most 300)")
    s.add_argument("--qr", help="also write the code as a QR PNG")
    s.set_defaults(func=cmd_card_issue)

    s = sub.add_parser("lookups", help="resolve scans recorded while the card lookup was unavailable (run from a timer)")
    s.add_argument("--config", default=cfg_default)
    s.set_defaults(func=cmd_lookups)

    tr = sub.add_parser("trust", help="the signed trust list").add_subparsers(dest="trcmd", required=True)
    s = tr.add_parser("update", help="add issuers or revoke cards, sign a new version, publish it retained")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--add-dcc-cert", action="append", default=[], metavar="FILE", help="DCC signing certificate")
    s.add_argument("--add-shc-jwks", action="append", default=[], metavar="ISS=FILE", help="SMART issuer key set")
    s.add_argument("--add-ehc1-issuer", action="append", default=[], metavar="ISS=PEM", help="another EHC1 issuer")
    s.add_argument("--revoke-card", action="append", default=[], metavar="CARD_ID", help="an EHC1 card id to revoke")
    s.add_argument("--add-valueset", action="append", default=[], metavar="FILE",
                   help="an EU DCC value set (JSON as the DCC gateway publishes it); newest per id wins")
    s.add_argument("--no-publish", action="store_true", help="only sign and store the new version")
    s.set_defaults(func=cmd_trust_update)

    tok = sub.add_parser("token", help="one-time enrollment tokens").add_subparsers(dest="tcmd", required=True)
    s = tok.add_parser("create", help="a token bound to a clinic and a box serial, with its provisioning QR")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--clinic", required=True)
    s.add_argument("--serial", required=True)
    s.add_argument("--ttl", default=None, help="lifetime, e.g. 30m (default enrollment.token_ttl)")
    s.add_argument("--qr", default=None, help="also write the provisioning QR as a PNG file")
    s.add_argument("--quiet", action="store_true", help="print only the QR text")
    s.add_argument("--reenroll", action="store_true",
                   help="the serial is registered: the new enrollment replaces it and revokes its certificates")
    s.set_defaults(func=cmd_token_create)

    s = sub.add_parser("enroll-serve", help="run the HTTPS enrollment endpoint")
    s.add_argument("--config", default=cfg_default)
    s.set_defaults(func=cmd_enroll_serve)

    s = sub.add_parser("mosquitto-conf", help="write mosquitto.conf and the ACL from central.toml")
    s.add_argument("--config", default=cfg_default)
    s.set_defaults(func=cmd_mosquitto_conf)

    s = sub.add_parser("serve", help="run the ingest workers")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--workers", type=int, default=None)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("results", help="stored results as JSON lines")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--since", type=float, default=0.0, help="only results received after this epoch time")
    s.add_argument("--device", default=None)
    s.add_argument("--limit", type=int, default=None)
    s.set_defaults(func=cmd_results)

    s = sub.add_parser("stats", help="totals: results, rejections by reason, sequence gaps")
    s.add_argument("--config", default=cfg_default)
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("devices", help="registered devices: status, presence, last seen, counts, cert expiry")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--clinic", default=None, help="only this clinic's devices")
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("audit", help="boxes' audit chains: last position and head, forks, gaps (exit 1 if open)")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("device", nargs="?", default=None, help="only this device")
    s.add_argument("--open", action="store_true", help="only alerts still open")
    s.add_argument("--ack", type=int, action="append", metavar="ID",
                   help="mark an alert as dealt with (repeatable); gaps also close by themselves")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("command", help="send a command (ping, rebirth) to a box and print its signed answer")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--device", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--args", default="{}", help="arguments as a JSON object")
    s.add_argument("--timeout", type=float, default=10.0)
    s.set_defaults(func=cmd_command)

    s = sub.add_parser("dashboard", help="run the fleet dashboard (HTTPS)")
    s.add_argument("--config", default=cfg_default)
    s.set_defaults(func=cmd_dashboard)

    usr = sub.add_parser("user", help="dashboard users").add_subparsers(dest="ucmd", required=True)
    s = usr.add_parser("add", help="add or change a user (password from the terminal, or one line of stdin)")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=["viewer", "technician", "admin"])
    s.add_argument("--clinic", default=None, help="the one clinic this user sees (required for viewers)")
    s.set_defaults(func=cmd_user_add)

    dev = sub.add_parser("device", help="register or revoke a device").add_subparsers(dest="dcmd", required=True)
    s = dev.add_parser("add")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--id", required=True)
    s.add_argument("--clinic", required=True)
    s.add_argument("--cert", required=True, help="the device certificate (PEM)")
    s.set_defaults(func=cmd_device_add)
    s = dev.add_parser("revoke")
    s.add_argument("--config", default=cfg_default)
    s.add_argument("--id", required=True)
    s.set_defaults(func=cmd_device_revoke)
    return p


# Import names of the [central] extra (setup.py): absent on a box, so their commands say how to add them.
CENTRAL_ONLY_MODULES = frozenset({"starlette", "uvicorn", "jinja2", "psycopg"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ehc-central``."""
    args = build_parser().parse_args(argv)
    # Whatever a command creates (database, keys, configuration) is the owner's alone; files others must read
    # (certificates, the CRL, Mosquitto's configuration) are given their mode explicitly.
    os.umask(0o077)
    setup_logging(args.log_level, "ehc-central")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ehc-central: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in CENTRAL_ONLY_MODULES:
            raise
        print(f"ehc-central: {exc.name} is not installed: this is a box install; the central service needs "
              "scripts/install.sh --central (pip install '.[central]')", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ehc-central results | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
