"""ESC/POS real-time status (``DLE EOT n``): a pure codec from reply bytes to :class:`PrinterStatus` and back.

A printer answers ``DLE EOT n`` (``10 04 n``) with one byte at once, even while it is offline or busy. Every
reply has bit 1 and bit 4 set and bits 0 and 7 clear (``b & 0x93 == 0x12``); the other bits mean:

====  =========================  =============================================================
n     query                      bits (1 = condition present)
====  =========================  =============================================================
1     printer status             2 drawer kick pin 3 high, 3 **offline**, 5 waiting for online
                                 recovery, 6 paper feed button pressed
2     offline cause              2 **cover open**, 3 paper fed by the feed button,
                                 5 printing stopped by **paper end**, 6 **error** occurred
3     error cause                2 mechanical error (head position; 0 on most thermal printers),
                                 3 **autocutter error**, 5 unrecoverable error,
                                 6 auto-recoverable error (head temperature and the like)
4     roll paper sensor          2 and 3 **paper near end**, 5 and 6 **paper end**
====  =========================  =============================================================

So a healthy printer answers ``0x12`` to every query, a printer out of paper answers ``0x1A`` / ``0x32`` /
``0x7E`` to 1 / 2 / 4 and one near the end of its roll answers ``0x1E`` to 4.

>>> decode({1: 0x12, 2: 0x12, 4: 0x1E}).condition
'paper_low'
>>> encode_reply(PrinterStatus(online=False, paper_out=True, paper_near_end=True), 4)
126
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

DLE_EOT = b"\x10\x04"
FIXED_MASK = 0x93   # bits 0, 1, 4, 7
FIXED_VALUE = 0x12  # bits 1 and 4 set, 0 and 7 clear


class StatusQuery(enum.IntEnum):
    """The ``n`` of ``DLE EOT n``."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER = 4


REQUIRED = (StatusQuery.PRINTER, StatusQuery.OFFLINE_CAUSE, StatusQuery.PAPER)
"""The queries a status check always sends; ``ERROR_CAUSE`` is asked only when an error is reported."""


class StatusReplyError(ValueError):
    """A reply byte is not a ``DLE EOT`` status byte (wrong fixed bits) or a needed reply is missing."""


class Fault(enum.StrEnum):
    """Why a printer cannot print, most specific first."""

    COVER_OPEN = "cover_open"
    PAPER_OUT = "paper_out"
    CUTTER_ERROR = "cutter_error"
    UNRECOVERABLE_ERROR = "unrecoverable_error"
    ERROR = "error"
    OFFLINE = "offline"
    NO_ANSWER = "no_answer"           # used by the driver: the printer did not answer a query in time
    NOT_CONNECTED = "not_connected"   # used by the driver: the device cannot be opened or written


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer reported about itself in one round of ``DLE EOT`` queries."""

    online: bool = True
    cover_open: bool = False
    paper_near_end: bool = False
    paper_out: bool = False
    error: bool = False
    feed_button: bool = False
    waiting_recovery: bool = False
    drawer_pin_high: bool = False
    mechanical_error: bool = False
    autocutter_error: bool = False
    unrecoverable_error: bool = False
    auto_recoverable_error: bool = False

    @property
    def fault(self) -> Fault | None:
        """The reason the printer cannot print now, or ``None`` when it can."""
        if self.cover_open:
            return Fault.COVER_OPEN
        if self.paper_out:
            return Fault.PAPER_OUT
        if self.autocutter_error:
            return Fault.CUTTER_ERROR
        if self.unrecoverable_error:
            return Fault.UNRECOVERABLE_ERROR
        if self.error or self.mechanical_error or self.auto_recoverable_error:
            return Fault.ERROR
        if not self.online:
            return Fault.OFFLINE
        return None

    @property
    def ok(self) -> bool:
        """True when the printer can print (a near-end roll still prints)."""
        return self.fault is None

    @property
    def condition(self) -> str:
        """``"ready"``, ``"paper_low"`` (prints, but the roll needs changing soon) or ``"fault"``."""
        if not self.ok:
            return "fault"
        return "paper_low" if self.paper_near_end else "ready"


def query(n: int) -> bytes:
    """The bytes of ``DLE EOT n``."""
    return DLE_EOT + bytes([StatusQuery(n)])


def is_status_byte(value: int) -> bool:
    """True if ``value`` has the fixed bits of a ``DLE EOT`` reply."""
    return 0 <= value <= 0xFF and value & FIXED_MASK == FIXED_VALUE


def _bit(value: int, n: int) -> bool:
    return bool(value >> n & 1)


def _checked(replies: Mapping[int, int], n: StatusQuery) -> int | None:
    value = replies.get(int(n))
    if value is None:
        return None
    if not is_status_byte(value):
        raise StatusReplyError(f"DLE EOT {int(n)}: reply 0x{value:02X} is not a status byte")
    return value


def decode(replies: Mapping[int, int]) -> PrinterStatus:
    """Decode the reply bytes of ``DLE EOT 1, 2, 4`` (and optionally ``3``) keyed by ``n``.

    Raises :class:`StatusReplyError` when a required reply is missing or a byte has wrong fixed bits.
    """
    values = {n: _checked(replies, n) for n in StatusQuery}
    missing = [int(n) for n in REQUIRED if values[n] is None]
    if missing:
        raise StatusReplyError(f"no reply to DLE EOT {', '.join(map(str, missing))}")
    p1, p2, p4 = values[StatusQuery.PRINTER], values[StatusQuery.OFFLINE_CAUSE], values[StatusQuery.PAPER]
    p3 = values[StatusQuery.ERROR_CAUSE] or FIXED_VALUE
    assert p1 is not None and p2 is not None and p4 is not None
    return PrinterStatus(
        online=not _bit(p1, 3),
        drawer_pin_high=_bit(p1, 2),
        waiting_recovery=_bit(p1, 5),
        feed_button=_bit(p1, 6),
        cover_open=_bit(p2, 2),
        paper_out=_bit(p2, 5) or _bit(p4, 5) or _bit(p4, 6),
        error=_bit(p2, 6),
        mechanical_error=_bit(p3, 2),
        autocutter_error=_bit(p3, 3),
        unrecoverable_error=_bit(p3, 5),
        auto_recoverable_error=_bit(p3, 6),
        paper_near_end=_bit(p4, 2) or _bit(p4, 3),
    )


def encode_reply(status: PrinterStatus, n: int) -> int:
    """The byte a printer in ``status`` answers to ``DLE EOT n`` (what the simulator sends)."""
    q = StatusQuery(n)
    value = FIXED_VALUE
    if q is StatusQuery.PRINTER:
        value |= (status.drawer_pin_high << 2) | ((not status.online) << 3) | (status.waiting_recovery << 5) \
            | (status.feed_button << 6)
    elif q is StatusQuery.OFFLINE_CAUSE:
        value |= (status.cover_open << 2) | (status.paper_out << 5) | (status.error << 6)
    elif q is StatusQuery.ERROR_CAUSE:
        value |= (status.mechanical_error << 2) | (status.autocutter_error << 3) \
            | (status.unrecoverable_error << 5) | (status.auto_recoverable_error << 6)
    else:
        value |= (0x0C if status.paper_near_end else 0) | (0x60 if status.paper_out else 0)
    return value


def encode(status: PrinterStatus) -> dict[int, int]:
    """The reply byte for every query, keyed by ``n``."""
    return {int(n): encode_reply(status, n) for n in StatusQuery}
