"""Central ingest: receive results from the shared subscription, verify, store exactly once, receipt.

Flow per batch: the paho network thread puts messages on a bounded queue; the worker thread takes a batch,
verifies every envelope against the sender's registered certificate, stores the batch in one transaction,
then acknowledges the MQTT deliveries and publishes one receipt per device. A message is acknowledged to
the broker only after its outcome is committed, so an ingest crash causes a redelivery, never a loss; the
store's unique keys turn redeliveries into duplicates that are receipted again but stored once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from mqtt import auditchain, envelope, lookup, receipts, sealed, topics
from mqtt.central import trust
from mqtt.central.config import CentralConfig
from mqtt.central.store import QUARANTINED, SEQ_CONFLICT, STORED, Rejection, SqlStore, StoreUnavailable, \
    VerifiedResult
from mqtt.client import connect_properties, new_client
from provisioning.ca import load_private_key

logger = logging.getLogger(__name__)

PRESENCE_VALUES = frozenset({"online", "offline"})
UNKNOWN_DEVICE_TTL = 5.0
KNOWN_DEVICE_TTL = 60.0  # revocation and re-enrollment (done by another process) take effect within this


@dataclass(frozen=True, slots=True)
class Inbound:
    """One delivery from the broker."""

    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Key:
    clinic: str
    status: str
    public_key: ec.EllipticCurvePublicKey | None


class RejectedMessage(Exception):
    """A delivery refused at the boundary; ``reason`` is counted and recorded."""

    def __init__(self, reason: str, device: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.device = device


class Verifier:
    """Checks topics and envelopes against the device registry (cached public keys)."""

    def __init__(self, store: SqlStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._keys: dict[str, tuple[_Key, float]] = {}

    def forget(self, device_id: str) -> None:
        """Drop a cached key (after revocation or re-enrollment)."""
        self._keys.pop(device_id, None)

    def _key(self, device_id: str) -> _Key | None:
        hit = self._keys.get(device_id)
        now = time.monotonic()
        if hit and now - hit[1] < (KNOWN_DEVICE_TTL if hit[0].public_key is not None else UNKNOWN_DEVICE_TTL):
            return hit[0] if hit[0].status != "unknown" else None
        rec = self.store.get_device(device_id)
        if rec is None:
            self._keys[device_id] = (_Key("", "unknown", None), now)
            return None
        pub = x509.load_pem_x509_certificate(rec.cert_pem.encode()).public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise RejectedMessage("bad_device_key", device_id)
        key = _Key(rec.clinic, rec.status, pub)
        self._keys[device_id] = (key, now)
        return key

    def check(self, topic: str, payload: bytes) -> tuple[topics.Topic, _Key]:
        """Parse the topic and find an active device of the right clinic."""
        if len(payload) > self.max_bytes:
            raise RejectedMessage("oversized")
        try:
            t = topics.parse(topic)
        except topics.TopicError:
            raise RejectedMessage("bad_topic") from None
        key = self._key(t.device)
        if key is None:
            raise RejectedMessage("unknown_device", t.device)
        if key.status != "active":
            raise RejectedMessage("revoked_device", t.device)
        if key.clinic != t.clinic:
            raise RejectedMessage("wrong_clinic", t.device)
        return t, key

    def verify(self, topic: str, payload: bytes) -> tuple[topics.Topic, envelope.Message]:
        """Verify a signed envelope on an evt/state/health topic."""
        t, key = self.check(topic, payload)
        return t, self.open(t, key, topic, payload)

    def open(self, t: topics.Topic, key: _Key, topic: str, payload: bytes) -> envelope.Message:
        """Verify the envelope of a message whose topic and device :meth:`check` accepted."""
        assert key.public_key is not None
        try:
            msg = envelope.verify(payload, topic, key.public_key)
        except envelope.EnvelopeError as exc:
            raise RejectedMessage(exc.reason, t.device) from None
        expected_kind = t.name if t.channel in ("evt", "req") else t.channel
        if msg.device != t.device or msg.kind != expected_kind:
            raise RejectedMessage("wrong_topic", t.device)
        return msg


_RECORD_TEXT = ("child_ref", "vaccine", "given_on")
_RECORD_SCALARS = ("product", "dose", "trace_code", "lot", "expiry")


def vaccination_recordable(body: dict[str, Any]) -> bool:
    """True when a ``vaccination`` body has what a child's record needs: text ids and date, scalar details."""
    return (all(isinstance(body.get(k), str) for k in _RECORD_TEXT)
            and all(isinstance(body.get(k), (str, int, float, type(None))) for k in _RECORD_SCALARS))


