"""A second-generation ID card reader on a pseudo-terminal, speaking the SAM protocol byte for byte.

The driver under test opens :attr:`SimulatedIdCardReader.port` with pyserial exactly as it would open a real
reader. The port is a stable symlink (like ``/dev/serial/by-id/…``) to the current pty, so :meth:`unplug`
and :meth:`replug` behave like pulling the USB cable: the old tty fails with EIO, the link disappears, and
comes back pointing at a new pty.

    >>> with SimulatedIdCardReader(read_time=0.2) as sim:        # doctest: +SKIP
    ...     sim.place(sample_cards()["resident"])
    ...     card = IdCardReader(sim.port).read_card()

Faults on demand, each for the next ``n`` answers: :meth:`corrupt_next` (bad checksum), :meth:`bad_length_next`,
:meth:`garbage_before_next`, :meth:`mute_next` (no answer), :meth:`partial_next` (half a frame, then silence),
:meth:`fail_next` (any status for a given command), :meth:`remove_during_read`.

Card behaviour after a successful read (``after_read``): ``"present"`` — *find card* keeps answering 9F while
the card lies on the reader; ``"halted"`` — it answers 80 until the card is taken away and placed again
(real readers do either).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import random
import select
import tempfile
import threading
import time
import tty
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from drivers.idcard.card import CardType, IdCard, Sex, encode_text_block
from drivers.idcard.codec import (
    CardData,
    Command,
    FrameError,
    FrameParser,
    Request,
    Response,
    Status,
    encode_card_data,
    encode_frame,
    encode_sam_id,
)
from drivers.idcard.validate import check_digit

DEFAULT_SAM_ID = "05.01-20101027-0011111111-2313123131"
GARBAGE = bytes([0x00, 0x13, 0x37, 0xFF, 0x55, 0x01, 0xAA, 0xAA, 0x96])
"""Line noise with a partial preamble in it (the parser must not take it for a frame start)."""


def fake_wlt(seed: int) -> bytes:
    """1 024 bytes standing in for a WLT photo (random, not a real one: nothing can decode it)."""
    return b"WL" + random.Random(seed).randbytes(1022)


def with_check_digit(first17: str) -> str:
    return first17 + check_digit(first17)


def sample_cards() -> dict[str, IdCard]:
    """Fictional cards of every layout with consistent numbers, plus ``bad_check_digit`` (a resident card
    whose last character is wrong)."""
    resident = IdCard(CardType.RESIDENT, name="王芳", sex=Sex.FEMALE, nation_code="01",
                      birth_date=dt.date(1949, 12, 31), address="北京市朝阳区示例路1号院2号楼3单元401室",
                      id_number="11010519491231002X", authority="北京市公安局朝阳分局",
                      valid_from=dt.date(2015, 1, 1), permanent=True, photo=fake_wlt(1))
    hmt = IdCard(CardType.HMT_RESIDENCE, name="陈大文", sex=Sex.MALE, birth_date=dt.date(1990, 1, 1),
                 address="广东省深圳市福田区示例街道8号", id_number=with_check_digit("81000019900101123"),
                 authority="深圳市公安局", valid_from=dt.date(2019, 5, 1), valid_to=dt.date(2024, 5, 1),
                 pass_number="H12345678", issue_count="01", photo=fake_wlt(2))
    f2017 = IdCard(CardType.FOREIGNER_2017, english_name="SMITH, JOHN ALEXANDER", name="史密斯", sex=Sex.MALE,
                   id_number="USA310080010110", nationality="USA", birth_date=dt.date(1980, 1, 1),
                   valid_from=dt.date(2018, 3, 1), valid_to=dt.date(2028, 3, 1), card_version="01",
                   authority="3100", photo=fake_wlt(3))
    f2023 = IdCard(CardType.FOREIGNER_2023, name="证件样本", sex=Sex.FEMALE, renewal_count="00",
                   birth_date=dt.date(1980, 1, 1), english_name="YANGBEN-ZHENGJIAN, MARIA ALEXANDRA KATHERINE",
                   id_number="931586198001010028", valid_from=dt.date(2023, 8, 8), valid_to=dt.date(2033, 8, 7),
                   nationality="PAK", previous_number_link="001", photo=fake_wlt(4), fingerprint=b"\x43" * 1024)
    bad = replace(resident, id_number="110105194912310021", photo=fake_wlt(5))
    return {"resident": resident, "hmt": hmt, "foreigner_2017": f2017, "foreigner_2023": f2023,
            "bad_check_digit": bad}


@dataclass
class _Fault:
    kind: str
    command: Command | None = None
    status: int = 0
    data: bytes = b""


class SimulatedIdCardReader:
    """The reader's side of the serial line, in a thread on a pty master.

    ``read_time`` is how long a read command takes (a real reader: about 0.2 s); ``after_read`` is
    ``"present"`` or ``"halted"`` (see the module doc); ``baud`` paces answers like a serial line of that
    speed (10 bits a byte; ``None``: instant); ``link_dir`` holds the stable port symlink.
    """

    def __init__(self, *, read_time: float = 0.0, sam_id: str = DEFAULT_SAM_ID, after_read: str = "present",
                 baud: int | None = None, link_dir: Path | None = None) -> None:
        if after_read not in ("present", "halted"):
            raise ValueError("after_read must be 'present' or 'halted'")
        self.read_time = read_time
        self.baud = baud
        self.sam_id = sam_id
        self.after_read = after_read
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if link_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="idcard-sim-")
            link_dir = Path(self._tmp.name)
        self.link = link_dir / "usb-SIM_IdCardReader_0001-if00-port0"
        self._lock = threading.Condition()
        self._faults: deque[_Fault] = deque()
        self._card: IdCard | None = None
        self._selected = False
        self._halted = False
        self._removed = threading.Event()
        self._remove_during_read = False
        self._master = -1
        self._slave = -1
        self._thread: threading.Thread | None = None
        self._running = False
        self.commands: Counter[Command | None] = Counter()
        self.answers: Counter[str] = Counter()
        self.reads = 0
        self.placed_at: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """Stable path of the simulated reader (a symlink to the current pty)."""
        return str(self.link)

    @property
    def tty(self) -> str:
        """The current pty device itself (changes on every replug)."""
        return os.readlink(self.link)

    def start(self) -> SimulatedIdCardReader:
        self._running = True
        self._plug()
        self._thread = threading.Thread(target=self._serve, name="idcard-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._removed.set()
            self._thread.join(timeout=5)
            self._thread = None
        self._unplug()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SimulatedIdCardReader:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        with self._lock:
            self._master, self._slave = master, slave
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)

    def _unplug(self) -> None:
        with self._lock:
            master, slave = self._master, self._slave
            self._master = self._slave = -1
        if self.link.is_symlink():
            self.link.unlink()
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)

    def unplug(self) -> None:
        """Pull the cable: the driver's open tty fails with EIO, and the stable path disappears."""
        self._unplug()

    def replug(self) -> None:
        """Plug the reader back in: a new pty behind the same stable path."""
        self._plug()

    # --- the card -------------------------------------------------------------------------------------

    def place(self, card: IdCard) -> None:
        """Lay a card on the reader."""
        with self._lock:
            self._card = card
            self._selected = False
            self._halted = False
            self._removed.clear()
            self.placed_at = time.perf_counter()
            self._lock.notify_all()

    def remove(self) -> None:
        """Take the card away (interrupts a read in progress, which then fails with 41)."""
        with self._lock:
            self._card = None
            self._selected = False
            self._halted = False
            self._removed.set()
            self._lock.notify_all()

    # --- faults ---------------------------------------------------------------------------------------

    def _add(self, fault: _Fault, n: int) -> None:
        with self._lock:
            self._faults.extend(replace(fault) for _ in range(n))

    def corrupt_next(self, n: int = 1) -> None:
        """The next ``n`` answers carry a wrong checksum."""
        self._add(_Fault("corrupt"), n)

    def bad_length_next(self, n: int = 1) -> None:
        """The next ``n`` answers have an impossible length field (and the rest of the frame follows)."""
        self._add(_Fault("bad_length"), n)

    def garbage_before_next(self, data: bytes = GARBAGE, n: int = 1) -> None:
        """Line noise before each of the next ``n`` answers."""
        self._add(_Fault("garbage", data=data), n)

    def mute_next(self, n: int = 1) -> None:
        """Do not answer the next ``n`` commands."""
        self._add(_Fault("mute"), n)

    def partial_next(self, n: int = 1) -> None:
        """Send only the first half of the next ``n`` answers."""
        self._add(_Fault("partial"), n)

    def fail_next(self, command: Command, status: int, n: int = 1) -> None:
        """Answer the next ``n`` ``command``\\ s with ``status`` (no data), whatever the card does."""
        self._add(_Fault("status", command=command, status=status), n)

    def remove_during_read(self) -> None:
        """The next read command loses the card halfway (the card is taken away; the answer is 41)."""
        with self._lock:
            self._remove_during_read = True

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._remove_during_read = False

    # --- observation ----------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[SimulatedIdCardReader], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (checked after every command) or ``timeout`` passes."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), timeout)

    @property
    def pending_faults(self) -> int:
        """Faults queued and not yet applied."""
        with self._lock:
            return len(self._faults)

    def count(self, command: Command) -> int:
        with self._lock:
            return self.commands[command]

    # --- serving --------------------------------------------------------------------------------------

    def _serve(self) -> None:
        parser: FrameParser[Request] = FrameParser(Request)
        current = -1
        while self._running:
            with self._lock:
                master = self._master
            if master < 0:
                time.sleep(0.005)
                continue
            if master != current:
                parser.reset()
                current = master
            try:
                ready, _, _ = select.select([master], [], [], 0.02)
                if not ready:
                    continue
                with self._lock:  # the fd may have been closed (unplug) and its number reused meanwhile
                    if self._master != master:
                        continue
                    chunk = os.read(master, 4096)
            except (OSError, ValueError) as exc:
                if isinstance(exc, ValueError) or exc.errno in (errno.EAGAIN, errno.EIO, errno.EBADF):
                    time.sleep(0.002)
                    continue
                raise
            for item in parser.feed(chunk):
                if isinstance(item, FrameError):
                    status = Status.CHECKSUM_ERROR if "checksum" in str(item) else Status.LENGTH_ERROR
                    self._send(master, Response(0, 0, status).encode(), None)
                    continue
                self._handle(master, item)

    def _next_fault(self, command: Command | None) -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.kind != "status" or f.command is command:
                    del self._faults[i]
                    return f
        return None

    def _handle(self, master: int, req: Request) -> None:
        command = req.command
        fault = self._next_fault(command)
        if fault is not None and fault.kind == "mute":
            self._record(command, "mute")
            return
        if fault is not None and fault.kind == "status":
            response = Response(0, 0, fault.status)
        else:
            response = self._answer(command, req)
        self._record(command, f"{response.sw3:02x}")
        self._send(master, response.encode(), fault)

    def _record(self, command: Command | None, answer: str) -> None:
        with self._lock:
            self.commands[command] += 1
            self.answers[answer] += 1
            self._lock.notify_all()

    def _answer(self, command: Command | None, req: Request) -> Response:
        with self._lock:
            card, selected, halted = self._card, self._selected, self._halted
        if command in (Command.RESET_SAM, Command.SAM_STATUS, Command.SET_MAX_RF_BYTE):
            return Response(0, 0, Status.OK)
        if command is Command.READ_SAM_ID:
            return Response(0, 0, Status.OK, encode_sam_id(self.sam_id))
        if command is Command.FIND_CARD:
            if card is None or halted:
                return Response(0, 0, Status.FIND_FAILED)
            return Response(0, 0, Status.FIND_OK, bytes(4))
        if command is Command.SELECT_CARD:
            if card is None or halted:
                return Response(0, 0, Status.SELECT_FAILED)
            with self._lock:
                self._selected = True
            return Response(0, 0, Status.OK, bytes(8))
        if command in (Command.READ_TEXT_PHOTO, Command.READ_TEXT_PHOTO_FINGERPRINT):
            if card is None or not selected:
                return Response(0, 0, Status.READ_FAILED)
            return self._read(card, fingerprint=command is Command.READ_TEXT_PHOTO_FINGERPRINT)
        return Response(0, 0, Status.COMMAND_ERROR)

    def _read(self, card: IdCard, *, fingerprint: bool) -> Response:
        with self._lock:
            lose, self._remove_during_read = self._remove_during_read, False
        if lose:
            self._removed.wait(self.read_time / 2)
            self.remove()
            return Response(0, 0, Status.READ_FAILED)
        if self.read_time and self._removed.wait(self.read_time):
            return Response(0, 0, Status.READ_FAILED)
        with self._lock:
            if self._card is not card:
                return Response(0, 0, Status.READ_FAILED)
            self.reads += 1
            if self.after_read == "halted":
                self._halted = True
            self._selected = False
        data = CardData(encode_text_block(card), card.photo, card.fingerprint if fingerprint else b"")
        return Response(0, 0, Status.OK, encode_card_data(data, fingerprint=fingerprint))

    def _send(self, master: int, frame: bytes, fault: _Fault | None) -> None:
        if fault is not None:
            if fault.kind == "corrupt":
                frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
            elif fault.kind == "bad_length":
                frame = frame[:5] + b"\xff\xff" + frame[7:]
            elif fault.kind == "garbage":
                frame = fault.data + frame
            elif fault.kind == "partial":
                frame = frame[:max(1, len(frame) // 2)]
        if self.baud:
            time.sleep(len(frame) * 10 / self.baud)  # the whole frame on the wire before it is usable
        deadline = time.monotonic() + 2.0
        view = memoryview(frame)
        while view and time.monotonic() < deadline:
            try:
                with self._lock:
                    if self._master != master:
                        return  # unplugged while answering
                    view = view[os.write(master, view):]
            except BlockingIOError:
                try:
                    select.select([], [master], [], 0.02)
                except (OSError, ValueError):
                    return
            except OSError:
                return


def encode_raw(body: bytes) -> bytes:
    """A frame around any body (for tests that need odd frames)."""
    return encode_frame(body)
