#!/usr/bin/env python3
"""Chaos benchmark: every fault scenario of ``tests/support/faults.py`` at a larger scale, with a table of counts.

For each scenario a fresh site is laid out (real Mosquitto, ``ehc-central serve``, per box a producer
process committing signed results and the real ``ehc-edge uplink``), the faults are applied while the
results flow, and once the outboxes are empty the producers' committed ids are compared with the store:
produced, delivered, stored, duplicates (extra rows for one produced result, plus quarantined rows), lost.

Last line: ``chaos: scenarios=S produced=P stored=P duplicates=0 lost=0``; exit status 0 only when every
scenario delivered everything exactly once.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from tests.support.faults import SCENARIOS, PgCluster, Rig, RigOptions, Tally, run_scenario  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boxes", type=int, default=4)
    p.add_argument("--results", type=int, default=3000, help="results per box")
    p.add_argument("--rate", type=float, default=300.0, help="results per second per box")
    p.add_argument("--batch", type=int, default=20, help="results per outbox transaction")
    p.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per scenario")
    p.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    p.add_argument("--keep", action="store_true", help="keep the working folders (logs, databases)")
    args = p.parse_args()

    names = args.only or list(SCENARIOS)
    skipped = []
    if not PgCluster.available():
        skipped.append(("database_down", "no PostgreSQL server binaries"))
    if not Rig.can_mount():
        skipped.append(("disk_full", "cannot mount a tmpfs (needs root)"))
    names = [n for n in names if n not in dict(skipped)]
    opts = RigOptions(boxes=args.boxes, results=args.results, batch=args.batch, rate=args.rate,
                      workers=args.workers, timeout=args.timeout)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"setup: {args.boxes} boxes x {args.results} results at {args.rate:.0f}/s each, outbox batch {args.batch}, "
          f"{args.workers} ingest workers; SQLite store except database_down (private PostgreSQL cluster)")
    tallies: list[Tally] = []
    failed: list[str] = []
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"ehc-chaos-{name}-"))
        try:
            t = run_scenario(name, work, opts)
        except Exception as exc:  # a scenario that cannot finish is a failure, the others still run
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
            continue
        finally:
            if args.keep:
                print(f"{name}: working folder kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        tallies.append(t)
        print(f"{name}: {SCENARIOS[name].description}", flush=True)
        for e in t.events:
            print(f"    {e}")
    for name, why in skipped:
        print(f"{name}: skipped ({why})")

    print()
    print("| scenario | produced | delivered | stored | duplicates | lost | refused (not produced) | in doubt, stored "
          "| time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in tallies:
        print(f"| {t.scenario} | {t.produced} | {t.delivered} | {t.stored} | {t.duplicates} | {t.lost} | {t.refused} "
              f"| {t.in_doubt_stored} | {t.seconds:.1f} s |")
    produced = sum(t.produced for t in tallies)
    stored = sum(t.stored for t in tallies)
    dups = sum(t.duplicates for t in tallies)
    lost = sum(t.lost for t in tallies)
    ok = not failed and all(t.ok for t in tallies)
    print()
    print(f"chaos: scenarios={len(tallies)} produced={produced} stored={stored} duplicates={dups} lost={lost}")
    return 0 if ok else 1


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(total {time.monotonic() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
