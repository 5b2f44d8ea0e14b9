"""SMART Health Cards: the four upstream examples (``../shared/testdata/shc``) in every form, tampering, keys,
revocation and chunks."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from PIL import Image

from edge.credentials import Reason, TrustStore, verify_credential
from edge.credentials.anchors import jwk_thumbprint
from edge.credentials.codecs import b64url_decode, b64url_encode
from edge.credentials.shc import numeric_to_jws, verify_shc, verify_shc_file
from edge.scanner import decode_image
from tests.conftest import shared_dir

SHARED = shared_dir()
SHC = SHARED / "testdata" / "shc"
ISSUER_DIR = SHC / "issuer"
ISS = "https://spec.smarthealth.cards/examples/issuer"
AT = datetime(2023, 7, 1, tzinfo=UTC)  # after the examples' nbf (2023-06-22), before example 03's exp (2024-06-21)
EXAMPLES = ["00", "01", "02", "03"]
REVOKED = {"03"}  # upstream's "revoked COVID-19 credential": its rid is in the key's revocation list

if not SHARED.is_dir():
    pytest.skip(f"shared test data folder not found: {SHARED} (set EHC_SHARED_DIR)", allow_module_level=True)


def _read(name: str) -> str:
    return (SHC / name).read_text(encoding="utf-8")


def qr_texts(example: str) -> list[str]:
    return [p.read_text(encoding="utf-8").strip()
            for p in sorted(SHC.glob(f"example-{example}-f-qr-code-numeric-value-*.txt"))]


def forms(example: str) -> dict[str, str]:
    """The example as a bare JWS, a .smart-health-card file and its numeric QR text (chunks joined by newlines)."""
    return {"jws": _read(f"example-{example}-d-jws.txt"),
            "file": _read(f"example-{example}-e-file.smart-health-card"),
            "qr": "\n".join(qr_texts(example))}


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    t = TrustStore()
    assert t.add_shc_issuer_dir(ISS, ISSUER_DIR) == 2
    return t


@pytest.fixture(scope="module")
def trust_without_crl() -> TrustStore:
    t = TrustStore()
    t.add_shc_jwks(ISS, (ISSUER_DIR / ".well-known" / "jwks.json").read_bytes())
    return t


def test_the_examples_are_there() -> None:
    assert [len(qr_texts(e)) for e in EXAMPLES] == [1, 1, 3, 1], f"expected the SMART Health Card examples in {SHC}"


@pytest.mark.parametrize("form", ["jws", "file", "qr"])
@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_verify_in_every_form(example: str, form: str, trust: TrustStore,
                                       trust_without_crl: TrustStore) -> None:
    text = forms(example)[form]
    result = verify_shc(text, trust, AT)
    assert result.format == "shc"
    assert result.checks["signature"] and result.checks["expiry"] and result.checks["schema"]
    if example in REVOKED:
        assert (result.valid, result.reason, result.checks["revocation"]) == (False, Reason.REVOKED, False)
        assert verify_shc(text, trust_without_crl, AT).valid
    else:
        assert result.valid and result.reason is None, result
    if form == "qr":  # the scanner's path: the one entry point
        assert verify_credential(text, trust, AT) == result


def test_claims_are_minimal_and_kept_out_of_repr(trust: TrustStore) -> None:
    result = verify_shc(forms("00")["jws"], trust, AT)
    claims = result.claims
    assert claims["name"] == "John B. Anyperson" and claims["birth_date"] == "1951-01-20"
    assert claims["type"] == "immunization" and claims["issuer"] == ISS
    assert [i["code"] for i in claims["immunizations"]] == ["http://hl7.org/fhir/sid/cvx|207"] * 2 + [
        "http://hl7.org/fhir/sid/cvx|229"]
    assert claims["issued_at"].startswith("2023-06-22") and claims["expires_at"] is None
    assert result.kid == claims["kid"] == "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s"
    assert "Anyperson" not in repr(result) and "1951" not in repr(result)
    lab = verify_shc(forms("02")["jws"], trust, AT).claims
    assert lab["type"] == "laboratory" and lab["immunizations"] == []


def test_chunks_in_any_order_and_missing_ones_reported(trust: TrustStore) -> None:
    chunks = qr_texts("02")
    shuffled = chunks[:]
    random.Random(3).shuffle(shuffled)
    assert verify_credential(" ".join(shuffled), trust, AT).valid
    only_second = verify_credential(chunks[1], trust, AT)
    assert (only_second.valid, only_second.reason, only_second.missing_chunks) == (False, "missing_chunks", (1, 3))
    assert verify_credential(f"{chunks[0]}\n{chunks[2]}", trust, AT).missing_chunks == (2,)
    twice = verify_credential("\n".join(chunks + [chunks[0]]), trust, AT)  # as the SDK: a chunk given twice
    assert (twice.reason, twice.detail) == ("bad_chunks", "chunk 1 given twice")
    other = chunks[2].replace("shc:/3/3/", "shc:/3/4/")
    assert verify_credential("\n".join(chunks[:2] + [other]), trust, AT).reason == "bad_chunks"
    whole = qr_texts("00")[0]
    assert verify_credential(f"{chunks[0]}\n{whole}", trust, AT).reason == "bad_chunks"


def _render(svg: Path, out: Path) -> np.ndarray:
    subprocess.run(["rsvg-convert", "--width", "600", "--background-color", "white", "-o", str(out), str(svg)],
                   check=True, capture_output=True, timeout=60)
    return np.asarray(Image.open(out).convert("L"))


@pytest.mark.skipif(shutil.which("rsvg-convert") is None,
                    reason="rsvg-convert not installed (Debian package librsvg2-bin)")
@pytest.mark.parametrize("example", EXAMPLES)
def test_qr_images_scan_and_verify(example: str, trust: TrustStore, tmp_path: Path) -> None:
    texts = []
    for svg in sorted(SHC.glob(f"example-{example}-g-qr-code-*.svg")):
        codes = decode_image(_render(svg, tmp_path / f"{svg.stem}.png"))
        assert len(codes) == 1, svg.name
        texts.append(codes[0].text)
    assert texts == qr_texts(example)
    result = verify_credential("\n".join(texts), trust, AT)
    assert result.valid == (example not in REVOKED) and result.checks["signature"]


# -- tampering ----------------------------------------------------------------------------------------------------

def test_a_changed_digit_does_not_verify(trust: TrustStore) -> None:
    text = qr_texts("00")[0]
    seen = set()
    for pos in (len("shc:/") + 200, len("shc:/") + 700, len(text) - 5):
        digit = text[pos]
        tampered = text[:pos] + ("1" if digit == "0" else "0") + text[pos + 1:]
        result = verify_credential(tampered, trust, AT)
        assert not result.valid and result.reason, pos
        seen.add(result.reason)
    assert seen <= {"bad_signature", "bad_numeric", "bad_jws", "bad_zlib", "bad_json"}


def test_a_changed_payload_byte_does_not_verify(trust: TrustStore) -> None:
    header, payload, signature = forms("00")["jws"].split(".")
    raw = bytearray(b64url_decode(payload))
    raw[len(raw) // 2] ^= 0x01
    result = verify_shc(f"{header}.{b64url_encode(bytes(raw))}.{signature}", trust, AT)
    assert not result.valid and result.checks["signature"] is not True
    # a payload that still inflates and parses is caught by the signature
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    result = verify_shc(f"{header}.{flipped}.{signature}", trust, AT)
    assert not result.valid and result.reason in {"bad_signature", "bad_zlib", "bad_json", "bad_jws"}


def _es256(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> str:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_a_wrong_key_does_not_verify(trust: TrustStore) -> None:
    header, payload, _ = forms("00")["jws"].split(".")
    forged = f"{header}.{payload}.{_es256(ec.generate_private_key(ec.SECP256R1()), f'{header}.{payload}'.encode())}"
    result = verify_shc(forged, trust, AT)
    assert (result.valid, result.reason, result.checks["signature"]) == (False, "bad_signature", False)
    assert result.claims == {}


def _jwk(key: ec.EllipticCurvePrivateKey, **extra: object) -> dict[str, object]:
    n = key.public_key().public_numbers()
    jwk: dict[str, object] = {"kty": "EC", "crv": "P-256", "x": b64url_encode(n.x.to_bytes(32, "big")),
                              "y": b64url_encode(n.y.to_bytes(32, "big"))}
    jwk["kid"] = jwk_thumbprint(jwk)  # type: ignore[arg-type]
    jwk.update(extra)
    return jwk


def _card(key: ec.EllipticCurvePrivateKey, payload: dict[str, object], kid: str, alg: str = "ES256") -> str:
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(json.dumps(payload, separators=(",", ":")).encode()) + c.flush()
    header = b64url_encode(json.dumps({"zip": "DEF", "alg": alg, "kid": kid}).encode())
    data = f"{header}.{b64url_encode(body)}"
    return f"{data}.{_es256(key, data.encode())}"


def _payload(iss: str = "https://issuer.example", **vc_extra: object) -> dict[str, object]:
    payload = json.loads(_read("example-00-c-jws-payload-minified.json"))
    payload["iss"] = iss
    payload["vc"].pop("rid", None)
    payload["vc"].update(vc_extra)
    return payload


def test_keys_unknown_issuer_kid_and_usage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = _jwk(key, use="sig", alg="ES256")
    card = _card(key, _payload(), str(jwk["kid"]))
    empty = TrustStore()
    assert verify_shc(card, empty, AT).reason == "unknown_issuer"
    other = TrustStore()
    other.add_shc_jwks("https://issuer.example", {"keys": [_jwk(ec.generate_private_key(ec.SECP256R1()))]})
    assert verify_shc(card, other, AT).reason == "unknown_kid"
    good = TrustStore()
    assert good.add_shc_jwks("https://issuer.example", {"keys": [jwk]}) == 1
    assert verify_shc(card, good, AT).valid
    enc = TrustStore()
    enc.add_shc_jwks("https://issuer.example", {"keys": [_jwk(key, use="enc")]})
    assert verify_shc(card, enc, AT).reason == "wrong_key_usage"
    es384 = TrustStore()
    es384.add_shc_jwks("https://issuer.example", {"keys": [_jwk(key, alg="ES384")]})
    assert verify_shc(card, es384, AT).reason == "alg_mismatch"
    assert verify_shc(_card(key, _payload(), str(jwk["kid"]), alg="HS256"), good, AT).reason == "unsupported_alg"


def test_jwk_whose_kid_is_not_its_thumbprint_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    t = TrustStore()
    assert t.add_shc_jwks("https://issuer.example", {"keys": [_jwk(key, kid="my-own-name")]}) == 0
    assert "thumbprint" in caplog.text
    assert verify_shc(_card(key, _payload(), "my-own-name"), t, AT).reason == "bad_jws"  # not thumbprint-shaped
    other = str(_jwk(ec.generate_private_key(ec.SECP256R1()))["kid"])
    assert t.add_shc_jwks("https://issuer.example", {"keys": [_jwk(key, kid=other)]}) == 0
    assert verify_shc(_card(key, _payload(), other), t, AT).reason == "unknown_issuer"


def test_nbf_and_exp(trust_without_crl: TrustStore) -> None:
    text = forms("03")["jws"]
    assert verify_shc(text, trust_without_crl, datetime(2023, 6, 1, tzinfo=UTC)).reason == "not_yet_valid"
    late = verify_shc(text, trust_without_crl, datetime(2025, 1, 1, tzinfo=UTC))
    assert (late.valid, late.reason, late.checks["signature"]) == (False, "expired", True)
    assert verify_shc(forms("00")["jws"], trust_without_crl, datetime(2030, 1, 1)).valid  # no exp; naive is UTC


# -- revocation ---------------------------------------------------------------------------------------------------

def test_revocation_by_rid_with_and_without_time() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = _jwk(key, crlVersion=1)
    kid = str(jwk["kid"])
    payload = _payload(rid="ABCdef123_-")
    nbf = payload["nbf"]
    card = _card(key, payload, kid)

    def store(rids: list[str]) -> TrustStore:
        t = TrustStore()
        t.add_shc_jwks("https://issuer.example", {"keys": [jwk]})
        t.add_shc_crl("https://issuer.example", {"kid": kid, "method": "rid", "ctr": 1, "rids": rids})
        return t

    assert verify_shc(card, store(["ABCdef123_-"]), AT).reason == "revoked"
    assert verify_shc(card, store([f"ABCdef123_-.{int(nbf) + 1}"]), AT).reason == "revoked"  # issued before
    assert verify_shc(card, store([f"ABCdef123_-.{int(nbf) - 1}"]), AT).valid  # issued after: a new card
    assert verify_shc(card, store([f"ABCdef123_-.{int(nbf) - 1}", "ABCdef123_-"]), AT).reason == "revoked"
    assert verify_shc(card, store(["someoneElse"]), AT).checks["revocation"] is True
    no_rid = verify_shc(_card(key, _payload(), kid), store(["ABCdef123_-"]), AT)
    assert no_rid.valid and no_rid.checks["revocation"] is None


def test_crl_of_the_shared_issuer_is_read(trust: TrustStore) -> None:
    crl = trust.shc_revocations(ISS, "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s")
    assert crl is not None and crl.ctr == 1
    assert crl.rids["FKDIxsTCGlU"] is None and crl.rids["vwAjHdarZuc"] == 1687450765.0


def test_bad_crl_is_refused() -> None:
    t = TrustStore()
    for bad in ({"kid": "k", "method": "hash", "ctr": 1, "rids": []}, {"kid": "k", "ctr": "1", "rids": []},
                {"kid": "k", "ctr": 1, "rids": ["not base64url!"]}, {"kid": "k", "ctr": 1, "rids": ["a.b"]}):
        with pytest.raises(ValueError):
            t.add_shc_crl(ISS, bad)


# -- forms --------------------------------------------------------------------------------------------------------

def test_numeric_decoding() -> None:
    assert numeric_to_jws("5676") == "ey"
    assert verify_credential("shc:/567", TrustStore(), AT).reason == "bad_numeric"  # odd digit count
    assert verify_credential("shc:/7800", TrustStore(), AT).reason == "bad_numeric"  # 78 + 45 is past 'z'
    assert verify_credential("shc:/56.76", TrustStore(), AT).reason == "bad_numeric"


def test_file_with_several_cards(trust: TrustStore) -> None:
    jws = [forms(e)["jws"] for e in ("00", "03")]
    text = json.dumps({"verifiableCredential": jws})
    assert verify_shc(text, trust, AT).reason == "multiple_credentials"
    assert [r.reason for r in verify_shc_file(text, trust, AT)] == [None, "revoked"]
    assert verify_shc('{"verifiableCredential": []}', trust, AT).reason == "bad_json"
