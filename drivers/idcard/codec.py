"""SAM frame codec for second-generation ID card readers: bytes ↔ typed frames, no I/O.

Every reader with a security (SAM) module speaks the same framed protocol over a serial line
(115200 8N1)::

    command   AA AA AA 96 69 | LEN(2, BE) | CMD | PARA | DATA ... | CHK
    response  AA AA AA 96 69 | LEN(2, BE) | SW1 | SW2 | SW3 | DATA ... | CHK

``LEN`` counts every byte after itself, checksum included; ``CHK`` is the XOR of every byte between the
preamble and the checksum (the two length bytes included). SW1 and SW2 are 00 on every answer we know;
SW3 is the status (:class:`Status`).

>>> encode_command(Command.FIND_CARD).hex(" ")
'aa aa aa 96 69 00 03 20 01 22'
>>> p = FrameParser()
>>> p.feed(bytes.fromhex("0000 aaaaaa9669 0008 00009f 00000000 97"))
[Response(sw1=0, sw2=0, sw3=159, data=b'\\x00\\x00\\x00\\x00')]

:class:`FrameParser` is a streaming parser: it skips garbage until the next preamble, waits for partial
frames, and reports a bad checksum or an impossible length as a :class:`ChecksumError` /
:class:`LengthError` *value* (not raised) before resynchronising on the next preamble.

Non-OK statuses map to one exception class each (:data:`STATUS_ERRORS`), grouped by what the caller does
about them: :class:`LinkStatusError` (the SAM got a damaged command: resend), :class:`CardError` (this
presentation failed: ask for the card again) and :class:`SamError` (the reader itself is unusable: alert).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
HEADER_LEN = len(PREAMBLE) + 2
MAX_FRAME_BODY = 4096
"""Largest ``LEN`` accepted: the biggest real answer (text + photo + fingerprint) is 2 321 bytes."""


class Command(enum.Enum):
    """Command and parameter bytes of the SAM commands we use."""

    RESET_SAM = (0x10, 0xFF)
    SAM_STATUS = (0x11, 0xFF)
    READ_SAM_ID = (0x12, 0xFF)
    FIND_CARD = (0x20, 0x01)
    SELECT_CARD = (0x20, 0x02)
    READ_TEXT_PHOTO = (0x30, 0x01)
    READ_TEXT_PHOTO_FINGERPRINT = (0x30, 0x10)
    SET_MAX_RF_BYTE = (0x61, 0xFF)

    @property
    def cmd(self) -> int:
        return self.value[0]

    @property
    def para(self) -> int:
        return self.value[1]

    @classmethod
    def lookup(cls, cmd: int, para: int) -> Command | None:
        """The command with these two bytes, or ``None`` if we do not know it."""
        for c in cls:
            if c.value == (cmd, para):
                return c
        return None


class Status(enum.IntEnum):
    """SW3 of a response."""

    OK = 0x90
    NO_CONTENT = 0x91
    FIND_OK = 0x9F
    CHECKSUM_ERROR = 0x10
    LENGTH_ERROR = 0x11
    COMMAND_ERROR = 0x21
    UNAUTHORISED = 0x23
    UNKNOWN_ERROR = 0x24
    CARD_AUTH_FAILED = 0x31
    SAM_AUTH_FAILED = 0x32
    INFO_VERIFY_FAILED = 0x33
    FINGERPRINT_FAILED = 0x37
    INFO_LENGTH_ERROR = 0x3F
    UNKNOWN_CARD_TYPE = 0x40
    READ_FAILED = 0x41
    RANDOM_FAILED = 0x47
    SAM_SELF_TEST_FAILED = 0x60
    SAM_NOT_AUTHORISED = 0x66
    FIND_FAILED = 0x80
    SELECT_FAILED = 0x81


SUCCESS = frozenset({Status.OK, Status.FIND_OK})


# --- exceptions -----------------------------------------------------------------------------------------


class IdCardError(Exception):
    """Base of every error of the ID card reader driver."""


class FrameError(IdCardError):
    """A frame from the wire is damaged (reported by :class:`FrameParser`)."""


class ChecksumError(FrameError):
    """The frame's XOR checksum does not match: the line corrupted it."""


