"""EU DCC conformance: every case of upstream's dgc-testdata (``../shared/testdata/dcc``) against our verifier.

For each case the signer from ``TESTCTX.CERTIFICATE`` is the only trusted key, the clock is
``TESTCTX.VALIDATIONCLOCK``, and each ``EXPECTED*`` flag present is compared with what our code says about that
step (:mod:`tests.support.dcc_cases`). A disagreement must be listed, with its reason, in ``tests/data/dcc_waivers.csv``;
a waiver that no longer disagrees fails too. ``bench/dcc_conformance.py`` prints the agreement per country.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.credentials.schemas import DccSchemas
from tests.support.dcc_cases import CASES, DCC, SHARED, Case, case_id, load_waivers

if not SHARED.is_dir():
    pytest.skip(f"shared test data folder not found: {SHARED} (set EHC_SHARED_DIR)", allow_module_level=True)


@pytest.fixture(scope="module")
def schemas() -> DccSchemas:
    return DccSchemas.from_dir(DCC / "schemas")


def test_the_conformance_data_is_there() -> None:
    assert len(CASES) >= 170, f"expected the dgc-testdata cases under {DCC}"


@pytest.mark.parametrize("path", CASES, ids=[case_id(p) for p in CASES])
def test_case_agrees_with_upstream_or_is_waived(path: Path, schemas: DccSchemas) -> None:
    case = Case(path, schemas)
    differ, _ = case.disagreements()
    cid = case_id(path)
    waived = {flag for (c, flag) in load_waivers() if c == cid}
    unexplained = differ - waived
    stale = waived - differ
    assert not unexplained, (f"{cid}: we disagree with upstream on {sorted(unexplained)} "
                             f"(ours: reason={case.result.reason}, checks={case.result.checks})")
    assert not stale, f"{cid}: waived {sorted(stale)} but we now agree with upstream: drop the waiver"


def test_every_waiver_names_an_existing_case_and_flag() -> None:
    ids = {case_id(p): p for p in CASES}
    for (cid, flag), _reason in load_waivers().items():
        assert cid in ids, f"waiver for a case that does not exist: {cid}"
        expected = json.loads(ids[cid].read_text(encoding="utf-8")).get("EXPECTEDRESULTS", {})
        assert flag in expected, f"waiver for {cid}/{flag}, a flag the case does not set"


def test_most_flags_are_evaluated(schemas: DccSchemas) -> None:
    """Only flags whose input the case lacks (a PNG renamed or left out upstream) go untested."""
    untested = {}
    for path in CASES:
        _, missing = Case(path, schemas).disagreements()
        if missing:
            untested[case_id(path)] = missing
    assert {flag for flags in untested.values() for flag in flags} <= {"EXPECTEDPICTUREDECODE"}, untested
    assert len(untested) <= 25, untested


def test_valid_cases_yield_claims(schemas: DccSchemas) -> None:
    path = DCC / "CH" / "2DCode" / "raw" / "1.json"
    case = Case(path, schemas)
    assert case.result.valid and case.result.format == "hc1"
    claims = case.result.claims
    assert claims["type"] == "v" and claims["issuer"] == "CH" and claims["kid"] == case.result.kid
    assert claims["name"] and claims["birth_date"] and claims["doses"]
    assert claims["name"] not in repr(case.result) and claims["birth_date"] not in repr(case.result)
