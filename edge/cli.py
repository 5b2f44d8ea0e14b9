"""``ehc-edge``: box daemons and technician tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge import config as edge_config
from foundation.configbase import ConfigError
from foundation.logs import setup_logging


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = edge_config.load(args.file)
    if args.keys:
        from edge.boxfiles import load_identity

        try:
            load_identity(cfg)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.file}: device key/certificate: {exc}") from None
    print(f"{args.file}: ok")
    return 0


def cmd_uplink(args: argparse.Namespace) -> int:
    from edge.daemons import run_uplink

    cfg = edge_config.load(args.config)
    setup_logging(args.log_level or cfg.logging.level, "ehc-uplink")
    return run_uplink(cfg, Path(args.config))


def cmd_station(args: argparse.Namespace) -> int:
    from edge.daemons import run_station

    cfg = edge_config.load(args.config)
    setup_logging(args.log_level or cfg.logging.level, "ehc-station")
    return run_station(cfg)


def cmd_outbox(args: argparse.Namespace) -> int:
    from edge.boxfiles import open_outbox

    cfg = edge_config.load(args.config)
    box = open_outbox(cfg, None)
    st = box.stats()
    print(json.dumps({"depth": st.depth, "bytes": st.bytes, "fill": round(st.fill, 4),
                      "oldest_age_s": st.oldest_age, "boot": st.boot}))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """``audit verify``: recompute the box's audit chain (exit 1 at a broken link); ``audit show``: last entries."""
    from edge.boxfiles import open_outbox

    box = open_outbox(edge_config.load(args.config), None)
    try:
        if args.action == "show":
            for e in box.audit_tail(args.last):
                print(json.dumps({"pos": e.pos, "ts_ms": e.ts_ms, "kind": e.kind, "hash": e.hash.hex()}))
            return 0
        found = box.audit_verify()
    finally:
        box.close()
    print(json.dumps({"ok": found.ok, "entries": found.entries, "head_pos": found.head_pos, "head": found.head,
                      "broken_at": found.broken_at, "problem": found.problem}))
    return 0 if found.ok else 1