class LengthError(FrameError):
    """The frame's length field is impossible (too short for its header, or beyond the largest answer)."""


class ProtocolError(IdCardError):
    """A well-formed frame whose content does not fit the command (short data, inconsistent lengths)."""


class StatusError(IdCardError):
    """The SAM answered with a non-OK status (SW3). Subclasses name each status."""

    status: int = -1
    meaning = "unknown status"

    def __init__(self, message: str | None = None, *, status: int | None = None,
                 command: Command | None = None) -> None:
        if status is not None:
            self.status = status
        self.command = command
        what = f" to {command.name}" if command is not None else ""
        super().__init__(message or f"SAM status {self.status:#04x}{what}: {self.meaning}")


class LinkStatusError(StatusError):
    """The SAM received a damaged or unknown command. Resending usually works."""


class CardError(StatusError):
    """This card presentation failed (not found, moved, unreadable). Ask for the card again."""


class SamError(StatusError):
    """The reader's security module is not usable. Needs a technician; polling continues with backoff."""


class SamChecksumError(LinkStatusError):
    status, meaning = Status.CHECKSUM_ERROR, "the SAM saw a bad checksum in our command"


class SamLengthError(LinkStatusError):
    status, meaning = Status.LENGTH_ERROR, "the SAM saw a bad length in our command"


class CommandNotSupported(LinkStatusError):
    status, meaning = Status.COMMAND_ERROR, "command not supported by this SAM"


class NoContent(CardError):
    status, meaning = Status.NO_CONTENT, "the card has no content for this item"


class CardAuthFailed(CardError):
    status, meaning = Status.CARD_AUTH_FAILED, "card failed to authenticate the SAM"


class SamAuthFailed(CardError):
    status, meaning = Status.SAM_AUTH_FAILED, "SAM failed to authenticate the card"


class InfoVerifyFailed(CardError):
    status, meaning = Status.INFO_VERIFY_FAILED, "card information failed verification"


class FingerprintFailed(CardError):
    status, meaning = Status.FINGERPRINT_FAILED, "fingerprint information failed"


class InfoLengthError(CardError):
    status, meaning = Status.INFO_LENGTH_ERROR, "card information has a wrong length"


class UnknownCardType(CardError):
    status, meaning = Status.UNKNOWN_CARD_TYPE, "unknown card type"


class ReadFailed(CardError):
    status, meaning = Status.READ_FAILED, "reading the card failed (card moved or removed?)"


class RandomFailed(CardError):
    status, meaning = Status.RANDOM_FAILED, "getting a random number from the card failed"


class CardNotFound(CardError):
    status, meaning = Status.FIND_FAILED, "no card on the reader"


class SelectFailed(CardError):
    status, meaning = Status.SELECT_FAILED, "selecting the card failed"


class Unauthorised(SamError):
    status, meaning = Status.UNAUTHORISED, "operation not authorised"


class SamUnknownError(SamError):
    status, meaning = Status.UNKNOWN_ERROR, "unknown SAM error"


class SamSelfTestFailed(SamError):
    status, meaning = Status.SAM_SELF_TEST_FAILED, "SAM self-test failed"


class SamNotAuthorised(SamError):
    status, meaning = Status.SAM_NOT_AUTHORISED, "SAM not authorised"


class UnexpectedStatus(SamError):
    """A status byte not in :class:`Status`."""

    meaning = "status not in the protocol"


STATUS_ERRORS: dict[int, type[StatusError]] = {
    cls.status: cls
    for cls in (SamChecksumError, SamLengthError, CommandNotSupported, NoContent, CardAuthFailed, SamAuthFailed,
                InfoVerifyFailed, FingerprintFailed, InfoLengthError, UnknownCardType, ReadFailed, RandomFailed,
                CardNotFound, SelectFailed, Unauthorised, SamUnknownError, SamSelfTestFailed, SamNotAuthorised)
}
"""Exception class for every non-OK status of :class:`Status`."""


