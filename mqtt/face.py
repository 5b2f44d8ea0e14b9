"""Face check results, enrolled face templates and their signed fetch: formats and hostile-input checks.

Three message kinds (see ``docs/face.md``, "Messages"):

* ``face_check`` (``evt/face_check``, a signed result): the desk's decision about one person: identity
  pseudonym, decision, score, threshold, a liveness evidence summary and model versions. No image, no
  embedding. The central ingest checks every field (:func:`check_face_check`) and quarantines a body that
  does not pass.
* ``face_enrol`` (``evt/face_enrol``): an enrolment with its consent record; the template (a 128-d float16
  embedding, :func:`encode_template`) is the sealed ``personal`` part (sealed to the central X25519 key by the
  outbox, :mod:`mqtt.sealed`, bound to the topic and message id). The ingest opens it only to check it, never
  writes it to the ``personal`` table, and keeps it still sealed with the consent record.
* ``face`` (``req/face`` → ``rsp/face``): a box asks for the template enrolled for an ID pseudonym; the request
  carries a fresh X25519 public key (``epk``) made for this request only, and the central service seals the
  template to it, bound to the reply topic and the reply's message id, inside a reply signed by the central key.
  Only boxes of the enrolling clinic get it; a revoked template is not found.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from mqtt import envelope, sealed, topics
from mqtt.receipts import CENTRAL_ID, ReceiptInvalid, open_central

CHECK_KIND = "face_check"
ENROL_KIND = "face_enrol"
TEMPLATE_KIND = "face"
EMBEDDING_DIM = 128
TEMPLATE_BYTES = EMBEDDING_DIM * 2

DECISIONS = ("match", "no_match", "not_live", "no_face", "several_faces", "too_dark", "timeout", "no_reference")
OUTCOMES = ("live", "no_face", "several_faces", "too_dark", "not_live", "timeout")
CHALLENGES = ("blink", "turn_left", "turn_right", "move_closer", "open_mouth")
ID_KINDS = ("health_card", "id_card", "mrz")
REFERENCES = ("document_photo", "enrolled", "id_card_photo")
CONSENT_BY = ("self", "guardian")
_HEX32 = re.compile(r"^[0-9a-f]{16}(?:[0-9a-f]{16})?\Z")  # an ID pseudonym (32) or a health card's ref (16)
_RID = re.compile(r"^[0-9a-f]{16}\Z")
_NAME = re.compile(r"^[a-z_]{1,40}\Z")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_CHECK_KEYS = frozenset({"flow", "id_ref", "id_kind", "reference", "decision", "reason", "same", "score", "threshold",
                         "liveness", "models"})
_LIVENESS_KEYS = frozenset({"outcome", "challenges", "completed", "frames", "frames_used", "passive",
                            "passive_checked", "min_same_person"})
_ENROL_KEYS = frozenset({"flow", "id_ref", "id_kind", "consent", "personal", "liveness", "models"})
_CONSENT_KEYS = frozenset({"by", "guardian_ref", "guardian_check", "text", "at_ms"})


class FaceInvalid(ValueError):
    """A face message that is malformed, inconsistent or not signed by whom it must be."""


# -- templates ------------------------------------------------------------------------------------------------

def encode_template(embedding: np.ndarray) -> str:
    """A 128-d embedding as base64url float16 (256 bytes), L2-normalised first."""
    e = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if e.shape != (EMBEDDING_DIM,) or not np.all(np.isfinite(e)):
        raise ValueError("a template is a finite 128-d embedding")
    e = e / (np.linalg.norm(e) or 1.0)
    return base64.urlsafe_b64encode(e.astype("<f2").tobytes()).rstrip(b"=").decode("ascii")


def decode_template(text: object) -> np.ndarray:
    """The embedding of a template; ValueError unless it is exactly 128 finite float16 of unit length."""
    if not isinstance(text, str) or len(text) > 400:
        raise ValueError("template must be base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("template is not base64url") from None
    if len(raw) != TEMPLATE_BYTES:
        raise ValueError("template must be 256 bytes")
    e = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    norm = float(np.linalg.norm(e)) if np.all(np.isfinite(e)) else 0.0
    if not 0.98 <= norm <= 1.02:
        raise ValueError("template is not a unit-length embedding")
    return e / norm


def check_template_fields(fields: dict[str, Any]) -> np.ndarray:
    """The embedding of opened template fields ``{"template", "model"}``; :class:`FaceInvalid` otherwise."""
    if set(fields) != {"template", "model"} or not isinstance(fields.get("model"), str) or len(fields["model"]) > 120:
        raise FaceInvalid("template fields malformed")
    try:
        return decode_template(fields["template"])
    except ValueError as exc:
        raise FaceInvalid(str(exc)) from None


# -- field checks ---------------------------------------------------------------------------------------------

def _num(v: Any, lo: float, hi: float, none: bool = True) -> bool:
    if v is None:
        return none
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= float(v) <= hi


def _int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _ref(v: Any, none: bool = True) -> bool:
    return (v is None and none) or (isinstance(v, str) and bool(_HEX32.match(v)))


def _models(v: Any) -> bool:
    return (isinstance(v, dict) and 0 < len(v) <= 12
            and all(isinstance(k, str) and isinstance(x, str) and len(k) <= 40 and len(x) <= 120 for k, x in v.items()))


def check_liveness(v: Any) -> None:
    """The liveness evidence summary; :class:`FaceInvalid` when a field is missing, extra or out of range."""
    if not isinstance(v, dict) or set(v) != _LIVENESS_KEYS:
        raise FaceInvalid("liveness summary malformed")
    ch = v["challenges"]
    if not (v["outcome"] in OUTCOMES and isinstance(ch, list) and len(ch) <= 4 and all(c in CHALLENGES for c in ch)
            and _int(v["completed"], 0, len(ch)) and _int(v["frames"], 0, 100_000) and _int(v["frames_used"], 0, 100)
            and _num(v["passive"], 0.0, 1.0) and isinstance(v["passive_checked"], bool)
            and (v["passive"] is not None) == v["passive_checked"] and _num(v["min_same_person"], -1.0, 1.0)):
        raise FaceInvalid("liveness summary out of range")
    if v["outcome"] == "live" and v["completed"] != len(ch):
        raise FaceInvalid("live without every challenge met")


def check_face_check(body: Any) -> None:
    """A ``face_check`` body as sent by a box (hostile until checked); :class:`FaceInvalid` when it is not."""
    if not isinstance(body, dict) or set(body) != _CHECK_KEYS:
        raise FaceInvalid("face_check body has missing or extra fields")
    b = body
    if not (b["flow"] == "identity" and _ref(b["id_ref"]) and b["id_kind"] in ID_KINDS
            and (b["reference"] is None or b["reference"] in REFERENCES) and b["decision"] in DECISIONS
            and (b["reason"] is None or (isinstance(b["reason"], str) and _NAME.match(b["reason"])))
            and (b["same"] is None or isinstance(b["same"], bool)) and _num(b["score"], -1.0, 1.0)
            and _num(b["threshold"], 0.05, 0.95, none=False) and _models(b["models"])):
        raise FaceInvalid("face_check field out of range")
    if b["decision"] == "no_reference":
        if b["liveness"] is not None or b["reference"] is not None or b["reason"] is None or b["score"] is not None \
                or b["same"] is not None:
            raise FaceInvalid("no_reference: no capture, no reference, a reason")
        return
    check_liveness(b["liveness"])
    live = b["liveness"]["outcome"] == "live"
    compared = b["decision"] in ("match", "no_match")
    if compared != (b["score"] is not None) or compared != (b["same"] is not None):
        raise FaceInvalid("a score and same only with a comparison")
    if compared and not (live and b["reference"] is not None and b["same"] == (b["decision"] == "match")
                         and b["same"] == (b["score"] >= b["threshold"])):
        raise FaceInvalid("decision does not follow from the score, threshold and liveness")
    if b["decision"] in OUTCOMES and b["decision"] != b["liveness"]["outcome"]:
        raise FaceInvalid("decision and liveness outcome differ")


def check_face_enrol(body: Any) -> dict[str, Any]:
    """A ``face_enrol`` body (hostile until checked); its sealed template part. :class:`FaceInvalid` when not."""
    if not isinstance(body, dict) or set(body) != _ENROL_KEYS:
        raise FaceInvalid("face_enrol body has missing or extra fields")
    c = body["consent"]
    if not (body["flow"] == "identity" and _ref(body["id_ref"], none=False) and body["id_kind"] in ID_KINDS
            and _models(body["models"]) and isinstance(c, dict) and set(c) == _CONSENT_KEYS
            and c["by"] in CONSENT_BY and _ref(c["guardian_ref"]) and _int(c["at_ms"], 0, 2**53)
            and isinstance(c["text"], str) and 0 < len(c["text"]) <= 64
            and (c["guardian_check"] is None or (isinstance(c["guardian_check"], str) and _UUID.match(c["guardian_check"])))):
        raise FaceInvalid("face_enrol field out of range")
    if (c["by"] == "guardian") != (c["guardian_ref"] is not None and c["guardian_check"] is not None):
        raise FaceInvalid("a guardian's consent names the guardian and their face check")
    if c["guardian_ref"] == body["id_ref"]:
        raise FaceInvalid("a guardian is someone else")
    check_liveness(body["liveness"])
    if body["liveness"]["outcome"] != "live":
        raise FaceInvalid("a template comes only from a live capture")
    if not isinstance(body["personal"], dict):
        raise FaceInvalid("the template must be a sealed part")
    return body["personal"]


# -- fetching an enrolled template ------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def request_body(rid: str, id_ref: str, epk: x25519.X25519PublicKey) -> dict[str, Any]:
    """A checked template request: ``epk`` is a key made for this request only."""
    raw = epk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = {"rid": rid, "id_ref": id_ref, "epk": _b64(raw)}
    check_request(body)
    return body


def check_request(body: Any) -> tuple[str, str, x25519.X25519PublicKey]:
    """``(rid, id_ref, epk)`` of a verified request body; :class:`FaceInvalid` otherwise."""
    if not isinstance(body, dict) or set(body) != {"rid", "id_ref", "epk"}:
        raise FaceInvalid("template request malformed")
    rid, ref, epk = body["rid"], body["id_ref"], body["epk"]
    if not (isinstance(rid, str) and _RID.match(rid) and _ref(ref, none=False) and isinstance(epk, str)
            and len(epk) == 43):
        raise FaceInvalid("template request malformed")
    try:
        key = x25519.X25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(epk + "="))
    except (binascii.Error, ValueError):
        raise FaceInvalid("template request key malformed") from None
    return rid, ref, key


@dataclass(frozen=True, slots=True)
class TemplateAnswer:
    """The central service's answer: ``found`` and, when found, the sealed template (opened by the box)."""

    found: bool
    sealed: dict[str, Any] | None = None
    msg_id: bytes = b""


