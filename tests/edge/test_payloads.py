"""Payload classification: every kind of code a person (or a technician) can show, and malformed ones."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edge.payloads import Malformed, PayloadKind, classify_payload
from tests.hw_sim.camera import generate_health_card_token


@pytest.mark.parametrize("text, kind, code_type", [
    ("E1D10AAC" * 8 + ":1", PayloadKind.EHC_TOKEN, 1),
    ("e1d10aac" * 8 + ":0", PayloadKind.EHC_TOKEN, 0),
    ("0123456789ABCDEF" * 4 + ":12", PayloadKind.EHC_TOKEN, 12),
    ("HC1:6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N IOP-IA%NFQGRJPC%OQHIZC4.OI1RM8ZA.A5:S9MKN4", PayloadKind.HC1, None),
    ("shc:/5676290952432060346029243740446031222959532654603460292540772804336028702865", PayloadKind.SHC, None),
    ("shc:/1/3/5676290952432060346029", PayloadKind.SHC, None),
    ("EHC1:AbC123", PayloadKind.EHC1, None),
    ("https://example.org/card", PayloadKind.UNKNOWN, None),
    ("DEADBEEF:1", PayloadKind.UNKNOWN, None),
    ("MEBKM:URL:http\\://en.wikipedia.org/wiki/Main_Page;;", PayloadKind.UNKNOWN, None),
    ("健康卡", PayloadKind.UNKNOWN, None),
    ("EHCPROV1;url=https://c:8443;token=abc;ca=00;clinic=c;serial=s", PayloadKind.PROVISIONING, None),
])
def test_classify(text: str, kind: PayloadKind, code_type: int | None) -> None:
    p = classify_payload(text)
    assert (p.kind, p.code_type, p.reason) == (kind, code_type, None)
    assert p.well_formed is (kind is not PayloadKind.UNKNOWN)


@pytest.mark.parametrize("text, reason", [
    ("", Malformed.EMPTY),
    ("A" * 5000, Malformed.TOO_LONG),
    ("HC1:" + "0" * 5000, Malformed.TOO_LONG),
    ("E1D10AAC" * 8 + ":1\n", Malformed.CONTROL_CHARACTERS),
    ("E1D10AAC" * 8 + "\x00:1", Malformed.CONTROL_CHARACTERS),
    ("Sean Owen\r\nsrowen@google.com", Malformed.CONTROL_CHARACTERS),
    ("\u0085HC1:ABC", Malformed.CONTROL_CHARACTERS),
    ("abc\ufffd", Malformed.UNDECODABLE),
    ("E1D10AAC" * 8 + ":", Malformed.BAD_TOKEN),
    ("E1D10AAC" * 8 + ":123", Malformed.BAD_TOKEN),
    ("E1D10AAC" * 8, Malformed.BAD_TOKEN),
    ("E1D10AAC" * 8 + "A:1", Malformed.BAD_TOKEN),
    ("E1D10AAC" * 7 + "E1D10AA:1", Malformed.BAD_TOKEN),
    ("HC1:", Malformed.BAD_HC1),
    ("HC1:lowercase-is-not-base45", Malformed.BAD_HC1),
    ("shc:/", Malformed.BAD_SHC),
    ("shc:/eyJhbGciOiJFUzI1NiJ9", Malformed.BAD_SHC),
    ("EHC1:", Malformed.BAD_EHC1),
])
def test_classify_malformed(text: str, reason: Malformed) -> None:
    p = classify_payload(text)
    assert (p.kind, p.reason) == (PayloadKind.MALFORMED, reason)
    assert not p.well_formed


def test_payload_repr_hides_text() -> None:
    token = generate_health_card_token(random.Random(5))
    assert token not in repr(classify_payload(token))


def test_generated_tokens_have_the_platform_format() -> None:
    rng = random.Random(9)
    tokens = {generate_health_card_token(rng) for _ in range(50)}
    assert len(tokens) == 50
    for t in tokens:
        hex_part, code_type = t.split(":")
        assert len(hex_part) == 64 and hex_part == hex_part.upper() and code_type == "1"
        int(hex_part, 16)
    assert generate_health_card_token(np.random.default_rng(1), code_type=2).endswith(":2")
    with pytest.raises(ValueError):
        generate_health_card_token(rng, code_type=100)


def test_person_credentials() -> None:
    assert classify_payload("E1D10AAC" * 8 + ":1").is_person_credential
    assert classify_payload("HC1:6BF").is_person_credential
    assert not classify_payload("EHCPROV1;url=x").is_person_credential
    assert not classify_payload("https://x").is_person_credential
