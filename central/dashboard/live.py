"""The dashboard's MQTT session: retained status, birth and health of every box as they arrive, and commands.

It connects with the dashboard's own certificate (CN ``ehc-dashboard``, which is also its client id: the
broker allows one session per certificate), outside the ingest's shared group, so it sees every message
without taking any from the ingest. The ACL lets it read status, birth, health and command answers, and
write commands. Status is the box's (or, as its last will, the broker's) retained ``online`` / ``offline``;
birth and health documents are verified against the registered device key like the ingest does. Each
accepted message updates the :class:`~central.dashboard.fleet.Fleet` overlay and is pushed to the
open pages. Remote commands go out over the same session (:attr:`FleetWatcher.commands`).

A message that cannot be handled is logged and dropped: nothing one box sends stops the watcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from central.broker import DASHBOARD_ID
from central.commands import RESPONSES, CommandRequester
from central.config import CentralConfig
from central.dashboard.fleet import Fleet
from central.ingest import PRESENCE_VALUES, RejectedMessage, Verifier
from mqtt import topics
from mqtt.client import connect_properties, new_client

logger = logging.getLogger(__name__)

CHANNELS = ("status", "state", "health")


class _RegistryView:
    """What the verifier needs of the store: thread-safe ``get_device``."""

    def __init__(self, get_device: Callable[[str], Any]) -> None:
        self.get_device = get_device


class FleetWatcher:
    """Subscribes to status, state and health of all boxes; calls ``on_change(device_id)`` after each."""

    def __init__(self, cfg: CentralConfig, fleet: Fleet, on_change: Callable[[str], None]) -> None:
        self.cfg, self.fleet, self.on_change = cfg, fleet, on_change
        registry = _RegistryView(fleet.accounts.get_device)
        self.verifier = Verifier(registry, cfg.broker.max_message_bytes)  # type: ignore[arg-type]
        self.connected = threading.Event()
        self.client = new_client(DASHBOARD_ID, cfg.path(cfg.broker.ca), cfg.path(cfg.dashboard.mqtt_cert),
                                 cfg.path(cfg.dashboard.mqtt_key))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)
        self.commands = CommandRequester(self.client, fleet.accounts.get_device)
        self.ignored = 0

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("dashboard watcher: broker refused the connection: %s", reason)
            return
        client.subscribe([(f"{topics.PREFIX}/+/+/{ch}", 1) for ch in CHANNELS] + [(RESPONSES, 1)])
        self.connected.set()
        logger.info("dashboard watcher connected")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # paho's network thread: an exception here would end the session's loop, so nothing escapes.
        try:
            if topics.PREFIX + "/" in msg.topic and "/res/" in msg.topic:
                self.commands.on_message(msg)
                return
            device = self.handle(msg.topic, bytes(msg.payload))
            if device is not None:
                self.on_change(device)
        except Exception as exc:  # one bad message must not stop the watcher
            self.ignored += 1
            logger.error("dashboard watcher: message on %s not handled: %s: %s", msg.topic[:128],
                         type(exc).__name__, str(exc)[:200])

    def handle(self, topic: str, payload: bytes) -> str | None:
        """Check one message and apply it to the fleet; returns the device it changed, or None."""
        if not payload:  # a cleared retained message
            return None
        try:
            t, key = self.verifier.check(topic, payload)
            if t.channel == "status":
                value = payload.decode("ascii", "replace")
                if value not in PRESENCE_VALUES:
                    raise RejectedMessage("bad_status", t.device)
                self.fleet.apply(t.device, presence=value)
                return t.device
            if t.channel not in ("state", "health"):
                return None
            body = self.verifier.open(t, key, topic, payload).body
        except RejectedMessage as rej:
            logger.info("dashboard watcher ignored a message: %s", rej.reason)
            return None
        self.fleet.apply(t.device, **{t.channel: body})
        return t.device

    def start(self) -> FleetWatcher:
        """Connect in the background (retrying)."""
        b = self.cfg.broker
        self.client.connect_async(b.host, b.port, keepalive=30, properties=connect_properties(0))
        self.client.loop_start()
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
