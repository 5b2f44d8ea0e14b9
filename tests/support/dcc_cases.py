"""Upstream's EU DCC conformance cases (dgc-testdata, ``../shared/testdata/dcc``) and what our verifier says about
each of their ``EXPECTED*`` flags: shared by ``tests/edge/credentials/test_cred_hc1_conformance.py`` and ``bench/dcc_conformance.py``.

For each case the signer from ``TESTCTX.CERTIFICATE`` is the only trusted key and the clock is
``TESTCTX.VALIDATIONCLOCK``; each flag present is compared with what our code says about that step (see upstream's
README in the dcc folder for the flags). Known disagreements are listed with their reasons in
``tests/data/dcc_waivers.csv``.
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
from PIL import Image, UnidentifiedImageError

from edge.credentials import CredentialCheck, CredentialError, Reason, TrustStore, codecs, hc1, verify_credential
from edge.credentials.schemas import DccSchemas
from edge.scanner import decode_image
from tests.conftest import shared_dir

SHARED = shared_dir()
DCC = SHARED / "testdata" / "dcc"
WAIVERS = Path(__file__).resolve().parents[1] / "data" / "dcc_waivers.csv"

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
    obj = codecs.cbor_loads(data, Reason.BAD_CBOR, tags=codecs.DATE_TIME_TAGS)
    if isinstance(obj, dict) and -260 in obj:
        return hc1.parse_cwt(data).payload
    return hc1.eu_payload(obj)


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

    def compare(self) -> dict[str, tuple[bool, bool | None]]:
        """Per flag the case sets: (upstream's expectation, ours); ours is None when the case lacks the step's
        input."""
        known = self.flags()
        out = {}
        for flag, expected in self.data.get("EXPECTEDRESULTS", {}).items():
            if flag in IGNORED_FLAGS:
                continue
            if flag not in known:
                raise ValueError(f"{case_id(self.path)}: unknown flag {flag}")
            out[flag] = (expected, known[flag]())
        return out

    def disagreements(self) -> tuple[set[str], list[str]]:
        """(flags where we disagree, flags we could not evaluate for lack of input)."""
        differ, untested = set(), []
        for flag, (expected, ours) in self.compare().items():
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
