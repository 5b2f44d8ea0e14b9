"""``ehc-edge verify``: verify one credential text and print the verdict as one JSON object.

    ehc-edge verify [--trust FILE --central-key PEM | --config edge.toml] [--trust-cert CERT]...
                    [--trust-jwks ISS=FILE]... [--ehc1-issuer ISS=PEM]... [--schemas DIR] [--valueset FILE]...
                    [--at ISO8601] TEXT

The JSON holds ``valid``, ``format``, ``reason``, ``checks`` (``signature``, ``expiry``, ``key_usage``,
``schema``, ``value_set``, ``revocation`` where they apply) and ``kid``, plus ``detail`` (what a failed check
found) and ``unknown_codes`` (the DCC fields a value set refused, with the value set's id, date and source) when
there are any; never the holder's claims. Exit status 0 when valid, 1 when not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from edge import config as edge_config
from edge.boxfiles import load_central_key
from edge.credentials import TrustStore, ehc1, verify_credential
from edge.credentials.result import CredentialCheck
from foundation.cliargs import parse_pairs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehc-edge verify", description="verify a credential (EHC1:, HC1:, shc:/)")
    p.add_argument("text", help="the credential text as scanned (use - to read it from standard input)")
    p.add_argument("--trust", help="a signed trust list (trust-list.cose)")
    p.add_argument("--central-key", help="the central signing public key (PEM) the trust list must verify with")
    p.add_argument("--config", help="a box's edge.toml: its trust list and central key")
    p.add_argument("--trust-cert", action="append", default=[], help="a DCC signing certificate (PEM or DER)")
    p.add_argument("--trust-jwks", action="append", default=[], metavar="ISS=FILE", help="a SMART issuer key set")
    p.add_argument("--ehc1-issuer", action="append", default=[], metavar="ISS=PEM", help="an EHC1 issuer public key")
    p.add_argument("--schemas", help="folder of the EU DCC JSON schemas (schema check skipped without)")
    p.add_argument("--valueset", action="append", default=[], metavar="FILE",
                   help="a newer EU DCC value set (JSON as the DCC gateway publishes it) than the shipped one")
    p.add_argument("--at", help="verification time, ISO 8601 (default: now)")
    return p


def verify_main(argv: list[str]) -> int:
    """Entry point of ``ehc-edge verify``."""
    args = _parser().parse_args(argv)
    text = sys.stdin.read().strip() if args.text == "-" else args.text
    try:
        at = dt.datetime.fromisoformat(args.at) if args.at else dt.datetime.now(dt.UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        result = _verify(text, args, at)
    except (OSError, ValueError) as exc:
        print(f"ehc-edge verify: {exc}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"valid": result.valid, "format": result.format, "reason": result.reason,
                           "checks": result.checks, "kid": result.kid}
    if result.missing_chunks:
        out["missing_chunks"] = list(result.missing_chunks)
    if result.detail:
        out["detail"] = result.detail
    if result.unknown_codes:
        out["unknown_codes"] = [u.as_dict() for u in result.unknown_codes]
    print(json.dumps(out))
    return 0 if result.valid else 1


def _verify(text: str, args: argparse.Namespace, at: dt.datetime) -> CredentialCheck:
    from edge.credentials.schemas import DccSchemas
    from edge.credentials.valuesets import ValueSet
    from foundation import keyfiles
    from mqtt.trustlist import public_key_kid

    trust_list = _trust_list(args)
    issuers: dict[str, Any] = dict(trust_list.ehc1_keys()) if trust_list else {}
    for iss, path in parse_pairs(args.ehc1_issuer, "--ehc1-issuer").items():
        key = keyfiles.load_public_key(path)
        issuers[public_key_kid(key)] = (iss, key)
    if text.startswith(ehc1.PREFIX):
        revoked = trust_list.revoked_cards if trust_list else frozenset()
        return ehc1.verify(text, issuers, revoked, at=at.timestamp())
    schemas = DccSchemas.from_dir(Path(args.schemas)) if args.schemas else None
    store = TrustStore.from_trust_list(trust_list, schemas) if trust_list else TrustStore(schemas)
    for cert in args.trust_cert:
        store.add_dcc_certificate_file(Path(cert))
    for iss, path in parse_pairs(args.trust_jwks, "--trust-jwks").items():
        store.add_shc_jwks(iss, path.read_bytes())
    for path in args.valueset:
        store.dcc_value_sets.offer(ValueSet.from_upstream(json.loads(Path(path).read_text(encoding="utf-8")), path))
    return verify_credential(text, store, at)


def _trust_list(args: argparse.Namespace) -> Any:
    if not (args.trust or args.config):
        return None
    from foundation import keyfiles
    from mqtt.trustlist import TrustListInvalid, open_signed

    if args.config:
        cfg = edge_config.load(args.config)
        path, central = Path(args.trust) if args.trust else cfg.trust_path, load_central_key(cfg)
    else:
        if not args.central_key:
            raise ValueError("--trust needs --central-key (or --config) to check the list's signature")
        path, central = Path(args.trust), keyfiles.load_public_key(Path(args.central_key))
    try:
        return open_signed(path.read_bytes(), central)
    except TrustListInvalid as exc:
        raise ValueError(f"{path}: {exc}") from None
