"""Receipt printer: status codec, templates and layout, and the driver printing into a simulated printer on a pty."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from drivers import escpos_status
from drivers.escpos_status import Fault, PrinterStatus, StatusReplyError
from drivers.print_queue import JobState, PrintQueue, PrintQueueFull
from drivers.printer import (
    PrinterError,
    PrinterSettings,
    PrinterState,
    TicketPrinter,
    encode_chinese,
    open_device,
    parse_connection,
    read_status,
)
from drivers.ticket_layout import (
    KINDS,
    PAPER_COLUMNS,
    TEMPLATE_DIR,
    StyledLine,
    TemplateError,
    TicketFieldError,
    UnknownTicketKind,
    display_width,
    load_template,
    load_templates,
    parse_template,
    render,
    wrap,
)
from foundation.configbase import ConfigError, validate
from tests.hw_sim.printer import EscPosDecoder, PrinterSimulator, Ticket, decode, render_png
from tests.support.render_tickets import SAMPLES

# --- helpers ---------------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def sim() -> Iterator[PrinterSimulator]:
    with PrinterSimulator() as s:
        yield s


def settings_for(sim: PrinterSimulator, **kw: Any) -> PrinterSettings:
    values: dict[str, Any] = dict(connection=f"serial:{sim.path}", status_timeout=0.3, retry_interval=0.02,
                                  settle=0.0, idle_check=0.0)
    values.update(kw)
    return PrinterSettings(**values)


class States:
    """Collects on_state calls."""

    def __init__(self) -> None:
        self.seen: list[PrinterState] = []
        self._lock = threading.Lock()

    def __call__(self, state: PrinterState) -> None:
        with self._lock:
            self.seen.append(state)


def queue_fields(number: str, **kw: Any) -> dict[str, Any]:
    return {**SAMPLES["queue"], "number": number, **kw}


def number_of(ticket: Ticket) -> str:
    return next(ln.text for ln in ticket.lines if ln.width == 2)


def expected_texts(kind: str, fields: dict[str, Any], paper: str) -> list[StyledLine]:
    return [ln for ln in render(load_template(kind), fields, paper) if ln.qr is None and not ln.cut]


# --- status codec ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("replies, expected, condition", [
    ({1: 0x12, 2: 0x12, 4: 0x12}, PrinterStatus(), "ready"),
    ({1: 0x16, 2: 0x12, 4: 0x12}, PrinterStatus(drawer_pin_high=True), "ready"),
    ({1: 0x12, 2: 0x12, 4: 0x1E}, PrinterStatus(paper_near_end=True), "paper_low"),
    ({1: 0x12, 2: 0x12, 4: 0x16}, PrinterStatus(paper_near_end=True), "paper_low"),   # one near-end bit only
    ({1: 0x1A, 2: 0x32, 4: 0x7E}, PrinterStatus(online=False, paper_out=True, paper_near_end=True), "fault"),
    ({1: 0x1A, 2: 0x12, 4: 0x72}, PrinterStatus(online=False, paper_out=True), "fault"),
    ({1: 0x1A, 2: 0x16, 4: 0x12}, PrinterStatus(online=False, cover_open=True), "fault"),
    ({1: 0x1A, 2: 0x52, 3: 0x1A, 4: 0x12},
     PrinterStatus(online=False, error=True, autocutter_error=True), "fault"),
    ({1: 0x1A, 2: 0x52, 3: 0x32, 4: 0x12},
     PrinterStatus(online=False, error=True, unrecoverable_error=True), "fault"),
    ({1: 0x1A, 2: 0x12, 4: 0x12}, PrinterStatus(online=False), "fault"),
    ({1: 0x52, 2: 0x1A, 4: 0x12}, PrinterStatus(feed_button=True), "ready"),
])
def test_status_codec_byte_vectors(replies: dict[int, int], expected: PrinterStatus, condition: str) -> None:
    status = escpos_status.decode(replies)
    assert status == expected
    assert status.condition == condition
    assert escpos_status.decode(escpos_status.encode(status)) == status


@pytest.mark.parametrize("status, replies", [
    (PrinterStatus(), {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}),
    (PrinterStatus(paper_near_end=True), {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x1E}),
    (PrinterStatus(online=False, paper_out=True, paper_near_end=True), {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E}),
    (PrinterStatus(online=False, cover_open=True), {1: 0x1A, 2: 0x16, 3: 0x12, 4: 0x12}),
    (PrinterStatus(online=False, error=True, autocutter_error=True), {1: 0x1A, 2: 0x52, 3: 0x1A, 4: 0x12}),
])
def test_status_encode_byte_vectors(status: PrinterStatus, replies: dict[int, int]) -> None:
    assert escpos_status.encode(status) == replies


@pytest.mark.parametrize("status, fault", [
    (PrinterStatus(), None),
    (PrinterStatus(paper_near_end=True), None),
    (PrinterStatus(online=False, paper_out=True, cover_open=True), Fault.COVER_OPEN),
    (PrinterStatus(online=False, paper_out=True), Fault.PAPER_OUT),
    (PrinterStatus(online=False, error=True, autocutter_error=True), Fault.CUTTER_ERROR),
    (PrinterStatus(online=False, error=True), Fault.ERROR),
    (PrinterStatus(online=False), Fault.OFFLINE),
])
def test_status_fault_reason(status: PrinterStatus, fault: Fault | None) -> None:
    assert status.fault == fault
    assert status.ok is (fault is None)
    assert escpos_status.decode(escpos_status.encode(status)) == status


def test_status_codec_agrees_with_python_escpos_masks() -> None:
    from escpos import constants as c

    assert escpos_status.query(1) == c.RT_STATUS_ONLINE == b"\x10\x04\x01"
    assert escpos_status.query(4) == c.RT_STATUS_PAPER
    assert escpos_status.decode({1: 0x12, 2: 0x12, 4: c.RT_MASK_NOPAPER}).paper_out
    assert escpos_status.decode({1: 0x12, 2: 0x12, 4: c.RT_MASK_LOWPAPER}).condition == "paper_low"
    assert escpos_status.decode({1: 0x12 | c.RT_MASK_ONLINE, 2: 0x12, 4: 0x12}).online is False


@pytest.mark.parametrize("replies", [{1: 0x00, 2: 0x12, 4: 0x12}, {1: 0x12, 2: 0xFF, 4: 0x12},
                                     {1: 0x12, 2: 0x12, 4: 0x13}, {1: 0x12, 2: 0x12}])
def test_status_codec_rejects_bad_replies(replies: dict[int, int]) -> None:
    with pytest.raises(StatusReplyError):
        escpos_status.decode(replies)
    with pytest.raises(ValueError):
        escpos_status.query(5)


def test_chinese_text_is_wrapped_in_fs_ampersand_and_fs_dot() -> None:
    assert encode_chinese("张三") == bytes.fromhex("1c26 d5c5 c8fd 1c2e")
    assert encode_chinese("王小明") == b"\x1c&" + "王小明".encode("gb18030") + b"\x1c."


# --- layout ----------------------------------------------------------------------------------------------------

def test_wrap_mixed_chinese_and_latin() -> None:
    assert wrap("体检报告 Health report 2025", 12) == ["体检报告", "Health", "report 2025"]
    assert wrap("张三丰王小明", 5) == ["张三", "丰王", "小明"]              # a wide character never splits
    assert wrap("ABCDEFGHIJ", 4) == ["ABCD", "EFGH", "IJ"]                 # an over-long word is cut
    assert wrap("请到3号窗口 Please go to window 3", 32) == ["请到3号窗口 Please go to window", "3"]
    assert wrap("  indented\nsecond", 20) == ["  indented", "second"]
    assert display_width("张三丰 abc") == 10
    assert display_width("°é") == 4  # printed from the Chinese font: full cells


@pytest.mark.parametrize("paper", ["58mm", "80mm"])
@pytest.mark.parametrize("kind", KINDS)
def test_rendered_lines_fit_the_paper(kind: str, paper: str) -> None:
    long = {"note": "请携带身份证原件 Please bring the original ID card and your electronic health card 电子健康卡",
            "clinic": "北京市朝阳区第三社区卫生服务中心 Chaoyang Community Health Center No. 3"}
    fields = {**SAMPLES[kind], **{k: v for k, v in long.items() if k in SAMPLES[kind]}}
    lines = render(load_template(kind), fields, paper)
    assert lines[-1].cut
    for ln in lines:
        if ln.qr is None and not ln.cut:
            assert display_width(ln.text) * ln.size <= PAPER_COLUMNS[paper], ln.text


def test_two_column_line_is_right_aligned_and_double_size_halves_the_width() -> None:
    lines = render(load_template("registration"), {**SAMPLES["registration"], "name": "张三丰"}, "58mm")
    name = next(ln for ln in lines if ln.text.startswith("姓名"))
    assert name.text.endswith("张三丰") and display_width(name.text) == 32
    title = lines[0]
    assert title.size == 2 and title.bold and title.align == "center"
    assert display_width(title.text) <= 16


def test_a_long_right_column_moves_to_its_own_line() -> None:
    fields = {**SAMPLES["report"], "items": [{"name": "血压 Blood pressure", "value": "142/91", "unit": "mmHg",
                                                "flag": "↑"}]}
    texts = [ln.text for ln in render(load_template("report"), fields, "58mm")]
    i = texts.index("血压 Blood pressure")
    assert texts[i + 1].endswith("142/91 mmHg ↑") and display_width(texts[i + 1]) == 32


def test_shipped_templates_load_and_cover_every_kind() -> None:
    assert set(load_templates()) == set(KINDS)
    assert all((TEMPLATE_DIR / f"{k}.toml").is_file() for k in KINDS)


def test_optional_note_line_is_left_out_when_empty() -> None:
    t = load_template("queue")
    with_note = [ln.text for ln in render(t, SAMPLES["queue"], "80mm")]
    without = [ln.text for ln in render(t, {**SAMPLES["queue"], "note": ""}, "80mm")]
    assert len(with_note) == len(without) + 1


def test_control_characters_in_fields_cannot_reach_the_printer() -> None:
    lines = render(load_template("queue"), queue_fields("A\x1b@\x10\x04\x01B\nC"), "80mm")
    number = next(ln for ln in lines if ln.size == 2)
    assert number.text == "A @   B C"


@pytest.mark.parametrize("toml, message", [
    ('kind = "queue"\nfields = ["a"]\n[[line]]\ntext = "{a"', "line 1: expected '}'"),
    ('kind = "queue"\nfields = ["a"]\n[[line]]\ntext = "{b}"', r"placeholder \{b\} is not a declared field"),
    ('kind = "queue"\nfields = ["a"]\n[[line]]\ntext = "{a.__class__}"', "line 1: placeholder .* plain field name"),
    ('kind = "queue"\nfields = ["a"]\n[[line]]\nbolt = true', "line.0.bolt: unknown key"),
    ('kind = "queue"\nfields = ["a"]\n[[line]]\nsize = 3', "line.0.size"),
    ('kind = "queue"\nfields = ["a"]\n[[line]]\nqr = "a"\ntext = "x"', "a qr line has no text"),
    ('kind = "queue"\nfields = ["a"]\n[[line]]\neach = "a"', "needs a \\[lists.a\\] table"),
    ('kind = "queue"\nfields = ["a"]', "line: Field required"),
    ('kind = "queue"\nfields = [', "not valid TOML"),
])
def test_bad_template_is_a_clear_error(toml: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as info:
        parse_template(toml, "bad.toml")
    assert str(info.value).startswith("bad.toml")


def test_template_kind_must_match_its_file(tmp_path: Path) -> None:
    (tmp_path / "queue.toml").write_text('kind = "pool"\nfields = []\n[[line]]\ntext = "x"\n', encoding="utf-8")
    with pytest.raises(TemplateError, match="does not match the file name"):
        load_template("queue", tmp_path)


@pytest.mark.parametrize("kind", ["nope", "../etc/passwd", ""])
def test_unknown_kind_is_a_clear_error(kind: str) -> None:
    with pytest.raises(UnknownTicketKind):
        load_template(kind)


def test_missing_or_malformed_fields_are_clear_errors() -> None:
    with pytest.raises(TicketFieldError, match="missing field.*number"):
        render(load_template("queue"), {k: v for k, v in SAMPLES["queue"].items() if k != "number"}, "80mm")
    with pytest.raises(TicketFieldError, match="'items' must be a list"):
        render(load_template("report"), {**SAMPLES["report"], "items": "128 g/L"}, "80mm")
    with pytest.raises(TicketFieldError, match=r"items\[0\] lacks value"):
        render(load_template("report"), {**SAMPLES["report"], "items": [{"name": "x"}]}, "80mm")
    with pytest.raises(TicketFieldError, match="QR field 'pairing_qr' is empty"):
        render(load_template("selftest"), {**SAMPLES["selftest"], "pairing_qr": ""}, "80mm")


# --- settings --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind", [("none", "none"), ("serial:/dev/ttyUSB0", "serial"),
                                        ("usb:04b8:0202", "usb"), ("tcp:192.168.1.50:9100", "tcp"),
                                        ("tcp:[fd00::5]:9100", "tcp")])
def test_connection_strings(text: str, kind: str) -> None:
    assert parse_connection(text).kind == kind
    assert PrinterSettings(connection=text).link.kind == kind


def test_connection_parsing_details() -> None:
    assert parse_connection("usb:04b8:0202").vendor == 0x04B8
    assert parse_connection("tcp:[fd00::5]:9100").host == "fd00::5"


@pytest.mark.parametrize("data, key", [({"connection": "serial:ttyUSB0"}, "connection"),
                                       ({"connection": "usb:4b8:202"}, "connection"),
                                       ({"connection": "tcp:printer"}, "connection"),
                                       ({"baudrate": 9601}, "baudrate"), ({"paper": "76mm"}, "paper"),
                                       ({"max_jobs": 0}, "max_jobs"), ({"papr": "58mm"}, "papr")])
def test_bad_settings_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"printer: {key}: "):
        validate(data, PrinterSettings, "printer")


def test_no_printer_configured(tmp_path: Path) -> None:
    with pytest.raises(PrinterError, match="NoPrinter"):
        TicketPrinter(PrinterSettings(), tmp_path)


# --- simulator decoder -----------------------------------------------------------------------------------------

def test_decoder_handles_commands_split_across_reads() -> None:
    from escpos.printer import Dummy

    from drivers.printer import write_ticket

    p = Dummy()
    lines = render(load_template("selftest"), SAMPLES["selftest"], "80mm")
    write_ticket(p, lines)
    data = p.output
    whole = decode(data)
    dec = EscPosDecoder()
    for i in range(len(data)):
        dec.feed(data[i:i + 1])
    assert dec.finish() == whole
    assert dec.unknown == []
    assert whole[0].qr_codes == [SAMPLES["selftest"]["pairing_qr"]] and whole[0].cut


# --- printing through the simulator ----------------------------------------------------------------------------

@pytest.mark.parametrize("paper", ["58mm", "80mm"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_prints_and_decodes_back(sim: PrinterSimulator, tmp_path: Path, kind: str, paper: str) -> None:
    with TicketPrinter(settings_for(sim, paper=paper), tmp_path) as printer:
        job_id = printer.submit(kind, SAMPLES[kind])
        (ticket,) = sim.wait_for_tickets(1)
        assert printer.wait_idle(5)
        assert printer.job(job_id).state is JobState.PRINTED
    expected = expected_texts(kind, SAMPLES[kind], paper)
    assert ticket.texts == [ln.text.rstrip() for ln in expected]
    printed = [ln for ln in ticket.lines if ln.qr is None]
    assert [(p.bold, p.width, p.height, p.align) for p in printed] == \
           [(e.bold, e.size, e.size, e.align) for e in expected]
    qr_fields = {"pool": SAMPLES["pool"]["tube"], "selftest": SAMPLES["selftest"]["pairing_qr"]}
    assert ticket.qr_codes == ([qr_fields[kind]] if kind in qr_fields else [])
    assert ticket.cut
    assert sim.decoder.unknown == []
    assert b"\x1d(k" in sim.raw if kind in qr_fields else True  # native QR, not a raster image
    assert b"\x1dv0" not in sim.raw


@pytest.mark.parametrize("name", ["张三丰", "王小明", "欧阳娜娜", "李 Lee"])
def test_chinese_names_print_exactly(sim: PrinterSimulator, tmp_path: Path, name: str) -> None:
    fields = {**SAMPLES["registration"], "name": name}
    with TicketPrinter(settings_for(sim, paper="58mm"), tmp_path) as printer:
        printer.submit("registration", fields)
        (ticket,) = sim.wait_for_tickets(1)
    line = ticket.find("姓名")
    assert line.text.endswith(name)
    assert line.text[len("姓名 Name"):].strip() == name
    assert encode_chinese(name.split(" ")[0]) in sim.raw


def test_submit_returns_before_printing_and_the_job_is_on_disk(sim: PrinterSimulator, tmp_path: Path) -> None:
    sim.power_off()  # nothing can be printed, submit must still return at once
    with TicketPrinter(settings_for(sim), tmp_path) as printer:
        job_id = printer.submit("queue", queue_fields("A001"))
        stored = PrintQueue(printer.settings.queue_file(tmp_path))
        job = stored.get(job_id)
        stored.close()
        assert job is not None and job.kind == "queue" and job.fields["number"] == "A001"
        assert job.state in (JobState.QUEUED, JobState.PRINTING)


def test_paper_out_mid_queue_then_recovery_prints_the_rest_in_order(sim: PrinterSimulator, tmp_path: Path) -> None:
    states = States()
    sim.run_out_of_paper_after(2)
    with TicketPrinter(settings_for(sim), tmp_path, on_state=states) as printer:
        ids = [printer.submit("queue", queue_fields(f"A{i:03d}")) for i in range(1, 6)]
        assert wait_until(lambda: printer.state is PrinterState.FAULT)
        assert printer.fault is Fault.PAPER_OUT
        assert [number_of(t) for t in sim.cut_tickets] == ["A001", "A002"]
        assert printer.pending == 3
        assert sim.decoder.lost > 0  # ticket 3 was sent while the roll was empty
        sim.recover()
        assert printer.wait_idle(10)
        attempts = [printer.job(i).attempts for i in ids]
    assert [number_of(t) for t in sim.cut_tickets] == ["A001", "A002", "A003", "A004", "A005"]
    assert attempts == [1, 1, 2, 1, 1]
    assert states.seen == [PrinterState.READY, PrinterState.FAULT, PrinterState.READY]


@pytest.mark.parametrize("fault, reason", [("paper_out", Fault.PAPER_OUT), ("cover_open", Fault.COVER_OPEN),
                                           ("cutter_error", Fault.CUTTER_ERROR), ("power_off", Fault.NO_ANSWER)])
def test_faults_keep_jobs_queued_until_recovery(sim: PrinterSimulator, tmp_path: Path, fault: str,
                                                reason: Fault) -> None:
    states = States()
    getattr(sim, fault)()
    with TicketPrinter(settings_for(sim), tmp_path, on_state=states) as printer:
        printer.submit("queue", queue_fields("B001"))
        printer.submit("queue", queue_fields("B002"))
        assert wait_until(lambda: printer.fault is reason)
        assert printer.state is PrinterState.FAULT and printer.pending == 2
        assert b"\x1b@" not in sim.raw  # nothing but status queries was sent
        sim.recover()
        assert printer.wait_idle(10)
        assert printer.state is PrinterState.READY and printer.fault is None
    assert [number_of(t) for t in sim.cut_tickets] == ["B001", "B002"]
    assert states.seen == [PrinterState.FAULT, PrinterState.READY]


def test_paper_low_is_a_warning_and_still_prints(sim: PrinterSimulator, tmp_path: Path) -> None:
    states = States()
    sim.paper_low()
    with TicketPrinter(settings_for(sim), tmp_path, on_state=states) as printer:
        printer.submit("queue", queue_fields("C001"))
        assert printer.wait_idle(10)
        assert printer.state is PrinterState.PAPER_LOW and printer.status.paper_near_end
    assert len(sim.cut_tickets) == 1
    assert states.seen == [PrinterState.PAPER_LOW]


def test_idle_check_reports_a_fault_without_a_job(sim: PrinterSimulator, tmp_path: Path) -> None:
    states = States()
    with TicketPrinter(settings_for(sim, idle_check=0.02), tmp_path, on_state=states) as printer:
        assert wait_until(lambda: printer.state is PrinterState.READY)
        sim.cover_open()
        assert wait_until(lambda: printer.fault is Fault.COVER_OPEN)
        sim.recover()
        assert wait_until(lambda: printer.state is PrinterState.READY)
    assert states.seen == [PrinterState.READY, PrinterState.FAULT, PrinterState.READY]


def test_restart_continues_the_queue_without_printing_twice(sim: PrinterSimulator, tmp_path: Path) -> None:
    first = TicketPrinter(settings_for(sim), tmp_path).start()
    first.submit("queue", queue_fields("D001"))
    first.submit("queue", queue_fields("D002"))
    assert first.wait_idle(10)
    sim.paper_out()
    for n in ("D003", "D004", "D005"):
        first.submit("queue", queue_fields(n))
    assert wait_until(lambda: first.fault is Fault.PAPER_OUT)
    first.close()                                   # the process stops with three tickets queued

    with TicketPrinter(settings_for(sim), tmp_path) as second:
        assert second.pending == 3
        sim.recover()
        assert second.wait_idle(10)
    assert [number_of(t) for t in sim.cut_tickets] == ["D001", "D002", "D003", "D004", "D005"]


def test_a_job_interrupted_by_a_crash_is_printed_again(sim: PrinterSimulator, tmp_path: Path) -> None:
    settings = settings_for(sim)
    q = PrintQueue(settings.queue_file(tmp_path))
    done = q.add("queue", queue_fields("E001"))
    q.mark_printing(done.id)
    q.mark_printed(done.id)
    cut_short = q.add("queue", queue_fields("E002"))
    q.mark_printing(cut_short.id)                    # the process died while sending it
    q.close()
    with TicketPrinter(settings, tmp_path) as printer:
        assert printer.wait_idle(10)
        assert printer.job(cut_short.id).attempts == 2
    assert [number_of(t) for t in sim.cut_tickets] == ["E002"]


def test_queue_limit_refuses_with_a_clear_error(sim: PrinterSimulator, tmp_path: Path) -> None:
    sim.paper_out()
    with TicketPrinter(settings_for(sim, max_jobs=3), tmp_path) as printer:
        for i in range(3):
            printer.submit("queue", queue_fields(f"F{i}"))
        with pytest.raises(PrintQueueFull, match="3 unprinted tickets .limit 3.; check the printer"):
            printer.submit("queue", queue_fields("F9"))
        assert printer.pending == 3


def test_bad_submissions_store_nothing(sim: PrinterSimulator, tmp_path: Path) -> None:
    with TicketPrinter(settings_for(sim), tmp_path) as printer:
        with pytest.raises(UnknownTicketKind, match="known: face_check, face_guidance, pool, queue, rack, registration, report, report_summary, selftest"):
            printer.submit("receipt", {})
        with pytest.raises(TicketFieldError, match="missing field"):
            printer.submit("pool", {"tube": "T1"})
        assert printer.pending == 0
    assert sim.cut_tickets == []
    with pytest.raises(PrinterError, match="closed"):
        printer.submit("queue", queue_fields("G1"))


def test_reprint_last_queues_a_new_job_with_the_same_content(sim: PrinterSimulator, tmp_path: Path) -> None:
    with TicketPrinter(settings_for(sim), tmp_path) as printer:
        assert printer.reprint_last() is None
        first = printer.submit("queue", queue_fields("H001"))
        assert printer.wait_idle(10)
        again = printer.reprint_last()
        assert again is not None and again != first
        assert printer.wait_idle(10)
    a, b = sim.wait_for_tickets(2)
    assert a.texts == b.texts


def test_read_status_through_the_device(sim: PrinterSimulator) -> None:
    settings = settings_for(sim)
    device = open_device(settings)
    try:
        assert read_status(device, 0.5) == PrinterStatus()
        sim.paper_out()
        assert read_status(device, 0.5).fault is Fault.PAPER_OUT
        sim.recover()
        sim.cutter_error()
        st = read_status(device, 0.5)
        assert st.autocutter_error and st.fault is Fault.CUTTER_ERROR
        assert sim.queries[-4:] == [1, 2, 4, 3]    # error cause asked only when an error is reported
        sim.power_off()
        assert read_status(device, 0.1) is None
    finally:
        device.close()


def test_render_png_draws_a_ticket(tmp_path: Path) -> None:
    from escpos.printer import Dummy

    from drivers.printer import write_ticket

    p = Dummy()
    write_ticket(p, render(load_template("pool"), SAMPLES["pool"], "58mm"))
    (ticket,) = decode(p.output)
    out = render_png(ticket, tmp_path / "pool.png", columns=32)
    with Image.open(out) as im:
        assert im.width == (32 * 12 + 32) * 2 and im.height > im.width


def test_a_job_that_no_longer_fits_its_template_is_set_aside_not_dropped(sim: PrinterSimulator,
                                                                          tmp_path: Path) -> None:
    settings = settings_for(sim)
    q = PrintQueue(settings.queue_file(tmp_path / "state"))
    old = q.add("queue", queue_fields("I001"))
    q.close()
    templates = tmp_path / "templates"
    templates.mkdir()
    for p in TEMPLATE_DIR.glob("*.toml"):
        (templates / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    queue_toml = templates / "queue.toml"
    queue_toml.write_text(queue_toml.read_text(encoding="utf-8").replace(
        'fields = ["clinic", "number", "time", "outcome"]', 'fields = ["clinic", "number", "time", "outcome", "room"]'),
        encoding="utf-8")
    with TicketPrinter(settings, tmp_path / "state", templates_dir=templates) as printer:
        new = printer.submit("queue", queue_fields("I002", room="3"))
        assert printer.wait_idle(10)
        assert printer.job(old.id).state is JobState.FAILED
        assert printer.job(new).state is JobState.PRINTED
    assert [number_of(t) for t in sim.cut_tickets] == ["I002"]


def test_qr_payload_is_sent_exactly() -> None:
    payload = "EHCPROV1;clinic-7;box-0042;\tTAB"
    lines = render(load_template("selftest"), {**SAMPLES["selftest"], "pairing_qr": payload}, "80mm")
    assert [ln.qr for ln in lines if ln.qr] == [payload]
