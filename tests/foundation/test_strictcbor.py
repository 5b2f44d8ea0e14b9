"""The one strict CBOR decoder for outside data: tags, sizes, nesting and item counts are bounded."""

from __future__ import annotations

import cbor2
import pytest

from foundation.strictcbor import CborRefused, count_items, loads

BOUNDS = {"max_bytes": 4096, "max_depth": 16, "max_items": 1000}


def reason(data: bytes, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CborRefused) as info:
        loads(data, **{**BOUNDS, **kwargs})
    return info.value.reason


def test_plain_data_decodes() -> None:
    value = {"a": [1, -2, 3.5, "x", b"\x00", None, True, {"b": []}]}
    assert loads(cbor2.dumps(value), **BOUNDS) == value
    tagged = loads(cbor2.dumps(cbor2.CBORTag(18, [b"p", {}, b"q", b"s"])), tags=frozenset({18}), **BOUNDS)
    assert tagged.tag == 18 and list(tagged.value) == [b"p", {}, b"q", b"s"]


@pytest.mark.parametrize("tag", [0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
                                 43000, 55799, 18, 61, 99, 2**32])
def test_every_tag_the_format_does_not_define_is_refused(tag: int) -> None:
    assert reason(cbor2.dumps(cbor2.CBORTag(tag, 1))) == "bad_tag"


def test_shared_references_and_string_references_are_refused() -> None:
    node: list = [0]
    for _ in range(3):
        node = [node] * 4
    assert reason(cbor2.dumps({"x": node}, value_sharing=True)) == "bad_tag"
    assert reason(cbor2.dumps(["long string"] * 3, string_referencing=True)) == "bad_tag"


def test_size_depth_items_and_shape_are_bounded() -> None:
    assert reason(cbor2.dumps("x" * 5000)) == "too_large"
    deep: list = []
    for _ in range(20):
        deep = [deep]
    assert reason(cbor2.dumps(deep)) == "too_deep"
    assert reason(cbor2.dumps(list(range(1001)))) == "too_many_items"
    assert reason(cbor2.dumps(1) + b"\x00") == "trailing_bytes"
    assert reason(b"\xa2\x01\x01\x01\x02") == "not_cbor"  # duplicate key
    assert reason(b"\x62\xff\xfe") == "not_cbor"  # invalid UTF-8
    assert reason(b"\x9f\x01\xff") == "not_cbor"  # indefinite length, unless asked for
    assert loads(b"\x9f\x01\xff", allow_indefinite=True, **BOUNDS) == [1]
    assert reason(b"\xf7") == "not_cbor"  # undefined
    assert reason(b"\xa1\x81\x01\x02") == "not_cbor"  # an array as a map key
    assert count_items({"a": [1, 2]}, 10) == 5
