"""EU DCC conformance: every case of upstream's dgc-testdata (``../shared/testdata/dcc``) against our verifier.

For each case the signer from ``TESTCTX.CERTIFICATE`` is the only trusted key, the clock is
``TESTCTX.VALIDATIONCLOCK``, and each ``EXPECTED*`` flag present is compared with what our code says about that
step (see upstream's README in the dcc folder for the flags). A disagreement must be listed, with its reason, in
``tests/data/dcc_waivers.csv``; a waiver that no longer disagrees fails too.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from edge.credentials import CredentialCheck, CredentialError, Reason, TrustStore, verify_credential
from edge.credentials import codecs, hc1
from edge.credentials.schemas import DccSchemas
from edge.scanner import decode_image
from tests.conftest import shared_dir

SHARED = shared_dir()
DCC = SHARED / "testdata" / "dcc"
WAIVERS = Path(__file__).resolve().parent / "data" / "dcc_waivers.csv"

if not SHARED.is_dir():
    pytest.skip(f"shared test data folder not found: {SHARED} (set EHC_SHARED_DIR)", allow_module_level=True)

CASES = sorted(DCC.glob("*/2DCode/raw/*.json"))

IGNORED_FLAGS = {
    "EXPTECTEDEXPIRED": "misspelt flag (BG 1-4, ES 201-203) that no step of upstream's README defines",
    "EXPECTEDRESULTS": "a copy of the EXPECTEDRESULTS key nested inside it by mistake (ES 1001-1003)",
}

_PREFIX_REASONS = {Reason.UNSUPPORTED_FORMAT, Reason.BAD_PREFIX}
_B45_REASONS = _PREFIX_REASONS | {Reason.BAD_BASE45}
_ZLIB_REASONS = _B45_REASONS | {Reason.BAD_ZLIB, Reason.TOO_LARGE}


def case_id(path: Path) -> str:
    """``<country or common>/<file stem>``, as in the waiver file."""
    return f"{path.parts[-4]}/{path.stem}"


def parse_clock(text: str) -> datetime:
    """Upstream's VALIDATIONCLOCK forms: Z or ±hh[:]mm or none (UTC), up to 7 fraction digits."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def cbor_field_payload(hex_text: str) -> dict[str, Any]:
    """The certificate payload in a case's CBOR field (either the CWT claims or the DCC map itself), decoded by our
    own bounded decoders."""
    data = binascii.unhexlify(hex_text)
    obj = codecs.cbor_loads(data, Reason.BAD_CBOR)
    if isinstance(obj, dict) and -260 in obj:
        return hc1.parse_cwt(data).payload
    return codecs.to_json_value(obj, Reason.BAD_CBOR)


class Case:
    """One upstream case, verified once; each ``flag_*`` method says whether that step succeeds for us (None when
    the case lacks the input the step needs)."""

    def __init__(self, path: Path, schemas: DccSchemas) -> None:
        self.path = path
        self.data = json.loads(path.read_text(encoding="utf-8"))
        ctx = self.data["TESTCTX"]
        trust = TrustStore(schemas)
        if ctx.get("CERTIFICATE"):
            trust.add_dcc_certificate(base64.b64decode(ctx["CERTIFICATE"]))
        self.schemas = schemas
        self.result: CredentialCheck = verify_credential(self.data["PREFIX"], trust, parse_clock(ctx["VALIDATIONCLOCK"]))

    def _json(self) -> Any:
        return self.data.get("JSON")

    def _chain_payload(self) -> dict[str, Any] | None:
        try:
            return hc1.decode(self.data["PREFIX"]).cert.payload
        except CredentialError:
            return None

    def flag_unprefix(self) -> bool:
        if self.result.reason in _PREFIX_REASONS:
            return False
        return "BASE45" not in self.data or hc1.unprefix(self.data["PREFIX"]) == self.data["BASE45"]

    def flag_b45decode(self) -> bool:
        if self.result.reason in _B45_REASONS:
            return False
        if "COMPRESSED" not in self.data:
            return True
        return codecs.b45decode(hc1.unprefix(self.data["PREFIX"])).hex() == self.data["COMPRESSED"].lower()

    def flag_compression(self) -> bool:
        if "COMPRESSED" in self.data:  # the step's own input
            try:
                inflated = codecs.inflate(binascii.unhexlify(self.data["COMPRESSED"]))
            except CredentialError:
                return False
            return "COSE" not in self.data or inflated.hex() == self.data["COSE"].lower()
        return self.result.reason not in _ZLIB_REASONS

    def flag_decode(self) -> bool:
        if "CBOR" in self.data:
            try:
                payload: Any = cbor_field_payload(self.data["CBOR"])
            except CredentialError:
                return False
        else:
            payload = self._chain_payload()
        return payload is not None and (self._json() is None or payload == self._json())

    def flag_encode(self) -> bool | None:
        if "CBOR" not in self.data or self._json() is None:
            return None
        try:
            return cbor_field_payload(self.data["CBOR"]) == self._json()
        except CredentialError:
            return False

    def flag_validjson(self) -> bool | None:
        if self._json() is None:
            return None
        return self.result.checks.get("decode") is True and self._chain_payload() == self._json()

    def flag_verify(self) -> bool:
        return self.result.checks.get("signature") is True

    def flag_expirationcheck(self) -> bool:
        return self.result.checks.get("expiry") is True

    def flag_keyusage(self) -> bool:
        return self.result.checks.get("key_usage") is True

    def flag_schemavalidation(self) -> bool:
        return self.result.checks.get("schema") is True

    def flag_validobject(self) -> bool | None:
        obj = self._json()
        if obj is None:
            obj = self._chain_payload()
        return None if obj is None else isinstance(obj, dict) and self.schemas.check(obj).ok

    def flag_picturedecode(self) -> bool | None:
        if "2DCODE" not in self.data:
            return None
        try:
            image = Image.open(io.BytesIO(base64.b64decode(self.data["2DCODE"])))
            gray = np.asarray(image.convert("L"))
        except (UnidentifiedImageError, OSError, ValueError, binascii.Error):
            return False
        return [c.text for c in decode_image(gray)] == [self.data["PREFIX"]]

    def flags(self) -> dict[str, Callable[[], bool | None]]:
        return {f"EXPECTED{name[5:].upper()}": getattr(self, name) for name in dir(self) if name.startswith("flag_")}

    def disagreements(self) -> tuple[set[str], list[str]]:
        """(flags where we disagree, flags we could not evaluate for lack of input)."""
        known = self.flags()
        differ, untested = set(), []
        for flag, expected in self.data.get("EXPECTEDRESULTS", {}).items():
            if flag in IGNORED_FLAGS:
                continue
            assert flag in known, f"{case_id(self.path)}: unknown flag {flag}"
            ours = known[flag]()
            if ours is None:
                untested.append(flag)
            elif ours != expected:
                differ.add(flag)
        return differ, untested


def load_waivers() -> dict[tuple[str, str], str]:
    with WAIVERS.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    waivers = {}
    for row in rows:
        key = (row["case"], row["flag"])
        assert key not in waivers, f"waiver listed twice: {key}"
        assert row["reason"].strip(), f"waiver without a reason: {key}"
        waivers[key] = row["reason"]
    return waivers


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
