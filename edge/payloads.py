"""What a scanned code carries: the kinds of payload a box meets, told apart by their form alone.

  ============  ===========================================================================
  kind          payload text
  ============  ===========================================================================
  ehc_token     national health-card platform token: 64 hex digits, ``:``, 1-2 digit code type
  hc1           ``HC1:`` + Base45 (EU Digital COVID Certificate, WHO DDCC)
  shc           ``shc:/`` + digits (SMART Health Card, optionally chunked ``shc:/1/2/…``)
  ehc1          ``EHC1:`` + data (the product's own signed offline credential)
  provisioning  ``EHCPROV1;`` + fields (a technician's enrollment code, never a patient's)
  unknown       anything else that is plain text
  malformed     empty, over-long, control characters, undecodable bytes, or a recognised
                prefix whose data is not of the expected shape (``reason`` says which)
  ============  ===========================================================================

Payload text is personal data: nothing here logs it, and :class:`Payload` keeps it out of its ``repr``.
Whether a payload is *valid* (signature, expiry, trust) is the verifiers' job, not this module's.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field

MAX_PAYLOAD_CHARS = 4296
"""Longest payload accepted: the capacity of the largest QR code in alphanumeric mode."""

EHC_TOKEN_RE = re.compile(r"(?P<token>[0-9A-Fa-f]{64}):(?P<code_type>[0-9]{1,2})")
_TOKEN_LIKE_RE = re.compile(r"[0-9A-Fa-f]{32,}:[0-9]*|[0-9A-Fa-f]{64}")
_BASE45_RE = re.compile(r"[0-9A-Z $%*+\-./:]+")
_SHC_RE = re.compile(r"([0-9]+/[0-9]+/)?[0-9]+")
_PROVISIONING_PREFIX = "EHCPROV1;"


class PayloadKind(enum.StrEnum):
    """What a QR payload is."""

    EHC_TOKEN = "ehc_token"
    HC1 = "hc1"
    SHC = "shc"
    EHC1 = "ehc1"
    PROVISIONING = "provisioning"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"


class Malformed(enum.StrEnum):
    """Why a payload was refused (stable names for counters and result bodies)."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    CONTROL_CHARACTERS = "control_characters"
    UNDECODABLE = "undecodable_bytes"
    BAD_TOKEN = "bad_token"
    BAD_HC1 = "bad_hc1"
    BAD_SHC = "bad_shc"
    BAD_EHC1 = "bad_ehc1"


@dataclass(frozen=True, slots=True)
class Payload:
    """A classified QR payload. ``text`` is the payload as read (personal data: never log it)."""

    kind: PayloadKind
    text: str = field(repr=False)
    code_type: int | None = None
    reason: Malformed | None = None

    @property
    def well_formed(self) -> bool:
        """True for a recognised kind whose data has the expected shape."""
        return self.kind not in (PayloadKind.MALFORMED, PayloadKind.UNKNOWN)

    @property
    def is_person_credential(self) -> bool:
        """True for the kinds a person shows to be served (health card and certificates)."""
        return self.kind in (PayloadKind.EHC_TOKEN, PayloadKind.HC1, PayloadKind.SHC, PayloadKind.EHC1)


_PREFIXES: tuple[tuple[str, PayloadKind, re.Pattern[str] | None, Malformed], ...] = (
    ("HC1:", PayloadKind.HC1, _BASE45_RE, Malformed.BAD_HC1),
    ("shc:/", PayloadKind.SHC, _SHC_RE, Malformed.BAD_SHC),
    ("EHC1:", PayloadKind.EHC1, None, Malformed.BAD_EHC1),
)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def classify_payload(text: str) -> Payload:
    """Tell what kind of payload ``text`` is; malformed payloads carry the reason.

    >>> classify_payload("E1D10AAC" * 8 + ":1").kind
    <PayloadKind.EHC_TOKEN: 'ehc_token'>
    >>> classify_payload("HC1:\\x00").reason
    <Malformed.CONTROL_CHARACTERS: 'control_characters'>
    """
    def bad(reason: Malformed) -> Payload:
        return Payload(PayloadKind.MALFORMED, text, reason=reason)

    if not text:
        return bad(Malformed.EMPTY)
    if len(text) > MAX_PAYLOAD_CHARS:
        return bad(Malformed.TOO_LONG)
    if "\ufffd" in text:
        return bad(Malformed.UNDECODABLE)
    if _has_control(text):
        return bad(Malformed.CONTROL_CHARACTERS)
    m = EHC_TOKEN_RE.fullmatch(text)
    if m:
        return Payload(PayloadKind.EHC_TOKEN, text, code_type=int(m["code_type"]))
    for prefix, kind, body_re, reason in _PREFIXES:
        if text.startswith(prefix):
            body = text[len(prefix):]
            if not body or (body_re is not None and not body_re.fullmatch(body)):
                return bad(reason)
            return Payload(kind, text)
    if text.startswith(_PROVISIONING_PREFIX):
        return Payload(PayloadKind.PROVISIONING, text)
    if _TOKEN_LIKE_RE.fullmatch(text):
        return bad(Malformed.BAD_TOKEN)
    return Payload(PayloadKind.UNKNOWN, text)
