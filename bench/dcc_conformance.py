#!/usr/bin/env python3
"""EU DCC conformance per country: how often our verifier agrees with upstream's dgc-testdata.

Runs every case of ``../shared/testdata/dcc`` (each with its own signer as the only trusted key, at its validation
clock, with the DCC schemas and the shipped value sets) and compares every ``EXPECTED*`` flag the case sets with
what our code says about that step (:mod:`tests.support.dcc_cases`). Prints per country: cases, cases agreeing on every
flag, flags agreeing / flags evaluated, flags waived (``tests/data/dcc_waivers.csv``, upstream's own known
issues), and the cases upstream expects to verify that the value-set check refuses, with the field, the code and the
value set with its date. The last line is ``dcc_conformance: agree=A/T flags, C/N cases``.

    .venv/bin/python bench/dcc_conformance.py [--country CH] [--details]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from edge.credentials.schemas import DccSchemas  # noqa: E402
from tests.support.dcc_cases import CASES, DCC, Case, case_id, load_waivers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--country", help="only this folder (e.g. CH, or common)")
    parser.add_argument("--details", action="store_true", help="list every disagreement")
    args = parser.parse_args(argv)
    if not CASES:
        print(f"no conformance cases under {DCC} (set EHC_SHARED_DIR)", file=sys.stderr)
        return 2
    schemas = DccSchemas.from_dir(DCC / "schemas")
    waivers = load_waivers()
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    notes: list[str] = []
    for path in CASES:
        cid = case_id(path)
        country = cid.split("/")[0]
        if args.country and country != args.country:
            continue
        case = Case(path, schemas)
        row = rows[country]
        row["cases"] += 1
        all_agree = True
        for flag, (expected, ours) in case.compare().items():
            if ours is None:
                row["untested"] += 1
                continue
            row["flags"] += 1
            if ours == expected:
                row["agree"] += 1
                continue
            all_agree = False
            waived = (cid, flag) in waivers
            row["waived"] += waived
            if args.details or not waived:
                notes.append(f"  {cid} {flag}: upstream {expected}, ours {ours}"
                             f"{' (waived)' if waived else ''} reason={case.result.reason}")
        row["agree_cases"] += all_agree
        if case.result.unknown_codes and case.data.get("EXPECTEDRESULTS", {}).get("EXPECTEDVERIFY"):
            row["value_set"] += 1
            notes.extend(f"  {cid} value_set: {u.describe()}" for u in case.result.unknown_codes)

    print(f"{'country':8} {'cases':>5} {'cases agree':>11} {'flags agree':>12} {'waived':>6} {'untested':>8} "
          f"{'value_set refused':>17}")
    total: dict[str, int] = defaultdict(int)
    for country in sorted(rows):
        row = rows[country]
        for key, value in row.items():
            total[key] += value
        print(f"{country:8} {row['cases']:>5} {row['agree_cases']:>5}/{row['cases']:<5} "
              f"{row['agree']:>6}/{row['flags']:<5} {row['waived']:>6} {row['untested']:>8} {row['value_set']:>17}")
    print(f"{'all':8} {total['cases']:>5} {total['agree_cases']:>5}/{total['cases']:<5} "
          f"{total['agree']:>6}/{total['flags']:<5} {total['waived']:>6} {total['untested']:>8} {total['value_set']:>17}")
    if notes:
        print("disagreements and value-set refusals of cases upstream expects to verify:")
        print("\n".join(notes))
    print(f"dcc_conformance: agree={total['agree']}/{total['flags']} flags, "
          f"{total['agree_cases']}/{total['cases']} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
