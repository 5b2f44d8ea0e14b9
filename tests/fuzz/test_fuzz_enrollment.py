"""The HTTPS enrollment endpoint under arbitrary request bodies: a 4xx answer with a stable code and a message,
never a server error, and nothing registered.

The Starlette application runs in-process (``TestClient``); the TLS listener around it is exercised by
``tests/provisioning/test_provisioning.py``.
"""

from __future__ import annotations

import base64
import json
import warnings

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import example, given
from hypothesis import strategies as st

from central.enrollment import Enrollment, token_hash
from central.enrollment_server import MAX_BODY, build_app
from central.store import SqlStore
from foundation import keyfiles
from tests.fuzz.harness import fuzz, json_values, mutated, no_hang, with_unknown_curve

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx versions
    from starlette.testclient import TestClient

PATHS = ["/v1/enroll", "/v1/renew", "/v1/decommission"]
CSR = keyfiles.make_csr(keyfiles.generate_key(), "box-7").public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def endpoint(site, store) -> tuple[TestClient, Enrollment]:
    enrollment = Enrollment(site.config, store)
    return TestClient(build_app(enrollment), raise_server_exceptions=False), enrollment


def post(client: TestClient, path: str, body: bytes) -> dict:
    with no_hang():
        r = client.post(path, content=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    answer = r.json()
    assert isinstance(answer.get("error"), str) and answer["error"], answer
    assert isinstance(answer.get("message"), str) and answer["message"], answer
    return answer


def nothing_registered(store: SqlStore) -> None:
    assert [d for d in store.devices() if d["device_id"] != "box-9"] == []


@fuzz(100, deadline=None)
@given(st.sampled_from(PATHS), st.binary(max_size=300))
@example("/v1/enroll", b"[" * 15000)  # nested deeper than the JSON parser's recursion limit
@example("/v1/renew", b'{"device_id": ' * 3000)
@example("/v1/enroll", b"\xff\xfe{}")
def test_fuzz_arbitrary_bytes(endpoint, store, path: str, body: bytes) -> None:
    client, _ = endpoint
    post(client, path, body)
    nothing_registered(store)


REQUEST_KEYS = ["token", "serial", "csr", "facts", "device_id", "proof", "x"]
hostile_text = st.text(max_size=40) | st.sampled_from(["\ud800" + "a" * 20, "box-7\x00", "a" * 200, "../../etc",
                                                       "ehc-ingest"])


@fuzz(200, deadline=None)
@given(st.sampled_from(PATHS), st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values | hostile_text, max_size=6))
@example("/v1/enroll", {"token": "\ud800" + "a" * 20, "serial": "box-7", "csr": "x"})  # a lone surrogate in the token
@example("/v1/renew", {"device_id": "\ud800", "proof": "AAAA"})  # ... and in the device id
@example("/v1/decommission", {"device_id": "\ud800", "proof": "AAAA"})
@example("/v1/renew", {"device_id": "box-7", "proof": "\u00e9"})
def test_fuzz_json_objects(endpoint, store, path: str, request: dict) -> None:
    client, _ = endpoint
    post(client, path, json.dumps(request).encode())
    nothing_registered(store)


GOOD_LENGTH = 640


@fuzz(150, deadline=None)
@given(st.data())
def test_fuzz_mutated_enrollment_requests(endpoint, store, data: st.DataObject) -> None:
    """A real token with a mutated request: refused with a reason, or (for an intact request) enrolled once."""
    client, enrollment = endpoint
    serial = f"box-{len(store.devices()) + 10}"
    qr = enrollment.create_token("clinic-a", serial)
    csr = keyfiles.make_csr(keyfiles.generate_key(), serial).public_bytes(serialization.Encoding.PEM).decode()
    good = json.dumps({"token": qr.token, "serial": serial, "csr": csr, "facts": {"model": "pi4"}}).encode()
    # The CSR's DER signature and the serial vary in length from run to run; trailing spaces (still valid JSON)
    # give the mutations the same length to draw positions from every time, as hypothesis requires.
    assert len(good) <= GOOD_LENGTH
    good = good.ljust(GOOD_LENGTH)
    body = data.draw(mutated(good, max_ops=2))
    before = len(store.devices())
    with no_hang():
        r = client.post("/v1/enroll", content=body)
    if r.status_code == 200:
        assert r.json()["device_id"] == serial and store.get_device(serial) is not None
        assert post(client, "/v1/enroll", good)["error"] == "token_used"
        return
    assert 400 <= r.status_code < 500 and r.json()["error"], (r.status_code, r.text[:200])
    assert len(store.devices()) == before and store.get_device(serial) is None


def test_oversized_bodies_are_refused_without_reading_them_all(endpoint, store) -> None:
    client, _ = endpoint
    for path in PATHS:
        assert post(client, path, b"{" + b" " * (4 * MAX_BODY) + b"}")["error"] == "too_large"
    nothing_registered(store)


def test_proofs_of_any_shape_are_refused(endpoint, site, store, tmp_path) -> None:
    from central.site import add_device

    client, _ = endpoint
    add_device(site, store, "box-9", "clinic-a", tmp_path / "box-9")
    for proof in ["", "AAAA", base64.b64encode(b"\xd2\x84" + bytes(60)).decode(), "é" * 8, "=" * 9]:
        for path in ("/v1/renew", "/v1/decommission"):
            answer = post(client, path, json.dumps({"device_id": "box-9", "proof": proof, "csr": CSR}).encode())
            assert answer["error"] == "bad_proof"
    assert store.get_device("box-9").status == "active"


def test_a_csr_on_an_unknown_curve_is_refused(endpoint, store) -> None:
    """Found by fuzzing: cryptography's UnsupportedAlgorithm escaped as a 500."""
    client, enrollment = endpoint
    qr = enrollment.create_token("clinic-a", "box-7")
    csr = with_unknown_curve(CSR, "CERTIFICATE REQUEST")
    answer = post(client, "/v1/enroll", json.dumps({"token": qr.token, "serial": "box-7", "csr": csr}).encode())
    assert answer["error"] == "bad_csr"
    nothing_registered(store)
    assert store.token(token_hash(qr.token))["used_at"] is None  # the token is still unused


def test_a_csr_with_an_unknown_version_is_refused_bad_csr(endpoint, store) -> None:
    """Found by the mutation fuzzer: cryptography raises InvalidVersion, which is not a ValueError."""
    client, enrollment = endpoint
    qr = enrollment.create_token("clinic-a", "box-42")
    der = keyfiles.make_csr(keyfiles.generate_key(), "box-42").public_bytes(serialization.Encoding.DER)
    der = der.replace(b"\x02\x01\x00", b"\x02\x01\x02", 1)  # CertificationRequestInfo.version 0 -> 2
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE REQUEST-----\n"
    answer = post(client, "/v1/enroll", json.dumps({"token": qr.token, "serial": "box-42", "csr": pem.decode()}).encode())
    assert answer["error"] == "bad_csr" and "version" in answer["message"]
    nothing_registered(store)
