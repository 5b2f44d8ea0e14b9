"""The print_test command: queued by the uplink's process, printed by the station's printer worker."""

from __future__ import annotations

from pathlib import Path

from drivers.printer import TicketPrinter
from edge.appliance.printtest import print_test
from edge.config import EdgeConfig
from tests.hw_sim.printer import PrinterSimulator


def _cfg(tmp_path: Path, connection: str) -> EdgeConfig:
    return EdgeConfig.model_validate({
        "device": {"id": "box-1", "clinic": "clinic-a", "key": "k.pem", "cert": "c.pem", "state_dir": str(tmp_path)},
        "mqtt": {"host": "localhost", "ca": "ca.pem"},
        "printer": {"connection": connection, "paper": "58mm", "settle": 0.0, "idle_check": 0.2}})


def test_the_station_prints_a_ticket_queued_by_the_uplink(tmp_path: Path) -> None:
    with PrinterSimulator() as sim:
        cfg = _cfg(tmp_path, f"serial:{sim.path}")
        with TicketPrinter(cfg.printer, tmp_path):  # the station's printer, idle
            answer = print_test(cfg)  # the uplink's command handler, with its own connection to the queue
            assert answer["ok"] and answer["job"]
            (ticket,) = sim.wait_for_tickets(1)
        assert any("box-1" in line for line in ticket.texts)
        assert ticket.qr_codes and ticket.qr_codes[0].startswith("EHCPAIR1;device=box-1;")


def test_no_printer_configured(tmp_path: Path) -> None:
    assert print_test(_cfg(tmp_path, "none")) == {"ok": False, "error": "no_printer"}
