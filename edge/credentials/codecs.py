"""Bounded decoders shared by the credential verifiers: Base45, Base64url, zlib / raw DEFLATE, CBOR and JSON.

Every function here is pure and refuses input that would cost more than the credential is worth: decompressed
output is capped (:data:`MAX_INFLATED`), CBOR and JSON nesting is capped. CBOR goes through the project's one
strict decoder (:mod:`foundation.strictcbor`): duplicate map keys are refused, the shared-reference tags 28/29 (which
can build cyclic structures) and every other tag a credential format does not define never decode. Tags 0 and 1
(date-times), where the caller names them, become :class:`TaggedDateTime`, which :func:`to_json_value` turns into
text only where the caller expects a date-time.
Failures raise :class:`~edge.credentials.result.CredentialError` with the caller's reason, never the input text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import base45
import cbor2

from edge.credentials.result import CredentialError, Reason
from foundation import strictcbor

MAX_INFLATED = 64 * 1024
"""Largest decompressed payload accepted (bytes)."""

MAX_NESTING = 16
"""Deepest CBOR / JSON container nesting accepted in a credential payload."""

_BASE45_RE = re.compile(r"[0-9A-Z $%*+\-./:]*")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
DATE_TIME_TAGS = frozenset({0, 1})
"""RFC 8949 date-times: tag 0 (RFC 3339 text) and tag 1 (seconds since the epoch)."""
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
_RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def b45decode(text: str) -> bytes:
    """Strict Base45 (RFC 9285): alphabet, group length and value range are all checked."""
    if not _BASE45_RE.fullmatch(text):
        raise CredentialError(Reason.BAD_BASE45, "character outside the Base45 alphabet")
    try:
        return base45.b45decode(text)
    except ValueError:
        raise CredentialError(Reason.BAD_BASE45, "invalid Base45 group") from None


def b64url_decode(text: str, reason: Reason = Reason.BAD_JWS) -> bytes:
    """Strict unpadded Base64url (RFC 7515 section 2)."""
    if len(text) % 4 == 1 or not _B64URL_RE.fullmatch(text):
        raise CredentialError(reason, "not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CredentialError(reason, "not base64url") from None


def b64url_encode(data: bytes) -> str:
    """Unpadded Base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def inflate(data: bytes, *, raw: bool = False, limit: int = MAX_INFLATED) -> bytes:
    """Decompress a complete zlib stream (or raw DEFLATE with ``raw``), refusing more than ``limit`` bytes of output.

    Raises ``too_large`` past the limit and ``bad_zlib`` for a broken, truncated or trailing-garbage stream.
    """
    d = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error:
        raise CredentialError(Reason.BAD_ZLIB, "broken compressed stream") from None
    if len(out) > limit:
        raise CredentialError(Reason.TOO_LARGE, f"decompresses to more than {limit} bytes")
    if not d.eof:
        raise CredentialError(Reason.BAD_ZLIB, "truncated compressed stream")
    if d.unused_data:
        raise CredentialError(Reason.BAD_ZLIB, "bytes follow the compressed stream")
    return out


@dataclass(frozen=True, slots=True)
class TaggedDateTime:
    """A CBOR date-time (tag 0 or 1) as RFC 3339 text: tag 0's own text, tag 1's epoch seconds (floored) in UTC."""

    text: str
    tag: int


def _tag0(value: Any) -> TaggedDateTime:
    """Tag 0: an RFC 3339 date-time string, checked (fractions cut to microseconds for the calendar check)."""
    m = _RFC3339_RE.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ValueError("tag 0 must hold an RFC 3339 date-time")
    text = value.upper().replace("Z", "+00:00")
    if m.group(1) and len(m.group(1)) > 7:
        text = text.replace(m.group(1), m.group(1)[:7], 1)
    datetime.fromisoformat(text)  # month, day, hour ... in range
    return TaggedDateTime(value, 0)


