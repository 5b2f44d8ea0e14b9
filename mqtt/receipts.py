"""What the central service tells boxes, signed with the central signing key.

A receipt on ``ehc/v1/<clinic>/<device>/ack`` makes a box delete results from its outbox, and a new epoch
on ``ehc/v1/central/status`` makes it resend; both are COSE_Sign1 envelopes (the same format as results,
sender ``ehc-central``, seq 0) bound to their topic, so neither a compromised broker nor a box holding a
valid certificate can forge them. Boxes verify with the public key they received at enrollment.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.asymmetric import ec

from mqtt import envelope, topics

CENTRAL_ID = "ehc-central"
_HEX16 = re.compile(r"^[0-9a-f]{32}\Z")
_HEX8 = re.compile(r"^[0-9a-f]{16}\Z")


class ReceiptInvalid(ValueError):
    """A receipt or central status that is not signed by the central service, or is malformed."""


def sign_receipt(msg_ids: list[bytes], topic: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed receipt naming ``msg_ids`` (committed centrally) for the box of ``topic``."""
    body = {"ids": [i.hex() for i in msg_ids]}
    return envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, "ack", body), topic, key)


def open_receipt(payload: bytes, topic: str, central: ec.EllipticCurvePublicKey) -> list[bytes]:
    """Verify a receipt and return the message ids it names."""
    msg = open_central(payload, topic, central, "ack")
    ids = msg.body.get("ids")
    if not (isinstance(ids, list) and all(isinstance(i, str) and _HEX16.match(i) for i in ids)):
        raise ReceiptInvalid("receipt ids malformed")
    return [bytes.fromhex(i) for i in ids]


def sign_status(epoch: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The retained central status announcing a new ingest session epoch."""
    body = {"online": True, "epoch": epoch.hex()}
    return envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, "status", body), topics.CENTRAL_STATUS, key)


def open_status(payload: bytes, central: ec.EllipticCurvePublicKey) -> str:
    """Verify the central status and return its epoch."""
    msg = open_central(payload, topics.CENTRAL_STATUS, central, "status")
    epoch = msg.body.get("epoch")
    if not (isinstance(epoch, str) and _HEX8.match(epoch)):
        raise ReceiptInvalid("status epoch malformed")
    return epoch


def open_central(payload: bytes, topic: str, central: ec.EllipticCurvePublicKey, kind: str,
                 max_items: int = envelope.MAX_ITEMS) -> envelope.Message:
    """Verify a message the central service signed for ``topic`` with purpose ``kind``; raises
    :class:`ReceiptInvalid`."""
    try:
        msg = envelope.verify(payload, topic, central, max_items)
    except envelope.EnvelopeError as exc:
        raise ReceiptInvalid(f"not signed by the central service ({exc.reason})") from None
    if msg.device != CENTRAL_ID or msg.kind != kind:
        raise ReceiptInvalid("signed for another purpose")
    return msg