def sign_answer(clinic: str, device: str, rid: str, template: np.ndarray | None, model: str,
                epk: x25519.X25519PublicKey, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed answer; the template (if any) sealed to ``epk`` for this reply topic and message."""
    import uuid6

    topic = topics.reply(clinic, device, TEMPLATE_KIND)
    msg_id = uuid6.uuid7()
    part = None
    if template is not None:
        part = sealed.seal({"template": encode_template(template), "model": model}, epk, topic, msg_id.bytes)
    body = {"rid": rid, "found": part is not None, "template": part}
    return envelope.sign(envelope.Message(CENTRAL_ID, 0, 0, TEMPLATE_KIND, body, msg_id=msg_id), topic, key)


def open_answer(payload: bytes, topic: str, central: ec.EllipticCurvePublicKey) -> tuple[str, TemplateAnswer]:
    """Verify an answer with the central key; ``(rid, answer)`` (the template still sealed)."""
    try:
        msg = open_central(payload, topic, central, TEMPLATE_KIND)
    except ReceiptInvalid as exc:
        raise FaceInvalid(f"answer {exc}") from None
    b = msg.body
    if not (isinstance(b, dict) and set(b) == {"rid", "found", "template"} and isinstance(b["rid"], str)
            and _RID.match(b["rid"]) and isinstance(b["found"], bool)
            and (b["template"] is None) != b["found"] and (b["template"] is None or isinstance(b["template"], dict))):
        raise FaceInvalid("template answer malformed")
    return b["rid"], TemplateAnswer(b["found"], b["template"], msg.msg_id.bytes)


def open_template(answer: TemplateAnswer, key: x25519.X25519PrivateKey, topic: str) -> np.ndarray:
    """The embedding in a found answer, opened with the request's own key; :class:`FaceInvalid` otherwise."""
    if not answer.found or answer.sealed is None:
        raise FaceInvalid("no template in the answer")
    try:
        fields = sealed.open_sealed(answer.sealed, key, topic, answer.msg_id)
    except sealed.SealedInvalid:
        raise FaceInvalid("template does not open") from None
    return check_template_fields(fields)
