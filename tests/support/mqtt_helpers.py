"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

    def wait_connected(self, timeout: float = 10.0) -> RawClient:
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


TAP_WORKER = 31  # an ingest identity no test runs a worker as: the ACL has its block, init makes no certificate


def central_tap(site: Any, client_id: str = "tap") -> RawClient:
    """A connected client with an ingest worker's rights (reads the whole tree) under an identity of its own, so
    that it takes no running worker's session (the broker binds the client id to the certificate's CN)."""
    from central.site import issue_central_identity

    c = site.config
    pki = c.path("pki")
    name = f"ingest-{TAP_WORKER}"
    issue_central_identity(pki, name, c.ingest.identity(TAP_WORKER))
    return RawClient(c.broker.host, c.broker.port, c.path(c.broker.ca), pki / f"{name}.crt", pki / f"{name}.key",
                     client_id).wait_connected()


class TopicRecordingClient:
    """Stands in for the ingest's paho client: acknowledges nothing, remembers the topics published to."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def ack(self, mid: int, qos: int) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 0, **kwargs: Any) -> None:
        self.published.append(topic)


@contextlib.contextmanager
def running_central(root: Path, db_url: str = "sqlite:central.db", **site_args: Any) -> Iterator[tuple[Any, Any, Any]]:
    """A site under ``root`` with a real Mosquitto (TLS, ACL) and a connected ingest: ``(site, store, ingest)``."""
    from central.broker import BrokerProcess, free_port, write_config
    from central.ingest import Ingest
    from central.site import init_central
    from central.store import open_store

    site = init_central(root / "central", free_port(), db_url=db_url, **site_args)
    store = open_store(site.config.database_url)
    log = root / "mosquitto.log"
    broker = BrokerProcess(write_config(site.config, log), site.config.broker.host, site.config.broker.port, log)
    broker.start()
    ingest = None
    try:
        ingest = Ingest(site.config, open_store(site.config.database_url)).start()
        assert ingest.connected.wait(10)
        yield site, store, ingest
    finally:
        if ingest is not None:
            ingest.stop()
        broker.kill()
        store.close()
