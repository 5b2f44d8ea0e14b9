"""QR payload classification, the provisioning QR and MRZ parsing: a kind, a value or a documented refusal."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import example, given
from hypothesis import strategies as st

from edge.documents.mrz import MrzError, MrzFormat, compose_mrz, parse_mrz
from edge.payloads import MAX_PAYLOAD_CHARS, Malformed, Payload, PayloadKind, classify_payload
from provisioning import qrtext
from tests.fuzz.harness import fuzz, mutated_text, no_hang

TOKEN = "E1D10AAC" * 8 + ":1"
SAMPLES = [TOKEN, "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH", "shc:/1/2/567629095243206034602924374044603122295953",
           "EHC1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3", "EHCPROV1;u=https://c.example:8443;t=abc", "hello"]
PREFIXES = ["", "HC1:", "shc:/", "shc:/1/2/", "EHC1:", "EHCPROV1;", "E1D10AAC" * 8 + ":"]


def _check(text: str) -> Payload:
    with no_hang():
        p = classify_payload(text)
    assert isinstance(p, Payload) and p.kind in set(PayloadKind) and p.text == text
    assert (p.kind is PayloadKind.MALFORMED) == (p.reason is not None)
    assert p.reason is None or p.reason in set(Malformed)
    assert len(text) < 16 or text not in repr(p)  # the text stays out of the repr
    return p


@fuzz(300)
@given(st.sampled_from(PREFIXES), st.text(max_size=200))
@example("", "\udcff")
@example("HC1:", "\x00")
@example("", "x" * (MAX_PAYLOAD_CHARS + 1))
def test_fuzz_any_text_is_classified(prefix: str, text: str) -> None:
    _check(prefix + text)


@fuzz(300)
@given(st.data())
def test_fuzz_mutated_payloads(data: st.DataObject) -> None:
    sample = data.draw(st.sampled_from(SAMPLES))
    _check(data.draw(mutated_text(sample)))


@fuzz(50)
@given(st.text(alphabet="0123456789ABCDEFabcdef:", min_size=1, max_size=8000))
def test_fuzz_long_token_like_text_is_classified_without_backtracking(text: str) -> None:
    _check(text)


TD3 = compose_mrz(MrzFormat.TD3, document_type="P", issuing_country="UTO", surname="ERIKSSON", given_names="ANNA MARIA",
                  document_number="L898902C3", nationality="UTO", birth_date="740812", sex="F",
                  expiry_date="120415", optional_data="ZE184226B")
TD1 = ("I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<")
TODAY = dt.date(2024, 3, 1)


def _parse(text: str | list[str]) -> None:
    try:
        with no_hang():
            r = parse_mrz(text, today=TODAY)
    except MrzError as exc:
        assert str(exc)
        return
    assert isinstance(r.valid, bool) and r.lines


@fuzz(200)
@given(st.text(max_size=200) | st.lists(st.text(max_size=50), max_size=4))
@example("ß" * 30 + "\n" + "<" * 30 + "\n" + "<" * 30)  # upper() changes the length
@example(["", "", ""])
def test_fuzz_any_text_is_an_mrz_or_an_mrz_error(text: str | list[str]) -> None:
    _parse(text)


@fuzz(300)
@given(st.sampled_from([TD3, TD1]), st.data())
def test_fuzz_mutated_zones(zone: tuple[str, ...], data: st.DataObject) -> None:
    text = data.draw(mutated_text("\n".join(zone), alphabet="<0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\nKOSZ ",
                                  max_ops=3))
    _parse(text)


PROVISIONING = ("EHCPROV1;url=https://central.example:8443;token=AbC-dEf_123456789012345678901234;"
                "ca=" + "ab" * 32 + ";clinic=clinic-a;serial=box-0001")
_PLAIN = re.compile(r"[A-Za-z0-9_.:/-]{1,256}")


@fuzz(300)
@given(mutated_text(PROVISIONING, alphabet=";=\n\r\t :/.-_abcEHCPROV1") | st.text(max_size=120))
@example(PROVISIONING.replace(";ca=", "\n;ca="))  # a line break at the end of a field
def test_fuzz_provisioning_qr(text: str) -> None:
    """A technician's code, or a lookalike: parsed into plain fields, or refused with a message."""
    try:
        with no_hang():
            qr = qrtext.parse(text)
    except qrtext.ProvisioningQrError as exc:
        assert str(exc)
        return
    for value in (qr.url, qr.token, qr.ca_fingerprint, qr.clinic, qr.serial):
        assert _PLAIN.fullmatch(value) or value == "", repr(value)
    assert qr.url.startswith("https://") and qrtext.parse(qr.text()) == qr
