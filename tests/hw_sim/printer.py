"""A receipt printer on a pseudo-terminal: the other end of the box's serial printer cable.

:class:`PrinterSimulator` opens a pty; the driver opens :attr:`PrinterSimulator.path` like ``/dev/ttyUSB0``.
A thread reads the master side and feeds the bytes to :class:`EscPosDecoder`, which interprets the ESC/POS
stream the way a printer does (``ESC @``, ``ESC E``, ``ESC !``, ``GS !``, ``ESC a``, ``FS &`` / ``FS .`` with
GB18030 text, ``GS ( k`` QR store and print, ``ESC d``, ``GS V``, ``LF``), answers ``DLE EOT n`` with the real
status bit layout (:mod:`drivers.escpos_status`) and collects :class:`Ticket` objects.

Faults are set on command (:meth:`~PrinterSimulator.paper_out`, :meth:`~PrinterSimulator.cover_open`,
:meth:`~PrinterSimulator.power_off` …). While it cannot print, the simulator discards what it receives, like a
printer that clears its buffer when the cover opens: the hardest case for the driver.

>>> with PrinterSimulator() as sim:                                      # doctest: +SKIP
...     printer = TicketPrinter(PrinterSettings(connection=f"serial:{sim.path}"), tmp).start()
...     printer.submit("queue", fields)
...     ticket, = sim.wait_for_tickets(1)
...     render_png(ticket, "queue.png")
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drivers.escpos_status import PrinterStatus, encode_reply

ALIGN = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
ESC_ARGS = {ord(c): n for c, n in {"@": 0, "2": 0, "E": 1, "!": 1, "a": 1, "d": 1, "t": 1, "-": 1, "M": 1,
                                    "G": 1, "{": 1, "V": 1, "3": 1, "J": 1, "R": 1, "e": 1, " ": 1, "=": 1,
                                    "c": 2, "p": 3}.items()}
GS_ARGS = {ord(c): n for c, n in {"!": 1, "B": 1, "H": 1, "f": 1, "h": 1, "w": 1, "a": 1, "r": 1, "I": 1,
                                   "L": 2, "W": 2}.items()}
FS_ARGS = {ord(c): n for c, n in {"&": 0, ".": 0, "!": 1, "C": 1, "-": 1, "W": 1, "S": 2, "p": 2}.items()}
FONT_REGULAR = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
FONT_BOLD = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")


@dataclass
class PrintedLine:
    """One line (or one QR symbol) as it came out of the printer."""

    text: str = ""
    bold: bool = False
    width: int = 1
    height: int = 1
    align: str = "left"
    qr: str | None = None
    qr_size: int = 3


@dataclass
class Ticket:
    """Everything printed between two cuts (``cut`` is false for a ticket cut short by ``ESC @``)."""

    lines: list[PrintedLine] = field(default_factory=list)
    cut: bool = False

    @property
    def texts(self) -> list[str]:
        """The text lines (QR symbols left out), trailing spaces removed."""
        return [ln.text.rstrip() for ln in self.lines if ln.qr is None]

    @property
    def qr_codes(self) -> list[str]:
        """Payloads of the printed QR symbols."""
        return [ln.qr for ln in self.lines if ln.qr is not None]

    def find(self, text: str) -> PrintedLine:
        """The first text line containing ``text``; raises ``KeyError``."""
        for ln in self.lines:
            if ln.qr is None and text in ln.text:
                return ln
        raise KeyError(text)


class EscPosDecoder:
    """Interprets an ESC/POS byte stream as a printer does; feed it bytes in any chunks.

    ``on_status(n)`` is called for every ``DLE EOT n``. ``can_print()`` is asked before a line, QR code or cut
    comes out; when it says no, the output is discarded and counted in :attr:`lost`.
    """

    def __init__(self, on_status: Callable[[int], None] | None = None,
                 can_print: Callable[[], bool] | None = None) -> None:
        self.on_status = on_status
        self.can_print = can_print or (lambda: True)
        self.tickets: list[Ticket] = []
        self.current = Ticket()
        self.unknown: list[bytes] = []
        self.lost = 0
        self._buf = bytearray()
        self._reset()

    def _reset(self) -> None:
        self.bold = False
        self.width = self.height = 1
        self.align = "left"
        self.chinese = False
        self.codepage = 0
        self.qr_data: bytes | None = None
        self.qr_size = 3
        self._line: list[str] = []
        self._line_style: tuple[bool, int, int, str] | None = None

    def feed(self, data: bytes) -> None:
        """Interpret ``data`` (a command split across calls is completed by the next call)."""
        self._buf += data
        while self._buf:
            used = self._step(self._buf)
            if used == 0:
                break
            del self._buf[:used]

    def finish(self) -> list[Ticket]:
        """End of stream: an uncut ticket in progress is kept (``cut=False``); returns all tickets."""
        self._close_ticket()
        return self.tickets

    # output

    def _emit(self, line: PrintedLine) -> None:
        if self.can_print():
            self.current.lines.append(line)
        else:
            self.lost += 1

    def _print_line(self) -> None:
        bold, width, height, align = self._line_style or (self.bold, self.width, self.height, self.align)
        self._emit(PrintedLine("".join(self._line), bold, width, height, align))
        self._line, self._line_style = [], None

    def _put(self, ch: str) -> None:
        if self._line_style is None:
            self._line_style = (self.bold, self.width, self.height, self.align)
        self._line.append(ch)

    def _cut(self) -> None:
        if self._line:
            self._print_line()
        if self.can_print():
            self.current.cut = True
            self.tickets.append(self.current)
        else:
            self.lost += 1
        self.current = Ticket()

    def _close_ticket(self) -> None:
        if self.current.lines:
            self.tickets.append(self.current)
        self.current = Ticket()

    # parser: returns the bytes used, 0 when the command is not complete yet

    def _step(self, b: bytearray) -> int:
        c = b[0]
        if c == 0x10:
            return self._dle(b)
        if c == 0x1B:
            return self._esc(b)
        if c == 0x1D:
            return self._gs(b)
        if c == 0x1C:
            return self._fs(b)
        if c == 0x0A:
            self._print_line()
            return 1
        if c == 0x09:
            self._put(" ")
            return 1
        if c in (0x0D, 0x0C, 0x00):
            return 1
        if c < 0x20 or c == 0x7F:
            self.unknown.append(bytes(b[:1]))
            return 1
        if c < 0x80:
            self._put(chr(c))
            return 1
        if not self.chinese:
            self._put(bytes([c]).decode("cp437"))
            return 1
        if len(b) < 2:
            return 0
        size = 4 if 0x30 <= b[1] <= 0x39 else 2
        if len(b) < size:
            return 0
        self._put(bytes(b[:size]).decode("gb18030", errors="replace"))
        return size

    def _dle(self, b: bytearray) -> int:
        if len(b) < 3:
            return 0
        if b[1] == 0x04:
            if self.on_status is not None:
                self.on_status(b[2])
            return 3
        if b[1] == 0x05:  # DLE ENQ n: real-time request, nothing to show
            return 3
        self.unknown.append(bytes(b[:2]))
        return 2

    def _esc(self, b: bytearray) -> int:
        if len(b) < 2:
            return 0
        cmd = b[1]
        if cmd not in ESC_ARGS:
            self.unknown.append(bytes(b[:2]))
            return 2
        n = ESC_ARGS[cmd]
        if len(b) < 2 + n:
            return 0
        arg = b[2] if n else 0
        if cmd == ord("@"):
            self._close_ticket()
            self._reset()
        elif cmd == ord("E"):
            self.bold = bool(arg & 1)
        elif cmd == ord("!"):
            self.bold = bool(arg & 0x08)
            self.height = 2 if arg & 0x10 else 1
            self.width = 2 if arg & 0x20 else 1
        elif cmd == ord("a"):
            self.align = ALIGN.get(arg, "left")
        elif cmd == ord("d"):
            if self._line:
                self._print_line()
        elif cmd == ord("t"):
            self.codepage = arg
        return 2 + n

    def _gs(self, b: bytearray) -> int:
        if len(b) < 2:
            return 0
        cmd = b[1]
        if cmd == ord("V"):
            if len(b) < 3:
                return 0
            n = 1 if b[2] in (65, 66, 97, 98, 103, 104) else 0
            if len(b) < 3 + n:
                return 0
            self._cut()
            return 3 + n
        if cmd == ord("("):
            if len(b) < 5:
                return 0
            size = b[3] | b[4] << 8
            if len(b) < 5 + size:
                return 0
            if b[2] == ord("k"):
                self._symbol(bytes(b[5:5 + size]))
            else:
                self.unknown.append(bytes(b[:3]))
            return 5 + size
        if cmd == ord("v") and len(b) > 2 and b[2] == ord("0"):  # raster image: skip its data
            if len(b) < 8:
                return 0
            total = 8 + (b[4] | b[5] << 8) * (b[6] | b[7] << 8)
            return total if len(b) >= total else 0
        if cmd not in GS_ARGS:
            self.unknown.append(bytes(b[:2]))
            return 2
        n = GS_ARGS[cmd]
        if len(b) < 2 + n:
            return 0
        if cmd == ord("!"):
            self.width = (b[2] >> 4) + 1
            self.height = (b[2] & 0x0F) + 1
        return 2 + n

    def _symbol(self, body: bytes) -> None:
        cn, fn = body[0], body[1]
        if cn != 49:  # only QR (cn '1') is used by the box
            self.unknown.append(b"\x1d(k" + body[:2])
            return
        if fn == 67:      # module size in dots
            self.qr_size = body[2]
        elif fn == 80:    # store data (m = '0')
            self.qr_data = body[3:]
        elif fn == 81:    # print the stored symbol
            if self._line:
                self._print_line()
            payload = (self.qr_data or b"").decode("utf-8", errors="replace")
            self._emit(PrintedLine(align=self.align, qr=payload, qr_size=self.qr_size))

    def _fs(self, b: bytearray) -> int:
        if len(b) < 2:
            return 0
        cmd = b[1]
        if cmd not in FS_ARGS:
            self.unknown.append(bytes(b[:2]))
            return 2
        n = FS_ARGS[cmd]
        if len(b) < 2 + n:
            return 0
        if cmd == ord("&"):
            self.chinese = True
        elif cmd == ord("."):
            self.chinese = False
        return 2 + n


def decode(data: bytes) -> list[Ticket]:
    """The tickets in a captured ESC/POS byte stream (status queries are ignored)."""
    dec = EscPosDecoder()
    dec.feed(data)
    return dec.finish()


class PrinterSimulator:
    """An ESC/POS receipt printer behind a pty; :attr:`path` is the device to open."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._cond = threading.Condition()
        self._raw = bytearray()
        self.queries: list[int] = []
        self.powered = True
        self.near_end = False
        self.no_paper = False
        self.cover = False
        self.cutter = False
        self._out_after: int | None = None
        self.decoder = EscPosDecoder(on_status=self._answer, can_print=self._can_print)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="printer-sim", daemon=True)
        self._thread.start()

    def __enter__(self) -> PrinterSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader thread and close the pty."""
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    # faults, on command

    def paper_low(self) -> None:
        """The roll reaches the near-end sensor (still prints)."""
        with self._cond:
            self.near_end = True

    def paper_out(self) -> None:
        """The roll is empty: offline, nothing prints."""
        with self._cond:
            self.no_paper = self.near_end = True

    def run_out_of_paper_after(self, tickets: int) -> None:
        """Run out of paper when the first line after ``tickets`` more cut tickets is about to print."""
        with self._cond:
            self._out_after = len(self.decoder.tickets) + tickets

    def cover_open(self) -> None:
        """The cover is opened: offline, nothing prints."""
        with self._cond:
            self.cover = True

    def cutter_error(self) -> None:
        """The autocutter jams: an error, offline."""
        with self._cond:
            self.cutter = True

    def power_off(self) -> None:
        """Switched off: no answers, nothing prints (the cable stays connected)."""
        with self._cond:
            self.powered = False

    def recover(self) -> None:
        """New roll, cover closed, errors cleared, power on."""
        with self._cond:
            self.near_end = self.no_paper = self.cover = self.cutter = False
            self.powered = True
            self._out_after = None

    @property
    def status(self) -> PrinterStatus:
        """What the printer would report now."""
        return PrinterStatus(online=not (self.no_paper or self.cover or self.cutter), cover_open=self.cover,
                             paper_near_end=self.near_end, paper_out=self.no_paper, error=self.cutter,
                             autocutter_error=self.cutter)

    # what came out

    @property
    def raw(self) -> bytes:
        """Every byte received so far."""
        with self._cond:
            return bytes(self._raw)

    @property
    def tickets(self) -> list[Ticket]:
        """Tickets that came out, cut or closed by the next job's ``ESC @``."""
        with self._cond:
            return list(self.decoder.tickets)

    @property
    def cut_tickets(self) -> list[Ticket]:
        """Only the complete (cut) tickets."""
        return [t for t in self.tickets if t.cut]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` is true (checked after every chunk received)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_tickets(self, n: int, timeout: float = 10.0) -> list[Ticket]:
        """Wait for ``n`` cut tickets in total and return them; raises ``TimeoutError``."""
        if not self.wait_for(lambda: sum(t.cut for t in self.decoder.tickets) >= n, timeout):
            raise TimeoutError(f"printer simulator: {len(self.cut_tickets)} of {n} tickets after {timeout} s")
        return self.cut_tickets

    # internals (reader thread)

    def _can_print(self) -> bool:
        if self._out_after is not None and sum(t.cut for t in self.decoder.tickets) >= self._out_after:
            self.no_paper = self.near_end = True
            self._out_after = None
        return self.powered and not (self.no_paper or self.cover or self.cutter)

    def _answer(self, n: int) -> None:
        self.queries.append(n)
        if self.powered and n in (1, 2, 3, 4):
            os.write(self._master, bytes([encode_reply(self.status, n)]))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except OSError:
                return
            with self._cond:
                self._raw += data
                self.decoder.feed(data)
                self._cond.notify_all()


# --- rendering -------------------------------------------------------------------------------------------------

def _font(path: Path, size: int):  # -> ImageFont.FreeTypeFont
    from PIL import ImageFont

    for index in range(6):  # the Simplified Chinese face of the collection
        font = ImageFont.truetype(str(path), size, index=index)
        if "SC" in font.getname()[0]:
            return font
    return ImageFont.truetype(str(path), size)


def render_png(ticket: Ticket, path: str | Path, columns: int = 48, scale: int = 2) -> Path:
    """Draw ``ticket`` as the paper would look (font A 12×24 dots, 8 dots/mm) and save it as PNG."""
    import segno
    from PIL import Image, ImageDraw

    cell_w, cell_h, spacing, margin = 12 * scale, 24 * scale, 6 * scale, 16 * scale
    paper_w = columns * cell_w
    fonts = {False: _font(FONT_REGULAR, int(cell_h * 0.78)),
             True: _font(FONT_BOLD if FONT_BOLD.exists() else FONT_REGULAR, int(cell_h * 0.78))}
    blocks: list[Image.Image] = []
    aligns: list[str] = []
    for line in ticket.lines:
        if line.qr is not None:
            qr = segno.make_qr(line.qr, error="m")
            img = Image.new("L", (qr.symbol_size(border=0)[0],) * 2, 255)
            for y, row in enumerate(qr.matrix):
                for x, bit in enumerate(row):
                    if bit:
                        img.putpixel((x, y), 0)
            side = img.width * line.qr_size * scale
            img = img.resize((side, side), Image.Resampling.NEAREST)
        else:
            cells = [1 if ch < "\x80" else 2 for ch in line.text]
            img = Image.new("L", (max(1, sum(cells)) * cell_w, cell_h), 255)
            draw = ImageDraw.Draw(img)
            x = 0
            for ch, n in zip(line.text, cells):
                draw.text((x + n * cell_w / 2, cell_h / 2), ch, fill=0, font=fonts[line.bold], anchor="mm")
                x += n * cell_w
            if line.width > 1 or line.height > 1:
                img = img.resize((img.width * line.width, img.height * line.height), Image.Resampling.BICUBIC)
        blocks.append(img)
        aligns.append(line.align)
    height = margin * 2 + sum(b.height + spacing for b in blocks) + (cell_h if ticket.cut else 0)
    page = Image.new("L", (paper_w + 2 * margin, height), 255)
    y = margin
    for img, align in zip(blocks, aligns):
        x = {"left": 0, "center": (paper_w - img.width) // 2, "right": paper_w - img.width}[align]
        page.paste(img, (margin + max(0, x), y))
        y += img.height + spacing
    if ticket.cut:
        draw = ImageDraw.Draw(page)
        y += cell_h // 2
        for x in range(0, page.width, 12 * scale):
            draw.line([(x, y), (x + 6 * scale, y)], fill=150, width=scale)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.save(out, optimize=True)
    return out
