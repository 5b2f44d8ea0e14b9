"""paho-mqtt 2.x client set up the one way this project uses it: MQTT v5 over mutual TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Client TLS context: TLS >= 1.2, server verified against our CA (host name checked), client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def new_client(client_id: str, ca: Path, cert: Path, key: Path, *, manual_ack: bool = False,
               max_inflight: int = 0) -> paho.Client:
    """An MQTT v5 client with mutual TLS; not yet connected.

    ``max_inflight=0`` turns paho's own in-flight queue off: with a limit, paho rescans every queued
    message on each PUBACK (quadratic at a full window), so the uplink keeps its own window instead.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                         manual_ack=manual_ack)
    client.tls_set_context(tls_context(ca, cert, key))
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    return client


def connect_properties(session_expiry: int, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties: keep the session (and its queued messages) for ``session_expiry`` seconds."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return props