def error_for_status(status: int, command: Command | None = None) -> StatusError:
    """The exception instance for a non-OK status (:class:`UnexpectedStatus` for unknown bytes)."""
    cls = STATUS_ERRORS.get(status)
    if cls is None:
        return UnexpectedStatus(status=status, command=command)
    return cls(command=command)


# --- frames ---------------------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """XOR of all bytes."""
    x = 0
    for b in data:
        x ^= b
    return x


def encode_frame(body: bytes) -> bytes:
    """Wrap ``body`` (command+parameter+data or SW1..SW3+data) in preamble, length and checksum."""
    length = len(body) + 1
    if length > MAX_FRAME_BODY:
        raise ValueError(f"frame body too long: {len(body)} bytes")
    head = struct.pack(">H", length)
    return PREAMBLE + head + body + bytes([checksum(head + body)])


def encode_command(command: Command, data: bytes = b"") -> bytes:
    """The bytes that send ``command`` (with optional data) to the SAM."""
    return encode_frame(bytes([command.cmd, command.para]) + data)


@dataclass(frozen=True)
class Request:
    """A decoded command frame (the simulator's view)."""

    MIN_BODY: ClassVar[int] = 2
    cmd: int
    para: int
    data: bytes = b""

    @property
    def command(self) -> Command | None:
        return Command.lookup(self.cmd, self.para)

    @classmethod
    def decode(cls, body: bytes) -> Request:
        if len(body) < 2:
            raise LengthError(f"command frame body of {len(body)} bytes is shorter than CMD+PARA")
        return cls(body[0], body[1], bytes(body[2:]))

    def encode(self) -> bytes:
        return encode_frame(bytes([self.cmd, self.para]) + self.data)


@dataclass(frozen=True)
class Response:
    """A decoded response frame."""

    MIN_BODY: ClassVar[int] = 3
    sw1: int
    sw2: int
    sw3: int
    data: bytes = b""

    @property
    def status(self) -> Status | int:
        """SW3 as :class:`Status`, or the raw byte when it is not a known status."""
        try:
            return Status(self.sw3)
        except ValueError:
            return self.sw3

    @property
    def ok(self) -> bool:
        return self.sw3 in SUCCESS

    @classmethod
    def decode(cls, body: bytes) -> Response:
        if len(body) < 3:
            raise LengthError(f"response frame body of {len(body)} bytes is shorter than SW1..SW3")
        return cls(body[0], body[1], body[2], bytes(body[3:]))

    def encode(self) -> bytes:
        return encode_frame(bytes([self.sw1, self.sw2, self.sw3]) + self.data)

    def raise_for_status(self, command: Command | None = None) -> Response:
        """Return self when OK (90 or 9F), else raise the status's exception."""
        if not self.ok:
            raise error_for_status(self.sw3, command)
        return self


T = TypeVar("T", Response, Request)