def load_seal_key(cfg: CentralConfig) -> x25519.X25519PrivateKey | None:
    """The central X25519 key, or None on a site that has none (results with personal fields are then refused
    ``no_seal_key`` and stay on the boxes)."""
    path = cfg.path(cfg.enrollment.seal_key)
    try:
        return sealed.load_private(path)
    except FileNotFoundError:
        logger.warning("no sealing key at %s: results with personal fields will be refused", path)
        return None


def resolve_lookup(store: SqlStore, platform: lookup.CardPlatform, msg_id: str, card_index: str,
                   code_type: int) -> bool:
    """Ask the card platform about a scan the box could not look up; True when the answer was recorded."""
    try:
        answer = platform.lookup(card_index, code_type)
    except ConnectionError as exc:
        logger.warning("card platform unreachable; lookup for %s stays pending: %s", msg_id, exc)
        return False
    store.record_lookup(msg_id, card_index, answer.found, answer.status, answer.health)
    return True


class Ingest:
    """One ingest worker: an MQTT session in the shared group, a store connection and a batch loop."""

    def __init__(self, cfg: CentralConfig, store: SqlStore, worker: int = 0) -> None:
        self.cfg = cfg
        self.store = store
        self.verifier = Verifier(store, cfg.broker.max_message_bytes)
        self.platform: lookup.CardPlatform = lookup.LocalCardRegistry(store)
        self.signing_key = load_private_key(cfg.path(cfg.enrollment.signing_key))  # signs receipts
        self.seal_key = load_seal_key(cfg)  # opens the personal fields boxes seal
        self.counters: Counter[str] = Counter()
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=cfg.ingest.receive_maximum * 2)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        ing = cfg.ingest
        self.client = new_client(f"{ing.client_id}-{worker}", cfg.path(cfg.broker.ca), cfg.path(ing.cert),
                                 cfg.path(ing.key), manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.25, 10)  # type: ignore[arg-type]  # paho accepts float delays

    # -- MQTT callbacks (network thread) ---------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("ingest connect refused: %s", reason)
            return
        client.subscribe([(f, 1) for f in topics.ingest_filters(self.cfg.ingest.share_group)])
        if not flags.session_present:
            # A new session may have missed what the broker accepted meanwhile: announce a new epoch so
            # that boxes resend everything not yet receipted (the broker handles SUBSCRIBE first).
            client.publish(topics.CENTRAL_STATUS, receipts.sign_status(os.urandom(8), self.signing_key), qos=1,
                           retain=True)
        signed = trust.signed_bytes(self.cfg)
        if signed is not None:  # retained: boxes keep it only if newer than theirs
            client.publish(topics.TRUST_LIST, signed, qos=1, retain=True)
        self.connected.set()
        logger.info("ingest connected (session present: %s)", flags.session_present)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            logger.warning("ingest disconnected: %s", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.inbox.put(Inbound(msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    # -- processing (worker thread) --------------------------------------------------------------------
    def _next_batch(self) -> list[Inbound]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.ingest.batch_wait
        while len(batch) < self.cfg.ingest.batch_size:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.inbox.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def process(self, batch: list[Inbound]) -> dict[str, int]:
        """Verify and store one batch; returns the outcome counts. Raises StoreUnavailable to retry."""
        results: list[VerifiedResult] = []
        rejections: list[Rejection] = []
        presence: list[tuple[str, str, Any]] = []
        lookups: list[tuple[topics.Topic, tuple[str, str, int]]] = []
        for item in batch:
            try:
                kind, value = self._classify(item)
            except RejectedMessage as rej:
                rejections.append(Rejection(rej.reason, item.topic, len(item.payload), rej.device,
                                            hashlib.sha256(item.payload).hexdigest()))
                continue
            if kind == "result":
                results.append(value)
            elif kind == "lookup":
                lookups.append(value)
            else:
                presence.append(value)
        outcomes = self.store.store_results(results, rejections)
        for device, what, value in presence:
            self.store.update_presence(device, **{what: value})
        counts = Counter(outcomes)
        for rej in rejections:
            counts["rejected:" + rej.reason] += 1
            logger.warning("rejected message on %s: %s", rej.topic[:128], rej.reason,
                           extra={"EHC_REASON": rej.reason, "EHC_DEVICE": rej.device_id or ""})
        counts["presence"] += len(presence)
        to_receipt: dict[tuple[str, str], list[bytes]] = {}
        for res, outcome in zip(results, outcomes):
            if outcome == QUARANTINED:  # committed to quarantine: the receipt lets the box drop it
                logger.warning("device %s: result %s quarantined: %s", res.message.device, res.message.msg_id,
                               res.quarantine, extra={"EHC_REASON": res.quarantine, "EHC_DEVICE": res.message.device})
            if outcome == SEQ_CONFLICT:  # committed to quarantine: the receipt lets the box drop it
                logger.warning("device %s: sequence conflict at boot %d seq %d; quarantined", res.message.device,
                               res.message.boot, res.message.seq,
                               extra={"EHC_REASON": SEQ_CONFLICT, "EHC_DEVICE": res.message.device})
            to_receipt.setdefault((res.clinic, res.message.device), []).append(res.message.msg_id.bytes)
        for item in batch:
            if item.qos > 0:
                self.client.ack(item.mid, item.qos)
        for t, (rid, index, code_type) in lookups:
            self._answer_lookup(t, rid, index, code_type)
        for res, outcome in zip(results, outcomes):
            body = res.message.body
            if outcome == STORED and res.message.kind == "vaccination":
                if vaccination_recordable(body):
                    self.store.record_vaccination(str(res.message.msg_id), body)
                else:  # stored as signed, but it cannot update a child's record; never retried
                    counts["unrecordable_vaccination"] += 1
                    logger.warning("device %s: vaccination result %s stored without a record update: body incomplete",
                                   res.message.device, res.message.msg_id,
                                   extra={"EHC_REASON": "unrecordable_vaccination", "EHC_DEVICE": res.message.device})
            index = lookup.pending_card_index(body, res.personal) if outcome == STORED else None
            if index is not None:
                resolve_lookup(self.store, self.platform, str(res.message.msg_id), index,
                               lookup.code_type_of(body.get("code_type")))
        if lookups:
            counts["lookup"] += len(lookups)
        for (clinic, device), ids in to_receipt.items():
            topic = topics.device_topic(clinic, device, "ack")
            self.client.publish(topic, receipts.sign_receipt(ids, topic, self.signing_key), qos=1)
        self.counters.update(counts)
        return dict(counts)

    def _answer_lookup(self, t: topics.Topic, rid: str, index: str, code_type: int) -> None:
        if index.startswith("record:"):
            birth, doses = self.store.vaccination_record(index[7:])
            record = lookup.ChildRecord(birth is not None or bool(doses), birth, tuple(doses))
            self.client.publish(topics.reply(t.clinic, t.device, lookup.RECORD_KIND),
                                lookup.sign_record(t.clinic, t.device, rid, record, self.signing_key), qos=1)
            return
        try:
            answer = (self.platform.lookup_by_id(index[3:]) if index.startswith("id:")
                      else self.platform.lookup(index, code_type))
        except ConnectionError as exc:  # the box times out and records the scan yellow
            logger.warning("card platform unreachable: %s", exc)
            return
        payload = lookup.sign_answer(t.clinic, t.device, rid, answer, self.signing_key)
        self.client.publish(topics.reply(t.clinic, t.device, lookup.KIND), payload, qos=1)

    def _classify(self, item: Inbound) -> tuple[str, Any]:
        t, key = self.verifier.check(item.topic, item.payload)
        if t.channel == "status":
            value = item.payload.decode("ascii", "replace")
            if value not in PRESENCE_VALUES:
                raise RejectedMessage("bad_status", t.device)
            return "presence", (t.device, "presence", value)
        if t.channel not in ("evt", "state", "health", "req") or (
                t.channel == "req" and t.name not in (lookup.KIND, lookup.RECORD_KIND)):
            raise RejectedMessage("bad_topic", t.device)
        msg = self.verifier.open(t, key, item.topic, item.payload)
        if t.channel == "evt":
            return "result", self._result(t, item, msg)
        if t.channel == "req":
            try:
                if t.name == lookup.RECORD_KIND:
                    rid, ref = lookup.check_record_request(msg.body)
                    return "lookup", (t, (rid, "record:" + ref, 0))
                return "lookup", (t, lookup.check_request(msg.body, self._request_opener(t, item.topic, msg)))
            except lookup.LookupInvalid:
                raise RejectedMessage("bad_request", t.device) from None
        return "presence", (t.device, t.channel, msg.body)

    def _request_opener(self, t: topics.Topic, topic: str, msg: envelope.Message) -> lookup.Opener:
        """Opens the sealed part of a lookup request: bound to its topic and message id."""
        def open_part(part: Any) -> dict[str, Any]:
            if self.seal_key is None:
                raise RejectedMessage("no_seal_key", t.device)
            try:
                return sealed.open_sealed(part, self.seal_key, topic, msg.msg_id.bytes)
            except sealed.SealedInvalid:
                raise lookup.LookupInvalid("sealed part of the request does not open") from None
        return open_part

    def _result(self, t: topics.Topic, item: Inbound, msg: envelope.Message) -> VerifiedResult:
        """A verified result with its personal part opened (or marked for quarantine) and its audit link checked."""
        personal, held, segment, problem = None, None, None, None
        if "personal" in msg.body:
            if self.seal_key is None:  # not receipted: the box keeps it until this site has its key
                raise RejectedMessage("no_seal_key", t.device)
            try:
                personal = sealed.open_sealed(msg.body["personal"], self.seal_key, item.topic, msg.msg_id.bytes)
            except sealed.SealedInvalid:
                held = sealed.SealedInvalid.reason
        if msg.audit is not None:
            try:
                segment = auditchain.check(msg.audit, msg.msg_id.bytes, msg.kind, msg.boot, msg.seq, msg.ts_ms,
                                           msg.body)
            except auditchain.ChainInvalid as exc:
                problem = str(exc)
        return VerifiedResult(t.clinic, msg, item.payload, personal, held, segment, problem)

    def _work(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            batch = self._next_batch()
            while batch:
                try:
                    self.process(batch)
                    delay = 0.5
                    break
                except StoreUnavailable as exc:
                    logger.error("store unavailable, holding %d messages: %s", len(batch), exc)
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, 30.0)
                    self._reopen_store()
                except Exception:  # never let one bad batch kill the worker
                    logger.exception("ingest batch failed; holding %d messages", len(batch))
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, 30.0)
                    # E.g. the registry lookup on a connection a database restart broke: the store
                    # raises StoreUnavailable only from store_results, which this batch never reached.
                    self._reopen_store()

    def _reopen_store(self) -> None:
        reopen = getattr(self.store, "reopen", None)
        if reopen:
            try:
                reopen()
            except Exception as exc:
                logger.error("store reconnect failed: %s", exc)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "Ingest":
        """Connect (in the background, retrying) and start the worker thread."""
        props = connect_properties(self.cfg.ingest.session_expiry, self.cfg.ingest.receive_maximum)
        self.client.connect_async(self.cfg.broker.host, self.cfg.broker.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker and disconnect; unacknowledged deliveries are redelivered to the next session."""
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def alive(self) -> bool:
        """The worker thread is running."""
        return bool(self._thread and self._thread.is_alive())
