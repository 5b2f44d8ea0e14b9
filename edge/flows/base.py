"""What every flow shares: the events it is driven by, what it answers, and what it may use."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.documents.page import PageCapture
from edge.feedback import Feedback, NoFeedback, NoPrinter, Signal, TicketSink
from edge.identity import PresentedId, pseudonym
from edge.symbology import Symbology
from edge.verify import FormVerifier, Verifier
from mqtt import envelope
from mqtt.outbox import NoSealKey, Outbox, OutboxError, OutboxFull, StateChange

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scan:
    """A new (not repeated) code read by the camera. ``text`` is personal data: never log it.

    ``frame_at`` is the ``time.perf_counter()`` at which the frame was taken from the camera, so the
    time from frame to outcome can be measured.
    """

    text: str = field(repr=False)
    symbology: Symbology
    decoder: str
    decode_ms: float
    frame_at: float


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """The operator pressed a button (``"close"``: close the tube, ``"reprint"``, ``"ack"``)."""

    button: str = "close"
    at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class IdPresented:
    """An identity document was read (ID card on the reader, or a passport's MRZ under the camera).
    ``page``: for a zone read by the camera, the frame it was read in (the identity desk takes the portrait)."""

    identity: PresentedId
    page: PageCapture | None = field(default=None, repr=False)

    @property
    def at(self) -> float:
        return self.identity.at


Event = Scan | ButtonPress | IdPresented


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """What a flow decided for one event: the signal to show and, if stored, the result's id.

    ``reason`` is a stable name (null when all is well); ``detail`` holds counters for status lines
    and tests (never personal data).
    """

    signal: Signal
    reason: str | None = None
    message_id: str | None = None
    ticket: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Flow(Protocol):
    """A state machine fed one event at a time by the runner."""

    name: str

    def handle(self, event: Event) -> FlowOutcome | None:
        """React to ``event``; None when it means nothing to this flow."""
        ...


@dataclass
class FlowContext:
    """The box parts a flow may use: the signed outbox, lights and sound, the printer, the verifier."""

    outbox: Outbox
    feedback: Feedback = field(default_factory=NoFeedback)
    tickets: TicketSink = field(default_factory=NoPrinter)
    verifier: Verifier = field(default_factory=FormVerifier)
    clinic: str = ""
    wall_clock: Callable[[], float] = time.time
    pseudonym_key: bytes | None = field(default=None, repr=False)
    send_id_number: bool = False

    def identity_ref(self, identity: PresentedId) -> dict[str, Any]:
        """What leaves the box in clear about a document: ``id_ref`` (the keyed pseudonym, or null without
        a key)."""
        ref = pseudonym(self.pseudonym_key, identity.document, identity.number) if self.pseudonym_key else None
        return {"id_ref": ref}

    def identity_personal(self, identity: PresentedId) -> dict[str, Any] | None:
        """The personal fields of a document that go to the central service sealed, only where the clinic's
        configuration asks for them (``[identity] send_id_number``): ``id_number``; else None."""
        return {"id_number": identity.number} if self.send_id_number else None

    def publish(self, kind: str, body: dict[str, Any], also: StateChange | None = None,
                personal: dict[str, Any] | None = None) -> tuple[envelope.Message | None, str | None]:
        """Sign and store one result (with ``also`` in the same transaction).

        ``personal``: fields that identify a person (names, ID numbers, birth dates). They are sealed to the
        central service's key inside the signed body (``body["personal"]``); the broker sees only the
        ciphertext. ``body`` itself must hold pseudonyms only.

        Returns ``(message, None)``, or ``(None, "outbox_full" | "outbox_error" | "no_seal_key")`` when it
        could not be stored, in which case the person must be told it was not recorded.
        """
        try:
            return self.outbox.enqueue(kind, body, also=also, personal=personal), None
        except OutboxError as exc:
            what = ("outbox_full" if isinstance(exc, OutboxFull) else
                    "no_seal_key" if isinstance(exc, NoSealKey) else "outbox_error")
            logger.error("%s result NOT recorded (%s: %s)", kind, what, exc)
            return None, what

    def print_ticket(self, kind: str, fields: dict[str, Any]) -> str | None:
        """Queue a ticket and link the job into the audit chain (template and job id only, never the
        fields); a printer failure is logged and never loses the result."""
        try:
            job = self.tickets.submit(kind, fields) or None
        except Exception:
            logger.exception("%s ticket could not be queued", kind)
            return None
        self.audit("print", {"template": kind, "job": job})
        return job

    def audit(self, kind: str, facts: dict[str, Any]) -> bool:
        """Link an event into the box's audit chain (facts without personal data); False when it failed."""
        try:
            self.outbox.audit(kind, facts)
            return True
        except OutboxError as exc:
            logger.error("%s event not written to the audit log: %s", kind, exc)
            return False
