"""The box's verifier over its trust list: EHC1 outcomes, stale or missing lists, and the check-in flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.credentials.ehc1 import Card, issue
from edge.credentials.verifier import TrustedVerifier
from edge.feedback import Signal
from edge.flows.checkin import CheckinFlow
from edge.payloads import classify_payload
from edge.trustlist_store import TrustListFile
from edge.verify import Outcome
from foundation.keyfiles import generate_key
from mqtt.trustlist import TrustList, card_hash, public_key_kid, sign
from tests.support.flow_helpers import make_ctx, open_box, qr, stored

CENTRAL, ISSUER = generate_key(), generate_key()
NOW = 1_764_000_000.0


def _pem(key) -> str:
    from cryptography.hazmat.primitives import serialization
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _card(status: str = "green", cid: str = "0a" * 16) -> str:
    return issue(Card(card_id=cid, name="李四", birth_date="1990-02-03", sex="F", status=status), ISSUER, "EHC-TEST",
                 now=NOW)


@pytest.fixture
def verifier(tmp_path: Path) -> TrustedVerifier:
    held = TrustListFile(tmp_path / "trust-list.cose", CENTRAL.public_key())
    held.offer(sign(TrustList(1, issued=NOW - 3600, ehc1=({"kid": public_key_kid(ISSUER.public_key()),
                                                           "iss": "EHC-TEST", "key": _pem(ISSUER)},),
                              revoked_cards=frozenset({card_hash("ff" * 16)})), CENTRAL))
    return TrustedVerifier(held, max_age=86400, clock=lambda: NOW + 5)


@pytest.mark.parametrize("text, outcome, reason", [
    (_card(), Outcome.GREEN, None),
    (_card("yellow"), Outcome.YELLOW, "status_yellow"),
    (_card("red"), Outcome.RED, "status_red"),
    (_card(cid="ff" * 16), Outcome.RED, "revoked"),
    (issue(Card(card_id="0a" * 16, name="x", birth_date="1990-02-03", sex="F"), generate_key(), "EHC-TEST", now=NOW),
     Outcome.RED, "unknown_kid"),
])
def test_ehc1_outcomes(verifier: TrustedVerifier, text: str, outcome: Outcome, reason: str | None) -> None:
    verdict = verifier.verify(classify_payload(text))
    assert (verdict.outcome, verdict.reason) == (outcome, reason)
    if outcome is not Outcome.RED:
        assert verdict.verified and verdict.card_ref and "李四" not in repr(verdict)


def test_expired_code_is_red(verifier: TrustedVerifier) -> None:
    verifier.clock = lambda: NOW + 3600
    assert verifier.verify(classify_payload(_card())).reason == "expired"


def test_stale_list_turns_green_yellow_and_no_list_is_yellow(verifier: TrustedVerifier, tmp_path: Path) -> None:
    verifier.max_age = 60
    verdict = verifier.verify(classify_payload(_card()))
    assert (verdict.outcome, verdict.reason, verdict.verified) == (Outcome.YELLOW, "trust_list_stale", True)
    empty = TrustedVerifier(TrustListFile(tmp_path / "none.cose", CENTRAL.public_key()))
    assert empty.verify(classify_payload(_card())).reason == "no_trust_list"
    # platform tokens do not depend on the list
    token = "E1D10AAC" * 8 + ":1"
    assert empty.verify(classify_payload(token)).outcome is Outcome.GREEN


def test_checkin_records_a_verified_ehc1(verifier: TrustedVerifier, tmp_path: Path) -> None:
    key = generate_key()
    box = open_box(tmp_path / "o.db", key)
    ctx = make_ctx(box)
    ctx.verifier = verifier
    result = CheckinFlow(ctx).handle(qr(_card()))
    assert result is not None and result.signal is Signal.ACCEPTED
    (msg,) = stored(box, key)
    assert msg.body["kind"] == "ehc1" and msg.body["verified"] is True and msg.body["outcome"] == "green"
    assert msg.body["card_ref"] and "李四" not in str(msg.body)
    box.close()


def test_card_ref_is_keyed_with_the_deployment_pseudonym_key() -> None:
    import hashlib
    import hmac

    from edge.payloads import classify_payload
    from edge.verify import FormVerifier, card_ref

    token = "E1D10AAC" * 8 + ":1"
    key = b"k" * 32
    keyed = FormVerifier(key).verify(classify_payload(token)).card_ref
    assert keyed == hmac.new(key, b"card:" + token.encode(), hashlib.sha256).hexdigest()[:16]
    assert keyed == card_ref(token, key) != card_ref(token, b"x" * 32)  # another deployment cannot link it
    assert keyed != hashlib.sha256(token.encode()).hexdigest()[:16]  # who has seen the code cannot compute it
    assert FormVerifier().verify(classify_payload(token)).card_ref == card_ref(token)  # no key: plain hash
