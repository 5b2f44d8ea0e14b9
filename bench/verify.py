#!/usr/bin/env python3
"""Credential verification benchmark: verifications per second, one thread, through ``verify_credential``.

Cases (each a valid credential, verified in full: decoding, signature, validity periods, key usage, schema or
structure, revocation where the trust store has a list):

* ``hc1``: an EU DCC from the conformance data (``../shared/testdata/dcc``, CH/1: ES256, schema 1.3.0), with the
  DCC schemas configured;
* ``shc``: SMART Health Card example 00 (``../shared/testdata/shc``) as its numeric QR text, with the issuer's JWK
  set and revocation list.

Every case is a :class:`Case` in :data:`CASES`, so another format is one more entry. Prints the machine, per case
the median rate over ``--repeats`` timed runs and the mean µs per verification, and as its last line
``verify: ehc1=X/s hc1=Y/s shc=Z/s`` (target: ehc1 and hc1 >= 1000/s).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.credentials import TrustStore, ehc1, verify_credential  # noqa: E402
from edge.credentials.ehc1 import Card, issue  # noqa: E402
from edge.credentials.result import CredentialCheck  # noqa: E402
from edge.credentials.schemas import DccSchemas  # noqa: E402
from mqtt.trustlist import public_key_kid  # noqa: E402
from provisioning.ca import generate_key  # noqa: E402
from tests.conftest import shared_dir  # noqa: E402

SHARED = shared_dir() / "testdata"


@dataclass(frozen=True)
class Case:
    """A named credential with its trust store and verification time."""

    text: str
    trust: TrustStore
    at: datetime


def hc1_case() -> Case:
    raw = json.loads((SHARED / "dcc" / "CH" / "2DCode" / "raw" / "1.json").read_text(encoding="utf-8"))
    trust = TrustStore(DccSchemas.from_dir(SHARED / "dcc" / "schemas"))
    trust.add_dcc_certificate(b64decode(raw["TESTCTX"]["CERTIFICATE"]))
    return Case(raw["PREFIX"], trust, datetime.fromisoformat(raw["TESTCTX"]["VALIDATIONCLOCK"]))


def shc_case() -> Case:
    trust = TrustStore()
    trust.add_shc_issuer_dir("https://spec.smarthealth.cards/examples/issuer", SHARED / "shc" / "issuer")
    text = (SHARED / "shc" / "example-00-f-qr-code-numeric-value-0.txt").read_text(encoding="utf-8").strip()
    return Case(text, trust, datetime(2023, 7, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Ehc1Case:
    """An EHC1 credential with its issuer keys (offline, through :mod:`edge.credentials.ehc1`)."""

    text: str
    issuers: dict
    at: float


def ehc1_case() -> Ehc1Case:
    key = generate_key()
    card = Card(card_id="0a" * 16, name="王小明", birth_date="2019-06-01", sex="M", guardian="1b" * 16)
    now = time.time()
    return Ehc1Case(issue(card, key, "EHC-BENCH", ttl=300, now=now),
                    {public_key_kid(key.public_key()): ("EHC-BENCH", key.public_key())}, now)


CASES: dict[str, Callable[[], Case | Ehc1Case]] = {"ehc1": ehc1_case, "hc1": hc1_case, "shc": shc_case}
"""Named cases, in the order of the last line."""


def check(case: Case | Ehc1Case) -> CredentialCheck:
    """One verification of ``case``."""
    if isinstance(case, Ehc1Case):
        return ehc1.verify(case.text, case.issuers, at=case.at)
    return verify_credential(case.text, case.trust, case.at)


def rate(case: Case | Ehc1Case, seconds: float) -> float:
    """Verifications per second over about ``seconds``."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            check(case)
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.0, help="length of one timed run (default 1 s)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported (default 5)")
    args = p.parse_args()

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}, "
          f"Python {platform.python_version()}, one thread, {args.repeats} x {args.seconds:.1f} s per case")
    rates: dict[str, float] = {}
    for name, make in CASES.items():
        case = make()
        first = check(case)
        if not first.valid:
            print(f"{name}: the benchmark credential does not verify ({first.reason})", file=sys.stderr)
            return 1
        for _ in range(200):  # warm up caches
            check(case)
        runs = [rate(case, args.seconds) for _ in range(args.repeats)]
        rates[name] = statistics.median(runs)
        print(f"{name}: {rates[name]:.0f} verifications/s (runs {', '.join(f'{r:.0f}' for r in runs)}), "
              f"{1e6 / rates[name]:.0f} us each, {len(case.text)} characters")
    print("verify: " + " ".join(f"{name}={value:.0f}/s" for name, value in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
