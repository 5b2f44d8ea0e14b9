"""Receipt printer: durable ticket queue, one worker thread that owns the ESC/POS device, status checks.

:class:`TicketPrinter` is the box's :class:`edge.feedback.TicketSink`. :meth:`TicketPrinter.submit` lays the
ticket out once (so a bad kind or missing field fails at once), commits the job to SQLite and returns; the
worker prints jobs strictly in order through python-escpos (``Serial``, ``Usb`` or ``Network``)::

    >>> printer = TicketPrinter(PrinterSettings(connection="serial:/dev/ttyUSB0", paper="58mm"),
    ...                         "/var/lib/ehc-edge", on_state=print).start()          # doctest: +SKIP
    >>> printer.submit("queue", {"clinic": "clinic-7", "number": "A012", "time": "09:41",
    ...                          "outcome": "已登记 Registered"})                       # doctest: +SKIP
    '5f0c…'

Around every job the worker asks the printer for its real-time status (``DLE EOT 1, 2, 4``, see
:mod:`drivers.escpos_status`), reading the reply straight from the connection's device object:

* before: paper out, cover open, offline, an error or no answer → the job stays queued, the state becomes
  :attr:`PrinterState.FAULT` and ``on_state`` is called; the worker re-checks every ``retry_interval``
  seconds and, once the printer is fine, prints the queue in order;
* after: the job is marked printed only when the printer still reports no fault. Otherwise it stays queued
  and is printed again after recovery (the first attempt may have been cut short), so no ticket is lost;
  a job marked printed is never printed again, also after a restart.

A roll near its end prints but sets :attr:`PrinterState.PAPER_LOW`.

Chinese text: python-escpos encodes text through single-byte code pages, so runs of non-ASCII text are
sent as ``FS &`` + GB18030 bytes + ``FS .`` (Chinese character mode on and off) by :func:`encode_chinese`.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import Field, field_validator

from drivers import escpos_status
from drivers.escpos_status import Fault, PrinterStatus, StatusQuery
from drivers.print_queue import Job, JobState, PrintQueue, PrintQueueError, PrintQueueFull, to_jsonable
from drivers.ticket_layout import (
    StyledLine,
    TicketError,
    TicketFieldError,
    TicketTemplate,
    UnknownTicketKind,
    load_templates,
    render,
)
from foundation.configbase import StrictModel

logger = logging.getLogger(__name__)

__all__ = ["Connection", "PrintQueueFull", "PrinterError", "PrinterSettings", "PrinterState", "TicketPrinter",
           "encode_chinese", "open_device", "parse_connection", "read_status", "text_runs", "write_ticket"]

FS_CHINESE_ON = b"\x1c&"
FS_CHINESE_OFF = b"\x1c."
BAUDRATES = (2400, 4800, 9600, 19200, 38400, 57600, 115200)
WRITE_TIMEOUT = 10.0  # seconds a write may block (flow control held by an offline printer) before it fails


class PrinterError(RuntimeError):
    """The printer driver cannot be used (closed, or the connection setting is invalid)."""


class PrinterState(enum.StrEnum):
    """What the box shows about its printer."""

    READY = "ready"
    PAPER_LOW = "paper_low"   # warning: prints, the roll needs changing soon
    FAULT = "fault"           # cannot print: see TicketPrinter.fault for why


@dataclass(frozen=True, slots=True)
class Connection:
    """A parsed ``connection`` setting."""

    kind: Literal["none", "serial", "usb", "tcp"]
    path: str = ""
    vendor: int = 0
    product: int = 0
    host: str = ""
    port: int = 0


def parse_connection(text: str) -> Connection:
    """Parse ``none``, ``serial:/dev/ttyUSB0``, ``usb:04b8:0202`` (hex vendor:product) or ``tcp:host:9100``."""
    if text == "none":
        return Connection("none")
    kind, _, rest = text.partition(":")
    if kind == "serial" and rest.startswith("/"):
        return Connection("serial", path=rest)
    if kind == "usb":
        m = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", rest)
        if m:
            return Connection("usb", vendor=int(m[1], 16), product=int(m[2], 16))
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 1 <= int(port) <= 65535:
            return Connection("tcp", host=host, port=int(port))
    raise ValueError(f"{text!r}: use none, serial:/dev/ttyUSB0, usb:VVVV:PPPP (hex ids) or tcp:host:port")


class PrinterSettings(StrictModel):
    """Receipt printer settings (``[printer]`` in edge.toml)."""

    connection: str = Field("none", description="'none', 'serial:/dev/ttyUSB0', 'usb:VVVV:PPPP' (hex vendor and "
                                                "product id) or 'tcp:host:port' (network printers use 9100)")
    baudrate: int = Field(9600, description="Serial speed; must match the printer's DIP switches / setup page")
    paper: Literal["58mm", "80mm"] = Field("80mm", description="Roll width: 58mm = 32 columns, 80mm = 48 columns")
    queue_path: str = Field("printer.db", description="SQLite print queue (relative to the state folder)")
    max_jobs: int = Field(200, ge=1, le=100_000, description="Unprinted tickets kept at most; more are refused")
    status_timeout: float = Field(1.0, gt=0, le=30, description="Seconds to wait for a status reply")
    retry_interval: float = Field(2.0, gt=0, le=600, description="Seconds between checks while the printer is faulty")
    idle_check: float = Field(30.0, ge=0, le=3600, description="Seconds between status checks while idle (0: only "
                                                               "around jobs)")
    settle: float = Field(0.5, ge=0, le=60, description="Seconds after sending a job before the after-job check")
    usb_in_ep: int = Field(0x82, ge=0x81, le=0x8F, description="USB bulk IN endpoint (status replies)")
    usb_out_ep: int = Field(0x01, ge=0x01, le=0x0F, description="USB bulk OUT endpoint")

    @field_validator("connection")
    @classmethod
    def _connection(cls, v: str) -> str:
        parse_connection(v)
        return v

    @field_validator("baudrate")
    @classmethod
    def _baudrate(cls, v: int) -> int:
        if v not in BAUDRATES:
            raise ValueError(f"baudrate must be one of {', '.join(map(str, BAUDRATES))}")
        return v

    @property
    def link(self) -> Connection:
        """The parsed connection."""
        return parse_connection(self.connection)

    def queue_file(self, state_dir: str | Path) -> Path:
        """Absolute path of the print queue for a box whose state folder is ``state_dir``."""
        p = Path(self.queue_path)
        return p if p.is_absolute() else Path(state_dir) / p


# --- ESC/POS output -------------------------------------------------------------------------------------------

def text_runs(text: str) -> Iterator[tuple[str, bool]]:
    """Split ``text`` into ``(run, is_ascii)`` pieces."""
    for m in re.finditer(r"[\x00-\x7f]+|[^\x00-\x7f]+", text):
        yield m.group(), m.group()[0] < "\x80"


def encode_chinese(text: str) -> bytes:
    """``FS &`` + ``text`` in GB18030 + ``FS .``: how a Chinese-capable ESC/POS printer takes non-ASCII text."""
    return FS_CHINESE_ON + text.encode("gb18030", errors="replace") + FS_CHINESE_OFF


def write_ticket(printer: Any, lines: Sequence[StyledLine]) -> None:
    """Send one laid-out ticket through a python-escpos printer: reset, styled lines, native QR codes, cut."""
    from escpos.constants import QR_ECLEVEL_M

    printer.hw("INIT")
    for line in lines:
        if line.cut:
            printer.cut()
            continue
        printer.set(align=line.align, bold=line.bold, custom_size=True, width=line.size, height=line.size)
        if line.qr is not None:
            printer.qr(line.qr, native=True, size=line.qr_size, ec=QR_ECLEVEL_M)
            continue
        for run, is_ascii in text_runs(line.text):
            if is_ascii:
                printer.text(run)
            else:
                printer._raw(encode_chinese(run))  # python-escpos has no public raw write
        printer.ln()


# --- device and status ----------------------------------------------------------------------------------------

def open_device(settings: PrinterSettings) -> Any:
    """Open the python-escpos printer named by ``settings.connection``; raises ``DeviceNotFoundError``."""
    link = settings.link
    if link.kind == "serial":
        from escpos.printer import Serial

        printer: Any = Serial(devfile=link.path, baudrate=settings.baudrate, timeout=settings.status_timeout)
        printer.open()
        printer.device.write_timeout = WRITE_TIMEOUT
    elif link.kind == "usb":
        from escpos.printer import Usb

        printer = Usb(link.vendor, link.product, timeout=int(WRITE_TIMEOUT * 1000),
                      in_ep=settings.usb_in_ep, out_ep=settings.usb_out_ep)
        printer.open()
    elif link.kind == "tcp":
        from escpos.printer import Network

        printer = Network(link.host, link.port, timeout=WRITE_TIMEOUT)
        printer.open()
    else:
        raise PrinterError("connection is 'none': no printer configured (use edge.feedback.NoPrinter)")
    return printer


def _drain(printer: Any) -> None:
    """Discard stale bytes (a late reply, automatic status) so the next byte read answers our query."""
    from escpos.printer import Network, Serial, Usb

    dev = printer.device
    if isinstance(printer, Serial):
        dev.reset_input_buffer()
    elif isinstance(printer, Network):
        dev.settimeout(0.0)
        try:
            while True:
                if not dev.recv(64):
                    raise ConnectionError("printer closed the connection")
        except (TimeoutError, BlockingIOError):
            pass
        finally:
            dev.settimeout(WRITE_TIMEOUT)
    elif isinstance(printer, Usb):
        import usb.core

        try:
            while dev.read(printer.in_ep, 64, 1):
                pass
        except usb.core.USBTimeoutError:
            pass


def _read_some(printer: Any, timeout: float) -> bytes:
    """Up to a few reply bytes from the printer, waiting at most ``timeout`` seconds; ``b""`` if none came."""
    from escpos.printer import Network, Serial, Usb

    dev = printer.device
    if isinstance(printer, Serial):
        dev.timeout = timeout
        return bytes(dev.read(1))
    if isinstance(printer, Network):
        dev.settimeout(timeout)
        try:
            data = dev.recv(16)
        except TimeoutError:
            return b""
        finally:
            dev.settimeout(WRITE_TIMEOUT)
        if not data:
            raise ConnectionError("printer closed the connection")
        return data
    if isinstance(printer, Usb):
        import usb.core

        try:
            return bytes(dev.read(printer.in_ep, 16, max(1, int(timeout * 1000))))
        except usb.core.USBTimeoutError:
            return b""
    return bytes(printer._read())  # other python-escpos connections


def exchange(printer: Any, n: int, timeout: float) -> int | None:
    """Send ``DLE EOT n`` and return the printer's status byte, or ``None`` if none came within ``timeout``."""
    _drain(printer)
    printer._raw(escpos_status.query(n))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for b in _read_some(printer, left):
            if escpos_status.is_status_byte(b):
                return b
    return None


