"""Send a command to a box and wait for its signed answer (``ehc-central command``)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import cbor2
from cryptography import x509

from mqtt import commands, envelope, topics
from mqtt.central.config import CentralConfig
from mqtt.central.store import SqlStore
from mqtt.client import connect_properties, new_client

logger = logging.getLogger(__name__)


class CommandTimeout(TimeoutError):
    """The box did not answer in time (offline, or busy)."""


class CommandClient:
    """An MQTT session with the central identity that publishes requests and collects responses."""

    def __init__(self, cfg: CentralConfig, store: SqlStore) -> None:
        self.cfg, self.store = cfg, store
        self._waiting: dict[bytes, tuple[threading.Event, list[tuple[str, bytes]]]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = new_client(f"{cfg.ingest.client_id}-cmd-{os.urandom(4).hex()}", cfg.path(cfg.broker.ca),
                                 cfg.path(cfg.ingest.cert), cfg.path(cfg.ingest.key))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(f"{topics.PREFIX}/+/+/res/+", qos=1)
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        with self._lock:
            slot = self._waiting.get(correlation) if isinstance(correlation, bytes) else None
        if slot:
            slot[1].append((msg.topic, bytes(msg.payload)))
            slot[0].set()

    def __enter__(self) -> "CommandClient":
        b = self.cfg.broker
        self.client.connect(b.host, b.port, keepalive=30, properties=connect_properties(0))
        self.client.loop_start()
        if not self._connected.wait(10):
            raise ConnectionError("could not connect to the broker")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def request(self, device: str, name: str, args: dict[str, Any] | None = None,
                timeout: float = 10.0) -> dict[str, Any]:
        """Send ``name`` to a registered device and return the body of its verified response."""
        rec = self.store.get_device(device)
        if rec is None:
            raise KeyError(f"no device {device!r}")
        correlation = os.urandom(16)
        done, answers = threading.Event(), []
        with self._lock:
            self._waiting[correlation] = (done, answers)
        try:
            self.client.publish(topics.command(rec.clinic, device, name), cbor2.dumps(args or {}), qos=1,
                                properties=commands.request_properties(rec.clinic, device, name, correlation))
            if not done.wait(timeout):
                raise CommandTimeout(f"{device} did not answer {name!r} within {timeout:.0f} s")
        finally:
            with self._lock:
                self._waiting.pop(correlation, None)
        topic, payload = answers[0]
        key = x509.load_pem_x509_certificate(rec.cert_pem.encode()).public_key()
        msg = envelope.verify(payload, topic, key)  # raises on a forged or misdirected answer
        if topic != commands.response_topic(rec.clinic, device, name) or msg.device != device or msg.kind != name:
            raise envelope.SignatureInvalid("response does not belong to this request")
        return msg.body


def publish_retained(cfg: CentralConfig, topic: str, payload: bytes, timeout: float = 10.0) -> None:
    """Publish one retained message with the central identity (e.g. a new trust list) and wait for PUBACK."""
    client = new_client(f"{cfg.ingest.client_id}-pub-{os.urandom(4).hex()}", cfg.path(cfg.broker.ca),
                        cfg.path(cfg.ingest.cert), cfg.path(cfg.ingest.key))
    b = cfg.broker
    client.connect(b.host, b.port, keepalive=30, properties=connect_properties(0))
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise ConnectionError(f"the broker did not acknowledge {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