def _tag1(value: Any) -> TaggedDateTime:
    """Tag 1: seconds since the epoch (integer or float), floored to whole seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_EPOCH:
        raise ValueError("tag 1 must hold a number of seconds since the epoch")
    stamp = datetime.fromtimestamp(math.floor(value), UTC)
    return TaggedDateTime(stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), 1)


_DATE_TIME_DECODERS: dict[int, Callable[[Any], TaggedDateTime]] = {0: _tag0, 1: _tag1}


def _date_times(value: Any, decoders: Mapping[int, Callable[[Any], TaggedDateTime]]) -> Any:
    """``value`` with every tag-0/1 :class:`cbor2.CBORTag` (the ones in ``decoders``) made a
    :class:`TaggedDateTime`; containers are rebuilt only where something changed."""
    if isinstance(value, cbor2.CBORTag):
        decode = decoders.get(value.tag)
        return decode(value.value) if decode else cbor2.CBORTag(value.tag, _date_times(value.value, decoders))
    if isinstance(value, (list, tuple)):
        return [_date_times(v, decoders) for v in value]
    if isinstance(value, Mapping):
        return {k: _date_times(v, decoders) for k, v in value.items()}
    return value


def cbor_loads(data: bytes, reason: Reason, max_depth: int = MAX_NESTING, *,
               tags: Collection[int] = frozenset()) -> Any:
    """Decode one complete CBOR item (:func:`foundation.strictcbor.loads`: no tags but ``tags``, bounded nesting and
    size); ``reason`` names the failure (``too_deep`` for nesting, ``too_large`` for size).

    Tags 0 and 1, when named, become :class:`TaggedDateTime`; any other named tag stays a ``cbor2.CBORTag`` for the
    caller to unwrap. The shared-reference tags 28/29 are always refused.
    """
    allowed = frozenset(tags) - {28, 29}
    try:
        obj = strictcbor.loads(data, max_bytes=MAX_INFLATED, max_depth=max_depth, max_items=MAX_INFLATED,
                               tags=allowed, allow_indefinite=True)
    except strictcbor.CborRefused as exc:
        if exc.reason in ("too_deep", "too_large"):
            raise CredentialError(Reason.TOO_DEEP if exc.reason == "too_deep" else Reason.TOO_LARGE, str(exc)) from None
        raise CredentialError(reason, f"not CBOR ({exc.reason})") from None
    decoders = {t: _DATE_TIME_DECODERS[t] for t in DATE_TIME_TAGS & allowed}
    if decoders:
        try:
            obj = _date_times(obj, decoders)
        except ValueError as exc:
            raise CredentialError(reason, f"not CBOR ({exc})") from None
    return obj


def to_json_value(value: Any, reason: Reason, depth: int = 0, max_depth: int = MAX_NESTING, *,
                  date_times: Collection[tuple[str, ...]] = frozenset(), path: tuple[str, ...] = ()) -> Any:
    """A copy of a decoded CBOR value made of JSON types only (text keys, finite numbers), or ``reason``.

    ``date_times`` names the places where a tagged date-time (:class:`TaggedDateTime`) is expected, as key paths
    with ``"*"`` for any list item (e.g. ``("t", "*", "sc")``); there it becomes its RFC 3339 text, anywhere else
    it is refused.
    """
    if depth > max_depth:
        raise CredentialError(Reason.TOO_DEEP, "nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, TaggedDateTime):
        if path in date_times:
            return value.text
        raise CredentialError(reason, f"tag {value.tag} date-time where the format expects none")
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise CredentialError(reason, "integer out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CredentialError(reason, "non-finite number")
        return value
    if isinstance(value, (list, tuple)):
        item = path + ("*",) if date_times else ()
        return [to_json_value(v, reason, depth + 1, max_depth, date_times=date_times, path=item) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CredentialError(reason, "map key is not text")
            out[k] = to_json_value(v, reason, depth + 1, max_depth, date_times=date_times,
                                   path=path + (k,) if date_times else ())
        return out
    raise CredentialError(reason, f"{type(value).__name__} is not a JSON type")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_depth(value: Any) -> int:
    """Container nesting depth of a parsed JSON value (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((c, depth) for c in children)
    return deepest


def json_loads(data: bytes | str, reason: Reason = Reason.BAD_JSON, max_depth: int = MAX_NESTING) -> Any:
    """Parse strict JSON (UTF-8, no NaN / Infinity) with bounded nesting."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise CredentialError(Reason.TOO_DEEP, "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise CredentialError(reason, "not JSON") from None
    if json_depth(value) > max_depth:
        raise CredentialError(Reason.TOO_DEEP, "JSON nested too deeply")
    return value
