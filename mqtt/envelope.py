"""The signed result envelope: COSE_Sign1 (ES256) over a CBOR message, bound to its MQTT topic.

This module is the only place that knows the byte format (see ``docs/envelope.md``)::

    COSE_Sign1 = #6.18([ protected: bstr .cbor {1: -7, 4: kid}, unprotected: {},
                         payload: bstr .cbor Message, signature: bstr (r || s, 64 bytes) ])
    Sig_structure = ["Signature1", protected, external_aad = UTF-8 topic, payload]
    Message = {"v": 1, "dev": tstr, "boot": uint, "seq": uint, "id": bstr(16, UUIDv7),
               "ts": int (ms since epoch), "kind": tstr, "body": {tstr => JSON-like value},
               ? "audit": {tstr => JSON-like value}}   ; the box's audit-chain link (mqtt/auditchain.py)

Everything else calls :func:`sign` and :func:`verify`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
import uuid6
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from foundation import strictcbor

FORMAT_VERSION = 1
COSE_SIGN1_TAG = 18
ALG_ES256 = -7
HDR_ALG = 1
HDR_KID = 4
MAX_BODY_DEPTH = 16
MAX_CBOR_DEPTH = MAX_BODY_DEPTH + 4
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024  # absolute ceiling; the ingest refuses more than broker.max_message_bytes first
MAX_ITEMS = 65536  # data items in a message map (a result's audit link carries at most ~5000)
MAX_SAFE_INT = 2**53  # boot, seq and ts: exact in a double, in JavaScript and in any SUM over them
_ECDSA = ec.ECDSA(hashes.SHA256())
_MESSAGE_KEYS = frozenset({"v", "dev", "boot", "seq", "id", "ts", "kind", "body"})
_MESSAGE_KEYS_AUDIT = _MESSAGE_KEYS | {"audit"}


class EnvelopeError(ValueError):
    """Base class: the envelope cannot be accepted. ``reason`` is a short stable counter name."""

    reason = "malformed"


class MalformedEnvelope(EnvelopeError):
    """The bytes are not a COSE_Sign1 structure of the expected shape."""

    reason = "malformed"


class UnsupportedAlgorithm(EnvelopeError):
    """The protected header names an algorithm other than ES256."""

    reason = "bad_alg"


class SignatureInvalid(EnvelopeError):
    """The signature does not verify with the device key over this topic."""

    reason = "bad_signature"


class MalformedMessage(EnvelopeError):
    """The signed payload is not a well-typed message."""

    reason = "malformed_payload"


@dataclass(frozen=True, slots=True)
class Message:
    """One typed result produced by a box."""

    device: str
    boot: int
    seq: int
    kind: str
    body: dict[str, Any]
    msg_id: uuid.UUID = field(default_factory=uuid6.uuid7)
    ts_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    audit: dict[str, Any] | None = None

    def to_cbor(self) -> bytes:
        """Canonical CBOR of the message map."""
        m = {"v": FORMAT_VERSION, "dev": self.device, "boot": self.boot, "seq": self.seq,
             "id": self.msg_id.bytes, "ts": self.ts_ms, "kind": self.kind, "body": self.body}
        if self.audit is not None:
            m["audit"] = self.audit
        return cbor2.dumps(m, canonical=True)


def check_json_like(value: Any, depth: int = 0) -> None:
    """Raise :class:`MalformedMessage` unless ``value`` is made of JSON types with text keys."""
    if depth > MAX_BODY_DEPTH:
        raise MalformedMessage("body nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise MalformedMessage("integer out of range")
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MalformedMessage("non-finite number in body")
        return
    if isinstance(value, list):
        for item in value:
            check_json_like(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedMessage("body map keys must be text")
            check_json_like(item, depth + 1)
        return
    raise MalformedMessage(f"body holds a {type(value).__name__}, not a JSON type")


def _protected_header(kid: bytes) -> bytes:
    return cbor2.dumps({HDR_ALG: ALG_ES256, HDR_KID: kid}, canonical=True)


def _sig_structure(protected: bytes, topic: str, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, topic.encode("utf-8"), payload])


def sign(message: Message, topic: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign ``message`` for publication on ``topic``; returns the tagged COSE_Sign1 bytes."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("device key must be P-256")
    check_json_like(message.body)
    if message.audit is not None:
        check_json_like(message.audit)
    protected = _protected_header(message.device.encode("utf-8"))
    payload = message.to_cbor()
    der = key.sign(_sig_structure(protected, topic, payload), _ECDSA)
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


@dataclass(frozen=True, slots=True)
class Unverified:
    """The parts of a COSE_Sign1 before its signature is checked."""

    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes


def parse(data: bytes) -> Unverified:
    """Split COSE_Sign1 bytes into their parts without trusting them."""
    try:
        obj = strictcbor.loads(data, max_bytes=MAX_ENVELOPE_BYTES, max_depth=MAX_CBOR_DEPTH, max_items=1024,
                               tags=frozenset({COSE_SIGN1_TAG}))
    except strictcbor.CborRefused as exc:
        raise MalformedEnvelope(f"COSE_Sign1 refused: {exc.reason}") from None
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise MalformedEnvelope(f"unexpected CBOR tag {obj.tag}")
        obj = obj.value
    if not (isinstance(obj, (list, tuple)) and len(obj) == 4):
        raise MalformedEnvelope("COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = obj
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping)
            and isinstance(payload, bytes) and isinstance(signature, bytes)):
        raise MalformedEnvelope("COSE_Sign1 members have wrong types")
    try:
        header = strictcbor.loads(protected, max_bytes=1024, max_depth=2, max_items=64) if protected else {}
    except strictcbor.CborRefused:
        raise MalformedEnvelope("protected header is not CBOR") from None
    if not isinstance(header, dict):
        raise MalformedEnvelope("protected header is not a map")
    if header.get(HDR_ALG) != ALG_ES256:
        raise UnsupportedAlgorithm("only ES256 is accepted")
    kid = header.get(HDR_KID, b"")
    if not isinstance(kid, bytes):
        raise MalformedEnvelope("kid must be a byte string")
    if len(signature) != 64:
        raise SignatureInvalid("ES256 signature must be 64 bytes")
    return Unverified(protected, kid, payload, signature)


def verify(data: bytes, topic: str, public_key: ec.EllipticCurvePublicKey, max_items: int = MAX_ITEMS) -> Message:
    """Verify COSE_Sign1 bytes received on ``topic`` with the device's key and decode the message.

    Raises a subclass of :class:`EnvelopeError` naming why the envelope was refused. ``max_items`` bounds the
    decoded message (larger for documents signed by the centre, such as trust lists).
    """
    part = parse(data)
    der = encode_dss_signature(int.from_bytes(part.signature[:32], "big"), int.from_bytes(part.signature[32:], "big"))
    try:
        public_key.verify(der, _sig_structure(part.protected, topic, part.payload), _ECDSA)
    except InvalidSignature:
        raise SignatureInvalid("signature does not verify for this topic and device") from None
    return decode_message(part.payload, max_items)


def decode_message(payload: bytes, max_items: int = MAX_ITEMS) -> Message:
    """Decode and type-check a signed message payload (no tags, at most ``max_items`` data items)."""
    try:
        m = strictcbor.loads(payload, max_bytes=MAX_ENVELOPE_BYTES, max_depth=MAX_CBOR_DEPTH, max_items=max_items)
    except strictcbor.CborRefused as exc:
        raise MalformedMessage(f"payload refused: {exc.reason}") from None
    if not isinstance(m, dict) or set(m) not in (_MESSAGE_KEYS, _MESSAGE_KEYS_AUDIT):
        raise MalformedMessage("payload keys differ from the message format")
    if type(m["v"]) is not int or m["v"] != FORMAT_VERSION:
        raise MalformedMessage(f"unsupported message version {m['v']!r}")
    ints = ("boot", "seq", "ts")
    if not all(type(m[k]) is int and 0 <= m[k] < MAX_SAFE_INT for k in ints):
        raise MalformedMessage("boot, seq and ts must be integers from 0 to 2^53 - 1")
    if not (isinstance(m["dev"], str) and isinstance(m["kind"], str) and isinstance(m["body"], dict)):
        raise MalformedMessage("dev and kind must be text, body a map")
    if not (isinstance(m["id"], bytes) and len(m["id"]) == 16):
        raise MalformedMessage("id must be 16 bytes")
    check_json_like(m["body"])
    audit = m.get("audit")
    if audit is not None:
        if not isinstance(audit, dict):
            raise MalformedMessage("audit must be a map")
        check_json_like(audit)
    return Message(device=m["dev"], boot=m["boot"], seq=m["seq"], kind=m["kind"], body=m["body"],
                   msg_id=uuid.UUID(bytes=m["id"]), ts_ms=m["ts"], audit=audit)
