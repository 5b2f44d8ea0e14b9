"""Uplink: drain the outbox to the broker over MQTT v5 + mutual TLS, and keep presence up to date.

A message leaves the outbox only when the central receipt names it (``…/ack``), which comes after the
ingest has committed it; PUBACK alone only means the broker holds it. Messages without a receipt after
``receipt_timeout`` (doubling per attempt) are published again, and the ingest deduplicates them.
Presence: retained ``status`` (``online``, last will ``offline``), retained signed ``state`` birth document,
and a periodic signed ``health`` report. The uplink owns the box's only MQTT session (the broker binds the
client id to the certificate); the station's card lookups go through it (:mod:`mqtt.relay`).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uuid6
from cryptography.hazmat.primitives.asymmetric import ec

from mqtt import commands, envelope, receipts, topics
from mqtt.client import connect_properties, new_client
from mqtt.outbox import DeviceIdentity, Outbox
from mqtt.relay import RelayServer

REQUEST_KINDS = ("lookup", "record", "face")  # what the station may ask over the relay (mqtt.lookup KIND,
# RECORD_KIND; mqtt.face TEMPLATE_KIND)

logger = logging.getLogger(__name__)

SOFTWARE_VERSION = "0.1.0"
MAX_RESEND_FACTOR = 8
IDLE_POLL = 0.5
SESSION_LOST_GRACE = 1.0  # seconds for the central ingest to resubscribe after a broker restart


@dataclass
class _InFlight:
    row_id: int
    sent: float
    attempts: int


@dataclass(frozen=True)
class UplinkSettings:
    """Connection and pacing settings (from ``[mqtt]`` in edge.toml)."""

    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    keepalive: int = 30
    max_inflight: int = 200
    receipt_timeout: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    health_interval: float = 60.0
    session_expiry: int = 86400
    central_key: ec.EllipticCurvePublicKey | None = None  # verifies receipts and the central status
    # Extra health: returns ``(section, alerts)`` for the health report, e.g. the station's status.
    health_extra: Callable[[], tuple[dict[str, Any] | None, list[str]]] | None = None
    # Takes each signed trust list received on ehc/v1/central/trust (edge.trustlist_store.TrustListFile.offer).
    trust_list: Callable[[bytes], bool] | None = None
    # Where the station reaches this session for its card lookups (a Unix socket; None: no relay).
    relay: Path | None = None


def queued_results(outbox_path: Path) -> int:
    """Rows waiting in an outbox file, read through a short-lived read-only connection."""
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def cpu_temperature() -> float | None:
    """SoC temperature in °C where the kernel exposes it (Raspberry Pi), else None."""
    try:
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


class Uplink:
    """Owns the MQTT connection of a box; one instance per box."""

    def __init__(self, settings: UplinkSettings, outbox: Outbox, identity: DeviceIdentity,
                 capabilities: list[str] | None = None, config_revision: int = 0) -> None:
        self.s = settings
        self.outbox = outbox
        self.ident = identity
        self.capabilities = capabilities or []
        self.config_revision = config_revision
        self.inflight: dict[bytes, _InFlight] = {}
        self.receipts: queue.Queue[list[bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.delivered = 0
        self._stop = threading.Event()
        self._cursor = 0
        self._dv = -1
        self._more = True
        self._polled = 0.0
        self._next_health = 0.0
        self._started = time.time()
        self._heartbeat = time.monotonic()
        self._thread: threading.Thread | None = None
        self._birth_due = threading.Event()
        self._session_lost = threading.Event()
        self._resend_now = threading.Event()
        self._central_epoch: str | None = None
        self._next_resend_scan = 0.0
        base = topics.device_topic(identity.clinic, identity.device, "status")
        self.status_topic = base
        self.ack_topic = topics.device_topic(identity.clinic, identity.device, "ack")
        self.command_filter = f"{topics.PREFIX}/{identity.clinic}/{identity.device}/cmd/+"
        self.reply_filter = f"{topics.PREFIX}/{identity.clinic}/{identity.device}/rsp/+"
        # The broker replaces the client id with the certificate's CN (<clinic>/<device>) anyway.
        self.client = new_client(f"{identity.clinic}/{identity.device}", settings.ca, settings.cert, settings.key)
        self.client.will_set(base, b"offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        jitter = random.uniform(0.8, 1.2)
        # paho doubles the delay per failed attempt up to the maximum; the per-box jitter on the first
        # delay keeps a clinic's boxes from reconnecting in lockstep after a broker restart.
        self.client.reconnect_delay_set(settings.reconnect_min * jitter, settings.reconnect_max)  # type: ignore[arg-type]
        self.commands: queue.Queue[commands.Command] = queue.Queue(maxsize=100)
        self.command_handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": self._cmd_ping, "rebirth": self._cmd_rebirth}
        allowed = frozenset(topics.request(identity.clinic, identity.device, kind) for kind in REQUEST_KINDS)
        self.relay = (RelayServer(settings.relay, allowed, lambda t, p: self.client.publish(t, p, qos=1))
                      if settings.relay is not None else None)

    # -- network thread ------------------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused connection: %s", reason)
            return
        wanted = [(self.ack_topic, 1), (self.command_filter, 1), (topics.CENTRAL_STATUS, 1)]
        if self.s.trust_list is not None:
            wanted.append((topics.TRUST_LIST, 1))
        if self.relay is not None:
            wanted.append((self.reply_filter, 1))
        client.subscribe(wanted)
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._birth_due.set()
        if not flags.session_present:
            self._session_lost.set()
        self.connected.set()
        if self.relay is not None:
            self.relay.set_connected(True)
        logger.info("connected to broker (session present: %s)", flags.session_present,
                    extra={"EHC_DEVICE": self.ident.device, "EHC_EVENT": "connected"})

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if self.relay is not None:
            self.relay.set_connected(False)
        if not self._stop.is_set():
            logger.warning("disconnected from broker: %s", reason,
                           extra={"EHC_DEVICE": self.ident.device, "EHC_EVENT": "disconnected"})

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == self.ack_topic:
            try:
                ids = receipts.open_receipt(bytes(msg.payload), msg.topic, self._central_key())
            except receipts.ReceiptInvalid as exc:
                logger.warning("ignoring receipt: %s", exc, extra={"EHC_EVENT": "bad_receipt"})
                return
            self.receipts.put(ids)
        elif msg.topic == topics.CENTRAL_STATUS:
            self._on_central_status(bytes(msg.payload))
        elif msg.topic == topics.TRUST_LIST:
            if self.s.trust_list is not None:
                self.s.trust_list(bytes(msg.payload))  # verifies, keeps only a newer list
        elif "/rsp/" in msg.topic:
            if self.relay is not None:  # the station verifies the central signature itself
                self.relay.deliver(msg.topic, bytes(msg.payload))
        else:
            try:
                cmd = commands.decode_request(msg.topic, bytes(msg.payload), msg.properties, self.ident.clinic,
                                              self.ident.device)
            except commands.CommandError as exc:
                logger.warning("ignoring command: %s", exc, extra={"EHC_EVENT": "bad_command"})
                return
            self.commands.put(cmd)  # handled by the uplink thread, which owns the outbox connection

    def _central_key(self) -> ec.EllipticCurvePublicKey:
        if self.s.central_key is None:
            raise receipts.ReceiptInvalid("no central key configured (provisioning.central_key)")
        return self.s.central_key

    def _on_central_status(self, payload: bytes) -> None:
        try:
            epoch = receipts.open_status(payload, self._central_key())
        except receipts.ReceiptInvalid as exc:
            logger.warning("ignoring central status: %s", exc, extra={"EHC_EVENT": "bad_central_status"})
            return
        if self._central_epoch is not None and epoch != self._central_epoch:
            self._resend_now.set()
        self._central_epoch = epoch

    # -- uplink thread -------------------------------------------------------------------------------
    def _apply_receipts(self) -> int:
        ids: list[bytes] = []
        while True:
            try:
                ids.extend(self.receipts.get_nowait())
            except queue.Empty:
                break
        if not ids:
            return 0
        removed = self.outbox.delete(ids)
        for i in ids:
            self.inflight.pop(i, None)
        self.delivered += removed
        return removed

    def _publish_new(self) -> int:
        space = self.s.max_inflight - len(self.inflight)
        if space <= 0:
            return 0
        dv = self.outbox.data_version()
        now = time.monotonic()
        # data_version only moves for commits of other connections (the station daemon); poll anyway
        # every IDLE_POLL seconds for writers sharing our connection.
        if not self._more and dv == self._dv and now - self._polled < IDLE_POLL:
            return 0
        self._dv, self._polled = dv, now
        rows = self.outbox.pending(self._cursor, space)
        self._more = len(rows) == space
        for row in rows:
            if row.msg_id in self.inflight:
                continue
            self.client.publish(row.topic, row.payload, qos=1)
            self.inflight[row.msg_id] = _InFlight(row.row_id, now, 1)
            self._cursor = row.row_id
        return len(rows)

    def _expire_inflight(self, grace: float) -> None:
        """Something upstream lost state (the broker our session, or the ingest its session): resend
        everything unreceipted after ``grace`` seconds instead of waiting out the receipt timeout."""
        due = time.monotonic() - self.s.receipt_timeout + grace
        for flight in self.inflight.values():
            flight.sent = min(flight.sent, due)
            flight.attempts = 1
        self._next_resend_scan = 0.0
        if self.inflight:
            logger.info("upstream session lost; %d unreceipted results will be resent", len(self.inflight))

    def _resend_overdue(self) -> int:
        now = time.monotonic()
        if now < self._next_resend_scan:
            return 0
        self._next_resend_scan = now + min(0.5, self.s.receipt_timeout / 4)
        overdue = [(k, f) for k, f in self.inflight.items()
                   if now - f.sent > self.s.receipt_timeout * min(2 ** (f.attempts - 1), MAX_RESEND_FACTOR)]
        if not overdue:
            return 0
        still = {p.row_id: p for p in self.outbox.get([f.row_id for _, f in overdue])}
        for key, flight in overdue:
            row = still.get(flight.row_id)
            if row is None:  # delivered meanwhile (receipt applied by another uplink run)
                self.inflight.pop(key, None)
                continue
            self.client.publish(row.topic, row.payload, qos=1)
            flight.sent, flight.attempts = now, flight.attempts + 1
        logger.info("republished %d results without receipt", len(overdue))
        return len(overdue)

    def _sign_unsequenced(self, topic: str, kind: str, body: dict[str, Any]) -> bytes:
        """Sign a message outside the result sequence (seq 0): presence and command responses."""
        msg = envelope.Message(device=self.ident.device, boot=self.outbox.boot, seq=0, kind=kind, body=body,
                               msg_id=uuid6.uuid7())
        return envelope.sign(msg, topic, self.ident.key)

    def _sign_presence(self, channel: str, body: dict[str, Any]) -> tuple[str, bytes]:
        topic = topics.device_topic(self.ident.clinic, self.ident.device, channel)
        return topic, self._sign_unsequenced(topic, channel, body)

    def _cmd_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, **self.health_body()}

    def _cmd_rebirth(self, args: dict[str, Any]) -> dict[str, Any]:
        self._birth_due.set()
        return {"ok": True}

    def _handle_commands(self) -> int:
        done = 0
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return done
            handler = self.command_handlers.get(cmd.name)
            try:
                body = handler(cmd.args) if handler else {"error": "unknown_command"}
            except Exception as exc:  # a failing handler answers, it does not stop the uplink
                logger.exception("command %s failed", cmd.name)
                body = {"error": type(exc).__name__}
            self.client.publish(cmd.response_topic, self._sign_unsequenced(cmd.response_topic, cmd.name, body),
                                qos=1, properties=commands.response_properties(cmd.correlation))
            logger.info("answered command %s", cmd.name, extra={"EHC_EVENT": "command"})
            done += 1

    def health_body(self) -> dict[str, Any]:
        """The periodic health report: queue, disk, temperature, uptime."""
        st = self.outbox.stats()
        disk = shutil.disk_usage(self.outbox.path.parent)
        alerts = ["outbox_near_full"] if st.fill >= self.outbox.alert_fraction else []
        extra: dict[str, Any] = {}
        if self.s.health_extra is not None:
            section, more = self.s.health_extra()
            alerts += more
            extra.update(section or {})
        return {**extra, "alerts": alerts, "queue_depth": st.depth, "queue_bytes": st.bytes, "queue_fill": round(st.fill, 4),
                "oldest_queued_s": round(st.oldest_age, 1) if st.oldest_age is not None else None,
                "inflight": len(self.inflight), "cpu_temp_c": cpu_temperature(),
                "disk_free_bytes": disk.free, "uptime_s": round(time.time() - self._started),
                "connected": self.connected.is_set()}

    def birth_body(self) -> dict[str, Any]:
        """The retained state (birth) document."""
        return {"software": SOFTWARE_VERSION, "boot": self.outbox.boot, "capabilities": self.capabilities,
                "config_revision": self.config_revision, "pid": os.getpid()}

    def step(self) -> int:
        """One pass of the uplink loop; returns the amount of work done (0 when idle)."""
        self._heartbeat = time.monotonic()
        work = self._apply_receipts()
        if not self.connected.is_set():
            return work
        if self._session_lost.is_set():
            self._session_lost.clear()
            self._expire_inflight(SESSION_LOST_GRACE)
        if self._resend_now.is_set():
            self._resend_now.clear()
            self._expire_inflight(0.0)
        if self._birth_due.is_set():
            self._birth_due.clear()
            topic, data = self._sign_presence("state", self.birth_body())
            self.client.publish(topic, data, qos=1, retain=True)
        work += self._handle_commands() + self._publish_new() + self._resend_overdue()
        if time.monotonic() >= self._next_health:
            self._next_health = time.monotonic() + self.s.health_interval
            topic, data = self._sign_presence("health", self.health_body())
            self.client.publish(topic, data, qos=0)
        return work

    def run(self) -> None:
        """Loop until :meth:`stop`; idles at 20 ms when there is nothing to do."""
        while not self._stop.is_set():
            try:
                if self.step() == 0:
                    self._stop.wait(0.02)
            except Exception:
                logger.exception("uplink step failed")
                self._stop.wait(1.0)

    def start(self) -> Uplink:
        """Connect in the background and run the loop in a thread."""
        if self.relay is not None:
            self.relay.start()
        props = connect_properties(self.s.session_expiry)
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self._thread = threading.Thread(target=self.run, name="uplink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop, say offline and disconnect."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if self.connected.is_set():
            self.client.publish(self.status_topic, b"offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
        if self.relay is not None:
            self.relay.stop()

    def heartbeat_age(self) -> float:
        """Seconds since the loop last ran (for the watchdog)."""
        return time.monotonic() - self._heartbeat

    def drained(self) -> bool:
        """Nothing waits in the outbox. Safe from any thread: it reads through its own connection, since
        the uplink thread owns the outbox connection and its receipts."""
        return queued_results(self.outbox.path) == 0
