"""The one CBOR decoder for bytes that come from outside the process: a box, the broker, a camera, the network.

``cbor2`` decodes far more than our formats use, and some of it is dangerous in hostile hands: the
shared-reference tags 28/29 let a few hundred bytes describe a graph that Python then walks (or
serialises) as a tree of millions of nodes, string references (tags 25/256) repeat long strings for two
bytes each, and the other semantic tags build datetimes, decimals, regular expressions, sets and so on.
:func:`loads` therefore

* refuses input longer than ``max_bytes`` before decoding anything;
* refuses every tag except the ones the caller's format defines (``tags``; e.g. 18 for COSE_Sign1), whether
  ``cbor2`` knows it or not; an accepted tag comes back as a plain :class:`cbor2.CBORTag`;
* bounds nesting (``max_depth``, checked by the decoder itself, so deep input fails early) and the number
  of decoded items (``max_items``), refuses duplicate map keys, indefinite lengths unless asked for,
  invalid UTF-8, and bytes after the item;
* checks that what came out is made of the plain CBOR data model only (maps, arrays, text, bytes,
  integers, floats, booleans, null and accepted tags), whatever a future ``cbor2`` decodes by itself.

Every refusal is a :class:`CborRefused` with a short stable ``reason``; nothing else escapes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2

__all__ = ["CborRefused", "loads", "count_items"]

# Tags cbor2 6.x decodes by itself (found by decoding every tag 0..1100 and the registered large ones); each
# is overridden with a refusal unless the caller accepts it. Tags outside this set reach ``tag_hook``.
_BUILTIN_TAGS = frozenset({0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
                           43000, 55799})
_SCALARS = (str, bytes, int, float, bool, type(None))
_KEYS = (str, bytes, int)


class CborRefused(ValueError):
    """The bytes are not acceptable CBOR for this format; ``reason`` is one of ``too_large``, ``too_deep``,
    ``too_many_items``, ``bad_tag``, ``trailing_bytes``, ``not_cbor``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _TagRefused(Exception):
    def __init__(self, tag: int) -> None:
        super().__init__(tag)
        self.tag = tag


def _refuser(tag: int) -> Any:
    def refuse(*_: Any) -> Any:
        raise _TagRefused(tag)
    return refuse


_REFUSE_BUILTIN = {tag: _refuser(tag) for tag in _BUILTIN_TAGS}


def _plain(tag: int) -> Any:
    """An accepted tag that cbor2 would turn into a Python object (a datetime, a bignum …) stays a plain tag."""
    def keep(value: Any, *_: Any) -> cbor2.CBORTag:
        return cbor2.CBORTag(tag, value)
    return keep


def _tag_hook(allowed: frozenset[int]) -> Any:
    def hook(tag: cbor2.CBORTag, *_: Any) -> Any:
        if tag.tag not in allowed:
            raise _TagRefused(tag.tag)
        return tag
    return hook


def _root_cause(exc: BaseException) -> BaseException:
    seen = 0
    while exc.__cause__ is not None and seen < 16:  # cbor2 wraps what the hooks raise
        exc, seen = exc.__cause__, seen + 1
    return exc


def count_items(value: Any, limit: int) -> int:
    """Number of data items in a decoded value (a container counts as one, plus its members and keys); raises
    :class:`CborRefused` past ``limit`` or on anything outside the plain CBOR data model. No recursion."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise CborRefused("too_many_items", f"more than {limit} data items")
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, (list, tuple)):  # a tagged value's arrays and maps come back immutable
            stack.extend(item)
        elif isinstance(item, Mapping):
            for key, member in item.items():
                if not isinstance(key, _KEYS):
                    raise CborRefused("not_cbor", f"map key of type {type(key).__name__}")
                count += 1
                stack.append(member)
        elif isinstance(item, cbor2.CBORTag):
            stack.append(item.value)
        else:
            raise CborRefused("not_cbor", f"{type(item).__name__} is outside the plain CBOR data model")
    return count


def loads(data: bytes, *, max_bytes: int, max_depth: int, max_items: int, tags: frozenset[int] = frozenset(),
          allow_indefinite: bool = False) -> Any:
    """Decode exactly one CBOR item from ``data`` within the given bounds (see the module docstring)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CborRefused("not_cbor", "not bytes")
    if len(data) > max_bytes:
        raise CborRefused("too_large", f"{len(data)} bytes, more than {max_bytes}")
    semantic = {t: (_plain(t) if t in tags else f) for t, f in _REFUSE_BUILTIN.items()}
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp, max_depth=max_depth, allow_duplicate_keys=False, allow_indefinite=allow_indefinite,
                                  str_errors="strict", semantic_decoders=semantic, tag_hook=_tag_hook(tags)).decode()
    except RecursionError:
        raise CborRefused("too_deep", "nested too deeply") from None
    except Exception as exc:  # cbor2 raises several types on garbage
        cause = _root_cause(exc)
        if isinstance(cause, _TagRefused):
            raise CborRefused("bad_tag", f"CBOR tag {cause.tag} is not accepted here") from None
        if "nesting depth" in str(exc):
            raise CborRefused("too_deep", "nested too deeply") from None
        raise CborRefused("not_cbor", f"not CBOR ({type(exc).__name__})") from None
    if fp.tell() != len(data):
        raise CborRefused("trailing_bytes", "bytes follow the CBOR item")
    count_items(value, max_items)
    return value
