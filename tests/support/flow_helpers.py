"""Recording stand-ins for the lights and the printer, and a real signed outbox, for flow tests."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.feedback import Signal
from edge.flows.base import FlowContext, Scan
from edge.symbology import Symbology
from mqtt import envelope, sealed, topics
from mqtt.outbox import DeviceIdentity, Outbox

CENTRAL_SEAL = sealed.generate_key()  # the central service's X25519 key, for flows that seal card indexes


class RecordingFeedback:
    """Remembers every signal shown."""

    def __init__(self) -> None:
        self.shown: list[Signal] = []

    def show(self, signal: Signal) -> None:
        self.shown.append(signal)


class RecordingTickets:
    """Remembers every ticket submitted."""

    def __init__(self) -> None:
        self.tickets: list[tuple[str, dict[str, Any]]] = []

    def submit(self, kind: str, fields: Mapping[str, Any]) -> str:
        self.tickets.append((kind, dict(fields)))
        return f"job-{len(self.tickets)}"


class FakeWallClock:
    """Wall-clock seconds that tests move by hand."""

    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_box(path: Path, key: Any, max_bytes: int = 256 * 1024 * 1024) -> Outbox:
    box = Outbox(path, DeviceIdentity("box-1", "clinic-a", key), max_bytes=max_bytes)
    box.start_boot()
    return box


def make_ctx(box: Outbox, clock: FakeWallClock | None = None) -> FlowContext:
    return FlowContext(box, RecordingFeedback(), RecordingTickets(), clinic="clinic-a",
                       wall_clock=clock or FakeWallClock())


def with_seal(box: Outbox) -> Outbox:
    """The box, now holding the central sealing key (:data:`CENTRAL_SEAL`)."""
    box.seal_key = CENTRAL_SEAL.public_key()
    return box


def personal(msg: envelope.Message, clinic: str = "clinic-a", device: str = "box-1") -> dict[str, Any]:
    """The opened sealed part of a stored result ({} when it has none)."""
    if "personal" not in msg.body:
        return {}
    topic = topics.event(clinic, device, msg.kind)
    return sealed.open_sealed(msg.body["personal"], CENTRAL_SEAL, topic, msg.msg_id.bytes)


def stored(box: Outbox, key: Any) -> list[envelope.Message]:
    """Every message in the outbox, signature-checked."""
    return [envelope.verify(r.payload, r.topic, key.public_key()) for r in box.pending(limit=10_000)]


def qr(text: str) -> Scan:
    return Scan(text=text, symbology=Symbology.QR, decoder="zxing-cpp", decode_ms=1.0, frame_at=time.perf_counter())


def tube(text: str, symbology: Symbology = Symbology.CODE128) -> Scan:
    return Scan(text=text, symbology=symbology, decoder="zxing-cpp", decode_ms=1.0, frame_at=time.perf_counter())
