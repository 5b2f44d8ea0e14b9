"""Every code in a frame, and rack photos: tube positions from the grid, missing and unreadable wells, the
signed ``rack`` result and the central service's refusal of a malformed one."""

from __future__ import annotations

import copy
import uuid

import numpy as np
import pytest
import zxingcpp

from edge.barcodes import Box, DecodedCode, Decoder, Point
from edge.feedback import Signal
from edge.flows.base import ButtonPress, IdPresented
from edge.flows.masstest import MassTestFlow, PoolSettings
from edge.identity import from_id_card
from edge.rack import RackLayout, RackProblem, locate
from edge.rackscan import RackRead, read_rack
from edge.scanner import STILL_IMAGE, DecodeOptions, FrameScanner, decode_image
from edge.symbology import Symbology
from mqtt.rackbody import RackInvalid, check_rack
from tests.hw_sim.camera import health_card_tokens
from tests.hw_sim.idcard_reader import sample_cards
from tests.hw_sim.rack import lots_frame, position, render_rack, tube_codes
from tests.support.flow_helpers import make_ctx, qr, stored, tube, with_seal

# -- every code in a frame -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_frame_with_many_small_codes_is_read_completely(seed: int) -> None:
    frame, texts = lots_frame(30, seed=seed, min_size=65, max_size=120)
    codes = decode_image(frame)
    assert sorted(c.text for c in codes) == sorted(texts)  # every code, each once
    plain = {b.text for b in zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode)}
    assert plain <= {c.text for c in codes}


def test_the_camera_loop_reads_every_code_of_a_multi_code_frame() -> None:
    frame, texts = lots_frame(12, seed=7, min_size=60, max_size=110)
    scanner = FrameScanner(DecodeOptions(track=False))
    assert sorted(c.text for c in scanner.decode(frame)) == sorted(texts)


def test_one_code_read_by_two_passes_is_reported_once_two_copies_twice() -> None:
    frame, texts = lots_frame(1, seed=4, min_size=120, max_size=120, width=800, height=600)
    twice = np.hstack([frame, frame])
    codes = FrameScanner(STILL_IMAGE).decode(twice)
    assert [c.text for c in codes] == texts * 2
    assert abs(codes[0].center.x - codes[1].center.x) > 700


# -- rack geometry ---------------------------------------------------------------------------------------

def _read(photo, layout: RackLayout):
    event = read_rack(photo.frame, layout)
    assert event.reading is not None, event.problem
    return event.reading


@pytest.mark.parametrize("seed,angle,perspective", [(1, 0.0, 0.0), (2, 25.0, 0.05), (3, -38.0, 0.07),
                                                   (4, 12.0, 0.1)])
def test_rack_of_48_positions_under_rotation_and_perspective(seed: int, angle: float, perspective: float) -> None:
    photo = render_rack(6, 8, seed=seed, angle=angle, perspective=perspective, missing=3, damaged=2)
    reading = _read(photo, RackLayout(6, 8))
    read = {t.position: t.text for t in reading.tubes}
    assert all(photo.tubes[p] == text for p, text in read.items())  # no tube at a wrong position
    assert len(read) >= len(photo.tubes) - 1
    assert set(reading.missing) == photo.missing
    assert set(reading.unreadable) == photo.damaged | (set(photo.tubes) - set(read))
    assert reading.anchored


def test_rack_of_96_with_glare_and_blur() -> None:
    photo = render_rack(8, 12, seed=5, angle=-8.0, perspective=0.04, fill=0.95, glare=0.45, blur=0.7,
                        label=0.55, missing=4, damaged=2)
    reading = _read(photo, RackLayout(8, 12))
    read = {t.position: t.text for t in reading.tubes}
    assert all(photo.tubes[p] == text for p, text in read.items())  # no tube at a wrong position
    assert len(read) >= len(photo.tubes) - 2
    assert set(reading.missing) == photo.missing
    assert set(reading.unreadable) == photo.damaged | (set(photo.tubes) - set(read))


