"""Central ingest: receive results from the shared subscription, verify, store exactly once, receipt.

Flow per batch: the paho network thread puts messages on a bounded queue; the worker thread takes a batch,
verifies every envelope against the sender's registered certificate, stores the batch in one transaction,
then acknowledges the MQTT deliveries and publishes one receipt per device. A message is acknowledged to
the broker only after its outcome is committed, so an ingest crash causes a redelivery, never a loss; the
store's unique keys turn redeliveries into duplicates that are receipted again but stored once.

What a box sends cannot stop a worker: while the database is unreachable the batch is held and retried; a
batch that fails for any other reason is processed again one message at a time, and a message that still
fails is kept whole as a *dead letter* (``dead_letters``, with the reason, counted as refused) and
acknowledged, so it is neither retried forever nor lost. A message that keeps a worker busy for
:data:`HUNG_AFTER` seconds gets the worker killed by its supervisor and is marked; when the broker delivers it
again it goes to the dead letters unread (:mod:`central.service`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from central import audit_check, trustlist_issuer
from central.config import CentralConfig
from central.store import (
    DUPLICATE,
    QUARANTINED,
    SEQ_CONFLICT,
    STORED,
    Rejection,
    SqlStore,
    StoreUnavailable,
    VerifiedResult,
    body_json,
    dead_letter_key,
    unreachable,
)
from foundation.keyfiles import common_name, load_cert, load_private_key
from mqtt import auditchain, envelope, face, lookup, rackbody, receipts, sealed, topics
from mqtt.client import connect_properties, new_client

logger = logging.getLogger(__name__)

PRESENCE_VALUES = frozenset({"online", "offline"})
UNKNOWN_DEVICE_TTL = 5.0
KNOWN_DEVICE_TTL = 60.0  # revocation and re-enrollment (done by another process) take effect within this
MAX_BATCH_BYTES = 4 * 1024 * 1024  # payload bytes in one batch: bounds what a batch holds decoded
MAX_BODY_JSON = 512 * 1024  # a stored result body; a larger one (a signed result) is quarantined body_too_large
HUNG_AFTER = 60.0  # seconds one message may take to be checked before its worker counts as hung


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
        try:
            rec = self.store.get_device(device_id)
        except Exception as exc:  # the registry lookup is the database's problem, not the message's
            if unreachable(exc):
                raise StoreUnavailable(f"registry lookup failed: {type(exc).__name__}: {exc}") from exc
            raise
        if rec is None:
            self._keys[device_id] = (_Key("", "unknown", None), now)
            return None
        try:
            pub = x509.load_pem_x509_certificate(rec.cert_pem.encode()).public_key()
        except ValueError:
            raise RejectedMessage("bad_device_key", device_id) from None
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
_RECORD_OPTIONAL_TEXT = ("product", "trace_code", "lot", "expiry")


def vaccination_recordable(body: dict[str, Any]) -> bool:
    """True when a ``vaccination`` body has what a child's record needs, of the column types: text ids and date,
    optional text details, an optional whole dose number (a float or a huge number is refused by PostgreSQL)."""
    dose = body.get("dose")
    return (all(isinstance(body.get(k), str) for k in _RECORD_TEXT)
            and all(isinstance(body.get(k), (str, type(None))) for k in _RECORD_OPTIONAL_TEXT)
            and (dose is None or (type(dose) is int and 0 <= dose < 1000)))


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

    def __init__(self, cfg: CentralConfig, store: SqlStore, worker: int = 0, progress: Any = None) -> None:
        self.cfg = cfg
        self.store = store
        # Where the supervisor watches this worker: the message being checked and since when (service.Progress).
        self.progress = progress
        self.dead: set[str] = set()  # keys of dead letters, loaded in start(): these are not processed again
        self.verifier = Verifier(store, cfg.broker.max_message_bytes)
        self.platform: lookup.CardPlatform = lookup.LocalCardRegistry(store)
        self.signing_key = load_private_key(cfg.path(cfg.enrollment.signing_key))  # signs receipts
        self.seal_key = load_seal_key(cfg)  # opens the personal fields boxes seal
        self.counters: Counter[str] = Counter()
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=cfg.ingest.receive_maximum * 2)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        cert, key = cfg.ingest_cert(worker)
        self.identity = cfg.ingest.identity(worker)
        found = common_name(load_cert(cert))
        if found != self.identity:  # the broker takes the CN as user name and client id: it must be this worker's
            raise ValueError(f"{cert}: certificate of {found!r}, not of ingest worker {self.identity!r} "
                             "(ehc-central init --workers N makes one per worker)")
        self.client = new_client(self.identity, cfg.path(cfg.broker.ca), cert, key, manual_ack=True)
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
        signed = trustlist_issuer.signed_bytes(self.cfg)
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
        size = len(first.payload)
        deadline = time.monotonic() + self.cfg.ingest.batch_wait
        while len(batch) < self.cfg.ingest.batch_size and size < MAX_BATCH_BYTES:
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
            size += len(batch[-1].payload)
        return batch

    def _checking(self, key: str | None) -> None:
        """Tell the supervisor which message this worker is checking now (None: none)."""
        if self.progress is not None:
            self.progress.mark(key)

    def process(self, batch: list[Inbound]) -> dict[str, int]:
        """Verify and store one batch; returns the outcome counts. Raises StoreUnavailable to retry; any other
        exception means the batch was refused as a whole (nothing committed): :meth:`_settle` takes it apart."""
        results: list[VerifiedResult] = []
        rejections: list[Rejection] = []
        presence: list[tuple[str, str, Any]] = []
        lookups: list[tuple[topics.Topic, tuple[str, str, int]]] = []
        again: list[Inbound] = []
        collect: dict[str, list[Any]] = {"result": results, "lookup": lookups, "presence": presence}
        for item in batch:
            key = dead_letter_key(item.topic, item.payload)
            if key in self.dead:  # delivered again: kept already, not read again
                again.append(item)
                continue
            try:
                kind, value = self._classify(item, key)
            except RejectedMessage as rej:
                rejections.append(Rejection(rej.reason, item.topic, len(item.payload), rej.device,
                                            hashlib.sha256(item.payload).hexdigest()))
                continue
            finally:
                self._checking(None)
            collect[kind].append(value)
        outcomes = self.store.store_results(results, rejections, checks=self.RESULT_CHECKS)
        for item in again:
            self.store.dead_letter(item.topic, item.payload, "dead_letter", "delivered again", None)
        for device, what, value in presence:
            self._after_commit(self.store.update_presence, device, **{what: value})
        counts = Counter(outcomes)
        if again:
            counts["dead_letter"] += len(again)
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
            after = self.AFTER_STORE.get(res.message.kind)
            if after is not None:
                after(self, res, outcome, counts)
            body = res.message.body
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

    def _after_commit(self, step: Any, *args: Any, **kwargs: Any) -> bool:
        """Run a step that follows the batch's commit (presence, a child's record). The database being unreachable
        holds the batch (it is retried, the results are duplicates by then); anything else is logged and counted,
        and the batch goes on: its results are stored and receipted already. False when the step failed."""
        try:
            step(*args, **kwargs)
            return True
        except Exception as exc:
            if unreachable(exc):
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
            self.counters["after_commit_error"] += 1
            logger.error("ingest: %s failed after the batch was stored: %s: %s", getattr(step, "__name__", "step"),
                         type(exc).__name__, str(exc)[:200])
            return False

    def _after_vaccination(self, res: VerifiedResult, outcome: str, counts: Counter[str]) -> None:
        """A ``vaccination`` result adds a dose to the child's record, once committed (a duplicate too: the record
        may have been left undone by a crash after the result was committed)."""
        if outcome not in (STORED, DUPLICATE):
            return
        body = res.message.body
        if vaccination_recordable(body):
            if not self._after_commit(self.store.record_vaccination, str(res.message.msg_id), body):
                counts["unrecordable_vaccination"] += 1
        elif outcome == STORED:  # stored as signed, but it cannot update a child's record; never retried
            counts["unrecordable_vaccination"] += 1
            logger.warning("device %s: vaccination result %s stored without a record update: body incomplete",
                           res.message.device, res.message.msg_id,
                           extra={"EHC_REASON": "unrecordable_vaccination", "EHC_DEVICE": res.message.device})

    def _after_enrol(self, res: VerifiedResult, outcome: str, counts: Counter[str]) -> None:
        """A stored face enrolment (not quarantined) keeps its template, still sealed."""
        if outcome == STORED and not res.quarantine:
            self._after_commit(self._keep_template, res)

    def _keep_template(self, res: VerifiedResult) -> None:
        """Keep an enrolment's template, still sealed, with its consent record (after the result's commit)."""
        m, body = res.message, res.message.body
        topic = topics.event(res.clinic, m.device, face.ENROL_KIND)
        self.store.put_face_template(body["id_ref"], res.clinic, m.device, str(m.msg_id), topic, body["personal"],
                                     body["consent"])
        logger.info("device %s: face template enrolled (%s consent)", m.device, body["consent"]["by"])

    def _answer_template(self, t: topics.Topic, rid: str, id_ref: str, epk: Any) -> None:
        """Answer a box's template request: only the enrolling clinic's boxes get an unrevoked template."""
        row = self.store.face_template(id_ref)
        template, model = None, ""
        if row is not None and row["revoked_at"] is None and row["clinic"] == t.clinic and self.seal_key is not None:
            try:
                fields = sealed.open_sealed(row["sealed"], self.seal_key, row["topic"], uuid.UUID(row["msg_id"]).bytes)
                template, model = face.check_template_fields(fields), fields["model"]
            except (sealed.SealedInvalid, face.FaceInvalid, ValueError) as exc:
                logger.error("stored face template for a request from %s does not open: %s", t.device, exc)
        elif row is not None and row["clinic"] != t.clinic:
            self.counters["face_out_of_scope"] += 1
            logger.warning("device %s asked for a face template enrolled in another clinic; not found",
                           t.device, extra={"EHC_REASON": "face_out_of_scope", "EHC_DEVICE": t.device})
        self.client.publish(topics.reply(t.clinic, t.device, face.TEMPLATE_KIND),
                            face.sign_answer(t.clinic, t.device, rid, template, model, epk, self.signing_key), qos=1)

    def _answer_record(self, t: topics.Topic, rid: str, child_ref: str, code_type: Any) -> None:
        """Answer a box's request for a child's vaccination record."""
        birth, doses = self.store.vaccination_record(child_ref)
        record = lookup.ChildRecord(birth is not None or bool(doses), birth, tuple(doses))
        self.client.publish(topics.reply(t.clinic, t.device, lookup.RECORD_KIND),
                            lookup.sign_record(t.clinic, t.device, rid, record, self.signing_key), qos=1)

    def _answer_lookup(self, t: topics.Topic, rid: str, index: str, code_type: Any) -> None:
        """Answer a request by the prefix of its index (:attr:`ANSWERS`), else ask the card platform."""
        for prefix, answer_by in self.ANSWERS.items():
            if index.startswith(prefix):
                answer_by(self, t, rid, index[len(prefix):], code_type)
                return
        try:
            answer = (self.platform.lookup_by_id(index[3:]) if index.startswith("id:")
                      else self.platform.lookup(index, code_type))
        except ConnectionError as exc:  # the box times out and records the scan yellow
            logger.warning("card platform unreachable: %s", exc)
            return
        payload = lookup.sign_answer(t.clinic, t.device, rid, answer, self.signing_key)
        self.client.publish(topics.reply(t.clinic, t.device, lookup.KIND), payload, qos=1)

    def _classify(self, item: Inbound, progress_key: str | None = None) -> tuple[str, Any]:
        t, key = self.verifier.check(item.topic, item.payload)
        # From here on the work is the message's own (decoding, signature, sealed part, audit link), not the
        # database's: the supervisor may time it.
        self._checking(progress_key)
        classify = self.CHANNELS.get(t.channel)
        if classify is None or (t.channel == "req" and t.name not in self.REQUESTS):
            raise RejectedMessage("bad_topic", t.device)
        return classify(self, t, key, item)

    def _classify_status(self, t: topics.Topic, key: _Key, item: Inbound) -> tuple[str, Any]:
        """A presence message (``online``/``offline``, not signed)."""
        value = item.payload.decode("ascii", "replace")
        if value not in PRESENCE_VALUES:
            raise RejectedMessage("bad_status", t.device)
        return "presence", (t.device, "presence", value)

    def _classify_event(self, t: topics.Topic, key: _Key, item: Inbound) -> tuple[str, Any]:
        """A signed result, to be stored."""
        return "result", self._result(t, item, self.verifier.open(t, key, item.topic, item.payload))

    def _classify_report(self, t: topics.Topic, key: _Key, item: Inbound) -> tuple[str, Any]:
        """A signed birth document (``state``) or health report, as presence."""
        msg = self.verifier.open(t, key, item.topic, item.payload)
        return "presence", (t.device, t.channel, msg.body)

    def _classify_request(self, t: topics.Topic, key: _Key, item: Inbound) -> tuple[str, Any]:
        """A signed request (:attr:`REQUESTS` by its name), answered after the batch's commit."""
        msg = self.verifier.open(t, key, item.topic, item.payload)
        try:
            return "lookup", (t, self.REQUESTS[t.name](self, t, item, msg))
        except (lookup.LookupInvalid, face.FaceInvalid):
            raise RejectedMessage("bad_request", t.device) from None

    def _record_request(self, t: topics.Topic, item: Inbound, msg: envelope.Message) -> tuple[str, str, Any]:
        rid, ref = lookup.check_record_request(msg.body)
        return rid, "record:" + ref, 0

    def _template_request(self, t: topics.Topic, item: Inbound, msg: envelope.Message) -> tuple[str, str, Any]:
        rid, ref, epk = face.check_request(msg.body)
        return rid, "face:" + ref, epk

    def _card_request(self, t: topics.Topic, item: Inbound, msg: envelope.Message) -> tuple[str, str, Any]:
        return lookup.check_request(msg.body, self._request_opener(t, item.topic, msg))

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
        if held is None and msg.kind == rackbody.RACK_KIND:
            try:
                rackbody.check_rack(msg.body)  # signed by a box of ours, and still hostile input
            except rackbody.RackInvalid as exc:
                held = exc.reason
                logger.warning("device %s: rack result %s refused: %s", msg.device, msg.msg_id, exc,
                               extra={"EHC_REASON": exc.reason, "EHC_DEVICE": msg.device})
        if held is None and msg.kind in (face.CHECK_KIND, face.ENROL_KIND):
            held = self._check_face(msg, item.topic)
        if msg.kind == face.ENROL_KIND:
            personal = None  # the template stays sealed (face_templates), never in the personal table
        stored = body_json(msg.body)
        if held is None and len(stored.encode()) > MAX_BODY_JSON:  # signed: kept whole aside, receipted
            held = "body_too_large"
        return VerifiedResult(t.clinic, msg, item.payload, personal, held, segment, problem, stored)

    def _check_face(self, msg: envelope.Message, topic: str) -> str | None:
        """Why a face result is held (``bad_face``), or None: every field checked; an enrolment's template is
        opened to be checked, then kept sealed."""
        try:
            if msg.kind == face.CHECK_KIND:
                face.check_face_check(msg.body)
                return None
            part = face.check_face_enrol(msg.body)
            if self.seal_key is None:
                raise RejectedMessage("no_seal_key", msg.device)
            face.check_template_fields(sealed.open_sealed(part, self.seal_key, topic, msg.msg_id.bytes))
        except (face.FaceInvalid, sealed.SealedInvalid) as exc:
            logger.warning("device %s: %s result held: %s", msg.device, msg.kind, exc,
                           extra={"EHC_REASON": "bad_face", "EHC_DEVICE": msg.device})
            return "bad_face"
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._next_batch()
            if batch:
                self._settle(batch)

    def _settle(self, batch: list[Inbound]) -> None:
        """Process ``batch`` until its outcome is committed: hold it while the database is unreachable; take it
        apart when it fails otherwise, and keep a message that fails on its own as a dead letter."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.process(batch)
                return
            except StoreUnavailable as exc:
                logger.error("store unavailable, holding %d messages: %s", len(batch), exc)
            except Exception as exc:  # never let one bad message stop the worker, or come back forever
                if len(batch) > 1:
                    logger.error("ingest batch of %d failed (%s); taking it one message at a time", len(batch),
                                 type(exc).__name__)
                    for item in batch:
                        self._settle([item])
                    return
                if self._dead_letter(batch[0], "processing_error", f"{type(exc).__name__}: {str(exc)[:300]}"):
                    return
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            self._reopen_store()

    def _dead_letter(self, item: Inbound, reason: str, detail: str) -> bool:
        """Keep a message that cannot be processed, acknowledge it; False when the store could not take it."""
        try:
            device = topics.parse(item.topic).device
        except topics.TopicError:
            device = None
        try:
            key = self.store.dead_letter(item.topic, item.payload, reason, detail, device)
        except StoreUnavailable as exc:
            logger.error("store unavailable, holding a message to keep as a dead letter: %s", exc)
            return False
        self.dead.add(key)
        if item.qos > 0:
            self.client.ack(item.mid, item.qos)
        self.counters["dead_letter"] += 1
        logger.error("message on %s kept as a dead letter (%s): %s", item.topic[:128], reason, detail[:300],
                     extra={"EHC_REASON": "dead_letter", "EHC_DEVICE": device or ""})
        return True

    def _reopen_store(self) -> None:
        reopen = getattr(self.store, "reopen", None)
        if reopen:
            try:
                reopen()
            except Exception as exc:
                logger.error("store reconnect failed: %s", exc)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Ingest:
        """Connect (in the background, retrying) and start the worker thread."""
        try:
            self.dead = self.store.dead_letter_keys()
        except Exception as exc:  # the database is down: the dead letters are found again as they fail again
            logger.error("dead letters not loaded: %s", exc)
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

    # -- dispatch tables -----------------------------------------------------------------------------
    # How a delivery is classified, by the channel of its topic: ("result" | "lookup" | "presence", value).
    CHANNELS: ClassVar[dict[str, Callable[..., tuple[str, Any]]]] = {
        "status": _classify_status,
        "evt": _classify_event,
        "state": _classify_report,
        "health": _classify_report,
        "req": _classify_request,
    }
    # A request's (request id, index, code type) by the request's name; the index's prefix picks the answer.
    REQUESTS: ClassVar[dict[str, Callable[..., tuple[str, str, Any]]]] = {
        lookup.KIND: _card_request,
        lookup.RECORD_KIND: _record_request,
        face.TEMPLATE_KIND: _template_request,
    }
    ANSWERS: ClassVar[dict[str, Callable[..., None]]] = {
        "face:": _answer_template,
        "record:": _answer_record,
    }
    # What follows a committed result of a kind (outcome, counts): a child's record, a kept face template.
    AFTER_STORE: ClassVar[dict[str, Callable[..., None]]] = {
        "vaccination": _after_vaccination,
        face.ENROL_KIND: _after_enrol,
    }
    # Checks run on the newly stored results inside the transaction that stores them.
    RESULT_CHECKS: ClassVar[tuple[Callable[..., None], ...]] = (audit_check.track,)
