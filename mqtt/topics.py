"""MQTT topic layout under the versioned prefix ``ehc/v1``.

``ehc/v1/<clinic>/<device>/evt/<kind>``   signed results (QoS 1, from the outbox)
``ehc/v1/<clinic>/<device>/status``       retained ``online`` / ``offline`` (last will)
``ehc/v1/<clinic>/<device>/state``        retained signed birth document
``ehc/v1/<clinic>/<device>/health``       periodic signed health report
``ehc/v1/<clinic>/<device>/ack``          central receipts of stored results
``ehc/v1/<clinic>/<device>/cmd/<name>``   commands (MQTT v5 response topic + correlation data)
``ehc/v1/central/status``                 retained ingest session epoch (boxes resend when it changes)
``ehc/v1/central/trust``                  retained signed trust list (issuer keys, revocations)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "ehc/v1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
CHANNELS = frozenset({"evt", "status", "state", "health", "ack", "cmd", "res", "req", "rsp"})
NAMED_CHANNELS = ("evt", "cmd", "res", "req", "rsp")


class TopicError(ValueError):
    """A topic does not follow the ``ehc/v1`` layout."""


def check_name(value: str, what: str) -> str:
    """Validate a clinic, device or kind name (no MQTT wildcards or separators)."""
    if not NAME_RE.match(value):
        raise TopicError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: clinic, device, channel and (for evt/cmd) the kind or command name."""

    clinic: str
    device: str
    channel: str
    name: str | None = None

    def __str__(self) -> str:
        base = f"{PREFIX}/{self.clinic}/{self.device}/{self.channel}"
        return f"{base}/{self.name}" if self.name is not None else base


def event(clinic: str, device: str, kind: str) -> str:
    """Topic of a signed result of ``kind``."""
    return str(Topic(check_name(clinic, "clinic"), check_name(device, "device"), "evt", check_name(kind, "kind")))


def device_topic(clinic: str, device: str, channel: str) -> str:
    """Topic of a per-device channel without a name (status, state, health, ack)."""
    if channel not in CHANNELS or channel in NAMED_CHANNELS:
        raise TopicError(f"channel {channel!r} needs a name or is unknown")
    return str(Topic(check_name(clinic, "clinic"), check_name(device, "device"), channel))


def command(clinic: str, device: str, name: str) -> str:
    """Topic of a command addressed to a device."""
    return str(Topic(check_name(clinic, "clinic"), check_name(device, "device"), "cmd", check_name(name, "command")))


def response(clinic: str, device: str, name: str) -> str:
    """Topic a device answers command ``name`` on."""
    return str(Topic(check_name(clinic, "clinic"), check_name(device, "device"), "res", check_name(name, "command")))


def request(clinic: str, device: str, name: str) -> str:
    """Topic a device sends a request to the central service on (``lookup``)."""
    return str(Topic(check_name(clinic, "clinic"), check_name(device, "device"), "req", check_name(name, "request")))


def reply(clinic: str, device: str, name: str) -> str:
    """Topic the central service answers a device's request ``name`` on."""
    return str(Topic(check_name(clinic, "clinic"), check_name(device, "device"), "rsp", check_name(name, "request")))


def parse(topic: str) -> Topic:
    """Parse a concrete topic; raise :class:`TopicError` when it is not ours."""
    parts = topic.split("/")
    if len(parts) < 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise TopicError(f"not an {PREFIX} topic")
    clinic, device, channel = parts[2], parts[3], parts[4]
    check_name(clinic, "clinic")
    check_name(device, "device")
    if channel not in CHANNELS:
        raise TopicError(f"unknown channel {channel!r}")
    if channel in NAMED_CHANNELS:
        if len(parts) != 6:
            raise TopicError(f"{channel} topic needs exactly one name")
        return Topic(clinic, device, channel, check_name(parts[5], "name"))
    if len(parts) != 5:
        raise TopicError(f"{channel} topic takes no name")
    return Topic(clinic, device, channel)


CENTRAL_STATUS = f"{PREFIX}/central/status"
TRUST_LIST = f"{PREFIX}/central/trust"

# Subscription filters used by the central ingest (shared group) and by a device.
INGEST_SHARE_GROUP = "ehc-ingest"


def ingest_filters(group: str = INGEST_SHARE_GROUP) -> list[str]:
    """Shared-subscription filters for the central ingest workers."""
    return [f"$share/{group}/{PREFIX}/+/+/{ch}" + ("/+" if ch in ("evt", "req") else "")
            for ch in ("evt", "state", "health", "req")] + [
        f"{PREFIX}/+/+/status"
    ]


def proof_topic(clinic: str, device: str, action: str) -> str:
    """The AAD a box signs a renewal or decommission request for (not an MQTT topic anyone publishes on)."""
    return f"ehc/v1/{clinic}/{device}/{action}"
