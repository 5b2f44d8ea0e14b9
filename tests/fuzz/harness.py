"""Shared pieces of the fuzz tests: example budgets, a hang guard, a memory bound, and mutations of valid samples.

Budgets are written for the ``ci`` profile (the default, registered in ``tests/conftest.py``) and scaled by the
loaded profile's ``max_examples`` (``HYPOTHESIS_PROFILE=long`` runs each fuzz test twenty times longer).
"""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import cbor2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CI_EXAMPLES = 100
"""``max_examples`` of the ``ci`` profile: budgets below are relative to it."""

HANG_SECONDS = 10
"""A single parser call taking this long is a hang (the slowest legitimate call here takes milliseconds)."""


def fuzz(examples: int, *, deadline: float | None = 2.0) -> settings:
    """Settings for a fuzz test: ``examples`` under the ``ci`` profile, scaled by the loaded profile.

    ``deadline`` (seconds) is a hang detector for pure parsers, a thousand times what they need; tests that
    touch a database or a network stack pass ``None`` and rely on :func:`no_hang`.
    """
    scale = settings.default.max_examples / CI_EXAMPLES
    return settings(max_examples=max(1, round(examples * scale)),
                    deadline=None if deadline is None else timedelta(seconds=deadline),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


class Hang(AssertionError):
    """A parser call did not return within :data:`HANG_SECONDS`."""


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Fail (instead of blocking the suite) when the body runs longer than ``seconds``; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def memory_bound(limit: int) -> Iterator[None]:
    """Fail when the body's peak Python allocation exceeds ``limit`` bytes (decompression and length bombs)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()
    assert peak <= limit, f"peak allocation {peak} bytes over the bound of {limit}"


def assert_reason(exc: BaseException) -> None:
    """A refusal explains itself: a non-empty message, and a non-empty ``reason`` / ``code`` where the type has one."""
    assert str(exc).strip(), f"{type(exc).__name__} without a message"
    for attr in ("reason", "code"):
        if hasattr(exc, attr):
            assert getattr(exc, attr), f"{type(exc).__name__} with an empty {attr}"


# -- mutations of valid samples ------------------------------------------------------------------------------

MUTATIONS = ("flip", "set", "insert", "delete", "truncate", "append", "duplicate", "splice")


@st.composite
def mutated(draw: st.DrawFn, sample: bytes, max_ops: int = 4) -> bytes:
    """``sample`` after 1..``max_ops`` byte-level mutations: bit flips, overwrites, insertions, deletions,
    truncation, appended junk, a duplicated span, or a span spliced in from elsewhere in the sample."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(MUTATIONS))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x1B, 0x9B, 0xBB, 0x5B, 0xD8]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "duplicate" and data:
            end = draw(st.integers(pos, len(data)))
            data[pos:pos] = data[pos:end]
        elif op == "splice" and data:
            src = draw(st.integers(0, len(data) - 1))
            span = bytes(data[src:src + draw(st.integers(1, 32))])
            data[pos:pos + len(span)] = span
    return bytes(data)


@st.composite
def mutated_text(draw: st.DrawFn, sample: str, alphabet: str | None = None, max_ops: int = 4) -> str:
    """``sample`` after 1..``max_ops`` character-level mutations (replace, insert, delete, truncate, repeat)."""
    chars = list(sample)
    pick = st.sampled_from(alphabet) if alphabet else st.characters()
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(("replace", "insert", "delete", "truncate", "repeat")))
        pos = draw(st.integers(0, max(len(chars) - 1, 0)))
        if op == "replace" and chars:
            chars[pos] = draw(pick)
        elif op == "insert":
            chars.insert(pos, draw(pick))
        elif op == "delete" and chars:
            del chars[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del chars[pos:]
        elif op == "repeat" and chars:
            chars[pos:pos] = chars[pos:pos + draw(st.integers(1, 8))] * draw(st.integers(1, 4))
    return "".join(chars)


# -- hostile CBOR ----------------------------------------------------------------------------------------

CBOR_BOMBS = (
    bytes.fromhex("9bffffffffffffffff"),  # an array claiming 2^64-1 items
    bytes.fromhex("5bffffffffffffffff"),  # a byte string claiming 2^64-1 bytes
    bytes.fromhex("7bffffffffffffffff"),  # a text string claiming 2^64-1 bytes
    bytes.fromhex("bbffffffffffffffff"),  # a map claiming 2^64-1 pairs
    bytes.fromhex("5a7fffffff") + b"\0" * 16,  # a 2 GiB byte string with 16 bytes present
    bytes.fromhex("9a7fffffff") + b"\0" * 16,  # a 2^31-item array with 16 items present
    b"\x81" * 5000 + b"\x00",  # deep definite arrays
    b"\x9f" * 5000,  # deep indefinite arrays
    b"\xa1\x00" * 5000 + b"\x00",  # deep maps
    b"\xc1" * 5000 + b"\x00",  # a tower of tags
    b"\xd8\x1c\x81\xd8\x1d\x00",  # a list that contains itself (shareable / sharedref)
)
"""Hand-made CBOR that costs a careless decoder memory, time or stack; every decoder here must refuse it."""

CBOR_HEAVY = (
    b"\xc2\x5a\x00\x01\x00\x00" + b"\xff" * 65536,  # a 512 Ki-bit bignum
    b"\x5f" + b"\x41\x00" * 4000 + b"\xff",  # 4000 indefinite byte-string chunks
    b"\x9f" + b"\x80" * 8000 + b"\xff",  # 8000 empty arrays in one
)
"""Well-formed CBOR that is expensive to decode: it may be accepted, within the memory bound."""

cbor_leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
               | st.text(max_size=8) | st.binary(max_size=8) | st.just(cbor2.undefined))
cbor_values = st.recursive(cbor_leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(
    st.text(max_size=4) | st.integers(-300, 10), children, max_size=4), max_leaves=16)
"""Arbitrary CBOR values of every type (wrong types for any field)."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63) + 1, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16)
"""Arbitrary JSON values within the envelope's body rules."""


P256_OID = bytes.fromhex("06082a8648ce3d030107")


def with_unknown_curve(pem: str, label: str) -> str:
    """The PEM object with its P-256 curve OID bent into one no library knows (as a fuzzer's bit flip did)."""
    der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
    assert P256_OID in der
    bent = base64.b64encode(der.replace(P256_OID, bytes.fromhex("06082a8648ce3d030108"))).decode()
    lines = [bent[i:i + 64] for i in range(0, len(bent), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])
