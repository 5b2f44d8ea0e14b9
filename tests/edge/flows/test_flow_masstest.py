"""Pooled sampling: tubes, people, every bad path, restarts and the signed binding."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.feedback import Signal
from edge.flows.base import ButtonPress
from edge.flows.masstest import MassTestFlow, PoolSettings
from edge.symbology import Symbology
from tests.hw_sim.camera import health_card_tokens
from tests.support.flow_helpers import FakeWallClock, make_ctx, open_box, personal, qr, stored, tube, with_seal

PEOPLE = health_card_tokens(8, seed=11)


def _flow(box, capacity: int = 3, clock: FakeWallClock | None = None, **kw) -> MassTestFlow:
    return MassTestFlow(make_ctx(with_seal(box), clock), PoolSettings(capacity=capacity, **kw))


def _signals(flow: MassTestFlow, *events) -> list[tuple[Signal, str | None]]:
    out = []
    for e in events:
        r = flow.handle(e)
        out.append((r.signal, r.reason))
    return out


def test_tube_people_button_gives_one_signed_binding(box, key) -> None:
    flow = _flow(box)
    assert _signals(flow, tube("TUBE-0001"), qr(PEOPLE[0]), qr(PEOPLE[1]), ButtonPress("close")) == [
        (Signal.ACCEPTED, None)] * 4
    (msg,) = stored(box, key)
    assert msg.kind == "pool"
    body = msg.body
    assert body["tube"] == "TUBE-0001" and body["tube_format"] == "Code128" and body["closed_by"] == "button"
    assert personal(msg) == {"members": [PEOPLE[0][:64], PEOPLE[1][:64]]}  # sealed: never in the clear body
    assert "members" not in body and body["count"] == 2 and body["capacity"] == 3
    assert body["opened_at"].endswith("+00:00") and body["closed_at"].endswith("+00:00")
    (ticket,) = flow.ctx.tickets.tickets  # type: ignore[attr-defined]
    assert ticket == ("pool", {"tube": "TUBE-0001", "count": 2, "capacity": 3, "station": "clinic-a",
                               "opened": body["opened_at"], "closed": body["closed_at"]})
    assert flow.open_tube is None
    # the card indexes are gone from the box once the binding is stored
    rows = box._conn.execute("SELECT card_index FROM pool_members").fetchall()
    assert rows and all(r[0] is None for r in rows)


def test_bad_paths_each_have_a_clear_signal_and_lose_nothing(box, key) -> None:
    flow = _flow(box, capacity=2)
    assert _signals(
        flow,
        qr(PEOPLE[0]),                 # nobody can be bound before a tube is open
        ButtonPress("close"),          # nothing to close
        tube("x"),                     # not a tube label
        tube("TUBE-0001"),
        tube("TUBE-0001"),             # the same tube again
        qr(PEOPLE[0]),
        qr(PEOPLE[0]),                 # the same person again
        qr("https://example.org"),     # not a health card
        qr("E1D10AAC" * 8 + ":"),      # a broken health card
        qr(PEOPLE[1]),                 # fills the tube
        qr(PEOPLE[2]),                 # one too many
        tube("TUBE-0002"),             # the next tube closes the full one
        qr(PEOPLE[0]),                 # already in TUBE-0001
        tube("TUBE-0001"),             # a used tube
        qr(PEOPLE[2]),
    ) == [
        (Signal.REJECTED, "no_open_tube"),
        (Signal.ATTENTION, "no_open_tube"),
        (Signal.REJECTED, "bad_tube_code"),
        (Signal.ACCEPTED, None),
        (Signal.ATTENTION, "tube_already_open"),
        (Signal.ACCEPTED, None),
        (Signal.ATTENTION, "duplicate"),
        (Signal.REJECTED, "not_a_health_card"),
        (Signal.REJECTED, "bad_token"),
        (Signal.ATTENTION, "tube_now_full"),
        (Signal.REJECTED, "tube_full"),
        (Signal.ACCEPTED, None),
        (Signal.REJECTED, "already_in_tube"),
        (Signal.REJECTED, "tube_used"),
        (Signal.ACCEPTED, None),
    ]
    (first,) = stored(box, key)
    assert first.body["tube"] == "TUBE-0001" and first.body["closed_by"] == "next_tube"
    assert personal(first)["members"] == [PEOPLE[0][:64], PEOPLE[1][:64]]
    assert flow.open_tube is not None and flow.open_tube.tube == "TUBE-0002" and flow.open_tube.count == 1


def test_an_empty_tube_is_discarded_not_published(box, key) -> None:
    flow = _flow(box)
    assert _signals(flow, tube("TUBE-0003"), ButtonPress("close")) == [
        (Signal.ACCEPTED, None), (Signal.ATTENTION, "tube_discarded_empty")]
    assert stored(box, key) == [] and flow.open_tube is None
    assert _signals(flow, tube("TUBE-0003")) == [(Signal.REJECTED, "tube_used")]


def test_restart_resumes_the_open_tube(tmp_path: Path, key) -> None:
    box = open_box(tmp_path / "o.db", key)
    flow = _flow(box)
    _signals(flow, tube("EAN-TUBE-1"), qr(PEOPLE[0]))
    box.close()  # power cut
    box = open_box(tmp_path / "o.db", key)
    flow = _flow(box)
    assert flow.open_tube is not None and flow.open_tube.count == 1
    assert _signals(flow, qr(PEOPLE[0]), qr(PEOPLE[1]), ButtonPress()) == [
        (Signal.ATTENTION, "duplicate"), (Signal.ACCEPTED, None), (Signal.ACCEPTED, None)]
    (msg,) = stored(box, key)
    assert personal(msg)["members"] == [PEOPLE[0][:64], PEOPLE[1][:64]]
    box.close()


def test_a_close_that_cannot_be_stored_keeps_the_tube_open(tmp_path: Path, key) -> None:
    box = open_box(tmp_path / "o.db", key)
    flow = _flow(box)
    _signals(flow, tube("TUBE-0005"), qr(PEOPLE[3]))
    box.max_bytes = 1
    assert _signals(flow, ButtonPress(), tube("TUBE-0006")) == [
        (Signal.NOT_RECORDED, "outbox_full"), (Signal.NOT_RECORDED, "outbox_full")]
    assert flow.open_tube is not None and flow.open_tube.tube == "TUBE-0005" and flow.open_tube.count == 1
    box.max_bytes = 256 * 1024 * 1024
    assert _signals(flow, ButtonPress()) == [(Signal.ACCEPTED, None)]
    (msg,) = stored(box, key)  # published exactly once
    assert personal(msg)["members"] == [PEOPLE[3][:64]]
    box.close()


def test_rebinding_is_allowed_after_the_window(box, key) -> None:
    clock = FakeWallClock()
    flow = _flow(box, clock=clock, rebind_window=3600)
    _signals(flow, tube("TUBE-0007"), qr(PEOPLE[4]), ButtonPress(), tube("TUBE-0008"))
    assert _signals(flow, qr(PEOPLE[4])) == [(Signal.REJECTED, "already_in_tube")]
    clock.now += 3601
    assert _signals(flow, qr(PEOPLE[4])) == [(Signal.ACCEPTED, None)]


def test_tubes_may_be_any_1d_symbology_matching_the_pattern(box) -> None:
    flow = _flow(box, tube_pattern=r"[0-9]{13}")
    assert _signals(flow, tube("6901234567892", Symbology.EAN13), tube("TUBE-0001")) == [
        (Signal.ACCEPTED, None), (Signal.REJECTED, "bad_tube_code")]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        PoolSettings(capacity=0)
    with pytest.raises(re.error):
        PoolSettings(tube_pattern="(")


def test_a_box_without_the_sealing_key_binds_no_health_card(box, key) -> None:
    flow = MassTestFlow(make_ctx(box), PoolSettings(capacity=3))  # this box has no central sealing key
    assert _signals(flow, tube("TUBE-0009"), qr(PEOPLE[0]), ButtonPress()) == [
        (Signal.ACCEPTED, None), (Signal.NOT_RECORDED, "no_seal_key"), (Signal.ATTENTION, "tube_discarded_empty")]
    assert stored(box, key) == []
