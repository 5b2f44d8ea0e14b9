"""``ehc-edge idcard``: technician commands for the ID card reader.

``ehc-edge idcard read --port DEV [--timeout S] [--fingerprint]`` waits for a card, reads it once and prints
one JSON object: every card field, the photo (and fingerprint) as length and SHA-256 only, and the
validation result. Exit status: 0 card read and its number valid, 1 card read but its number invalid,
2 usage error, 3 no card within the timeout, 4 reader error (port, SAM). Errors go to stderr; the card's
content goes to stdout only, never to the log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from drivers.idcard.codec import IdCardError
from drivers.idcard.reader import IdCardReader, ReaderTimeout, list_ports
from drivers.idcard.validate import validate_card

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_NO_CARD, EXIT_READER = 0, 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehc-edge idcard", description="ID card reader (SAM, serial) tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("read", help="wait for a card, read it once, print it as JSON")
    ports = list_ports()
    s.add_argument("--port", required=not ports, default=ports[0] if len(ports) == 1 else None,
                   help="serial device; prefer a /dev/serial/by-id/ path (default: the only one present)")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a card (default 10)")
    s.add_argument("--fingerprint", action="store_true", help="also read fingerprint data (command 30 10)")
    return p


def cmd_read(args: argparse.Namespace) -> int:
    if not args.port:
        print("ehc-edge idcard: several serial ports present, choose one with --port", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout <= 0:
        print("ehc-edge idcard: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        with IdCardReader(args.port, fingerprint=args.fingerprint) as reader:
            sam_id = reader.sam_id()
            card = reader.wait_for_card(args.timeout)
    except ReaderTimeout as exc:
        print(f"ehc-edge idcard: {exc}", file=sys.stderr)
        return EXIT_NO_CARD
    except IdCardError as exc:
        print(f"ehc-edge idcard: reader error: {exc}", file=sys.stderr)
        return EXIT_READER
    result = validate_card(card)
    out = card.to_dict()
    out["sam_id"] = sam_id
    out["validation"] = result.to_dict()
    print(json.dumps(out, ensure_ascii=False))
    return EXIT_OK if result.valid else EXIT_INVALID


def idcard_main(argv: list[str]) -> int:
    """Run ``ehc-edge idcard …`` with ``argv`` (the words after ``idcard``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    if args.cmd == "read":
        return cmd_read(args)
    return EXIT_USAGE  # pragma: no cover - argparse enforces the sub-command


if __name__ == "__main__":
    sys.exit(idcard_main(sys.argv[1:]))
