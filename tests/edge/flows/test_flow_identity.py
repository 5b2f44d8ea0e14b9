"""ID cards and passports in the flows: validated, pseudonymised, masked on the receipt, never logged."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from edge.feedback import Signal
from edge.flows.base import ButtonPress, IdPresented
from edge.flows.checkin import CheckinFlow
from edge.flows.masstest import MassTestFlow, PoolSettings
from edge.identity import from_id_card, mask_name, mask_number, pseudonym
from mqtt import sealed, topics
from tests.hw_sim.idcard_reader import sample_cards
from tests.support.flow_helpers import make_ctx, stored, tube

CARDS = sample_cards()
KEY = b"k" * 32
TODAY = dt.date(2026, 11, 25)


def _id(name: str) -> IdPresented:
    return IdPresented(from_id_card(CARDS[name], TODAY))


def test_valid_card_is_green_with_a_pseudonym_and_a_masked_receipt(box, key, caplog) -> None:
    ctx = make_ctx(box)
    ctx.pseudonym_key = KEY
    with caplog.at_level("DEBUG"):
        result = CheckinFlow(ctx).handle(_id("resident"))
    assert result is not None and result.signal is Signal.ACCEPTED
    (msg,) = stored(box, key)
    body = msg.body
    assert body["kind"] == "id_card" and body["document"] == "resident" and body["outcome"] == "green"
    assert body["id_ref"] == pseudonym(KEY, "resident", "11010519491231002X") and "id_number" not in body
    assert body["verified"] is True and body["pending"] == "online_lookup" and body["queue_no"] == 1
    assert "11010519491231002X" not in str(body) and "王芳" not in str(body)
    (ticket,) = ctx.tickets.tickets  # type: ignore[attr-defined]
    assert ticket == ("registration", {"name": "王*", "id_masked": "1101**********002X", "time": ticket[1]["time"],
                                       "outcome": "已登记 Registered  #1"})
    assert "11010519491231002X" not in caplog.text and "王芳" not in caplog.text


def test_number_sent_only_when_configured_sealed_and_no_key_means_no_ref(box, key) -> None:
    central = sealed.generate_key()
    box.seal_key = central.public_key()
    ctx = make_ctx(box)
    ctx.send_id_number = True
    CheckinFlow(ctx).handle(_id("hmt"))
    (msg,) = stored(box, key)
    assert msg.body["id_ref"] is None and "id_number" not in msg.body
    assert CARDS["hmt"].id_number not in str(msg.body)
    topic = topics.event("clinic-a", "box-1", "scan")
    opened = sealed.open_sealed(msg.body["personal"], central, topic, msg.msg_id.bytes)
    assert opened == {"id_number": CARDS["hmt"].id_number}


def test_number_required_but_no_sealing_key_is_not_recorded(box, key) -> None:
    ctx = make_ctx(box)
    ctx.send_id_number = True
    result = CheckinFlow(ctx).handle(_id("resident"))
    assert result is not None and (result.signal, result.reason) == (Signal.NOT_RECORDED, "no_seal_key")
    assert stored(box, key) == []


def test_invalid_number_is_red_and_expired_card_yellow(box, key) -> None:
    ctx = make_ctx(box)
    ctx.pseudonym_key = KEY
    flow = CheckinFlow(ctx)
    bad = flow.handle(_id("bad_check_digit"))
    expired = flow.handle(_id("hmt"))  # valid to 2024-05-01
    assert (bad.signal, bad.reason) == (Signal.REJECTED, "bad_check_digit")  # type: ignore[union-attr]
    assert (expired.signal, expired.reason) == (Signal.ATTENTION, "document_expired")  # type: ignore[union-attr]
    bodies = [m.body for m in stored(box, key)]
    assert bodies[0]["id_ref"] is None and bodies[0]["queue_no"] is None  # nothing about a bad number leaves
    assert bodies[1]["id_ref"] and bodies[1]["queue_no"] == 1


def test_people_with_id_cards_join_a_pool(box, key) -> None:
    ctx = make_ctx(box)
    ctx.pseudonym_key = KEY
    flow = MassTestFlow(ctx, PoolSettings(capacity=3))
    signals = [flow.handle(e).signal for e in (tube("TUBE-400001"), _id("resident"), _id("resident"),  # type: ignore[union-attr]
                                              _id("foreigner_2023"), _id("bad_check_digit"), ButtonPress())]
    assert signals == [Signal.ACCEPTED, Signal.ACCEPTED, Signal.ATTENTION, Signal.ACCEPTED, Signal.REJECTED,
                       Signal.ACCEPTED]
    (pool,) = [m.body for m in stored(box, key)]
    assert "members" not in pool and "personal" not in pool and pool["count"] == 2
    assert pool["id_members"] == [pseudonym(KEY, "resident", "11010519491231002X"),
                                  pseudonym(KEY, "foreigner_2023", "931586198001010028")]


def test_no_key_no_pool_for_id_cards(box) -> None:
    flow = MassTestFlow(make_ctx(box))
    flow.handle(tube("TUBE-400002"))
    result = flow.handle(_id("resident"))
    assert (result.signal, result.reason) == (Signal.REJECTED, "no_pseudonym_key")  # type: ignore[union-attr]


def test_masks_and_pseudonyms() -> None:
    assert mask_name("张三丰") == "张*丰" and mask_name("王芳") == "王*" and mask_name("") == ""
    assert mask_name("JOHN SMITH") == "J*** SMITH"
    assert mask_number("11010519491231002X") == "1101**********002X"
    a = pseudonym(KEY, "resident", "11010519491231002x")
    assert a == pseudonym(KEY, "resident", "11010519491231002X") and len(a) == 32
    assert a != pseudonym(b"j" * 32, "resident", "11010519491231002X")
    assert a != pseudonym(KEY, "hmt", "11010519491231002X")
    with pytest.raises(ValueError):
        pseudonym(b"short", "resident", "1")
    ident = from_id_card(CARDS["resident"], TODAY)
    assert "11010519491231002X" not in repr(ident) and "王芳" not in repr(ident)
    assert dataclasses.replace(ident, valid=False).code == "ok"
