"""The station end to end: simulated camera, real decoders, flows in their own thread, a signed outbox."""

from __future__ import annotations

import threading

import pytest

from drivers.camera import LatestFrameGrabber
from edge.feedback import Signal
from edge.flows.base import ButtonPress, FlowContext, FlowOutcome
from edge.flows.checkin import CheckinFlow
from edge.flows.masstest import MassTestFlow, PoolSettings
from edge.flows.runner import FlowRunner
from edge.station import Station, StationStats
from mqtt.outbox import Outbox
from tests.hw_sim.camera import FlakySource, SimulatedQrCamera, health_card_tokens
from tests.support.flow_helpers import make_ctx, personal, stored, with_seal


def _run(station: Station, runner: FlowRunner, **kw) -> StationStats:
    runner.start()
    try:
        stats = station.run(**kw)
        assert runner.wait_idle(30)
    finally:
        runner.stop()
    return stats


def test_checkin_one_result_per_person_with_signals_and_tickets(box: Outbox, key) -> None:
    tokens = health_card_tokens(3, seed=1)
    shown = tokens + ["https://example.org/not-a-card", "HC1:6BFOXN%TS3DH0YOJ58S"]
    cam = SimulatedQrCamera(shown, frames_per_code=4, blank_frames=2, angle=(-25, 25), size=(160, 260),
                            blur=(0, 1.0), noise=(0, 6), jitter=0.2, seed=11)
    ctx = make_ctx(box)
    runner = FlowRunner(CheckinFlow(ctx), ctx)
    stats = _run(Station(cam, runner), runner)

    assert stats == StationStats(frames=30, decoded=20, scans=5, duplicates_suppressed=15)
    assert ctx.feedback.shown == [Signal.ACCEPTED] * 3 + [Signal.REJECTED, Signal.ATTENTION]  # type: ignore[attr-defined]
    msgs = stored(box, key)
    assert [m.body["outcome"] for m in msgs] == ["green"] * 3 + ["red", "yellow"]
    assert [t[1]["number"] for t in ctx.tickets.tickets] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert len(runner.stats.latency_ms) == 5 and all(ms > 0 for ms in runner.stats.latency_ms)
    assert not cam.is_open


def test_masstest_over_the_camera_binds_tubes_and_people(box: Outbox, key) -> None:
    people = health_card_tokens(5, seed=2)
    shown: list[str | tuple[str, str] | None] = [("Code128", "TUBE-100001"), people[0], people[1], people[1],
                                                 ("Code128", "TUBE-100002"), people[2], people[0], people[3]]
    cam = SimulatedQrCamera(shown, frames_per_code=3, blank_frames=1, angle=(-10, 10), noise=(0, 4), seed=3)
    ctx = make_ctx(with_seal(box))
    runner = FlowRunner(MassTestFlow(ctx, PoolSettings(capacity=10)), ctx)
    # the same code shown again right after is one scan; a 0.0 s window lets the repeated person through
    station = Station(cam, runner, dedupe_window=0.0)
    _run(station, runner)
    runner.start()
    runner.submit(ButtonPress("close"))
    assert runner.wait_idle(10)
    runner.stop()

    tubes = [{**m.body, **personal(m)} for m in stored(box, key)]
    assert [(b["tube"], b["members"], b["closed_by"]) for b in tubes] == [
        ("TUBE-100001", [people[0][:64], people[1][:64]], "next_tube"),
        ("TUBE-100002", [people[2][:64], people[3][:64]], "button")]
    assert runner.stats.signals["rejected"] >= 1  # people[0] into a second tube


def test_a_slow_flow_never_blocks_the_camera_and_busy_is_shown(box: Outbox) -> None:
    release = threading.Event()

    class SlowFlow:
        name = "slow"

        def handle(self, event):  # type: ignore[no-untyped-def]
            release.wait(30)
            return FlowOutcome(Signal.ACCEPTED)

    ctx = make_ctx(box)
    runner = FlowRunner(SlowFlow(), ctx, max_pending=2).start()
    cam = SimulatedQrCamera(health_card_tokens(6, seed=4), frames_per_code=1)
    stats = Station(cam, runner).run()  # returns although the flow has not handled one event
    assert stats.frames == 6 and runner.stats.handled == 0
    # at most one event in the flow and two waiting; the rest refused and shown as not recorded
    assert stats.scans in (2, 3) and stats.scans + stats.busy_refused == 6
    assert ctx.feedback.shown == [Signal.NOT_RECORDED] * stats.busy_refused  # type: ignore[attr-defined]
    release.set()
    assert runner.wait_idle(10) and runner.stats.handled == stats.scans
    runner.stop()


