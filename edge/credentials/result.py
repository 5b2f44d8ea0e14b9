"""The outcome of one credential verification: valid or not, why, which checks ran, and the few claims a flow needs.

A :class:`CredentialCheck` never holds the credential text. Its ``claims`` are personal data (name, birth date):
they are left out of the ``repr`` and must never be logged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from edge.credentials.valuesets import UnknownCode

Format = Literal["hc1", "ddcc", "shc", "ehc1", "unknown"]


class Reason(enum.StrEnum):
    """Why a credential was refused (stable names for counters, result bodies and tests)."""

    # input
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNDECODABLE = "undecodable"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    INTERNAL_ERROR = "internal_error"
    # HC1 transport
    BAD_PREFIX = "bad_prefix"
    BAD_BASE45 = "bad_base45"
    BAD_ZLIB = "bad_zlib"
    BAD_COSE = "bad_cose"
    BAD_CBOR = "bad_cbor"
    BAD_CWT = "bad_cwt"
    # SMART Health Cards transport
    BAD_NUMERIC = "bad_numeric"
    BAD_CHUNKS = "bad_chunks"
    MISSING_CHUNKS = "missing_chunks"
    BAD_JWS = "bad_jws"
    BAD_JSON = "bad_json"
    MULTIPLE_CREDENTIALS = "multiple_credentials"
    # trust and signature
    UNKNOWN_KID = "unknown_kid"
    UNKNOWN_ISSUER = "unknown_issuer"
    ISSUER_MISMATCH = "issuer_mismatch"
    UNSUPPORTED_ALG = "unsupported_alg"
    ALG_MISMATCH = "alg_mismatch"
    BAD_SIGNATURE = "bad_signature"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    CERT_EXPIRED = "cert_expired"
    WRONG_KEY_USAGE = "wrong_key_usage"
    # content
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    NOT_DYNAMIC = "not_dynamic"
    REVOKED = "revoked"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    SCHEMA_ERROR = "schema_error"
    UNKNOWN_CODE = "unknown_code"


DECODE_REASONS = frozenset({
    Reason.UNDECODABLE, Reason.TOO_LARGE, Reason.TOO_DEEP, Reason.BAD_PREFIX, Reason.BAD_BASE45, Reason.BAD_ZLIB,
    Reason.BAD_COSE, Reason.BAD_CBOR, Reason.BAD_CWT, Reason.BAD_NUMERIC, Reason.BAD_CHUNKS, Reason.MISSING_CHUNKS,
    Reason.BAD_JWS, Reason.BAD_JSON, Reason.MULTIPLE_CREDENTIALS,
})
"""Reasons that mean the text could not be taken apart: no signature was looked at."""


class CredentialError(ValueError):
    """A credential cannot be decoded; ``reason`` names the step (never carries credential content)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail or None


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """The verdict on one credential.

    ``checks`` maps each check to True (passed), False (failed) or None (not applicable, or not reached because
    decoding failed). ``reason`` is the first failed check in the verifier's order (None when valid). ``claims``
    are filled only when the signature verified. ``kid`` is the signer's key id (base64 for HC1, the JWK thumbprint
    for SHC). ``missing_chunks`` lists the absent chunk numbers of a chunked SMART Health Card. ``detail`` says in
    one line what a failed check found (never personal data), and ``unknown_codes`` lists the coded fields of an
    EU DCC that the value sets refused, each with the value set, its date and where the box got it.
    """

    valid: bool
    format: Format
    reason: str | None = None
    checks: dict[str, bool | None] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    kid: str | None = None
    missing_chunks: tuple[int, ...] = ()
    detail: str | None = None
    unknown_codes: tuple[UnknownCode, ...] = ()

    @classmethod
    def refused(cls, fmt: Format, reason: Reason, checks: dict[str, bool | None] | None = None,
                **kw: Any) -> CredentialCheck:
        """An invalid result for ``reason``."""
        return cls(valid=False, format=fmt, reason=str(reason), checks=dict(checks or {}), **kw)



def iso_utc(ts: float | None) -> str | None:
    """A NumericDate (seconds since the epoch) as ISO 8601 UTC, for claims; None when absent or out of range."""
    try:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return None
