"""The report desk: card shown, page under the camera, button, one signed report result and its summary ticket."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.config import EdgeConfig
from edge.feedback import Signal
from edge.flows.reports import ReportFlow
from edge.reports.catalogue import load_catalogue
from edge.reports.worker import ReportRead, ReportWorker
from edge.runtime import build_station
from tests.hw_sim.camera import MemoryCamera, Scene, health_card_tokens, render_qr_frame
from tests.hw_sim.reports import darkened, make_report, photograph, reading_skip
from tests.support.flow_helpers import RecordingFeedback, RecordingTickets, make_ctx, qr, stored
from tests.support.mqtt_helpers import wait_until

TOKEN = health_card_tokens(1, seed=11)[0]
reading = reading_skip()  # the tests that read a generated page need the OCR models and the fonts


@reading
def test_card_then_page_gives_one_signed_report_and_a_summary(tmp_path: Path, key, box) -> None:
    page = photograph(make_report(21, "ruled"), "photo")
    cfg = EdgeConfig.model_validate({
        "device": {"id": "box-1", "clinic": "clinic-a", "key": "k.pem", "cert": "c.pem", "state_dir": str(tmp_path)},
        "mqtt": {"host": "localhost", "ca": "ca.pem"},
        "station": {"flow": "report", "online_lookup": False}})
    tickets, lights = RecordingTickets(), RecordingFeedback()
    parts = None

    def press_button() -> None:
        assert parts is not None and parts.documents.request()

    frames = [render_qr_frame(TOKEN, Scene(size=480), width=1280, height=960)] * 3 + [page.frame] * 3
    parts = build_station(cfg, box, tickets=tickets, feedback=lights,
                          source=MemoryCamera(frames, {3: press_button}))
    parts.runner.start()
    try:
        parts.station.run()
        assert parts.documents.wait_idle(60)
        wait_until(lambda: len(stored(box, key)) == 1, 30, "the report result")
        assert parts.runner.wait_idle(10)
    finally:
        parts.close()
    (msg,) = stored(box, key)  # one press, one page, one result; the card itself stores nothing
    body = msg.body
    assert msg.kind == "report" and body["flow"] == "report" and body["card_ref"] and body["card_outcome"] == "green"
    cat = load_catalogue()
    truth = {m.item.code for m in (cat.match(i.name) for i in page.items) if m is not None}
    read = {item["code"] for item in body["items"]}
    assert len(read & truth) >= 0.8 * len(truth)
    assert body["risk"]["colour"] in ("green", "yellow", "orange", "red") and body["fhir"]["resourceType"] == "Bundle"
    assert "patient" not in body and body.get("personal_omitted") is True  # this outbox has no sealing key
    assert [kind for kind, _ in tickets.tickets] == ["report_summary"]
    assert lights.shown[0] is Signal.ACCEPTED  # the card
    assert lights.shown[-1] in (Signal.ACCEPTED, Signal.ATTENTION)
    assert parts.documents.read_count == 1


@reading
def test_unreadable_page_stores_nothing_and_says_why(box, key) -> None:
    events: list[ReportRead] = []
    from edge.reports.reader import ReportReader

    worker = ReportWorker(ReportReader, events.append).start()
    try:
        assert worker.offer(np.zeros((10, 10, 3), np.uint8), False) is False  # no request: frames pass by
        assert worker.request() and not worker.request()  # a second press while one is pending is ignored
        dark = darkened(photograph(make_report(5, "plain"), "scan").frame)
        assert worker.offer(dark, False)
        assert worker.wait_idle(30)
    finally:
        worker.stop()
    (event,) = events
    assert event.report is None and event.problem == "too_dark" and "bright" in event.instruction
    ctx = make_ctx(box)
    outcome = ReportFlow(ctx).handle(event)
    assert outcome.signal is Signal.ATTENTION and outcome.reason == "too_dark"
    assert stored(box, key) == [] and ctx.tickets.tickets == []


def test_holder_window_red_codes_and_pages_without_a_card(box, key) -> None:
    from edge.reports.structure import structure
    from tests.support.report_pages import page, table

    now = [1000.0]
    ctx = make_ctx(box)
    flow = ReportFlow(ctx, attach_window=60, clock=lambda: now[0])
    report = structure(page(["血常规检验报告单"], [table(["项目", "结果", "单位", "参考范围"], [
        ["血红蛋白", "126", "g/L", "115-150"], ["白细胞", "6.2", "10^9/L", "3.5-9.5"], ["血小板", "210", "10^9/L", "125-350"]])]))
    assert len(report.items) == 3
    assert flow.handle(qr("https://example.org/x")).signal is Signal.REJECTED and flow.holder() is None
    assert flow.handle(qr(TOKEN)).signal is Signal.ACCEPTED and flow.holder()["card_ref"]
    first = flow.handle(ReportRead(report))
    now[0] += 59
    assert flow.holder() is not None  # each page keeps the window open for the next one
    now[0] += 61
    second = flow.handle(ReportRead(report))
    assert first.message_id and second.message_id and second.reason == "no_card"
    assert second.signal is Signal.ATTENTION
    a, b = stored(box, key)
    assert a.body["card_ref"] and b.body["card_ref"] is None
    assert len(ctx.tickets.tickets) == 2