def test_flow_errors_are_shown_and_scanning_goes_on(box: Outbox) -> None:
    class BrokenFlow:
        name = "broken"

        def handle(self, event):  # type: ignore[no-untyped-def]
            raise RuntimeError("bug")

    ctx = make_ctx(box)
    runner = FlowRunner(BrokenFlow(), ctx)
    stats = _run(Station(SimulatedQrCamera(health_card_tokens(2, seed=5)), runner), runner)
    assert stats.scans == 2 and runner.stats.errors == 2
    assert ctx.feedback.shown == [Signal.NOT_RECORDED] * 2  # type: ignore[attr-defined]


def test_camera_lost_and_back_is_signalled_and_stored(box: Outbox, key) -> None:
    tokens = health_card_tokens(2, seed=6)
    inner = SimulatedQrCamera([tokens[0], None, None, tokens[1]], frames_per_code=2, loop=True)
    grabber = LatestFrameGrabber(FlakySource(inner, fail_reads={3}), backoff_min=0.01, read_timeout=0.05)
    ctx = make_ctx(box)
    runner = FlowRunner(CheckinFlow(ctx), ctx)
    stop = threading.Event()
    runner.on_outcome = lambda event, outcome, ms: None
    station = Station(grabber, runner, dedupe_window=60)

    def watch() -> None:
        while not stop.is_set():
            if station.stats.camera_errors and station.stats.scans >= 2 and station.camera_state == "running":
                stop.set()
            stop.wait(0.01)

    threading.Thread(target=watch, daemon=True).start()
    stats = _run(station, runner, stop=stop, max_frames=2000)
    assert stats.camera_errors == 1
    alerts = [m.body for m in stored(box, key) if m.kind == "alert"]
    assert alerts == [{"part": "camera", "state": "error", "error": "CameraError: simulated: camera unplugged"},
                      {"part": "camera", "state": "ok", "error": None}]
    assert Signal.FAULT in ctx.feedback.shown and Signal.READY in ctx.feedback.shown  # type: ignore[attr-defined]


def test_a_1d_code_needs_two_matching_reads(box: Outbox) -> None:
    ctx = make_ctx(box)
    runner = FlowRunner(MassTestFlow(ctx), ctx)
    once = SimulatedQrCamera([("Code128", "TUBE-200001"), None], frames_per_code=1)
    assert _run(Station(once, runner), runner).scans == 0
    runner = FlowRunner(MassTestFlow(ctx), ctx)
    twice = SimulatedQrCamera([("Code128", "TUBE-200001")], frames_per_code=2)
    assert _run(Station(twice, runner), runner).scans == 1


def test_logs_hold_no_token(box: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    tokens = health_card_tokens(2, seed=8)
    ctx = FlowContext(box)
    runner = FlowRunner(CheckinFlow(ctx), ctx)
    with caplog.at_level("DEBUG"):
        _run(Station(SimulatedQrCamera(tokens + ["HC1:NCFOXN%TS3DH"]), runner), runner)
    assert "check-in " in caplog.text
    for secret in [t.split(":")[0] for t in tokens] + ["NCFOXN"]:
        assert secret not in caplog.text


def test_max_frames_and_stop(box: Outbox) -> None:
    ctx = make_ctx(box)
    runner = FlowRunner(CheckinFlow(ctx), ctx)
    assert Station(SimulatedQrCamera([None], loop=True), runner).run(max_frames=5).frames == 5
    stop = threading.Event()
    stop.set()
    assert Station(SimulatedQrCamera([None], loop=True), runner).run(stop=stop).frames == 0


def test_a_rack_in_view_opens_no_tube_where_racks_are_read_and_labels_pass_elsewhere(box: Outbox) -> None:
    from edge.station import RACK_LABELS
    from tests.hw_sim.camera import MemoryCamera
    from tests.hw_sim.rack import render_rack

    photo = render_rack(2, 3, seed=3, missing=0, damaged=0, fill=0.5, width=1280, height=720)
    ctx = make_ctx(box)
    runner = FlowRunner(MassTestFlow(ctx), ctx)
    racks = _run(Station(MemoryCamera([photo.frame] * 2), runner, rack_labels=RACK_LABELS), runner)
    assert (racks.rack_frames, racks.scans) == (2, 0)
    runner = FlowRunner(MassTestFlow(ctx), ctx)
    plain = _run(Station(MemoryCamera([photo.frame] * 2), runner), runner)
    assert (plain.rack_frames, plain.scans) == (0, 6)  # every label is a scan where racks are not read