def _without_first_column(photo):
    first_col = [position(r, 0) for r in range(photo.rows)]
    gone = {photo.tubes[p] for p in first_col}
    codes = FrameScanner(DecodeOptions(symbologies=frozenset({Symbology.DATAMATRIX}), track=False,
                                       every_code=True)).decode(photo.frame)
    return first_col, [c for c in codes if c.text not in gone]


def test_an_unread_edge_column_is_placed_by_the_wells_look() -> None:
    """No label of the first column read: the labels span 7 of 8 columns; the wells with tubes say which 7."""
    photo = render_rack(6, 8, seed=9, angle=10.0, missing=0, damaged=0)
    first_col, codes = _without_first_column(photo)
    reading = locate(codes, RackLayout(6, 8), np.ascontiguousarray(photo.frame[:, :, 1]))
    assert reading.anchored
    expected = {p: t for p, t in photo.tubes.items() if p not in first_col}
    read = {t.position: t.text for t in reading.tubes}
    assert read.items() <= expected.items() and len(read) >= len(expected) - 1
    assert set(reading.unreadable) == set(first_col) | (set(expected) - set(read)) and reading.missing == ()


def test_an_empty_edge_column_is_a_stated_assumption() -> None:
    """The first column empty: an empty first and an empty last column look the same, so the grid is placed
    from A1 and the reading says it is not anchored (the flow signals attention)."""
    photo = render_rack(6, 8, seed=9, angle=10.0, missing=0, damaged=0)
    first_col, codes = _without_first_column(photo)
    gray = np.ascontiguousarray(photo.frame[:, :, 1]).copy()
    yy, xx = np.ogrid[:gray.shape[0], :gray.shape[1]]
    for p in first_col:  # the tubes taken out: dark wells
        x, y = photo.centres[p]
        gray[(xx - x) ** 2 + (yy - y) ** 2 <= 50 ** 2] = 28
    reading = locate(codes, RackLayout(6, 8), gray)
    assert not reading.anchored
    shifted = {f"{p[0]}{int(p[1:]) - 1}": t for p, t in photo.tubes.items() if p not in first_col}
    read = {t.position: t.text for t in reading.tubes}
    assert read.items() <= shifted.items() and len(read) >= len(shifted) - 1
    assert sorted(reading.missing) == sorted(position(r, 7) for r in range(6))


def _code(text: str, x: int, y: int) -> DecodedCode:
    corners = (Point(x - 10, y - 10), Point(x + 10, y - 10), Point(x + 10, y + 10), Point(x - 10, y + 10))
    return DecodedCode(text, text.encode(), Symbology.DATAMATRIX, Decoder.ZXING, corners)


def test_grid_from_centres_alone_with_a_stray_code_and_located_labels() -> None:
    layout = RackLayout(6, 8)
    codes = [_code(f"T{r}{c:02d}0000", 100 + 50 * c, 80 + 50 * r) for r in range(6) for c in range(8)
             if (r, c) not in {(2, 3), (5, 7)}]
    codes.append(_code("RACK-0001", 325, 22))  # the rack's own label, above row A
    reading = locate(codes, layout, located=[Box(240, 170, 262, 192)])  # a label seen at C4, not read
    assert len(reading.tubes) == 46 and [c.text for c in reading.off_grid] == ["RACK-0001"]
    assert {t.position: t.text for t in reading.tubes}["B3"] == "T1020000"
    assert reading.unreadable == ("C4",) and reading.missing == ("F8",)