def read_status(printer: Any, timeout: float) -> PrinterStatus | None:
    """One round of ``DLE EOT 1, 2, 4`` (and ``3`` when an error is reported); ``None`` if the printer is mute."""
    replies: dict[int, int] = {}
    for n in escpos_status.REQUIRED:
        b = exchange(printer, n, timeout)
        if b is None:
            return None
        replies[n] = b
    if replies[StatusQuery.OFFLINE_CAUSE] & 0x40:
        b = exchange(printer, StatusQuery.ERROR_CAUSE, timeout)
        if b is not None:
            replies[StatusQuery.ERROR_CAUSE] = b
    return escpos_status.decode(replies)


# --- the worker -----------------------------------------------------------------------------------------------

class TicketPrinter:
    """A :class:`~edge.feedback.TicketSink` that prints tickets in order on an ESC/POS printer.

    ``state_dir`` holds the queue (``settings.queue_path``). ``on_state(state)`` is called from the worker
    thread whenever :attr:`state` changes (show a red signal and send an alert on ``fault``). ``templates_dir``
    overrides the shipped ticket templates.

    >>> with TicketPrinter(settings, "/var/lib/ehc-edge", on_state=alert) as printer:   # doctest: +SKIP
    ...     job_id = printer.submit("pool", {...})
    """

    def __init__(self, settings: PrinterSettings, state_dir: str | Path, *,
                 on_state: Callable[[PrinterState], None] | None = None,
                 templates_dir: str | Path | None = None) -> None:
        if settings.link.kind == "none":
            raise PrinterError("connection is 'none': no printer configured (use edge.feedback.NoPrinter)")
        self.settings = settings
        self.on_state = on_state
        self._templates: dict[str, TicketTemplate] = load_templates(Path(templates_dir) if templates_dir else None)
        self._queue = PrintQueue(settings.queue_file(state_dir), max_jobs=settings.max_jobs)
        self._device: Any = None
        self._state: PrinterState | None = None
        self._fault: Fault | None = None
        self._status: PrinterStatus | None = None
        self._next_check = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # public API

    @property
    def state(self) -> PrinterState | None:
        """Last known state; ``None`` until the printer has been checked once."""
        return self._state

    @property
    def fault(self) -> Fault | None:
        """Why the printer is in :attr:`PrinterState.FAULT` (``paper_out``, ``cover_open``, ``no_answer`` …)."""
        return self._fault

    @property
    def status(self) -> PrinterStatus | None:
        """The last status the printer reported."""
        return self._status

    @property
    def kinds(self) -> list[str]:
        """Ticket kinds this printer has templates for."""
        return sorted(self._templates)

    @property
    def pending(self) -> int:
        """Tickets stored and not yet printed."""
        return self._queue.pending_count()

    def job(self, job_id: str) -> Job | None:
        """The stored job (state, attempts), or ``None`` when unknown or pruned after printing."""
        return self._queue.get(job_id)

    def start(self) -> TicketPrinter:
        """Start the worker thread; returns ``self``."""
        if self._closed:
            raise PrinterError("printer is closed")
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ticket-printer", daemon=True)
            self._thread.start()
        return self

    def submit(self, kind: str, fields: Mapping[str, Any]) -> str:
        """Lay out and durably queue one ticket; returns its job id at once.

        Raises :class:`~drivers.ticket_layout.UnknownTicketKind`, :class:`~drivers.ticket_layout.TicketFieldError`
        (nothing is stored) or :class:`~drivers.print_queue.PrintQueueFull`.
        """
        if self._closed:
            raise PrinterError("printer is closed")
        template = self._template(kind)
        if not isinstance(fields, Mapping):
            raise TicketFieldError(f"ticket {kind!r}: fields must be a mapping")
        plain = to_jsonable(fields)
        render(template, plain, self.settings.paper)  # fails here, not in the worker
        job = self._queue.add(kind, plain)
        logger.info("ticket %s (%s) queued", job.id, kind)
        self._wake.set()
        return job.id

    def reprint_last(self) -> str | None:
        """Queue the last printed ticket again as a new job (operator button); ``None`` if there is none."""
        job = self._queue.last_printed()
        return None if job is None else self.submit(job.kind, job.fields)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every stored ticket is printed; ``False`` if ``timeout`` passed first."""
        with self._progress:
            return self._progress.wait_for(lambda: self._queue.pending_count() == 0, timeout)

    def close(self) -> None:
        """Stop the worker (unprinted jobs stay queued for the next start) and release the device."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=WRITE_TIMEOUT + 5)
            if self._thread.is_alive():
                logger.warning("printer worker did not stop in time")
            self._thread = None
        self._disconnect()
        self._queue.close()

    def __enter__(self) -> TicketPrinter:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # worker

    def _template(self, kind: str) -> TicketTemplate:
        try:
            return self._templates[kind]
        except KeyError:
            raise UnknownTicketKind(f"no ticket template {kind!r} (known: {', '.join(self.kinds)})") from None

    def _run(self) -> None:
        logger.info("printer worker started on %s (%s paper)", self.settings.connection, self.settings.paper)
        while not self._stop.is_set():
            try:
                job = self._queue.next_pending()
            except PrintQueueError as exc:
                logger.error("%s", exc)
                self._stop.wait(self.settings.retry_interval)
                continue
            if job is None:
                self._idle()
                continue
            status = self._check()
            if status is None or not status.ok:
                self._stop.wait(self.settings.retry_interval)
                continue
            self._print(job)
        logger.info("printer worker stopped")

    def _idle(self) -> None:
        interval = self.settings.retry_interval if self._state is PrinterState.FAULT else self.settings.idle_check
        if interval and time.monotonic() >= self._next_check:
            self._check()
            interval = self.settings.retry_interval if self._state is PrinterState.FAULT else self.settings.idle_check
            self._next_check = time.monotonic() + interval
        timeout = max(0.0, self._next_check - time.monotonic()) if interval else None
        self._wake.wait(timeout)
        self._wake.clear()

    def _print(self, job: Job) -> None:
        try:
            lines = render(self._template(job.kind), job.fields, self.settings.paper)
        except TicketError as exc:  # the templates changed since the job was stored
            logger.error("ticket %s (%s) cannot be laid out any more and is set aside: %s", job.id, job.kind, exc)
            self._queue.mark_failed(job.id)
            with self._progress:
                self._progress.notify_all()
            return
        if job.state is JobState.PRINTING:
            logger.warning("ticket %s (%s): printing again, attempt %d may have been cut short",
                           job.id, job.kind, job.attempts)
        self._queue.mark_printing(job.id)
        try:
            write_ticket(self._device, lines)
            flush = getattr(self._device.device, "flush", None)
            if callable(flush):
                flush()
        except Exception as exc:  # serial, socket and USB errors all mean: the printer is gone
            logger.warning("ticket %s: sending failed: %s", job.id, exc)
            self._disconnect()
            self._set_state(PrinterState.FAULT, Fault.NOT_CONNECTED)
            self._stop.wait(self.settings.retry_interval)
            return
        if self.settings.settle:
            self._stop.wait(self.settings.settle)
        status = self._check()
        if status is not None and status.ok:
            self._queue.mark_printed(job.id)
            logger.info("ticket %s (%s) printed", job.id, job.kind)
            with self._progress:
                self._progress.notify_all()
        else:
            logger.warning("ticket %s (%s) not confirmed by the printer (%s); it stays queued",
                           job.id, job.kind, self._fault)
            self._stop.wait(self.settings.retry_interval)

    def _check(self) -> PrinterStatus | None:
        """Ask the printer for its status, opening the device if needed; updates :attr:`state`."""
        if self._device is None:
            try:
                self._device = open_device(self.settings)
            except Exception as exc:  # DeviceNotFoundError, permission, missing pyserial / pyusb
                self._set_state(PrinterState.FAULT, Fault.NOT_CONNECTED, str(exc).splitlines()[0])
                return None
        try:
            status = read_status(self._device, self.settings.status_timeout)
        except Exception as exc:
            logger.warning("printer status query failed: %s", exc)
            self._disconnect()
            self._set_state(PrinterState.FAULT, Fault.NOT_CONNECTED)
            return None
        if status is None:
            self._set_state(PrinterState.FAULT, Fault.NO_ANSWER)
            return None
        self._status = status
        self._set_state(PrinterState(status.condition), status.fault)
        return status

    def _disconnect(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except Exception as exc:
                logger.debug("closing printer device: %s", exc)

    def _set_state(self, state: PrinterState, fault: Fault | None, detail: str = "") -> None:
        changed = state is not self._state
        if fault is not self._fault or changed:
            if state is PrinterState.FAULT:
                logger.warning("printer fault: %s%s", fault, f" ({detail})" if detail else "")
            else:
                logger.info("printer %s", state)
        self._state, self._fault = state, fault
        with self._progress:
            self._progress.notify_all()
        if changed and self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                logger.exception("printer on_state callback failed")
