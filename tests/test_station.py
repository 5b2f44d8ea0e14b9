"""The scanning station over the simulated camera, storing into a real signed outbox."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from drivers.camera import LatestFrameGrabber
from edge.qrscan import PayloadKind
from edge.station import Indication, Outcome, ScanResult, Station, StationStats
from mqtt import envelope
from mqtt.outbox import DeviceIdentity, Outbox, OutboxError, OutboxFull
from provisioning.ca import generate_key
from tests.hw_sim.camera import SimulatedQrCamera, health_card_tokens


@pytest.fixture
def key():
    return generate_key()


@pytest.fixture
def box(tmp_path: Path, key):
    b = Outbox(tmp_path / "o.db", DeviceIdentity("box-1", "clinic-a", key))
    b.start_boot()
    yield b
    b.close()


class FakeClock:
    """Monotonic seconds that tests advance by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scans(box: Outbox, key) -> list[tuple[envelope.Message, bytes]]:
    rows = box.pending(limit=1000)
    return [(envelope.verify(r.payload, r.topic, key.public_key()), r.payload) for r in rows]


def test_one_scan_per_card_held_up(box: Outbox, key) -> None:
    tokens = health_card_tokens(3, seed=1)
    cam = SimulatedQrCamera(tokens, frames_per_code=4, blank_frames=2, angle=(-25, 25), size=(160, 260),
                            blur=(0, 1.0), noise=(0, 6), jitter=0.2, seed=11)
    seen: list[ScanResult] = []
    stats = Station(cam, box, on_result=seen.append).run()

    assert stats == StationStats(frames=18, decoded=12, scans=3, duplicates_suppressed=9, rejected=0,
                                 store_failures=0, dropped_frames=0)
    assert [r.indication for r in seen] == [Indication.GREEN] * 3
    assert not cam.is_open

    stored = _scans(box, key)
    assert len(stored) == 3
    assert box.stats().depth == 3
    for (msg, raw), token in zip(stored, tokens):
        assert msg.kind == "scan" and msg.device == "box-1"
        body = msg.body
        assert body["outcome"] == "green" and body["reason"] is None
        assert body["kind"] == "ehc_token" and body["code_type"] == 1
        assert body["card_ref"] == hashlib.sha256(token.encode()).hexdigest()[:16]
        assert body["verified"] is False and body["pending"] == "online_lookup"
        assert body["decoder"] == "zxing-cpp" and body["decode_ms"] > 0
        # privacy: the token appears nowhere in the signed message
        hex_part = token.split(":")[0]
        assert hex_part.encode() not in raw and hex_part.lower().encode() not in raw
        assert all(hex_part not in str(v) for v in body.values())
    assert [r.message_id for r in seen] == [str(m.msg_id) for m, _ in stored]


def test_verified_signature_is_bound_to_the_topic(box: Outbox, key) -> None:
    Station(SimulatedQrCamera(health_card_tokens(1)), box).run()
    (row,) = box.pending()
    assert envelope.verify(row.payload, row.topic, key.public_key()).kind == "scan"
    with pytest.raises(envelope.SignatureInvalid):
        envelope.verify(row.payload, row.topic.replace("/scan", "/other"), key.public_key())


def test_red_results_carry_the_reason(box: Outbox, key) -> None:
    token = health_card_tokens(1)[0]
    payloads = [token[:-2] + ":123", "https://example.org/", "HC1:NCFOXN%TS3DH", "shc:/567629", "EHC1:x1", token]
    seen: list[ScanResult] = []
    stats = Station(SimulatedQrCamera(payloads), box, on_result=seen.append).run()

    assert (stats.scans, stats.rejected, stats.store_failures) == (6, 5, 0)
    got = [(r.kind, r.outcome, r.reason, r.indication) for r in seen]
    assert got == [
        (PayloadKind.MALFORMED, Outcome.RED, "bad_token", Indication.RED),
        (PayloadKind.UNKNOWN, Outcome.RED, "unknown_format", Indication.RED),
        (PayloadKind.HC1, Outcome.RED, "unsupported_format", Indication.RED),
        (PayloadKind.SHC, Outcome.RED, "unsupported_format", Indication.RED),
        (PayloadKind.EHC1, Outcome.RED, "unsupported_format", Indication.RED),
        (PayloadKind.EHC_TOKEN, Outcome.GREEN, None, Indication.GREEN),
    ]
    bodies = [m.body for m, _ in _scans(box, key)]
    assert [b["outcome"] for b in bodies] == ["red"] * 5 + ["green"]
    assert all(b["card_ref"] is None and b["pending"] is None for b in bodies[:5])
    for _, raw in _scans(box, key):
        assert b"example.org" not in raw and b"NCFOXN" not in raw