def test_photos_that_give_no_rack_are_refused_with_a_reason() -> None:
    with pytest.raises(RackProblem) as few:
        locate([_code("T1000000", 10, 10), _code("T2000000", 60, 10)], RackLayout(6, 8))
    assert few.value.reason == "too_few_codes"
    turned = [_code(f"T{r}{c:02d}0000", 100 + 50 * c, 80 + 50 * r) for r in range(8) for c in range(6)]
    with pytest.raises(RackProblem) as wrong:
        locate(turned, RackLayout(6, 8))
    assert wrong.value.reason == "rack_turned"
    empty = read_rack(np.full((480, 640), 90, np.uint8), RackLayout(6, 8))
    assert empty.reading is None and empty.problem == "too_few_codes"


# -- the rack body's rules -------------------------------------------------------------------------------

def _body(rows: int = 2, columns: int = 3) -> dict:
    layout = RackLayout(rows, columns)
    pos = layout.positions()
    return {"flow": "masstest", "layout": layout.name, "rows": rows, "columns": columns,
            "tubes": [{"position": p, "tube": f"T0000000{i}", "format": "DataMatrix", "pool": None}
                      for i, p in enumerate(pos[:-2])],
            "unreadable": [pos[-2]], "missing": [pos[-1]], "count": len(pos) - 2, "anchored": True, "rack": None,
            "read_at": "2026-12-05T15:00:00+00:00", "decode_ms": 12.5}


def _broken(change) -> dict:
    body = copy.deepcopy(_body())
    change(body)
    return body


@pytest.mark.parametrize("change,reason", [
    (lambda b: b["tubes"][1].update(position="A1"), "bad_rack_duplicate_position"),
    (lambda b: b["tubes"][1].update(position="C1"), "bad_rack_position"),
    (lambda b: b["tubes"][1].update(position="A4"), "bad_rack_position"),
    (lambda b: b["missing"].__setitem__(0, "A1"), "bad_rack_duplicate_position"),
    (lambda b: b["tubes"][1].update(tube="T00000000"), "bad_rack_duplicate_tube"),
    (lambda b: b["tubes"][1].update(tube="T0<script>"), "bad_rack_code"),
    (lambda b: b["tubes"][1].update(tube="x" * 65), "bad_rack_code"),
    (lambda b: b["tubes"][1].update(format="QRCode"), "bad_rack_format"),
    (lambda b: b["tubes"][1].update(pool="not-a-message-id"), "bad_rack_pool"),
    (lambda b: b["tubes"][1].update(name="Wang Fang"), "bad_rack_tube"),
    (lambda b: b.update(count=5), "bad_rack_count"),
    (lambda b: b["missing"].clear(), "bad_rack_count"),
    (lambda b: b.update(rows=30, layout="30x3"), "bad_rack_layout"),
    (lambda b: b.update(rows=True), "bad_rack_layout"),
    (lambda b: b.update(layout="8x12"), "bad_rack_layout"),
    (lambda b: b.update(personal="x"), "bad_rack_field"),
    (lambda b: b.update(tubes="A1"), "bad_rack_lists"),
])
def test_malformed_rack_bodies_are_refused_with_a_clear_reason(change, reason: str) -> None:
    check_rack(_body())
    with pytest.raises(RackInvalid) as exc:
        check_rack(_broken(change))
    assert exc.value.reason == reason


def test_an_oversized_rack_is_refused_before_its_tubes_are_read() -> None:
    body = _body()
    body["tubes"] = [{"position": "A1", "tube": "T1", "format": "DataMatrix", "pool": None}] * 100_000
    with pytest.raises(RackInvalid) as exc:
        check_rack(body)
    assert exc.value.reason == "bad_rack_count"


# -- the flow --------------------------------------------------------------------------------------------

