"""``ehc-provision``: make the device key on the box and a certificate request for enrollment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from provisioning import ca


def cmd_keygen(args: argparse.Namespace) -> int:
    key_path = Path(args.key)
    try:
        ca.write_private_key(key_path, ca.generate_key())
    except ca.KeyExists as exc:
        if not args.reuse:
            print(f"ehc-provision: {exc} (use --reuse to make a CSR for it)", file=sys.stderr)
            return 1
    csr = ca.make_csr(ca.load_private_key(key_path), args.device_id)
    Path(args.csr).write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    print(f"key {key_path} (0600), CSR {args.csr} for {args.device_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ehc-provision``."""
    p = argparse.ArgumentParser(prog="ehc-provision", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("keygen", help="create the device key (never leaves the box) and a CSR")
    s.add_argument("--device-id", required=True)
    s.add_argument("--key", default="/etc/ehc-edge/credentials/device.key",
                   help="where the key is written (0600); the units load it with LoadCredential=")
    s.add_argument("--csr", default="/etc/ehc-edge/device.csr")
    s.add_argument("--reuse", action="store_true", help="keep an existing key")
    s.set_defaults(func=cmd_keygen)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
