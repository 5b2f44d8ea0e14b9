"""The ID card reader over a serial port: a thin I/O loop around :mod:`drivers.idcard.codec`.

One thread owns an :class:`IdCardReader` (and so the port). Single commands::

    >>> with IdCardReader("/dev/serial/by-id/usb-…-if00-port0") as reader:    # doctest: +SKIP
    ...     print(reader.sam_id())
    ...     card = reader.read_card()              # find, select, read, parse; CardNotFound if none

and a polling loop for a check-in desk, which calls ``on_card`` once per presentation of a card::

    >>> stop = threading.Event()                                              # doctest: +SKIP
    >>> IdCardReader(port).watch(on_card=queue.put, stop=stop)               # doctest: +SKIP

:meth:`IdCardReader.watch` polls *find card*; when a card answers it selects and reads it once, then
waits until ``removal_polls`` consecutive polls find no card before it reads again (a card left on the
reader is one read). Damaged frames, garbage on the line and SAM "resend" statuses are retried; a card
error (moved, unreadable) ends that attempt and the next poll tries again; no answer ``max_timeouts`` times
in a row, an I/O error (unplugged) or a SAM failure closes the port, which is reopened with exponential
backoff. A plain device name (``/dev/ttyUSB0``) is replaced by its stable ``/dev/serial/by-id/`` link when
there is one, so a replugged reader is found again even if it comes back under another ``ttyUSB`` number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from drivers.idcard.card import IdCard, parse_card
from drivers.idcard.codec import (
    CardData,
    CardError,
    CardNotFound,
    ChecksumError,
    Command,
    CommandNotSupported,
    FrameError,
    FrameParser,
    IdCardError,
    LengthError,
    LinkStatusError,
    ProtocolError,
    Response,
    SamError,
    Status,
    decode_card_data,
    decode_sam_id,
    encode_command,
)

logger = logging.getLogger(__name__)

BAUD = 115200
BY_ID_DIR = Path("/dev/serial/by-id")
POLL_GRANULARITY = 0.02
"""Serial read timeout: how often a waiting command looks at its deadline and the stop flag."""


class ReaderTimeout(IdCardError):
    """The reader did not answer in time (busy, wedged, or no card presented within the wait)."""


class ReaderDisconnected(IdCardError):
    """The serial port cannot be opened or failed (reader unplugged, wrong path, no permission)."""


def stable_port(port: str, by_id_dir: Path = BY_ID_DIR) -> str:
    """The ``/dev/serial/by-id/`` link that points to ``port``, or ``port`` itself when there is none."""
    try:
        if Path(port).parent == by_id_dir or not by_id_dir.is_dir():
            return port
        target = os.path.realpath(port)
        for link in sorted(by_id_dir.iterdir()):
            if os.path.realpath(link) == target:
                return str(link)
    except OSError:
        pass
    return port


def list_ports(by_id_dir: Path = BY_ID_DIR) -> list[str]:
    """Stable serial port paths present now (empty when no USB serial device is plugged in)."""
    try:
        return sorted(str(p) for p in by_id_dir.iterdir())
    except OSError:
        return []


@dataclass
class ReaderStats:
    """Counters for health reports (no personal data)."""

    cards: int = 0
    card_errors: int = 0
    frame_errors: int = 0
    retries: int = 0
    timeouts: int = 0
    reconnects: int = 0
    sam_errors: int = 0
    garbage_bytes: int = 0


def _serial_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        import serial

        errors.append(serial.SerialException)
    except ImportError:  # pragma: no cover - pyserial is a dependency
        pass
    try:
        import termios

        errors.append(termios.error)
    except ImportError:  # pragma: no cover - not POSIX
        pass
    return tuple(errors)


_IO_ERRORS = _serial_errors()


class IdCardReader:
    """A SAM ID card reader on a serial port (115200 8N1).

    ``timeout`` bounds each short command (SAM, find, select), ``read_timeout`` the read command (a real
    reader needs 0.2–1 s). ``retries`` is how often a command is resent after a damaged answer or a SAM
    "resend" status. ``fingerprint`` reads fingerprint data too (command ``30 10``). ``serial_factory``
    replaces :class:`serial.Serial` (same signature) for other transports.

    >>> reader = IdCardReader("/dev/ttyUSB0", read_timeout=3.0)               # doctest: +SKIP
    """

    def __init__(self, port: str, *, timeout: float = 1.0, read_timeout: float = 3.0, retries: int = 2,
                 fingerprint: bool = False, serial_factory: Callable[..., Any] | None = None,
                 prefer_stable_path: bool = True) -> None:
        self.port = stable_port(port) if prefer_stable_path else port
        if self.port != port:
            logger.info("ID card reader %s: using stable path %s", port, self.port)
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.fingerprint = fingerprint
        self.stats = ReaderStats()
        self._factory = serial_factory
        self._ser: Any = None
        self._parser: FrameParser[Response] = FrameParser(Response)
        self._stop: threading.Event | None = None

    # --- port ---------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        """Open the port; does nothing if open. Raises :class:`ReaderDisconnected`."""
        if self._ser is not None:
            return
        factory = self._factory
        if factory is None:
            import serial

            factory = serial.Serial
        try:
            self._ser = factory(self.port, BAUD, timeout=POLL_GRANULARITY, write_timeout=self.timeout,
                                exclusive=True)
        except _IO_ERRORS as exc:
            raise ReaderDisconnected(f"cannot open ID card reader {self.port}: {exc}") from None
        self._parser.reset()
        logger.info("ID card reader %s open", self.port)

    def close(self) -> None:
        """Close the port; safe to call more than once."""
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(_IO_ERRORS):
                ser.close()
            self.stats.garbage_bytes = self._parser.discarded
            self._parser.reset()

    def __enter__(self) -> IdCardReader:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<IdCardReader {self.port}{' open' if self.is_open else ''}>"

    # --- one exchange -------------------------------------------------------------------------------

    def transact(self, command: Command, data: bytes = b"", *, timeout: float | None = None) -> Response:
        """Send one command and return its answer, whatever its status.

        Raises :class:`ReaderTimeout` (no complete answer in time), :class:`ChecksumError` /
        :class:`LengthError` (damaged answer) or :class:`ReaderDisconnected` (I/O error; the port is closed).
        """
        self.open()
        ser = self._ser
        timeout = self.timeout if timeout is None else timeout
        try:
            ser.reset_input_buffer()
            self._parser.reset()
            ser.write(encode_command(command, data))
            deadline = time.monotonic() + timeout
            damaged: FrameError | None = None
            while True:
                chunk = ser.read(max(1, ser.in_waiting))
                if chunk:
                    for item in self._parser.feed(chunk):
                        if isinstance(item, Response):
                            self.stats.garbage_bytes = self._parser.discarded
                            return item
                        self.stats.frame_errors += 1
                        damaged = item
                    if damaged is not None and self._parser.pending == 0:
                        raise damaged
                if time.monotonic() >= deadline or (self._stop is not None and self._stop.is_set()):
                    self._parser.reset()
                    if damaged is not None:
                        raise damaged
                    raise ReaderTimeout(f"no answer to {command.name} within {timeout:.2f} s")
        except _IO_ERRORS as exc:
            self.close()
            raise ReaderDisconnected(f"ID card reader {self.port} failed: {exc}") from None

    def command(self, command: Command, data: bytes = b"", *, timeout: float | None = None) -> Response:
        """Send a command, resending after a damaged answer or a SAM "resend" status; raise on a bad status.

        Raises the status's exception (:mod:`drivers.idcard.codec`), :class:`ReaderTimeout`,
        :class:`ReaderDisconnected`, or the last :class:`FrameError` when every attempt was damaged.
        """
        attempt = 0
        while True:
            try:
                return self.transact(command, data, timeout=timeout).raise_for_status(command)
            except (ChecksumError, LengthError, LinkStatusError) as exc:
                if isinstance(exc, CommandNotSupported) or attempt >= self.retries:
                    raise
                attempt += 1
                self.stats.retries += 1
                logger.debug("ID card reader: %s, resending %s (%d/%d)", type(exc).__name__, command.name,
                             attempt, self.retries)

    # --- SAM commands -------------------------------------------------------------------------------

    def reset_sam(self) -> None:
        """Reset the security module (``10 FF``)."""
        self.command(Command.RESET_SAM)

    def sam_status(self) -> None:
        """Check the security module (``11 FF``); raises a :class:`SamError` when it is not usable."""
        self.command(Command.SAM_STATUS)

    def sam_id(self) -> str:
        """The security module's id (``12 FF``) as printed on readers, e.g. ``05.01-20101027-0011111111-…``."""
        return decode_sam_id(self.command(Command.READ_SAM_ID).data)

    def set_max_rf_byte(self, value: int = 0x50) -> None:
        """Set the largest RF frame (``61 FF``); some readers need it once after power-up."""
        self.command(Command.SET_MAX_RF_BYTE, bytes([value]))

    # --- card commands ------------------------------------------------------------------------------

    def find_card(self) -> bool:
        """True when a card answers (``20 01`` → 9F), False when there is none (→ 80)."""
        try:
            self.command(Command.FIND_CARD)
        except CardNotFound:
            return False
        return True

    def select_card(self) -> None:
        """Select the card found (``20 02``); raises :class:`SelectFailed`."""
        self.command(Command.SELECT_CARD)

    def read_data(self, *, fingerprint: bool | None = None) -> CardData:
        """Read text and photo (``30 01``), or with fingerprint (``30 10``), after find and select."""
        fp = self.fingerprint if fingerprint is None else fingerprint
        cmd = Command.READ_TEXT_PHOTO_FINGERPRINT if fp else Command.READ_TEXT_PHOTO
        return decode_card_data(self.command(cmd, timeout=self.read_timeout).data, fingerprint=fp)

    def read_card(self, *, fingerprint: bool | None = None) -> IdCard:
        """Find, select and read the card on the reader; :class:`CardNotFound` when there is none."""
        if not self.find_card():
            raise CardNotFound()
        self.select_card()
        data = self.read_data(fingerprint=fingerprint)
        card = parse_card(data.text, data.photo, data.fingerprint)
        self.stats.cards += 1
        return card

    def wait_for_card(self, timeout: float, *, poll_interval: float = 0.1) -> IdCard:
        """Poll until a card is read or ``timeout`` seconds pass (:class:`ReaderTimeout`).

        Card and line errors are retried until the deadline; SAM and port errors are raised at once.
        """
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                return self.read_card()
            except CardNotFound:
                pass
            except (CardError, FrameError, ProtocolError, ReaderTimeout) as exc:
                last = exc
                self.stats.card_errors += 1
            if time.monotonic() + poll_interval > deadline:
                detail = f" (last error: {last})" if last else ""
                raise ReaderTimeout(f"no card read within {timeout:g} s{detail}")
            time.sleep(poll_interval)

    # --- polling loop -------------------------------------------------------------------------------

    def watch(self, on_card: Callable[[IdCard], object], stop: threading.Event, *, poll_interval: float = 0.1,
              removal_polls: int = 2, max_timeouts: int = 3, backoff: tuple[float, float] = (0.1, 5.0),
              on_error: Callable[[Exception], object] | None = None) -> None:
        """Poll for cards until ``stop`` is set, calling ``on_card`` once per presentation.

        ``removal_polls`` consecutive empty polls mean the card was taken away. ``on_error`` (optional)
        receives each error that ended an attempt (card, line, SAM or port errors), for an operator hint.
        Exceptions raised by the callbacks are logged and do not stop the loop.
        """
        self._stop = stop
        present = False
        empty_polls = 0
        timeouts = 0
        delay = backoff[0]
        opened_before = False

        def report(exc: Exception) -> None:
            if on_error is not None:
                try:
                    on_error(exc)
                except Exception as cb_exc:
                    logger.error("ID card reader: on_error callback raised %s", type(cb_exc).__name__)

        try:
            while not stop.is_set():
                try:
                    if not self.is_open:
                        self.open()
                        self._check_sam()
                        if opened_before:
                            self.stats.reconnects += 1
                            logger.warning("ID card reader %s reconnected", self.port)
                        opened_before = True
                        delay = backoff[0]
                        present, empty_polls, timeouts = False, 0, 0
                    found = self.find_card()
                    timeouts = 0
                    if not found:
                        empty_polls += 1
                        if present and empty_polls >= removal_polls:
                            present = False
                            logger.debug("ID card reader: card removed")
                        stop.wait(poll_interval)
                        continue
                    empty_polls = 0
                    if present:
                        stop.wait(poll_interval)
                        continue
                    started = time.monotonic()
                    self.select_card()
                    data = self.read_data()
                    card = parse_card(data.text, data.photo, data.fingerprint)
                    present = True
                    self.stats.cards += 1
                    logger.info("ID card read: %s card in %.0f ms", card.card_type.value,
                                (time.monotonic() - started) * 1000)
                    try:
                        on_card(card)
                    except Exception as cb_exc:
                        logger.error("ID card reader: on_card callback raised %s", type(cb_exc).__name__)
                except ReaderDisconnected as exc:
                    logger.warning("%s; retrying in %.1f s", exc, delay)
                    report(exc)
                    self.close()
                    stop.wait(delay)
                    delay = min(delay * 2, backoff[1])
                except ReaderTimeout as exc:
                    if stop.is_set():
                        break
                    timeouts += 1
                    self.stats.timeouts += 1
                    report(exc)
                    if timeouts >= max_timeouts:
                        logger.warning("ID card reader %s: %d commands unanswered, reopening the port",
                                       self.port, timeouts)
                        self.close()
                        stop.wait(delay)
                        delay = min(delay * 2, backoff[1])
                except SamError as exc:
                    self.stats.sam_errors += 1
                    logger.error("ID card reader %s: %s; reopening in %.1f s", self.port, exc, delay)
                    report(exc)
                    self.close()
                    stop.wait(delay)
                    delay = min(delay * 2, backoff[1])
                except (CardError, FrameError, ProtocolError, LinkStatusError) as exc:
                    # this presentation failed; the next poll tries again while the card is there
                    self.stats.card_errors += 1
                    logger.info("ID card reader: %s: %s", type(exc).__name__, exc)
                    present = False
                    report(exc)
                    stop.wait(poll_interval)
        finally:
            self._stop = None
            self.close()

    def _check_sam(self) -> None:
        try:
            self.sam_status()
        except CommandNotSupported:
            logger.info("ID card reader %s does not support SAM status; skipping the check", self.port)


__all__ = ["BAUD", "IdCardReader", "ReaderDisconnected", "ReaderStats", "ReaderTimeout", "Status", "list_ports",
           "stable_port"]
