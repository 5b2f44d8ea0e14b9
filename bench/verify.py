#!/usr/bin/env python3
"""Credential verification benchmark: verifications per second, one thread, through ``verify_credential``.

Cases (each a valid credential, verified in full: decoding, signature, validity periods, key usage, schema or
structure, revocation where the trust store has a list):

* ``hc1``: an EU DCC from the conformance data (``../shared/testdata/dcc``, CH/1: ES256, schema 1.3.0), with the
  DCC schemas configured and the shipped value sets checked;
* ``hc1_novs``: the same without value sets, the peer that prices the value-set check in the same run;
* ``shc``: SMART Health Card example 00 (``../shared/testdata/shc``) as its numeric QR text, with the issuer's JWK
  set and revocation list.

Every case is a :class:`Case` in :data:`CASES`, so another format is one more entry. The timed runs of the cases
are interleaved (run 1 of every case, then run 2, ...) so that a load change on the machine hits all of them. Prints
the machine, per case the median rate over ``--repeats`` timed runs (per wall-clock second, and per CPU second of
the process) and the mean µs per verification, the CPU cost of the value-set check alone and the ratio
hc1 / hc1_novs, and as its last line ``verify: ehc1=X/s hc1=Y/s shc=Z/s hc1_novs=W/s`` (target: ehc1 and hc1
>= 1000/s).
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
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from edge.credentials import TrustStore, ehc1, verify_credential  # noqa: E402
from edge.credentials.ehc1 import Card, issue  # noqa: E402
from edge.credentials.result import CredentialCheck  # noqa: E402
from edge.credentials.schemas import DccSchemas  # noqa: E402
from edge.credentials.valuesets import DccValueSets  # noqa: E402
from foundation.keyfiles import generate_key  # noqa: E402
from mqtt.trustlist import public_key_kid  # noqa: E402
from tests.conftest import shared_dir  # noqa: E402

SHARED = shared_dir() / "testdata"


@dataclass(frozen=True)
class Case:
    """A named credential with its trust store and verification time."""

    text: str
    trust: TrustStore
    at: datetime


def hc1_case(value_sets: DccValueSets | None = None) -> Case:
    raw = json.loads((SHARED / "dcc" / "CH" / "2DCode" / "raw" / "1.json").read_text(encoding="utf-8"))
    trust = TrustStore(DccSchemas.from_dir(SHARED / "dcc" / "schemas"), value_sets)
    trust.add_dcc_certificate(b64decode(raw["TESTCTX"]["CERTIFICATE"]))
    return Case(raw["PREFIX"], trust, datetime.fromisoformat(raw["TESTCTX"]["VALIDATIONCLOCK"]))


def hc1_without_value_sets_case() -> Case:
    return hc1_case(DccValueSets())


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


CASES: dict[str, Callable[[], Case | Ehc1Case]] = {"ehc1": ehc1_case, "hc1": hc1_case, "shc": shc_case,
                                                   "hc1_novs": hc1_without_value_sets_case}
"""Named cases, in the order of the last line."""


def check(case: Case | Ehc1Case) -> CredentialCheck:
    """One verification of ``case``."""
    if isinstance(case, Ehc1Case):
        return ehc1.verify(case.text, case.issuers, at=case.at)
    return verify_credential(case.text, case.trust, case.at)


def rate(case: Case | Ehc1Case, seconds: float) -> tuple[float, float]:
    """Verifications per second over about ``seconds``: per wall-clock second and per CPU second of this process
    (the second is the steadier figure on a machine other work is loading)."""
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(50):
            check(case)
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), n / max(time.process_time() - cpu, 1e-9)


def value_set_check_us(case: Case, calls: int = 20_000) -> float:
    """CPU µs of the value-set check alone on the case's payload."""
    from edge.credentials import hc1

    payload = hc1.decode(case.text).cert.payload
    sets = case.trust.dcc_value_sets
    start = time.process_time()
    for _ in range(calls):
        sets.check(payload)
    return (time.process_time() - start) / calls * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.0, help="length of one timed run (default 1 s)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported (default 5)")
    args = p.parse_args()

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}, "
          f"Python {platform.python_version()}, one thread, {args.repeats} x {args.seconds:.1f} s per case")
    cases = {name: make() for name, make in CASES.items()}
    for name, case in cases.items():
        first = check(case)
        if not first.valid:
            print(f"{name}: the benchmark credential does not verify ({first.reason})", file=sys.stderr)
            return 1
        for _ in range(200):  # warm up caches
            check(case)
    runs: dict[str, list[float]] = {name: [] for name in cases}
    cpu_runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            wall, cpu = rate(case, args.seconds)
            runs[name].append(wall)
            cpu_runs[name].append(cpu)
    rates = {name: statistics.median(values) for name, values in runs.items()}
    cpu_rates = {name: statistics.median(values) for name, values in cpu_runs.items()}
    for name, case in cases.items():
        print(f"{name}: {rates[name]:.0f} verifications/s (runs {', '.join(f'{r:.0f}' for r in runs[name])}), "
              f"{1e6 / rates[name]:.0f} us each, {len(case.text)} characters; {cpu_rates[name]:.0f} per CPU second")
    alone = value_set_check_us(cases["hc1"])  # type: ignore[arg-type]
    print(f"value-set check: {alone:.1f} us CPU alone, {alone * cpu_rates['hc1'] / 1e4:.2f} % of an hc1 "
          f"verification; hc1 / hc1_novs = {rates['hc1'] / rates['hc1_novs']:.3f} wall, "
          f"{cpu_rates['hc1'] / cpu_rates['hc1_novs']:.3f} CPU")
    print("verify: " + " ".join(f"{name}={value:.0f}/s" for name, value in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
