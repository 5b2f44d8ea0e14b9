"""Serial-device replies under noise: SAM frames and card data of the ID card reader, ESC/POS status bytes.

A reader or printer on a bad cable, a counterfeit device or a man in the middle on the serial line sends
anything. The frame parser answers with frames or frame errors as values, the payload decoders raise only
their documented errors (:class:`ProtocolError` / :class:`CardFormatError`, :class:`StatusReplyError`) with a
message, and the parser's buffer stays bounded.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import example, given
from hypothesis import strategies as st

from drivers import escpos_status, printer
from drivers.escpos_status import PrinterStatus, StatusReplyError
from drivers.idcard import codec
from drivers.idcard.card import CardType, IdCard, Sex, encode_text_block, parse_card
from drivers.idcard.codec import (
    MAX_FRAME_BODY,
    PREAMBLE,
    CardData,
    FrameError,
    FrameParser,
    IdCardError,
    ProtocolError,
    Request,
    Response,
    decode_card_data,
    decode_sam_id,
    encode_card_data,
    encode_frame,
)
from tests.fuzz.harness import assert_reason, fuzz, mutated, no_hang

CARD = IdCard(CardType.RESIDENT, name="张三", sex=Sex.MALE, nation_code="01", birth_date=dt.date(1990, 1, 2),
              address="北京市东城区", id_number="11010119900102003X", authority="北京市公安局",
              valid_from=dt.date(2020, 1, 1), valid_to=dt.date(2040, 1, 1))
TEXT = encode_text_block(CARD)
READ_ANSWER = encode_card_data(CardData(TEXT, bytes(range(256)) * 4))
STREAM = (b"\x00\x01" + encode_frame(bytes([0, 0, 0x9F]) + bytes(4)) + encode_frame(bytes([0, 0, 0x90]) + READ_ANSWER)
          + encode_frame(bytes([0, 0, 0x80])))


def _feed_all(parser: FrameParser, data: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    i = k = 0
    with no_hang():
        while i < len(data):
            n = cuts[k % len(cuts)]
            out += parser.feed(data[i:i + n])
            i, k = i + n, k + 1
    return out


@fuzz(300)
@given(mutated(STREAM, max_ops=6), st.lists(st.integers(1, 700), min_size=1, max_size=5), st.booleans())
def test_fuzz_sam_stream_gives_frames_or_errors(data: bytes, cuts: list[int], requests: bool) -> None:
    parser: FrameParser = FrameParser(Request if requests else Response)
    for item in _feed_all(parser, data, cuts):
        if isinstance(item, FrameError):
            assert_reason(item)
        else:
            assert isinstance(item, Request if requests else Response)
    assert parser.pending <= MAX_FRAME_BODY + len(PREAMBLE) + 2  # never more than one frame's worth held


@fuzz(100)
@given(st.binary(max_size=64), st.integers(0, 0xFFFF))
@example(b"", 0xFFFF)  # the largest length a header can claim
def test_fuzz_claimed_lengths_are_bounded(tail: bytes, length: int) -> None:
    parser = FrameParser()
    data = PREAMBLE + length.to_bytes(2, "big") + tail
    for item in _feed_all(parser, data * 3, [5]):
        assert isinstance(item, (Response, FrameError))
    assert parser.pending <= MAX_FRAME_BODY + len(PREAMBLE) + 2


def _decode(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        with no_hang():
            return call(*args, **kwargs)
    except IdCardError as exc:
        assert isinstance(exc, ProtocolError), type(exc)
        assert_reason(exc)
        return None


@fuzz(300)
@given(mutated(READ_ANSWER, max_ops=3) | st.binary(max_size=80), st.booleans())
def test_fuzz_card_data_and_text_block(data: bytes, fingerprint: bool) -> None:
    """Read answers of any shape: split or refused; a text block of any content parses or is refused."""
    card_data = _decode(decode_card_data, data, fingerprint=fingerprint)
    if card_data is None:
        return
    assert encode_card_data(card_data, fingerprint=fingerprint) == data
    card = _decode(parse_card, card_data.text, card_data.photo, card_data.fingerprint)
    if card is not None:
        assert isinstance(card.to_dict(), dict) and card.display_name is not None
        assert card.name not in repr(card) or not card.name


@fuzz(300)
@given(mutated(TEXT, max_ops=8) | st.binary(min_size=256, max_size=256))
def test_fuzz_text_blocks_of_any_content_parse(text: bytes) -> None:
    card = _decode(parse_card, text)
    if len(text) == 256:
        assert isinstance(card, IdCard)
        card.expired(dt.date(2024, 1, 1))
        card.to_dict()


@fuzz(100)
@given(st.binary(max_size=40))
def test_fuzz_sam_id(data: bytes) -> None:
    sam_id = _decode(decode_sam_id, data)
    assert sam_id is None or codec.encode_sam_id(sam_id) == data[:16]


# -- ESC/POS status replies ------------------------------------------------------------------------------

@fuzz(300)
@given(st.dictionaries(st.integers(-2, 6), st.integers(-300, 300) | st.integers(0, 255), max_size=6))
@example({1: 0x12, 2: 0x12, 4: 0x12})
@example({1: 0x12, 2: 0x12, 4: 0x12, 3: 0x112})
def test_fuzz_status_reply_bytes(replies: dict[int, int]) -> None:
    try:
        status = escpos_status.decode(replies)
    except StatusReplyError as exc:
        assert_reason(exc)
        return
    assert isinstance(status, PrinterStatus) and status.condition in ("ready", "paper_low", "fault")


class NoisyPrinter:
    """A printer connection (not one of python-escpos's own types) that answers with the given byte chunks."""

    device = None

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent: list[bytes] = []

    def _raw(self, data: bytes) -> None:
        self.sent.append(data)

    def _read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


@fuzz(80, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=12), max_size=8))
def test_fuzz_status_read_from_a_noisy_line(chunks: list[bytes]) -> None:
    """Whatever a printer sends back, reading its status gives a status or None (mute), never an exception."""
    with no_hang():
        status = printer.read_status(NoisyPrinter(chunks), timeout=0.02)
    assert status is None or isinstance(status, PrinterStatus)
