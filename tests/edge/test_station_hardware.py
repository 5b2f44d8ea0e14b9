"""The configured station with its simulated hardware: ESC/POS printer on a pty, gpiozero mock pins."""

from __future__ import annotations

import threading
from pathlib import Path

from drivers.gpio import Color
from edge.config import EdgeConfig
from edge.runtime import build_station
from tests.hw_sim.camera import SimulatedQrCamera, health_card_tokens
from tests.hw_sim.printer import PrinterSimulator
from tests.support.flow_helpers import open_box, personal, stored, with_seal
from tests.support.mqtt_helpers import wait_until


def _config(tmp_path: Path, printer: str, flow: str, **sections: dict) -> EdgeConfig:
    return EdgeConfig.model_validate({**sections,
        "device": {"id": "box-1", "clinic": "clinic-a", "key": "k.pem", "cert": "c.pem", "state_dir": str(tmp_path)},
        "mqtt": {"host": "localhost", "ca": "ca.pem"},
        "station": {"flow": flow, "pool_capacity": 5},
        "printer": {"connection": f"serial:{printer}", "paper": "58mm", "retry_interval": 0.1, "settle": 0.0},
        "gpio": {"pin_factory": "mock", "hold": 0.2},
    })


def test_checkin_prints_queue_tickets_and_lights_up(tmp_path: Path, key) -> None:
    tokens = health_card_tokens(2, seed=21)
    with PrinterSimulator() as sim:
        box = open_box(tmp_path / "o.db", key)
        parts = build_station(_config(tmp_path, sim.path, "checkin"), box,
                              source=SimulatedQrCamera(tokens + ["https://not-a-card"], frames_per_code=2))
        parts.runner.start()
        parts.station.run()
        assert parts.runner.wait_idle(10)
        tickets = sim.wait_for_tickets(2)
        assert [t.find("已登记 Registered").bold for t in tickets] == [True, True]
        assert [t.find("排队号").text for t in tickets] and "1" in tickets[0].texts and "2" in tickets[1].texts
        green = parts.lights.panel._light.leds[Color.GREEN].pin  # type: ignore[union-attr]
        assert any(s.state for s in green.states)
        assert [m.body["queue_no"] for m in stored(box, key)] == [1, 2, None]
        parts.close()
        box.close()


def test_masstest_button_closes_the_tube_and_prints_the_pool_ticket(tmp_path: Path, key) -> None:
    people = health_card_tokens(2, seed=22)
    with PrinterSimulator() as sim:
        box = with_seal(open_box(tmp_path / "o.db", key))  # health cards bind only on a box that can seal
        parts = build_station(_config(tmp_path, sim.path, "masstest"), box, source=SimulatedQrCamera(
            [("Code128", "TUBE-300001"), people[0], people[1]], frames_per_code=3))
        parts.runner.start()
        parts.station.run()
        button = parts.lights.panel._button.pin  # type: ignore[union-attr]
        button.drive_low()   # the operator presses the button
        button.drive_high()
        wait_until(lambda: any(m.kind == "pool" for m in stored(box, key)), 10)
        (msg,) = [m for m in stored(box, key) if m.kind == "pool"]
        pool = msg.body
        assert pool["tube"] == "TUBE-300001" and pool["count"] == 2 and pool["closed_by"] == "button"
        assert personal(msg) == {"members": [p[:64].upper() for p in people]}
        (ticket,) = sim.wait_for_tickets(1)
        assert any("TUBE-300001" in line for line in ticket.texts)
        parts.close()
        box.close()


