"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from mqtt.client import connect_properties, new_client


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``cond`` until it is truthy or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RawClient:
    """A bare MQTT v5 client with a box's certificate: publishes whatever a test (or an attacker) wants."""

    def __init__(self, host: str, port: int, ca: Path, cert: Path, key: Path, client_id: str) -> None:
        self.client = new_client(client_id, ca, cert, key)
        self.connected = threading.Event()
        self.refused: list[Any] = []
        self.messages: list[tuple[str, bytes]] = []
        self.suback: list[Any] = []
        self.client.on_connect = lambda c, u, f, rc, p: (self.connected.set() if not rc.is_failure
                                                         else self.refused.append(rc))
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.suback.extend(rcs)
        self.client.connect(host, port, properties=connect_properties(0))
        self.client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> "RawClient":
        assert self.connected.wait(timeout), f"not connected: {self.refused}"
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish and return the PUBACK reason code value (0 = accepted, 135 = not authorised)."""
        codes: list[int] = []
        done = threading.Event()

        def on_publish(c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
            codes.append(rc.value)
            done.set()

        self.client.on_publish = on_publish
        self.client.publish(topic, payload, qos=qos)
        assert done.wait(10), "no PUBACK"
        return codes[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
