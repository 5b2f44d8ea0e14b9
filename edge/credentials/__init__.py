"""Offline verification of the health credentials a person shows: EU DCC / WHO DDCC (``HC1:``) and SMART Health
Cards (``shc:/``).

:func:`verify_credential` is the one entry point for scanned texts. It is pure and offline, and it never raises:
bad input of any kind comes back as ``valid=False`` with a stable reason (:class:`Reason`). Credential text and
claims are personal data; nothing here logs them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from edge.credentials.anchors import TrustStore
from edge.credentials.hc1 import verify_hc1
from edge.credentials.result import CredentialCheck, CredentialError, Format, Reason
from edge.credentials.shc import verify_shc

__all__ = ["MAX_CREDENTIAL_CHARS", "CredentialCheck", "CredentialError", "Reason", "TrustStore",
           "verify_credential", "verify_hc1", "verify_shc"]

logger = logging.getLogger(__name__)

MAX_CREDENTIAL_CHARS = 16 * 1024
"""Longest text accepted: room for the largest QR code, or several ``shc:/`` chunks joined by line breaks."""


def _format_of(text: object) -> Format:
    if isinstance(text, str):
        if text.startswith("HC1:"):
            return "hc1"
        if text.startswith("shc:/"):
            return "shc"
    return "unknown"


def _has_surrogates(text: str) -> bool:
    """True for a text that is not valid Unicode (lone surrogates, e.g. bytes smuggled in by surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _verify(text: str | bytes, trust: TrustStore, at: datetime) -> CredentialCheck:
    if isinstance(text, (bytes, bytearray)):
        if len(text) > 4 * MAX_CREDENTIAL_CHARS:
            return CredentialCheck.refused("unknown", Reason.TOO_LARGE)
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return CredentialCheck.refused("unknown", Reason.UNDECODABLE)
    if not isinstance(text, str):
        return CredentialCheck.refused("unknown", Reason.UNSUPPORTED_FORMAT)
    fmt = _format_of(text)
    if fmt == "unknown":
        return CredentialCheck.refused(fmt, Reason.UNSUPPORTED_FORMAT)
    if len(text) > MAX_CREDENTIAL_CHARS:
        return CredentialCheck.refused(fmt, Reason.TOO_LARGE)
    if "\ufffd" in text or _has_surrogates(text):
        return CredentialCheck.refused(fmt, Reason.UNDECODABLE)
    if fmt == "hc1":
        return verify_hc1(text, trust, at)
    return verify_shc(text, trust, at)


def verify_credential(text: str, trust: TrustStore, at: datetime) -> CredentialCheck:
    """Verify a scanned ``HC1:`` or ``shc:/`` text at time ``at`` against ``trust``; never raises.

    Several ``shc:/N/M/…`` chunks may be passed together, separated by whitespace. Other texts give
    ``unsupported_format``; an unexpected failure inside a verifier gives ``internal_error``.
    """
    try:
        return _verify(text, trust, at)
    except Exception as exc:  # the promise is: never raise
        logger.debug("credential verification failed internally (%s)", type(exc).__name__)
        try:
            fmt = _format_of(text)
        except Exception:
            fmt = "unknown"
        return CredentialCheck.refused(fmt, Reason.INTERNAL_ERROR)
