"""Coverage-guided fuzzing with atheris (libFuzzer), on demand: ``scripts/fuzz.sh --atheris TARGET [-- ARGS]``.

Each target feeds the fuzzer's bytes to one parser and lets only the parser's documented refusals pass; any
other exception is a crash libFuzzer reports with the input that caused it (``crash-*`` file). Needs
``pip install atheris`` in the virtualenv (not a test dependency: the hypothesis tests in this folder run in CI).

    .venv/bin/python -m tests.fuzz.atheris_targets --list
    .venv/bin/python -m tests.fuzz.atheris_targets envelope -max_total_time=600 -rss_limit_mb=1024
"""

from __future__ import annotations

import contextlib
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime

TARGETS: dict[str, Callable[[bytes], None]] = {}
NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


def target(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    TARGETS[fn.__name__] = fn
    return fn


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@target
def payloads(data: bytes) -> None:
    from edge.payloads import classify_payload

    classify_payload(_text(data))


@target
def credentials(data: bytes) -> None:
    from edge.credentials import Reason, TrustStore, verify_credential

    for text in (data, "HC1:" + _text(data), "shc:/" + _text(data)):
        result = verify_credential(text, TrustStore(), NOW)  # type: ignore[arg-type]
        assert result.reason != Reason.INTERNAL_ERROR, result


@target
def ehc1(data: bytes) -> None:
    import base45

    from edge.credentials import Reason
    from edge.credentials import ehc1 as codec

    for text in (codec.PREFIX + _text(data), codec.PREFIX + base45.b45encode(data).decode()):
        assert codec.verify(text, {}, at=NOW.timestamp()).reason != Reason.INTERNAL_ERROR


@target
def codecs(data: bytes) -> None:
    from edge.credentials import CredentialError, Reason
    from edge.credentials import codecs as c

    for call in (lambda: c.cbor_loads(data, Reason.BAD_CBOR), lambda: c.inflate(data), lambda: c.inflate(data, raw=True),
                 lambda: c.json_loads(data), lambda: c.b45decode(_text(data)), lambda: c.b64url_decode(_text(data))):
        with contextlib.suppress(CredentialError):
            call()


_KEYS: list = []


def _central_key():  # type: ignore[no-untyped-def]
    """One P-256 public key for the run (made on first use, after the fuzzer's setup)."""
    if not _KEYS:
        from foundation.keyfiles import generate_key

        _KEYS.append(generate_key().public_key())
    return _KEYS[0]


@target
def envelope(data: bytes) -> None:
    from mqtt import envelope as env

    try:
        env.verify(data, "ehc/v1/clinic-a/box-0001/evt/scan", _central_key())
    except env.EnvelopeError as exc:
        assert exc.reason


@target
def central_documents(data: bytes) -> None:
    from mqtt import lookup, receipts, topics
    from mqtt.trustlist import TrustListInvalid, open_signed

    key = _central_key()
    answer, record = topics.reply("clinic-a", "box-0001", lookup.KIND), topics.reply("clinic-a", "box-0001", "record")
    ack = topics.device_topic("clinic-a", "box-0001", "ack")
    for call, errors in ((lambda: open_signed(data, key), TrustListInvalid),
                         (lambda: lookup.open_answer(data, answer, key), lookup.LookupInvalid),
                         (lambda: lookup.open_record(data, record, key), lookup.LookupInvalid),
                         (lambda: receipts.open_receipt(data, ack, key), receipts.ReceiptInvalid),
                         (lambda: receipts.open_status(data, key), receipts.ReceiptInvalid)):
        with contextlib.suppress(errors):
            call()


@target
def sam_frames(data: bytes) -> None:
    from drivers.idcard.card import parse_card
    from drivers.idcard.codec import FrameParser, ProtocolError, Response, decode_card_data

    for item in FrameParser().feed(data):
        if isinstance(item, Response):
            try:
                card = decode_card_data(item.data)
                parse_card(card.text, card.photo)
            except ProtocolError:
                pass


@target
def escpos_status(data: bytes) -> None:
    from drivers import escpos_status as status

    with contextlib.suppress(status.StatusReplyError):
        status.decode({n: b for n, b in zip((1, 2, 3, 4), data)})


@target
def mrz(data: bytes) -> None:
    from edge.documents.mrz import MrzError, parse_mrz

    with contextlib.suppress(MrzError):
        parse_mrz(_text(data))


@target
def config(data: bytes) -> None:
    from central.config import CentralConfig
    from edge.config import EdgeConfig
    from foundation.configbase import ConfigError, validate

    try:
        doc = tomllib.loads(_text(data))
    except tomllib.TOMLDecodeError:
        return
    for model in (EdgeConfig, CentralConfig):
        with contextlib.suppress(ConfigError):
            validate(doc, model)


def main(argv: list[str]) -> None:
    """``TARGET [libFuzzer arguments]``, or ``--list``."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        print("targets:", " ".join(sorted(TARGETS)))
        sys.exit(0 if len(argv) > 1 and argv[1] == "--list" else 2)
    import atheris

    fn = TARGETS[argv[1]]
    fn(b"")  # import what the target uses, then instrument everything loaded for coverage feedback
    atheris.instrument_all()
    atheris.Setup([argv[0], *argv[2:]], fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