def cmd_decode(args: argparse.Namespace) -> int:
    """One JSON line per image: the codes found, their positions and the time taken."""
    import time

    from drivers.camera import IMAGE_SUFFIXES, CameraError, load_image
    from edge.scanner import STILL_IMAGE, DecodeOptions, FrameScanner
    from edge.symbology import ALL_SYMBOLOGIES, Symbology

    symbologies = frozenset(Symbology(s) for s in args.formats) if args.formats else ALL_SYMBOLOGIES
    options = DecodeOptions(symbologies=symbologies, track=False) if args.fast else \
        DecodeOptions(symbologies=symbologies, track=False, thorough=True, fallback=STILL_IMAGE.fallback)
    scanner = FrameScanner(options)
    failed = 0
    for name in args.images:
        path = Path(name)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        for file in files:
            try:
                frame = load_image(file)
            except CameraError as exc:
                failed += 1
                print(json.dumps({"file": str(file), "error": str(exc)}, ensure_ascii=False), flush=True)
                continue
            started = time.perf_counter()
            codes = scanner.decode(frame)
            ms = (time.perf_counter() - started) * 1000.0
            print(json.dumps({"file": str(file), "codes": [c.as_json() for c in codes], "ms": round(ms, 2)},
                             ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _verify_tool(argv: list[str]) -> int:
    from edge.credentials.cli import verify_main

    return verify_main(argv)


def _idcard_tool(argv: list[str]) -> int:
    from drivers.idcard.cli import idcard_main

    return idcard_main(argv)


def _face_tool(argv: list[str]) -> int:
    from edge.face.cli import face_main

    return face_main(argv)


def _status_tool(argv: list[str]) -> int:
    from edge.appliance.status_screen import status_main

    return status_main(argv)


def _retention_tool(argv: list[str]) -> int:
    from edge.appliance.retention import retention_main

    return retention_main(argv)


def _logs_tool(argv: list[str]) -> int:
    from edge.appliance.logrotate import logs_main

    return logs_main(argv)


def _install_tool(argv: list[str]) -> int:
    from edge.appliance.install import install_main

    return install_main(argv)


def _uninstall_tool(argv: list[str]) -> int:
    from edge.appliance.install import uninstall_main

    return uninstall_main(argv)


def _ocr_tool(argv: list[str]) -> int:
    from edge.reports.cli import ocr_main

    return ocr_main(argv)


TOOLS = {"install": _install_tool, "uninstall": _uninstall_tool, "verify": _verify_tool, "idcard": _idcard_tool, "face": _face_tool, "status": _status_tool,
         "retention": _retention_tool, "logs": _logs_tool, "ocr": _ocr_tool}


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.site import run_demo

    return run_demo(frames=args.frames, workdir=Path(args.dir) if args.dir else None, keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehc-edge", description=__doc__)
    p.add_argument("--log-level", default=None, help="override the configured level (default: WARNING for tools)")
    sub = p.add_subparsers(dest="cmd", required=True)
    default = str(edge_config.DEFAULT_PATH)

    s = sub.add_parser("check-config", help="validate an edge.toml; exit non-zero naming the bad key")
    s.add_argument("file")
    s.add_argument("--keys", action="store_true", help="also load the device key and certificate")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("uplink", help="run the uplink daemon (outbox -> MQTT)")
    s.add_argument("--config", default=default)
    s.set_defaults(func=cmd_uplink)

    s = sub.add_parser("station", help="run the scanning station daemon")
    s.add_argument("--config", default=default)
    s.set_defaults(func=cmd_station)

    s = sub.add_parser("outbox", help="outbox depth, size and oldest message age")
    s.add_argument("--config", default=default)
    s.set_defaults(func=cmd_outbox)

    s = sub.add_parser("audit", help="audit verify: recompute the box's audit chain (exit 1 at the first broken "
                                     "link); audit show: the last entries")
    s.add_argument("action", choices=["verify", "show"])
    s.add_argument("--config", default=default)
    s.add_argument("--last", type=int, default=20, help="entries shown by 'show'")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("decode", help="decode barcodes in images: one JSON line per image (exit 0 if none found)")
    s.add_argument("images", nargs="+", help="image files or folders of images")
    s.add_argument("--formats", nargs="+", choices=["QRCode", "Code128", "Code39", "EAN13", "DataMatrix"],
                   help="symbologies to look for (default: all)")
    s.add_argument("--fast", action="store_true", help="the camera loop's effort instead of every retry")
    s.set_defaults(func=cmd_decode)

    sub.add_parser("verify", help="verify a credential (EHC1:, HC1:, shc:/) and print the verdict as JSON")
    sub.add_parser("idcard", help="ID card reader tools: idcard read --port DEV [--timeout S]")
    sub.add_parser("face", help="face verification: face compare A B; face verify --video CLIP --reference PHOTO; "
                                "face enroll")
    sub.add_parser("status", help="one screen for a technician; exit 1 when something needs attention")
    sub.add_parser("retention", help="delete printed tickets, finished tubes and stale files")
    sub.add_parser("logs", help="logs rotate [--keep-days N]: rotate the journal, drop old entries (as root)")
    sub.add_parser("install", help="install the box's services, user and venv (idempotent; as root)")
    sub.add_parser("uninstall", help="remove the box's services (--purge: also keys, outbox, configuration)")
    sub.add_parser("ocr", help="read photos of medical reports: ocr IMAGE... (one JSON object per image)")

    s = sub.add_parser("demo", help="a simulated clinic station end to end: broker, central, one box")
    s.add_argument("--frames", type=int, default=120, help="camera frames to scan")
    s.add_argument("--dir", default=None, help="keep the site in this folder (default: a temporary one)")
    s.add_argument("--keep", action="store_true", help="do not delete the temporary folder")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ehc-edge``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:  # tools with their own argument parsers (so that --help reaches them)
        setup_logging("WARNING", "ehc-edge")
        try:
            return TOOLS[argv[0]](argv[1:])
        except ConfigError as exc:
            print(f"ehc-edge: invalid configuration:\n{exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "WARNING", "ehc-edge")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ehc-edge: invalid configuration:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
