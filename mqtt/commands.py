"""Commands to a box over MQTT v5 request/response, the same shape on both sides.

Request: ``ehc/v1/<clinic>/<device>/cmd/<name>``, payload CBOR map of arguments, properties
``ResponseTopic = ehc/v1/<clinic>/<device>/res/<name>`` and ``CorrelationData`` (16 random bytes).
Response: a signed envelope (kind = command name, seq 0) on the response topic, echoing the correlation
data. A box answers only on its own ``res/<name>`` topic, so it cannot be used to write elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from foundation import strictcbor
from mqtt import topics

MAX_ARGS_BYTES = 4096


class CommandError(ValueError):
    """A command request or response is malformed."""


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded command request."""

    name: str
    args: dict[str, Any]
    response_topic: str
    correlation: bytes


def response_topic(clinic: str, device: str, name: str) -> str:
    """Where a box answers command ``name``."""
    return topics.response(clinic, device, name)


def request_properties(clinic: str, device: str, name: str, correlation: bytes) -> Properties:
    """PUBLISH properties of a command request."""
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic(clinic, device, name)
    props.CorrelationData = correlation
    return props


def response_properties(correlation: bytes) -> Properties:
    """PUBLISH properties of a command response."""
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = correlation
    return props


def decode_request(topic: str, payload: bytes, props: Any, clinic: str, device: str) -> Command:
    """Check a request addressed to this box; raise :class:`CommandError` when it is not usable."""
    try:
        t = topics.parse(topic)
    except topics.TopicError as exc:
        raise CommandError(str(exc)) from None
    if t.channel != "cmd" or t.clinic != clinic or t.device != device or t.name is None:
        raise CommandError("not a command for this box")
    expected = response_topic(clinic, device, t.name)
    reply_to = getattr(props, "ResponseTopic", None)
    correlation = getattr(props, "CorrelationData", None)
    if reply_to != expected:
        raise CommandError("response topic must be this box's res/<name> topic")
    if not isinstance(correlation, bytes) or not 1 <= len(correlation) <= 64:
        raise CommandError("correlation data missing or longer than 64 bytes")
    if len(payload) > MAX_ARGS_BYTES:
        raise CommandError("arguments too large")
    try:
        args = strictcbor.loads(payload, max_bytes=MAX_ARGS_BYTES, max_depth=8, max_items=1024) if payload else {}
    except strictcbor.CborRefused as exc:
        raise CommandError(f"arguments are not CBOR ({exc.reason})") from None
    if not isinstance(args, dict):
        raise CommandError("arguments must be a map")
    return Command(t.name, args, expected, correlation)