def test_printer_out_of_paper_is_an_alert_and_recovers(tmp_path: Path, key) -> None:
    with PrinterSimulator() as sim:
        sim.paper_out()
        box = open_box(tmp_path / "o.db", key)
        stop = threading.Event()
        parts = build_station(_config(tmp_path, sim.path, "checkin"), box,
                              source=SimulatedQrCamera(health_card_tokens(1, seed=23), frames_per_code=2))
        parts.runner.start()
        parts.station.run(stop=stop)
        wait_until(lambda: any(m.kind == "alert" for m in stored(box, key)), 10)
        sim.recover()
        assert len(sim.wait_for_tickets(1)) == 1  # the queued ticket prints once the paper is back
        wait_until(lambda: [m.body["state"] for m in stored(box, key) if m.kind == "alert"] == ["error", "ok"],
                          10)
        alerts = [m.body for m in stored(box, key) if m.kind == "alert"]
        assert alerts[0] == {"part": "printer", "state": "error", "error": "paper_out"}
        parts.close()
        box.close()


def test_id_card_on_the_reader_checks_in_and_prints_a_masked_receipt(tmp_path: Path, key) -> None:
    from tests.hw_sim.idcard_reader import SimulatedIdCardReader, sample_cards

    (tmp_path / "pseudonym.key").write_bytes(b"p" * 32)
    with PrinterSimulator() as printer, SimulatedIdCardReader(read_time=0.05) as reader:
        cfg = _config(tmp_path, printer.path, "checkin", idcard={"port": reader.port, "poll_interval": 0.05},
                      identity={"pseudonym_key": str(tmp_path / "pseudonym.key")})
        box = open_box(tmp_path / "o.db", key)
        parts = build_station(cfg, box, source=SimulatedQrCamera([None]))
        parts.runner.start()
        reader.place(sample_cards()["resident"])
        (ticket,) = printer.wait_for_tickets(1)
        assert ticket.find("王*") and ticket.find("1101**********002X")
        wait_until(lambda: len(stored(box, key)) == 1, 10)
        (msg,) = stored(box, key)
        assert msg.body["kind"] == "id_card" and len(msg.body["id_ref"]) == 32 and msg.body["outcome"] == "green"
        parts.close()
        box.close()


def test_masstest_button_held_reads_the_rack_prints_its_summary_and_signals(tmp_path: Path, key) -> None:
    from edge.rack import RackLayout
    from tests.hw_sim.camera import MemoryCamera
    from tests.hw_sim.rack import render_rack

    photo = render_rack(6, 8, seed=31, angle=8.0, perspective=0.04, missing=2, damaged=1)
    with PrinterSimulator() as sim:
        box = open_box(tmp_path / "o.db", key)
        cfg = _config(tmp_path, sim.path, "masstest", masstest={"rack_rows": 6, "rack_columns": 8})
        cfg = cfg.model_copy(update={"gpio": cfg.gpio.model_copy(update={"button_hold": 0.2})})
        held = threading.Event()

        def hold_button() -> None:  # the operator holds the button until the box has asked for the photo
            button.drive_low()
            wait_until(lambda: parts.documents.requested == 1, 5)
            button.drive_high()
            held.set()

        parts = build_station(cfg, box, source=MemoryCamera([photo.frame] * 3, before={1: hold_button}))
        button = parts.lights.panel._button.pin  # type: ignore[union-attr]
        assert parts.documents.layout == RackLayout(6, 8)
        parts.runner.start()
        parts.station.run()
        assert held.is_set() and parts.documents.wait_idle(20) and parts.runner.wait_idle(10)
        (msg,) = [m for m in stored(box, key) if m.kind == "rack"]
        assert {t["position"]: t["tube"] for t in msg.body["tubes"]}.items() <= photo.tubes.items()
        assert set(msg.body["missing"]) == photo.missing
        (ticket,) = sim.wait_for_tickets(1)
        assert any("6x8" in line for line in ticket.texts)
        # the press closed no tube (attention), the rack with a smeared label is attention too, on the amber light
        assert dict(parts.runner.stats.signals) == {"attention": 2}
        assert parts.station.stats.rack_frames == 3 and parts.station.stats.scans == 0  # no tube opened by the rack
        amber = parts.lights.panel._light.leds[Color.AMBER].pin  # type: ignore[union-attr]
        assert any(s.state for s in amber.states)
        parts.close()
        box.close()