class FrameParser(Generic[T]):
    """Streaming frame parser: feed it bytes as they come, get frames and frame errors back.

    ``kind`` is the frame type to decode: :class:`Response` (default, the host's side) or
    :class:`Request` (the reader's side, used by the simulator). Garbage before a preamble is skipped and counted in
    :attr:`discarded`. A frame with a bad checksum or an impossible length yields the error as a value;
    the parser then looks for the next preamble from the byte after the bad one, so a good frame that
    followed a damaged one is still found.
    """

    def __init__(self, kind: type[T] = Response, *, max_body: int = MAX_FRAME_BODY) -> None:  # type: ignore[assignment]
        self._decode: Callable[[bytes], T] = kind.decode
        self._min_len = kind.MIN_BODY + 1
        self._max_body = max_body
        self._buf = bytearray()
        self.discarded = 0

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial frame (after a timeout, or when the port was reopened)."""
        self.discarded += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes) -> list[T | FrameError]:
        """Add bytes; return every complete frame (or frame error) found, in order."""
        self._buf += data
        out: list[T | FrameError] = []
        buf = self._buf
        while True:
            start = buf.find(PREAMBLE)
            if start < 0:
                # keep a tail that may be the start of a preamble split across reads
                keep = _preamble_prefix_len(buf)
                self.discarded += len(buf) - keep
                del buf[:len(buf) - keep]
                return out
            if start:
                self.discarded += start
                del buf[:start]
            if len(buf) < HEADER_LEN:
                return out
            length = (buf[5] << 8) | buf[6]
            if length < self._min_len or length > self._max_body:
                out.append(LengthError(f"frame length {length} outside {self._min_len}..{self._max_body}"))
                self.discarded += 1
                del buf[:1]
                continue
            end = HEADER_LEN + length
            if len(buf) < end:
                return out
            head_body = bytes(buf[5:end - 1])
            if checksum(head_body) != buf[end - 1]:
                out.append(ChecksumError(f"frame checksum {buf[end - 1]:#04x}, computed {checksum(head_body):#04x}"))
                self.discarded += 1
                del buf[:1]
                continue
            del buf[:end]
            try:
                out.append(self._decode(head_body[2:]))
            except FrameError as exc:
                out.append(exc)


def _preamble_prefix_len(buf: bytearray) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of the preamble."""
    for n in range(min(len(PREAMBLE) - 1, len(buf)), 0, -1):
        if buf[-n:] == PREAMBLE[:n]:
            return n
    return 0


# --- command payloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardData:
    """Raw answer of a read command: text block, photo (WLT, opaque) and fingerprint data (may be empty)."""

    text: bytes
    photo: bytes
    fingerprint: bytes = b""

    def __repr__(self) -> str:  # never print card content
        return f"CardData(text={len(self.text)} B, photo={len(self.photo)} B, fingerprint={len(self.fingerprint)} B)"


def decode_card_data(data: bytes, *, fingerprint: bool = False) -> CardData:
    """Split the data of a READ_TEXT_PHOTO (``30 01``) or READ_TEXT_PHOTO_FINGERPRINT (``30 10``) answer.

    Layout: text length (2, BE), photo length (2, BE), [fingerprint length (2, BE)], text, photo,
    [fingerprint]. Raises :class:`ProtocolError` when the lengths do not add up.
    """
    n = 6 if fingerprint else 4
    if len(data) < n:
        raise ProtocolError(f"read answer of {len(data)} bytes is shorter than its {n}-byte length header")
    lens = struct.unpack(f">{n // 2}H", data[:n])
    if sum(lens) != len(data) - n:
        raise ProtocolError(f"read answer lengths {lens} do not add up to its {len(data) - n} data bytes")
    text = data[n:n + lens[0]]
    photo = data[n + lens[0]:n + lens[0] + lens[1]]
    fp = data[n + lens[0] + lens[1]:] if fingerprint else b""
    return CardData(bytes(text), bytes(photo), bytes(fp))


def encode_card_data(card: CardData, *, fingerprint: bool = False) -> bytes:
    """Inverse of :func:`decode_card_data` (used by the simulator and the tests)."""
    if fingerprint:
        return struct.pack(">3H", len(card.text), len(card.photo), len(card.fingerprint)) + card.text \
            + card.photo + card.fingerprint
    return struct.pack(">2H", len(card.text), len(card.photo)) + card.text + card.photo


def decode_sam_id(data: bytes) -> str:
    """Format the 16 data bytes of a READ_SAM_ID answer as printed on readers: ``05.01-20101027-…``.

    Two little-endian uint16 then three little-endian uint32: ``%02d.%02d-%08d-%010d-%010d``.
    """
    if len(data) < 16:
        raise ProtocolError(f"SAM id answer has {len(data)} data bytes, expected 16")
    a, b, c, d, e = struct.unpack("<HHIII", data[:16])
    return f"{a:02d}.{b:02d}-{c:08d}-{d:010d}-{e:010d}"


def encode_sam_id(sam_id: str) -> bytes:
    """Inverse of :func:`decode_sam_id`."""
    head, c, d, e = sam_id.split("-")
    a, b = head.split(".")
    return struct.pack("<HHIII", int(a), int(b), int(c), int(d), int(e))
