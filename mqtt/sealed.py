"""Sealed personal fields: HPKE (RFC 9180) base mode to the central service's X25519 key.

This module is the only place that knows the format (see ``docs/envelope.md``, "Sealed personal part")::

    Sealed = {"v": 1, "alg": "HPKE-Base-X25519-SHA256-AES256GCM",
              "epk": base64url(enc, 32 bytes), "ct": base64url(AES-256-GCM ciphertext ‖ tag)}
    plaintext = canonical CBOR of the personal fields (a map with text keys, JSON types)
    info      = canonical CBOR ["ehc-personal-v1", topic, message id (16 bytes)]

The suite is DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (``cryptography``'s ``hpke.Suite``):
one ephemeral X25519 key per message. ``info`` enters the HPKE key schedule, so a sealed part copied into
another message (other id, device, clinic or kind) no longer opens. The sealed part travels inside the
signed body, so it cannot be swapped without breaking the envelope signature either.

>>> part = seal({"name": "王芳"}, central_pub, "ehc/v1/c/box-1/evt/scan", msg_id)   # doctest: +SKIP
>>> open_sealed(part, central_key, "ehc/v1/c/box-1/evt/scan", msg_id)              # doctest: +SKIP
{'name': '王芳'}
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from foundation import strictcbor
from mqtt.envelope import MAX_CBOR_DEPTH, MAX_ITEMS, MalformedMessage, check_json_like

FORMAT_VERSION = 1
ALG = "HPKE-Base-X25519-SHA256-AES256GCM"
ENC_LEN = 32
INFO_LABEL = "ehc-personal-v1"
MAX_SEALED_CHARS = 64 * 1024
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_KEYS = frozenset({"v", "alg", "epk", "ct"})


class SealedInvalid(ValueError):
    """A sealed part is ill-formed, or does not open with this key for this message."""

    reason = "bad_sealed"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def info(topic: str, msg_id: bytes) -> bytes:
    """The HPKE ``info`` binding a sealed part to one message on one topic."""
    if len(msg_id) != 16:
        raise ValueError("message id must be 16 bytes")
    return cbor2.dumps([INFO_LABEL, topic, msg_id], canonical=True)


def seal(fields: Mapping[str, Any], recipient: x25519.X25519PublicKey, topic: str, msg_id: bytes) -> dict[str, Any]:
    """Encrypt ``fields`` to ``recipient`` for the message ``msg_id`` on ``topic``; a JSON-like map."""
    plain = dict(fields)
    if not plain:
        raise ValueError("nothing to seal")
    check_json_like(plain)
    out = _SUITE.encrypt(cbor2.dumps(plain, canonical=True), recipient, info(topic, msg_id))
    return {"v": FORMAT_VERSION, "alg": ALG, "epk": _b64(out[:ENC_LEN]), "ct": _b64(out[ENC_LEN:])}


def open_sealed(part: Any, key: x25519.X25519PrivateKey, topic: str, msg_id: bytes) -> dict[str, Any]:
    """Decrypt a sealed part of the message ``msg_id`` received on ``topic``; raises :class:`SealedInvalid`."""
    if not isinstance(part, dict) or set(part) != _KEYS:
        raise SealedInvalid("sealed part must have exactly v, alg, epk, ct")
    if part["v"] != FORMAT_VERSION or type(part["v"]) is not int or part["alg"] != ALG:
        raise SealedInvalid("unsupported sealed part version or algorithm")
    if not (isinstance(part["epk"], str) and isinstance(part["ct"], str) and len(part["ct"]) <= MAX_SEALED_CHARS):
        raise SealedInvalid("epk and ct must be base64url text")
    try:
        enc, ct = _unb64(part["epk"]), _unb64(part["ct"])
    except (binascii.Error, ValueError):
        raise SealedInvalid("epk or ct is not base64url") from None
    if len(enc) != ENC_LEN:
        raise SealedInvalid("epk must be 32 bytes")
    try:
        plain = _SUITE.decrypt(enc + ct, key, info(topic, msg_id))
    except (InvalidTag, ValueError):  # wrong key, other message, altered bytes, an invalid point
        raise SealedInvalid("sealed part does not open for this message with this key") from None
    try:
        fields = strictcbor.loads(plain, max_bytes=MAX_SEALED_CHARS, max_depth=MAX_CBOR_DEPTH, max_items=MAX_ITEMS)
        if not isinstance(fields, dict):
            raise MalformedMessage("sealed fields are not a map")
        check_json_like(fields)
    except (strictcbor.CborRefused, MalformedMessage):  # a box signs and seals what it likes
        raise SealedInvalid("sealed plaintext is not a map of JSON types") from None
    return fields


def generate_key() -> x25519.X25519PrivateKey:
    """A new X25519 key for the central service."""
    return x25519.X25519PrivateKey.generate()


def private_pem(key: x25519.X25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (written with mode 0600 by the caller)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: x25519.X25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(path: Path) -> x25519.X25519PrivateKey:
    """The central X25519 key from a PEM file; ValueError when it is another kind of key."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise ValueError(f"{path}: not an X25519 private key")
    return key


def load_public(data: bytes) -> x25519.X25519PublicKey:
    """The central X25519 public key from PEM bytes; ValueError when it is another kind of key."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, x25519.X25519PublicKey):
        raise ValueError("not an X25519 public key")
    return key
