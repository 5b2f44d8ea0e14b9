"""``ehc-edge verify`` and the station's verifier on every format, with trust from the site's signed list."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys

import pytest

from central import trustlist_issuer
from central.site import add_device
from edge import config as edge_config
from edge.payloads import classify_payload
from edge.runtime import build_verifier
from edge.verify import Outcome
from tests.conftest import shared_dir

SHARED = shared_dir() / "testdata"
SHC_ISS = "https://spec.smarthealth.cards/examples/issuer"


def _run(*args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "verify", *args], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr})


def _dcc_case(name: str = "CH/2DCode/raw/1.json") -> dict:
    path = SHARED / "dcc" / name
    if not path.exists():
        pytest.skip(f"shared DCC data not found: {path.parent} (set EHC_SHARED_DIR)")
    return json.loads(path.read_text(encoding="utf-8"))


def test_ehc1_issued_by_the_site_verifies_with_the_box_config(site, store, tmp_path) -> None:
    cfg_path = add_device(site, store, "box-0001", "clinic-a", tmp_path / "box")
    done = subprocess.run([sys.executable, "-m", "central.cli", "card", "issue", "--config",
                           str(site.config_path), "--card-id", "0a" * 16, "--name", "张三丰", "--birth", "1950-01-02",
                           "--sex", "M", "--qr", str(tmp_path / "card.png")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    assert text.startswith("EHC1:") and (tmp_path / "card.png").stat().st_size > 0
    rc, out = _run("--config", str(cfg_path), text)
    assert rc == 0 and out["valid"] and out["format"] == "ehc1" and out["checks"]["signature"] is True
    assert "张三丰" not in json.dumps(out)
    rc, out = _run("--config", str(cfg_path), "--at", "2001-01-01T00:00:00+00:00", text)
    assert (rc, out["reason"]) == (1, "not_yet_valid")
    # revoked through a new trust list version
    trustlist_issuer.update(site.config, trustlist_issuer.Changes(revoke_cards=["0a" * 16]))
    rc, out = _run("--trust", str(trustlist_issuer.signed_path(site.config)), "--config", str(cfg_path), text)
    assert (rc, out["reason"]) == (1, "revoked")


def test_hc1_with_a_certificate_and_at_its_validation_clock(tmp_path) -> None:
    case = _dcc_case()
    cert = tmp_path / "signer.der"
    cert.write_bytes(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    rc, out = _run("--trust-cert", str(cert), "--schemas", str(SHARED / "dcc" / "schemas"), "--at",
                   case["TESTCTX"]["VALIDATIONCLOCK"], case["PREFIX"])
    assert rc == 0 and out["valid"] and out["format"] == "hc1"
    assert out["checks"]["signature"] is True and out["checks"]["schema"] is True
    rc, out = _run("--at", case["TESTCTX"]["VALIDATIONCLOCK"], case["PREFIX"])  # no trust: unknown signer
    assert (rc, out["valid"], out["reason"]) == (1, False, "unknown_kid")


def test_shc_with_the_issuer_key_set() -> None:
    jwks = SHARED / "shc" / "issuer" / ".well-known" / "jwks.json"
    if not jwks.exists():
        pytest.skip(f"shared SMART Health Card data not found: {jwks.parent}")
    text = (SHARED / "shc" / "example-00-f-qr-code-numeric-value-0.txt").read_text(encoding="utf-8").strip()
    rc, out = _run("--trust-jwks", f"{SHC_ISS}={jwks}", "--at", "2023-07-01T00:00:00+00:00", text)
    assert rc == 0 and out["valid"] and out["format"] == "shc"
    rc, out = _run("--at", "2023-07-01T00:00:00+00:00", text[:-2] + ("1" if text[-1] != "1" else "2") + text[-1])
    assert rc == 1 and not out["valid"]


def test_bad_input_and_usage() -> None:
    rc, out = _run("HC1:%%%")
    assert rc == 1 and out["reason"] == "bad_base45"
    rc, out = _run("--trust", "/nonexistent.cose", "EHC1:AA")
    assert rc == 2


def test_station_verifier_checks_a_dcc_from_the_updated_trust_list(site, store, tmp_path) -> None:
    case = _dcc_case()
    cert = tmp_path / "signer.der"
    cert.write_bytes(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    trustlist_issuer.update(site.config, trustlist_issuer.Changes(dcc_certs=[cert]))
    cfg = edge_config.load(add_device(site, store, "box-0002", "clinic-a", tmp_path / "box"))
    verifier = build_verifier(cfg)
    clock = dt.datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"]).timestamp()
    verifier.clock = lambda: clock  # type: ignore[attr-defined]
    verifier.max_age = 10 * 365 * 86400  # type: ignore[attr-defined]  # the case's clock is years before the list
    verdict = verifier.verify(classify_payload(case["PREFIX"]))
    assert (verdict.outcome, verdict.verified) == (Outcome.GREEN, True)
    tampered = case["PREFIX"][:-6] + ("A" if case["PREFIX"][-6] != "A" else "B") + case["PREFIX"][-5:]
    assert verifier.verify(classify_payload(tampered)).outcome is Outcome.RED
