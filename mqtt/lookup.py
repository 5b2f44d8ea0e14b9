"""Online health-card lookup: a box asks the central service about a platform token, signed both ways.

The box publishes on ``ehc/v1/<clinic>/<device>/req/lookup`` a message signed with its device key
(kind ``lookup``, body ``{"rid": <16 hex>, "code_type": <int>, "personal": <sealed {"card_index": <64 hex>}>}``,
or ``{"rid", "id_ref": <32 hex>}`` for a person who showed an ID card). The card index is sealed to the
central service's X25519 key (:mod:`mqtt.sealed`), bound to the request topic and the envelope's message
id, so the broker sees no card index; a box without that key makes no card lookup. The central ingest
verifies the request like any result, opens the index, asks its card platform (:class:`CardPlatform`) and
answers on ``…/rsp/lookup`` with a message signed by the central key (body ``{"rid", "found", "status",
"health"}``: never the index). ``rid`` correlates the answer inside the signatures, so neither the broker
nor another box can forge or redirect one. The box waits about 1.5 s; without an answer the scan is
recorded yellow, with the card index sealed in its personal part, for the central service to resolve later.

The central side still accepts the former request body ``{"rid", "card_index", "code_type"}`` (index in
clear) from boxes not yet updated; boxes no longer send it.

The central side ships :class:`LocalCardRegistry` (the ``cards`` table of its store, used by the demo
and the tests); a provincial platform plugs in behind the same :class:`CardPlatform` interface.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from mqtt import envelope, sealed, topics
from mqtt.receipts import CENTRAL_ID, ReceiptInvalid, open_central

KIND = "lookup"
_RID = re.compile(r"^[0-9a-f]{16}\Z")
_INDEX = re.compile(r"^[0-9A-F]{64}\Z")
_ID_REF = re.compile(r"^[0-9a-f]{32}\Z")
STATUSES = ("active", "suspended", "revoked")
HEALTH = ("green", "yellow", "red")


class LookupInvalid(ValueError):
    """A lookup request or answer that is malformed or not signed by whom it must be."""


@dataclass(frozen=True, slots=True)
class CardAnswer:
    """What the card platform says about a card."""

    found: bool
    status: str | None = None   # active | suspended | revoked
    health: str | None = None   # green | yellow | red (health-code colour)


class CardPlatform(Protocol):
    """A card platform adapter: resolves a card index (the token's 64 hex digits) to the card's state.

    Must answer within a second; raise ``ConnectionError`` when the platform cannot be reached.
    """

    def lookup(self, card_index: str, code_type: int) -> CardAnswer: ...

    def lookup_by_id(self, id_ref: str) -> CardAnswer:
        """The health card of the person whose ID-number pseudonym is ``id_ref``."""
        ...


class LocalCardRegistry:
    """The central store's own ``cards`` table as a card platform."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def lookup(self, card_index: str, code_type: int) -> CardAnswer:
        row = self.store.card(card_index)
        return CardAnswer(False) if row is None else CardAnswer(True, row[0], row[1])

    def lookup_by_id(self, id_ref: str) -> CardAnswer:
        row = self.store.card_by_id(id_ref)
        return CardAnswer(False) if row is None else CardAnswer(True, row[0], row[1])


def _check_fields(rid: str, card_index: str, code_type: int) -> None:
    if not _RID.match(rid) or not _INDEX.match(card_index) or not 0 <= code_type <= 99:
        raise LookupInvalid("lookup request malformed")


def request_body(rid: str, card_index: str, code_type: int, seal_key: x25519.X25519PublicKey, topic: str,
                 msg_id: bytes) -> dict[str, Any]:
    """A checked request body with the card index sealed to ``seal_key`` for the message ``msg_id`` on
    ``topic`` (the request topic)."""
    _check_fields(rid, card_index, code_type)
    return {"rid": rid, "code_type": code_type,
            "personal": sealed.seal({"card_index": card_index}, seal_key, topic, msg_id)}


def id_request_body(rid: str, id_ref: str) -> dict[str, Any]:
    """A checked request body asking by ID-number pseudonym."""
    if not _RID.match(rid) or not _ID_REF.match(id_ref):
        raise LookupInvalid("lookup request malformed")
    return {"rid": rid, "id_ref": id_ref}


def code_type_of(value: Any) -> int:
    """The code type a stored scan body names: its ``code_type`` when that is an int of 0-99, else 0 (unknown)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 99 else 0


Opener = Callable[[Any], dict[str, Any]]


def _sealed_index(body: dict[str, Any], open_personal: Opener | None) -> tuple[str, str, int]:
    rid, code_type = body.get("rid"), body.get("code_type")
    if not (isinstance(rid, str) and isinstance(code_type, int) and set(body) == {"rid", "code_type", "personal"}):
        raise LookupInvalid("lookup request malformed")
    if open_personal is None:
        raise LookupInvalid("sealed lookup request but no key to open it")
    fields = open_personal(body["personal"])
    index = fields.get("card_index")
    if not (isinstance(index, str) and set(fields) == {"card_index"}):
        raise LookupInvalid("sealed lookup request malformed")
    _check_fields(rid, index, code_type)
    return rid, index, code_type


def check_request(body: dict[str, Any], open_personal: Opener | None = None) -> tuple[str, str, int]:
    """``(rid, card_index, code_type)`` of a verified request body, or ``(rid, "id:<id_ref>", 0)`` for a
    request by ID pseudonym; raises :class:`LookupInvalid`.

    ``open_personal`` opens the sealed part of a request (raising :class:`LookupInvalid` when it does not
    open); a request with the index in clear (the former format) is still accepted.
    """
    if "id_ref" in body:
        rid, id_ref = body.get("rid"), body.get("id_ref")
        if not (isinstance(rid, str) and isinstance(id_ref, str) and set(body) == {"rid", "id_ref"}):
            raise LookupInvalid("lookup request malformed")
        id_request_body(rid, id_ref)
        return rid, "id:" + id_ref, 0
    if "personal" in body:
        return _sealed_index(body, open_personal)
    rid, index, code_type = body.get("rid"), body.get("card_index"), body.get("code_type")
    if not (isinstance(rid, str) and isinstance(index, str) and isinstance(code_type, int)):
        raise LookupInvalid("lookup request malformed")
    _check_fields(rid, index, code_type)
    return rid, index, code_type


def pending_card_index(body: dict[str, Any], personal: dict[str, Any] | None) -> str | None:
    """The card index of a ``scan`` still waiting for an online lookup: from its opened personal fields (or,
    from boxes not yet updated, its clear body); None when it is not such a scan."""
    if body.get("pending") != "online_lookup":
        return None
    index = (personal or {}).get("card_index", body.get("card_index"))
    return index if isinstance(index, str) else None


def sign_answer(clinic: str, device: str, rid: str, answer: CardAnswer, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The central service's signed answer for ``device``."""
    body = {"rid": rid, "found": answer.found, "status": answer.status, "health": answer.health}
    return envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, KIND, body), topics.reply(clinic, device, KIND), key)


