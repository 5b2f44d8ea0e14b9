"""The station's online card lookup: a signed request, a signed answer, a short wait.

:class:`LookupClient` reaches the broker through the uplink's session (:mod:`mqtt.relay`: the broker
allows one session per certificate) and asks the central service about a platform token
(:mod:`mqtt.lookup`). It signs its requests and verifies the answers itself. It never blocks longer than
``timeout`` (1.5 s): when the box is offline, the uplink is not running or the answer is late it returns
None, and the flow records the scan yellow for the central service to resolve later.

The card index goes sealed to the central service's X25519 key (``seal_key``), bound to the request
topic and message id; a client without that key asks nothing about cards (it answers None at once) and
still looks people up by their ID pseudonym.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uuid6
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from mqtt import envelope, face, lookup, topics
from mqtt.outbox import DeviceIdentity
from mqtt.relay import RelayClient

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.5


class LookupClient:
    """Asks the central service about cards; one instance per station (thread-safe)."""

    def __init__(self, relay: Path, identity: DeviceIdentity, central: ec.EllipticCurvePublicKey,
                 timeout: float = DEFAULT_TIMEOUT, seal_key: x25519.X25519PublicKey | None = None) -> None:
        self.identity, self.central, self.timeout = identity, central, timeout
        self.seal_key = seal_key
        self.request_topic = topics.request(identity.clinic, identity.device, lookup.KIND)
        self.reply_topic = topics.reply(identity.clinic, identity.device, lookup.KIND)
        self.record_request_topic = topics.request(identity.clinic, identity.device, lookup.RECORD_KIND)
        self.record_reply_topic = topics.reply(identity.clinic, identity.device, lookup.RECORD_KIND)
        self.face_request_topic = topics.request(identity.clinic, identity.device, face.TEMPLATE_KIND)
        self.face_reply_topic = topics.reply(identity.clinic, identity.device, face.TEMPLATE_KIND)
        self.relay = RelayClient(relay, self._on_message)
        self.connected = self.relay.connected
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[Any]]] = {}
        self.stats = {"asked": 0, "answered": 0, "timeouts": 0, "offline": 0, "bad_answers": 0,
                      "no_seal_key": 0}

    def start(self) -> LookupClient:
        """Reach the uplink in the background (and keep reconnecting)."""
        self.relay.start()
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.relay.stop()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic not in (self.reply_topic, self.record_reply_topic, self.face_reply_topic):
            return
        opener = (face.open_answer if topic == self.face_reply_topic else
                  lookup.open_record if topic == self.record_reply_topic else lookup.open_answer)
        try:
            rid, answer = opener(payload, topic, self.central)
        except (lookup.LookupInvalid, face.FaceInvalid) as exc:
            self.stats["bad_answers"] += 1
            logger.warning("ignoring lookup answer: %s", exc)
            return
        with self._lock:
            slot = self._waiting.get(rid)
        if slot is not None:
            slot[1].append(answer)
            slot[0].set()

    def lookup(self, card_index: str, code_type: int) -> lookup.CardAnswer | None:
        """The platform's answer about a card, or None when it did not come within the timeout (or this box
        has no sealing key, so the index cannot be sent)."""
        rid, key = os.urandom(8).hex(), self.seal_key
        if key is None:
            self.stats["no_seal_key"] += 1
            return None
        index = card_index.upper()
        return self._ask(rid, lambda msg_id: lookup.request_body(rid, index, code_type, key, self.request_topic,
                                                                 msg_id.bytes))

    def lookup_id(self, id_ref: str) -> lookup.CardAnswer | None:
        """The answer about the health card of the person with this ID pseudonym (None: no answer in time)."""
        rid = os.urandom(8).hex()
        body = lookup.id_request_body(rid, id_ref)
        return self._ask(rid, lambda msg_id: body)

    def record(self, child_ref: str) -> lookup.ChildRecord | None:
        """A child's vaccination record from the central service, or None when it did not come in time."""
        rid = os.urandom(8).hex()
        body = lookup.record_request_body(rid, child_ref)
        return self._ask(rid, lambda msg_id: body, lookup.RECORD_KIND)  # type: ignore[no-any-return]

    def face_template(self, id_ref: str) -> tuple[str, Any]:
        """The face template enrolled for ``id_ref`` at this clinic: ``("found", embedding)``, ``("not_found",
        None)`` or ``("unavailable", None)`` (no answer in time, or an answer that does not open). The template
        is sealed to a key made for this request only and is held in memory only."""
        rid, key = os.urandom(8).hex(), x25519.X25519PrivateKey.generate()
        body = face.request_body(rid, id_ref, key.public_key())
        answer = self._ask(rid, lambda msg_id: body, face.TEMPLATE_KIND)
        if answer is None:
            return "unavailable", None
        if not answer.found:
            return "not_found", None
        try:
            return "found", face.open_template(answer, key, self.face_reply_topic)
        except face.FaceInvalid as exc:
            self.stats["bad_answers"] += 1
            logger.warning("face template answer refused: %s", exc)
            return "unavailable", None

    def _ask(self, rid: str, body_for: Callable[[uuid.UUID], dict[str, Any]], kind: str | None = None) -> Any:
        """Sign and send the request whose body ``body_for(message id)`` builds; the answer or None."""
        kind = kind or lookup.KIND
        self.stats["asked"] += 1
        if not self.connected.is_set():
            self.stats["offline"] += 1
            return None
        topic = {lookup.RECORD_KIND: self.record_request_topic,
                 face.TEMPLATE_KIND: self.face_request_topic}.get(kind, self.request_topic)
        msg_id = uuid6.uuid7()
        message = envelope.Message(self.identity.device, 0, 0, kind, body_for(msg_id), msg_id=msg_id)
        data = envelope.sign(message, topic, self.identity.key)
        done: threading.Event = threading.Event()
        answers: list[Any] = []
        with self._lock:
            self._waiting[rid] = (done, answers)
        try:
            if not self.relay.publish(topic, data):
                self.stats["offline"] += 1
                return None
            if not done.wait(self.timeout):
                self.stats["timeouts"] += 1
                return None
        finally:
            with self._lock:
                self._waiting.pop(rid, None)
        self.stats["answered"] += 1
        return answers[0]
