"""Print one sample of every ticket kind through the real driver into the simulator and save PNGs.

    .venv/bin/python -m tests.support.render_tickets docs/img            # 80 mm
    .venv/bin/python -m tests.support.render_tickets docs/img --paper 58mm

The bytes go the whole way: :class:`~drivers.printer.TicketPrinter` → python-escpos → pty →
:class:`~tests.hw_sim.printer.PrinterSimulator` → decoded :class:`~tests.hw_sim.printer.Ticket` → PNG.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from drivers.printer import PrinterSettings, TicketPrinter
from drivers.ticket_layout import PAPER_COLUMNS
from tests.hw_sim.printer import PrinterSimulator, Ticket, render_png

logger = logging.getLogger(__name__)

SAMPLES: dict[str, dict[str, Any]] = {
    "queue": {"clinic": "朝阳社区卫生服务中心", "number": "A012", "time": "2025-03-14 09:41",
              "outcome": "已登记 Registered", "note": "请到 3 号窗口候诊 Please wait at window 3"},
    "pool": {"tube": "T20250314-0042", "count": 10, "capacity": 10, "opened": "09:12", "closed": "09:41",
             "station": "采样点 3 / Station 3"},
    "rack": {"layout": "8x12", "count": 93, "wells": 96, "unreadable": "C4, F11", "missing": "H12",
             "rack": "RACK-0042", "station": "采样点 3 / Station 3", "read": "2025-03-14T10:02:00+00:00"},
    "selftest": {"device_id": "box-0042", "clinic": "clinic-7",
                 "checks": [{"part": "identity 身份", "status": "pass"}, {"part": "clock 时钟", "status": "pass"},
                            {"part": "camera 摄像头", "status": "pass"}, {"part": "broker", "status": "FAIL"},
                            {"part": "printer 打印机", "status": "pass"}],
                 "pairing_qr": "EHCPAIR1;box-0042;clinic-7;5F0C9A"},
    "registration": {"name": "张*丰", "id_masked": "1101**********1234", "time": "2025-03-14 09:41",
                     "outcome": "已登记 Registered"},
    "face_guidance": {"step1": "Please blink", "step2": "Please move closer to the camera",
                      "time": "2025-03-14 09:41"},
    "face_check": {"name": "张*丰", "outcome": "通过 Verified", "note": "", "time": "2025-03-14 09:41"},
    "report": {"title": "体检报告 Health check",
               "items": [{"name": "血红蛋白 Hemoglobin", "value": 128, "unit": "g/L", "flag": ""},
                         {"name": "空腹血糖 Glucose", "value": 7.9, "unit": "mmol/L", "flag": "↑"},
                         {"name": "血压 Blood pressure", "value": "142/91", "unit": "mmHg", "flag": "↑"},
                         {"name": "BMI", "value": 24.1, "unit": "", "flag": ""}],
               "risk": "中 Medium"},
    "report_summary": {"title": "血常规 Blood count", "kind": "cbc", "date": "2026-03-02",
                       "items": [{"name": "血红蛋白", "value": "98", "unit": "g/L", "flag": "↓"},
                                 {"name": "血小板计数", "value": "85", "unit": "10^9/L", "flag": "↓"}],
                       "normal": "", "missing": [{"name": "红细胞计数"}],
                       "risk": "黄色 一般风险 Yellow",
                       "rules": [{"text": "Y 附件3 黄色 2.6.2 妊娠合并贫血（Hb 60-110g/L）"}],
                       "notice": "辅助决策提示，须医生核对原始报告后评估 Decision support only: a clinician must verify"},
    "vaccination": {"title": "下次接种 Next doses", "child": "李*红", "date": "2026-11-25",
                    "items": [{"name": "乙肝疫苗 HepB 3", "when": "2026-11-25"},
                              {"name": "百白破疫苗 DTP 2", "when": "2026-12-20"},
                              {"name": "脊灰疫苗 Polio 3", "when": "2026-12-20"}],
                    "note": "请按时接种 Please come back on time"},
}
"""Fields for one ticket of each kind (also used by the tests)."""


def print_samples(paper: str = "80mm", kinds: list[str] | None = None) -> dict[str, Ticket]:
    """Print the samples through a simulated printer; the decoded tickets keyed by kind."""
    kinds = kinds or list(SAMPLES)
    with PrinterSimulator() as sim, tempfile.TemporaryDirectory() as state:
        settings = PrinterSettings(connection=f"serial:{sim.path}", paper=paper, status_timeout=0.5,
                                   retry_interval=0.05, settle=0.0, idle_check=0.0)
        with TicketPrinter(settings, state) as printer:
            for kind in kinds:
                printer.submit(kind, SAMPLES[kind])
            tickets = sim.wait_for_tickets(len(kinds))
    return dict(zip(kinds, tickets))


def main(argv: list[str] | None = None) -> int:
    """Write ``ticket-<kind>-<paper>.png`` for every kind into the given folder."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--paper", choices=sorted(PAPER_COLUMNS), default="80mm")
    args = ap.parse_args(argv)
    for kind, ticket in print_samples(args.paper).items():
        path = render_png(ticket, args.out / f"ticket-{kind}-{args.paper}.png", PAPER_COLUMNS[args.paper])
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
