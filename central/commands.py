"""Send a command to a box and wait for its signed answer (``ehc-central command``, the dashboard).

:class:`CommandRequester` publishes requests on an MQTT session it is given and matches the answers by their
correlation data; the dashboard runs it on its one session (:mod:`central.dashboard.live`), since the
broker gives every certificate exactly one client id. :class:`CommandClient` is a requester with a session
of its own, for the ``ehc-central`` commands (identity ``ehc-central``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509

from central.broker import OPERATOR_ID
from central.config import CentralConfig
from mqtt import commands, envelope, topics
from mqtt.client import connect_properties, new_client

logger = logging.getLogger(__name__)

RESPONSES = f"{topics.PREFIX}/+/+/res/+"


class CommandTimeout(TimeoutError):
    """The box did not answer in time (offline, or busy)."""


class CommandRequester:
    """Requests on a connected paho client; ``get_device`` is the registry lookup (a :class:`DeviceRecord` or None).

    Call :meth:`on_message` for every message on :data:`RESPONSES`; it returns whether the message was an answer
    someone waits for.
    """

    def __init__(self, client: Any, get_device: Callable[[str], Any]) -> None:
        self.client, self.get_device = client, get_device
        self._waiting: dict[bytes, tuple[threading.Event, list[tuple[str, bytes]]]] = {}
        self._lock = threading.Lock()

    def on_message(self, msg: Any) -> bool:
        """Hand an answer to the request waiting for its correlation data."""
        correlation = getattr(msg.properties, "CorrelationData", None)
        with self._lock:
            slot = self._waiting.get(correlation) if isinstance(correlation, bytes) else None
        if slot:
            slot[1].append((msg.topic, bytes(msg.payload)))
            slot[0].set()
        return slot is not None

    def request(self, device: str, name: str, args: dict[str, Any] | None = None,
                timeout: float = 10.0) -> dict[str, Any]:
        """Send ``name`` to a registered device and return the body of its verified response."""
        rec = self.get_device(device)
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


class CommandClient(CommandRequester):
    """A requester with its own MQTT session (the ``ehc-central`` commands' identity by default)."""

    def __init__(self, cfg: CentralConfig, store: Any, cert: Path | None = None, key: Path | None = None,
                 client_id: str = OPERATOR_ID) -> None:
        self.cfg = cfg
        self._connected = threading.Event()
        client = new_client(client_id, cfg.path(cfg.broker.ca), cert or cfg.path(cfg.broker.operator_cert),
                            key or cfg.path(cfg.broker.operator_key))
        super().__init__(client, store.get_device)
        client.on_connect = self._on_connect
        client.on_message = lambda c, u, msg: self.on_message(msg)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(RESPONSES, qos=1)
            self._connected.set()

    def __enter__(self) -> CommandClient:
        b = self.cfg.broker
        self.client.connect(b.host, b.port, keepalive=30, properties=connect_properties(0))
        self.client.loop_start()
        if not self._connected.wait(10):
            self.client.loop_stop()
            raise ConnectionError("could not connect to the broker")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_retained(cfg: CentralConfig, topic: str, payload: bytes, timeout: float = 10.0) -> None:
    """Publish one retained message with the ``ehc-central`` identity (e.g. a new trust list); wait for PUBACK."""
    client = new_client(OPERATOR_ID, cfg.path(cfg.broker.ca), cfg.path(cfg.broker.operator_cert),
                        cfg.path(cfg.broker.operator_key))
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
