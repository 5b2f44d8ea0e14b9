"""The box's audit chain: entry hashing and the ``audit`` part of a result body, shared by box and centre.

Pure functions, no I/O (see ``docs/delivery.md``, "Audit chain")::

    genesis(chain)   = SHA-256(canonical CBOR ["ehc-audit-v1", chain id (16 bytes)])
    entry hash       = SHA-256(canonical CBOR [pos, ts_ms, kind, digest (32 bytes), prev hash (32 bytes)])
    result digest    = SHA-256(canonical CBOR {"id", "kind", "boot", "seq", "body"})
    message "audit"  = {"chain": hex, "pos": n, "head": hex, "base": [m, hex], "log": [[pos, ts_ms, kind, hex], …]}

Entry 1 links to the genesis hash of its chain. A result's ``audit`` map (in the signed message map, next
to ``boot`` and ``seq``; see ``docs/envelope.md``) names its own entry (``pos``,
``head``), the entry it continues from (``base``: the previous result's entry, or the genesis at 0), and the
entries in between (``log``: prints, boots, configuration changes…), so the centre can recompute every link
from ``base`` to ``head`` with the message in hand (:func:`check`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2

LABEL = "ehc-audit-v1"
CHAIN_ID_BYTES = 16
MAX_CARRIED = 1000  # intermediate entries one result carries; older ones are left to earlier results
MAX_KIND = 32
RESULT = "result"


class ChainInvalid(ValueError):
    """An ``audit`` part is ill-formed or its links do not recompute to its head."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One link: position, time (ms), kind, digest of the event's facts, previous hash, own hash."""

    pos: int
    ts_ms: int
    kind: str
    digest: bytes
    prev: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Segment:
    """What one result proves: every hash from ``base_pos + 1`` to its own entry, linked to ``base``."""

    chain: str
    base_pos: int
    base_hash: str
    hashes: tuple[tuple[int, str], ...]  # (pos, hex hash), ascending, ending with the result's own entry

    @property
    def pos(self) -> int:
        return self.hashes[-1][0]

    @property
    def head(self) -> str:
        return self.hashes[-1][1]


def genesis(chain: bytes) -> bytes:
    """The hash entry 1 links to."""
    return hashlib.sha256(cbor2.dumps([LABEL, chain], canonical=True)).digest()


def entry_hash(pos: int, ts_ms: int, kind: str, digest: bytes, prev: bytes) -> bytes:
    """SHA-256 over the canonical bytes of one entry."""
    return hashlib.sha256(cbor2.dumps([pos, ts_ms, kind, digest, prev], canonical=True)).digest()


def facts_digest(facts: dict[str, Any]) -> bytes:
    """Digest of an event's (non-personal) facts."""
    return hashlib.sha256(cbor2.dumps(facts, canonical=True)).digest()


def result_digest(msg_id: bytes, kind: str, boot: int, seq: int, body: dict[str, Any]) -> bytes:
    """Digest of a result: its id, kind, boot, seq and body (the sealed personal part included)."""
    return facts_digest({"id": msg_id, "kind": kind, "boot": boot, "seq": seq, "body": body})


def body_part(chain: bytes, own: Entry, base: tuple[int, bytes], log: list[Entry]) -> dict[str, Any]:
    """The ``audit`` map a result carries."""
    return {"chain": chain.hex(), "pos": own.pos, "head": own.hash.hex(), "base": [base[0], base[1].hex()],
            "log": [[e.pos, e.ts_ms, e.kind, e.digest.hex()] for e in log]}


def _hex32(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ChainInvalid(f"{what} must be 64 hex digits")
    return raw


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**53:  # like boot, seq and ts: exact anywhere, sums cannot overflow
        raise ChainInvalid(f"{what} must be an integer from 0 to 2^53 - 1")
    return value


def check(part: Any, msg_id: bytes, kind: str, boot: int, seq: int, ts_ms: int, body: dict[str, Any]) -> Segment:
    """Recompute the links a result's ``audit`` part claims; raises :class:`ChainInvalid`."""
    if not isinstance(part, dict) or set(part) != {"chain", "pos", "head", "base", "log"}:
        raise ChainInvalid("audit part must have exactly chain, pos, head, base, log")
    chain_hex = part["chain"]
    if not (isinstance(chain_hex, str) and len(chain_hex) == 2 * CHAIN_ID_BYTES):
        raise ChainInvalid("chain must be 32 hex digits")
    try:
        chain = bytes.fromhex(chain_hex)
    except ValueError:
        raise ChainInvalid("chain must be 32 hex digits") from None
    pos, head = _uint(part["pos"], "pos"), _hex32(part["head"], "head")
    base, log = part["base"], part["log"]
    if not (isinstance(base, list) and len(base) == 2 and isinstance(log, list) and len(log) <= MAX_CARRIED):
        raise ChainInvalid(f"base must be [pos, hash] and log a list of at most {MAX_CARRIED} entries")
    base_pos, prev = _uint(base[0], "base pos"), _hex32(base[1], "base hash")
    base_hash = prev.hex()
    if base_pos == 0 and prev != genesis(chain):
        raise ChainInvalid("entry 1 must link to the chain's genesis")
    if pos != base_pos + len(log) + 1:
        raise ChainInvalid("pos must follow base and log")
    hashes: list[tuple[int, str]] = []
    for expected, item in enumerate(log, start=base_pos + 1):
        if not (isinstance(item, list) and len(item) == 4):
            raise ChainInvalid("log entries must be [pos, ts_ms, kind, digest]")
        p, ts, k = _uint(item[0], "log pos"), _uint(item[1], "log ts"), item[2]
        if p != expected or not (isinstance(k, str) and 0 < len(k) <= MAX_KIND):
            raise ChainInvalid("log entries must be consecutive, with a short kind")
        prev = entry_hash(p, ts, k, _hex32(item[3], "log digest"), prev)
        hashes.append((p, prev.hex()))
    own = entry_hash(pos, ts_ms, RESULT, result_digest(msg_id, kind, boot, seq, body), prev)
    if own != head:
        raise ChainInvalid("the head does not recompute from base, log and this message")
    hashes.append((pos, own.hex()))
    return Segment(chain.hex(), base_pos, base_hash, tuple(hashes))