def test_same_code_after_the_window_is_a_new_scan(box: Outbox) -> None:
    token = health_card_tokens(1)[0]
    clock = FakeClock()
    station = Station(SimulatedQrCamera([]), box, dedupe_window=3.0, clock=clock)
    frame = SimulatedQrCamera([token])
    with frame:
        image = frame.read()

    assert len(station.process_frame(image)) == 1
    clock.now += 2.0
    assert station.process_frame(image) == []          # still held up
    clock.now += 2.5
    assert station.process_frame(image) == []          # window slides while the phone stays
    clock.now += 3.5
    assert len(station.process_frame(image)) == 1      # shown again after a pause
    assert station.stats.scans == 2 and station.stats.duplicates_suppressed == 2


def test_other_codes_are_not_suppressed(box: Outbox) -> None:
    a, b = health_card_tokens(2, seed=5)
    stats = Station(SimulatedQrCamera([a, b, a], frames_per_code=2), box, dedupe_window=60).run()
    # a, b scanned; a again within the window is a duplicate
    assert (stats.scans, stats.duplicates_suppressed) == (2, 4)


def _fill(box: Outbox) -> None:
    """Fill the outbox until even a tiny message does not fit."""
    for pad in (100_000, 10_000, 1_000, 100, 1):
        try:
            while True:
                box.enqueue("fill", {"pad": "x" * pad})
        except OutboxFull:
            pass


def test_full_outbox_is_reported_not_hidden(tmp_path: Path, key) -> None:
    box = Outbox(tmp_path / "small.db", DeviceIdentity("box-1", "clinic-a", key), max_bytes=1024 * 1024)
    box.start_boot()
    _fill(box)
    depth = box.stats().depth

    seen: list[ScanResult] = []
    stats = Station(SimulatedQrCamera(health_card_tokens(2), frames_per_code=2), box, on_result=seen.append).run()

    assert (stats.scans, stats.store_failures, stats.duplicates_suppressed) == (0, 2, 2)
    assert [(r.stored, r.store_error, r.indication) for r in seen] == \
        [(False, "outbox_full", Indication.NOT_RECORDED)] * 2
    assert all(r.outcome is Outcome.GREEN and r.message_id is None for r in seen)
    assert box.stats().depth == depth
    box.close()


def test_outbox_error_counts_and_scanning_continues(box: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    real = box.enqueue
    calls = {"n": 0}

    def flaky(kind, body):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OutboxError("outbox write failed: disk I/O error")
        return real(kind, body)

    monkeypatch.setattr(box, "enqueue", flaky)
    seen: list[ScanResult] = []
    stats = Station(SimulatedQrCamera(health_card_tokens(3)), box, on_result=seen.append).run()
    assert (stats.scans, stats.store_failures) == (2, 1)
    assert [r.indication for r in seen] == [Indication.NOT_RECORDED, Indication.GREEN, Indication.GREEN]
    assert seen[0].store_error == "outbox_error"
    assert box.stats().depth == 2


def test_callback_failure_does_not_stop_scanning(box: Outbox) -> None:
    def broken(result: ScanResult) -> None:
        raise RuntimeError("display unplugged")

    stats = Station(SimulatedQrCamera(health_card_tokens(2)), box, on_result=broken).run()
    assert stats.scans == 2


def test_logs_hold_no_token(box: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    tokens = health_card_tokens(2, seed=8)
    with caplog.at_level("DEBUG"):
        Station(SimulatedQrCamera(tokens + ["HC1:NCFOXN%TS3DH"]), box).run()
    assert "scan " in caplog.text
    for secret in [t.split(":")[0] for t in tokens] + ["NCFOXN"]:
        assert secret not in caplog.text


def test_max_frames_and_stop(box: Outbox) -> None:
    cam = SimulatedQrCamera([None], loop=True)
    assert Station(cam, box).run(max_frames=5).frames == 5
    stop = threading.Event()
    stop.set()
    assert Station(SimulatedQrCamera([None], loop=True), box).run(stop=stop).frames == 0


def test_live_camera_through_grabber_until_stopped(box: Outbox) -> None:
    """A paced, endless camera behind the latest-frame grabber; another thread stops the station."""
    tokens = health_card_tokens(2, seed=3)
    cam = SimulatedQrCamera(tokens, frames_per_code=5, blank_frames=3, loop=True, fps=100)
    stop = threading.Event()
    seen: list[ScanResult] = []

    def on_result(result: ScanResult) -> None:
        seen.append(result)
        if len(seen) == 2:
            stop.set()

    station = Station(LatestFrameGrabber(cam), box, on_result=on_result, dedupe_window=60)
    stats = station.run(max_frames=5000, stop=stop)
    assert stats.scans == 2 and box.stats().depth == 2
    assert stats.frames >= 2
    assert not cam.is_open