def test_rack_photo_binds_every_tube_to_its_pool_in_one_signed_result(box, key) -> None:
    ctx = make_ctx(with_seal(box))
    flow = MassTestFlow(ctx, PoolSettings(capacity=2))
    codes = tube_codes(48, seed=12)
    people = health_card_tokens(4, seed=12)
    pooled = {}
    for i, code in enumerate(codes[:2]):  # two tubes pooled on this box before they went into the rack
        flow.handle(tube(code, Symbology.DATAMATRIX))
        flow.handle(qr(people[2 * i]))
        pooled[code] = flow.handle(ButtonPress("close")).message_id
    photo = render_rack(6, 8, seed=12, angle=15.0, perspective=0.05, missing=2, damaged=1, codes=codes)
    outcome = flow.handle(read_rack(photo.frame, RackLayout(6, 8)))
    assert (outcome.signal, outcome.reason) == (Signal.ATTENTION, "rack_unreadable")  # staff look at the smear
    rack = [m for m in stored(box, key) if m.kind == "rack"]
    assert len(rack) == 1 and str(rack[0].msg_id) == outcome.message_id
    body = rack[0].body
    check_rack(body)
    assert {t["position"]: t["tube"] for t in body["tubes"]} == photo.tubes
    assert {t["tube"]: t["pool"] for t in body["tubes"] if t["pool"]} == {
        c: pooled[c] for c in codes[:2] if c in photo.tubes.values()}
    assert set(body["missing"]) == photo.missing and set(body["unreadable"]) == photo.damaged
    assert body["layout"] == "6x8" and body["count"] == len(photo.tubes)
    (ticket,) = [t for t in ctx.tickets.tickets if t[0] == "rack"]  # type: ignore[attr-defined]
    assert ticket[1]["count"] == len(photo.tubes) and ticket[1]["wells"] == 48
    assert ticket[1]["missing"] == ", ".join(body["missing"])


def test_a_rack_photo_without_a_rack_stores_nothing(box, key) -> None:
    flow = MassTestFlow(make_ctx(with_seal(box)))
    outcome = flow.handle(RackRead(None, "too_few_codes", "hold the rack under the camera"))
    assert (outcome.signal, outcome.reason) == (Signal.REJECTED, "too_few_codes")
    assert stored(box, key) == []


def test_a_data_matrix_tube_label_opens_a_tube(box, key) -> None:
    flow = MassTestFlow(make_ctx(with_seal(box)))
    assert flow.handle(tube("T00001234", Symbology.DATAMATRIX)).signal is Signal.ACCEPTED
    assert flow.open_tube is not None and flow.open_tube.format == "DataMatrix"


# -- through the broker to the central store -------------------------------------------------------------

def test_rack_result_end_to_end_and_a_malformed_one_refused(tmp_path) -> None:
    from central.site import add_device
    from edge import config as edge_config
    from edge.flows.base import FlowContext
    from edge.runtime import build_uplink
    from tests.support.mqtt_helpers import running_central, wait_until

    with running_central(tmp_path) as (site, store, _):
        cfg = edge_config.load(add_device(site, store, "box-0001", "clinic-a", tmp_path / "box-0001",
                                          {"receipt_timeout": 2.0}))
        up = build_uplink(cfg, ["qr"])
        up.outbox.start_boot()
        flow = MassTestFlow(FlowContext(up.outbox, clinic="clinic-a"))
        codes = tube_codes(48, seed=21)
        flow.handle(tube(codes[0], Symbology.DATAMATRIX))  # a tube pooled with one person's ID card ...
        flow.ctx.pseudonym_key = b"k" * 32
        flow.handle(IdPresented(from_id_card(sample_cards()["resident"])))
        pooled = flow.handle(ButtonPress("close")).message_id
        assert pooled is not None
        photo = render_rack(6, 8, seed=21, angle=-20.0, perspective=0.05, missing=2, damaged=1, codes=codes)
        good = flow.handle(read_rack(photo.frame, RackLayout(6, 8)))
        assert good.message_id is not None
        bad = _body()
        bad["tubes"][1]["position"] = "A1"  # signed by the box, but two tubes in one well
        forged = up.outbox.enqueue("rack", bad)
        up.start()
        try:
            wait_until(lambda: up.drained(), what="delivery")
            wait_until(lambda: store.counts()["rejections"].get("bad_rack_duplicate_position") == 1, 10,
                       "the refusal")
        finally:
            up.stop()
        rows = [r for r in store.iter_results() if r["kind"] == "rack"]
        assert [r["msg_id"] for r in rows] == [good.message_id]  # stored once; the malformed one is not
        placed = {t["position"]: t["tube"] for t in rows[0]["body"]["tubes"]}
        assert placed.items() <= photo.tubes.items() and len(placed) >= len(photo.tubes) - 1
        held = store.execute("SELECT msg_id FROM quarantine").fetchall()
        assert [h[0] for h in held] == [str(forged.msg_id)]
        assert uuid.UUID(good.message_id)
        first = next(p for p, t in photo.tubes.items() if t == codes[0])  # ... and then racked
        assert store.rack_places(codes[0]) == [{"msg_id": good.message_id, "device": "box-0001", "position": first,
                                                "layout": "6x8", "rack": None, "pool": pooled}]
        assert [b["msg_id"] for b in store.pool_members(codes[0])] == [pooled]


