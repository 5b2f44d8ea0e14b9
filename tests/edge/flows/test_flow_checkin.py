"""Clinic check-in: outcome, signal, queue ticket and a signed result, in every case."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.credentials.verifier import TrustedVerifier
from edge.feedback import Signal
from edge.flows.checkin import CheckinFlow
from edge.payloads import classify_payload
from edge.verify import card_index
from mqtt.outbox import Outbox
from tests.hw_sim.camera import health_card_tokens
from tests.support.flow_helpers import FakeWallClock, make_ctx, open_box, personal, qr, stored, with_seal

TOKENS = health_card_tokens(3, seed=5)


@pytest.mark.parametrize("text, signal, outcome, reason, kind", [
    (TOKENS[0], Signal.ACCEPTED, "green", None, "ehc_token"),
    ("HC1:6BFOXN%TS3DH0YOJ58S", Signal.ATTENTION, "yellow", "not_verifiable_here", "hc1"),
    ("shc:/567629095243206034602924374044603122295953265460346029254077280433602870286", Signal.ATTENTION,
     "yellow", "not_verifiable_here", "shc"),
    ("https://example.org/x", Signal.REJECTED, "red", "unknown_format", "unknown"),
    ("E1D10AAC" * 8 + ":123", Signal.REJECTED, "red", "bad_token", "malformed"),
    ("EHCPROV1;url=https://c:8443;token=t;ca=00;clinic=c;serial=s", Signal.REJECTED, "red", "provisioning_code",
     "provisioning"),
])
def test_each_kind_of_code(box: Outbox, key, text: str, signal: Signal, outcome: str, reason: str | None,
                           kind: str) -> None:
    ctx = make_ctx(box)
    result = CheckinFlow(ctx).handle(qr(text))
    assert result is not None and result.signal is signal and result.reason == reason
    (msg,) = stored(box, key)
    assert str(msg.msg_id) == result.message_id and msg.kind == "scan"
    assert msg.body["outcome"] == outcome and msg.body["reason"] == reason and msg.body["kind"] == kind
    assert text not in str(msg.body)  # the payload never leaves the box
    if outcome == "red":
        assert msg.body["queue_no"] is None and ctx.tickets.tickets == []  # type: ignore[attr-defined]
    else:
        assert msg.body["queue_no"] == 1
        (ticket,) = ctx.tickets.tickets  # type: ignore[attr-defined]
        assert ticket[0] == "queue" and ticket[1]["number"] == 1
        assert ticket[1]["outcome"] == {"green": "已登记 Registered", "yellow": "待核验 To be checked"}[outcome]
    if kind == "ehc_token":
        assert msg.body["card_ref"] and msg.body["code_type"] == 1 and msg.body["pending"] == "online_lookup"


def test_queue_numbers_count_up_survive_restart_and_restart_each_day(tmp_path: Path, key) -> None:
    clock = FakeWallClock()
    box = open_box(tmp_path / "o.db", key)
    flow = CheckinFlow(make_ctx(box, clock))
    numbers = [flow.handle(qr(t)).detail["queue_no"] for t in TOKENS[:2]]  # type: ignore[union-attr]
    assert flow.handle(qr("https://x")).detail["queue_no"] is None  # type: ignore[union-attr]
    box.close()
    box = open_box(tmp_path / "o.db", key)  # the station restarts
    flow = CheckinFlow(make_ctx(box, clock))
    numbers.append(flow.handle(qr(TOKENS[2])).detail["queue_no"])  # type: ignore[union-attr]
    clock.now += 86400
    numbers.append(flow.handle(qr(TOKENS[0])).detail["queue_no"])  # type: ignore[union-attr]
    assert numbers == [1, 2, 3, 1]
    box.close()


def test_outbox_full_is_not_recorded_and_prints_nothing(tmp_path: Path, key) -> None:
    box = open_box(tmp_path / "o.db", key, max_bytes=1024 * 1024)
    ctx = make_ctx(box)
    flow = CheckinFlow(ctx)
    box.max_bytes = 1  # the disk bound is reached
    result = flow.handle(qr(TOKENS[0]))
    assert result is not None and result.signal is Signal.NOT_RECORDED and result.reason == "outbox_full"
    assert stored(box, key) == [] and ctx.tickets.tickets == []  # type: ignore[attr-defined]
    box.max_bytes = 1024 * 1024
    assert flow.handle(qr(TOKENS[0])).detail["queue_no"] == 1  # type: ignore[union-attr]  # number not used up
    box.close()


def test_button_presses_mean_nothing_at_check_in(box: Outbox) -> None:
    from edge.flows.base import ButtonPress

    assert CheckinFlow(make_ctx(box)).handle(ButtonPress()) is None


class _NoAnswer:
    """A lookup client whose central service never answers."""

    def lookup(self, card_index: str, code_type: int) -> None:
        return None


def _unanswered(box: Outbox):
    ctx = make_ctx(box)
    ctx.verifier = TrustedVerifier(trust=None, lookup=_NoAnswer())  # type: ignore[arg-type]
    return CheckinFlow(ctx)


def test_a_scan_left_for_the_central_lookup_carries_its_card_index_only_sealed(box: Outbox, key) -> None:
    result = _unanswered(with_seal(box)).handle(qr(TOKENS[1]))
    assert result is not None and (result.signal, result.reason) == (Signal.ATTENTION, "lookup_unavailable")
    (msg,) = stored(box, key)
    index = card_index(classify_payload(TOKENS[1]))
    assert index is not None and index not in str(msg.body) and index.lower() not in str(msg.body)
    assert msg.body["pending"] == "online_lookup" and msg.body["card_ref"]
    assert personal(msg) == {"card_index": index}


def test_without_the_sealing_key_the_scan_is_recorded_without_its_card_index(box: Outbox, key) -> None:
    result = _unanswered(box).handle(qr(TOKENS[1]))
    assert result is not None and (result.signal, result.reason) == (Signal.ATTENTION, "lookup_unavailable")
    (msg,) = stored(box, key)
    assert "personal" not in msg.body and "card_index" not in msg.body and msg.body["queue_no"] == 1