def open_answer(payload: bytes, topic: str, central: ec.EllipticCurvePublicKey) -> tuple[str, CardAnswer]:
    """Verify an answer with the central key; ``(rid, answer)``."""
    try:
        b = open_central(payload, topic, central, KIND).body
    except ReceiptInvalid as exc:
        raise LookupInvalid(f"answer {exc}") from None
    rid, found = b.get("rid"), b.get("found")
    if not (isinstance(rid, str) and _RID.match(rid) and isinstance(found, bool)):
        raise LookupInvalid("answer malformed")
    status, health = b.get("status"), b.get("health")
    if found and (status not in STATUSES or health not in HEALTH):
        raise LookupInvalid("answer malformed")
    return rid, CardAnswer(found, status, health)


# -- vaccination records -----------------------------------------------------------------------------------

RECORD_KIND = "record"
_REF = re.compile(r"^[0-9a-f]{16,32}\Z")


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """What the central service knows of a child's vaccinations: ``doses`` are
    ``{"vaccine", "product", "dose", "date"}`` maps (date ISO 8601)."""

    found: bool
    birth_date: str | None = None
    doses: tuple[dict[str, Any], ...] = ()


def record_request_body(rid: str, child_ref: str) -> dict[str, Any]:
    """A checked request for a child's vaccination record (``child_ref``: the card or ID pseudonym)."""
    if not _RID.match(rid) or not _REF.match(child_ref):
        raise LookupInvalid("record request malformed")
    return {"rid": rid, "child_ref": child_ref}


def check_record_request(body: dict[str, Any]) -> tuple[str, str]:
    """``(rid, child_ref)`` of a verified record request; raises :class:`LookupInvalid`."""
    rid, ref = body.get("rid"), body.get("child_ref")
    if not (isinstance(rid, str) and isinstance(ref, str) and set(body) == {"rid", "child_ref"}):
        raise LookupInvalid("record request malformed")
    record_request_body(rid, ref)
    return rid, ref


def sign_record(clinic: str, device: str, rid: str, record: ChildRecord, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The central service's signed answer with a child's record."""
    body = {"rid": rid, "found": record.found, "birth_date": record.birth_date, "doses": list(record.doses)}
    return envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, RECORD_KIND, body),
                         topics.reply(clinic, device, RECORD_KIND), key)


def open_record(payload: bytes, topic: str, central: ec.EllipticCurvePublicKey) -> tuple[str, ChildRecord]:
    """Verify a record answer with the central key; ``(rid, record)``."""
    try:
        b = open_central(payload, topic, central, RECORD_KIND).body
    except ReceiptInvalid as exc:
        raise LookupInvalid(f"answer {exc}") from None
    rid, found, doses = b.get("rid"), b.get("found"), b.get("doses")
    if not (isinstance(rid, str) and _RID.match(rid) and isinstance(found, bool) and isinstance(doses, list)
            and all(isinstance(d, dict) and isinstance(d.get("vaccine"), str) for d in doses)):
        raise LookupInvalid("record answer malformed")
    return rid, ChildRecord(found, b.get("birth_date"), tuple(doses))