def test_the_ingest_stores_a_rack_once_and_refuses_forged_and_malformed_ones(site, store, tmp_path) -> None:
    from central.ingest import Inbound, Ingest
    from central.site import add_device
    from edge import config as edge_config
    from edge.boxfiles import load_identity, open_outbox
    from tests.support.mqtt_helpers import TopicRecordingClient

    ingest = Ingest(site.config, store)
    ingest.client = TopicRecordingClient()

    def box_of(device: str):
        cfg = edge_config.load(add_device(site, store, device, "clinic-a", tmp_path / device))
        box = open_outbox(cfg, load_identity(cfg))
        box.start_boot()
        return box

    def deliver(*rows) -> dict[str, int]:
        return ingest.process([Inbound(i, 1, t, p) for i, (t, p) in enumerate(rows, start=1)])

    mine, other = box_of("box-0001"), box_of("box-0002")
    good = mine.enqueue("rack", _body(8, 12))
    row = mine.pending()[-1]
    assert deliver((row.topic, row.payload)) == {"stored": 1, "presence": 0}
    assert deliver((row.topic, row.payload)) == {"duplicate": 1, "presence": 0}  # delivered again: stored once
    tampered = bytearray(row.payload)
    tampered[tampered.find(b"T00000001")] ^= 0x01  # one tube code changed after signing
    other.enqueue("rack", _body(8, 12))
    foreign = other.pending()[-1].payload  # signed by another box, sent as this one
    assert deliver((row.topic, bytes(tampered)), (row.topic, foreign)) == {
        "rejected:bad_signature": 2, "presence": 0}
    wide = _body(8, 12)
    wide["tubes"][0]["position"] = "I1"  # a ninth row
    mine.enqueue("rack", wide)
    bad = mine.pending()[-1]
    assert deliver((bad.topic, bad.payload)) == {"quarantined": 1, "presence": 0}
    assert [r["msg_id"] for r in store.iter_results() if r["kind"] == "rack"] == [str(good.msg_id)]
    assert store.counts()["rejections"] == {"bad_signature": 2, "bad_rack_position": 1}


def test_a_rack_with_one_filled_row_and_a_heap_of_codes() -> None:
    row = [_code(f"T0{c:02d}00000", 100 + 50 * c, 300) for c in range(8)]
    reading = locate(row, RackLayout(6, 8))
    assert [t.position for t in reading.tubes] == [f"A{c + 1}" for c in range(8)]
    assert len(reading.missing) == 40 and not reading.anchored  # which row it is cannot be told
    heap = [_code(f"T{i:08d}", int(x), int(y)) for i, (x, y) in
            enumerate(np.random.default_rng(1).uniform(0, 400, size=(12, 2)))]
    with pytest.raises(RackProblem) as exc:
        locate(heap, RackLayout(6, 8))
    assert exc.value.reason in ("not_a_grid", "does_not_fit")
