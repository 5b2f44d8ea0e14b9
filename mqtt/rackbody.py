"""The ``rack`` result's body: one photo of a tube rack, every position accounted for.

Shared by the box (which checks what it is about to sign) and the central ingest (which treats every body
as hostile input and refuses one that breaks a rule). Pure: a dict in, :class:`RackInvalid` out.

Body::

    {"flow": "masstest", "layout": "8x12", "rows": 8, "columns": 12,
     "tubes": [{"position": "A1", "tube": "T00012345", "format": "DataMatrix", "pool": "<msg id>" | null}, ...],
     "unreadable": ["C4"], "missing": ["H12"], "count": 94, "anchored": true,
     "rack": "RACK-0001" | null, "read_at": "2026-12-05T15:20:00+00:00", "decode_ms": 84.1}

Rules: at most 16 rows by 24 columns; ``layout`` matches them; every position (``A1`` .. row letter and
column number inside the rack) is in exactly one of ``tubes``, ``unreadable`` and ``missing``; tube codes
are 1-64 letters, digits or ``-`` and appear once; ``format`` is a tube label's; ``pool`` is a message id
(the tube's ``pool`` result) or null; ``count`` is the number of tubes; no other fields.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

RACK_KIND = "rack"
MAX_ROWS, MAX_COLUMNS = 16, 24
TUBE_FORMATS = frozenset({"DataMatrix", "Code128"})
_POSITION = re.compile(r"([A-P])([1-9][0-9]?)")
_CODE = re.compile(r"[A-Za-z0-9\-]{1,64}")
_FIELDS = frozenset({"flow", "layout", "rows", "columns", "tubes", "unreadable", "missing", "count", "anchored",
                     "rack", "read_at", "decode_ms"})
_TUBE_FIELDS = frozenset({"position", "tube", "format", "pool"})


class RackInvalid(ValueError):
    """A rack body that breaks a rule; ``reason`` is a stable name (``bad_rack_<what>``)."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.reason = f"bad_rack_{what}"


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int:
    value = body.get(key)
    if type(value) is not int or not low <= value <= high:
        raise RackInvalid("layout", f"{key} must be a whole number {low}..{high}")
    return value


def _position(value: Any, rows: int, columns: int) -> str:
    m = _POSITION.fullmatch(value) if isinstance(value, str) else None
    if m is None or ord(m.group(1)) - ord("A") >= rows or not 1 <= int(m.group(2)) <= columns:
        raise RackInvalid("position", f"position {str(value)[:8]!r} is not in a {rows}x{columns} rack")
    return value


def check_rack(body: Any) -> None:
    """Raise :class:`RackInvalid` unless ``body`` is a well-formed ``rack`` body (see the module docstring)."""
    if not isinstance(body, dict):
        raise RackInvalid("body", "the body is not a map")
    extra = set(body) - _FIELDS
    if extra:
        raise RackInvalid("field", f"unknown field {sorted(map(str, extra))[0][:32]!r}")
    if body.get("flow") != "masstest":
        raise RackInvalid("flow", "flow must be masstest")
    rows, columns = _int(body, "rows", 1, MAX_ROWS), _int(body, "columns", 1, MAX_COLUMNS)
    if body.get("layout") != f"{rows}x{columns}":
        raise RackInvalid("layout", "layout does not match rows and columns")
    tubes, unreadable, missing = body.get("tubes"), body.get("unreadable"), body.get("missing")
    if not all(isinstance(v, list) for v in (tubes, unreadable, missing)):
        raise RackInvalid("lists", "tubes, unreadable and missing must be lists")
    assert isinstance(tubes, list) and isinstance(unreadable, list) and isinstance(missing, list)
    wells = rows * columns
    if len(tubes) + len(unreadable) + len(missing) != wells:
        raise RackInvalid("count", f"{len(tubes)} tubes, {len(unreadable)} unreadable and {len(missing)} missing "
                                   f"positions are not the {wells} of a {rows}x{columns} rack")
    seen: set[str] = set()
    codes: set[str] = set()
    for tube in tubes:
        if not isinstance(tube, dict) or set(tube) != _TUBE_FIELDS:
            raise RackInvalid("tube", f"a tube entry must hold exactly {sorted(_TUBE_FIELDS)}")
        pos = _position(tube["position"], rows, columns)
        if pos in seen:
            raise RackInvalid("duplicate_position", f"position {pos} given twice")
        seen.add(pos)
        code = tube["tube"]
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise RackInvalid("code", f"tube code at {pos} is not 1-64 letters, digits or '-'")
        if code in codes:
            raise RackInvalid("duplicate_tube", f"one tube code at two positions ({pos})")
        codes.add(code)
        if tube["format"] not in TUBE_FORMATS:
            raise RackInvalid("format", f"tube label format at {pos} is not one of {sorted(TUBE_FORMATS)}")
        pool = tube["pool"]
        if pool is not None:
            try:
                uuid.UUID(pool if isinstance(pool, str) and len(pool) <= 36 else "")
            except ValueError:
                raise RackInvalid("pool", f"pool at {pos} is not a message id") from None
    for pos in [*unreadable, *missing]:
        pos = _position(pos, rows, columns)
        if pos in seen:
            raise RackInvalid("duplicate_position", f"position {pos} given twice")
        seen.add(pos)
    if type(body.get("count")) is not int or body["count"] != len(tubes):
        raise RackInvalid("count", "count is not the number of tubes")
    if type(body.get("anchored")) is not bool:
        raise RackInvalid("field", "anchored must be true or false")
    rack = body.get("rack")
    if rack is not None and not (isinstance(rack, str) and _CODE.fullmatch(rack)):
        raise RackInvalid("code", "the rack label is not 1-64 letters, digits or '-'")
    read_at = body.get("read_at")
    if not isinstance(read_at, str) or not 0 < len(read_at) <= 40:
        raise RackInvalid("field", "read_at must be a date-time text")
    ms = body.get("decode_ms")
    if ms is not None and (type(ms) not in (int, float) or not 0 <= ms < 1e7):
        raise RackInvalid("field", "decode_ms must be a number")
