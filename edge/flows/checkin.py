"""Clinic check-in: a person holds up a code; the box says green, yellow or red and prints a queue ticket.

For every :class:`~edge.flows.base.Scan` (a code held up):

    classify (:func:`edge.payloads.classify_payload`)
      -> verify (:class:`edge.verify.Verifier`)
      -> store a signed ``scan`` result (with the day's next queue number for green and yellow)
      -> signal: green = accepted, yellow = attention, red = rejected, not stored = not_recorded
      -> queue ticket for green and yellow (only once the result is stored)

For every :class:`~edge.flows.base.IdPresented` (an ID card on the reader, a passport's MRZ): a number
that does not validate is red (the validation code is the reason); an expired document is yellow
``document_expired``; otherwise the holder's health card is looked up online by the number's pseudonym
(:meth:`edge.credentials.verifier.TrustedVerifier.verify_identity`): the card's colour, yellow ``no_health_card``
when the person has none, red for a suspended card, yellow ``lookup_unavailable`` without an answer;
without a lookup, green with ``pending = "online_lookup"``. The result carries ``kind`` (``id_card`` / ``mrz``), ``document`` (card type or
MRZ document code) and ``id_ref``, the keyed pseudonym of the number (:func:`edge.identity.pseudonym`),
plus, only where ``[identity] send_id_number`` is set, ``id_number`` in the sealed ``personal`` part
(:meth:`edge.flows.base.FlowContext.publish`; refused ``no_seal_key`` on a box without the central sealing
key); the receipt shows the name and number
masked (``张*丰``, ``1101**********002X``).

Only a stored result may be shown as accepted. Queue numbers restart every day (box local date) and
survive restarts: the counter lives in the outbox database and moves in the same transaction as the
result that used it.

The ``scan`` body never holds the payload text. Its fields:

==============  ==============================================================================
flow            ``"checkin"``
outcome         ``"green"``, ``"yellow"`` or ``"red"``
reason          why not green (a stable name), or null
kind            :class:`~edge.payloads.PayloadKind` value
card_ref        keyed pseudonym of the card (:func:`edge.verify.card_ref`; health-card tokens only)
code_type       the token's code type (health-card tokens only)
verified        true only when a verifier checked a signature or the platform answered
pending         what is still to be done centrally (``"online_lookup"``), or null
queue_no        the queue number printed on the ticket (green and yellow), or null
decoder         ``"zxing-cpp"`` or ``"zbar"``
decode_ms       time to decode the frame, in milliseconds
==============  ==============================================================================

When the online lookup could not be made, the token's 64-hex card index goes in the sealed ``personal``
part (``{"card_index": …}``), so that the central service can resolve the card later while the broker sees
only ``card_ref``. A box without the central sealing key records such a scan without the index (it cannot
be resolved centrally, but the person is checked in and the index never travels in clear).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from edge.feedback import Signal
from edge.flows.base import Event, FlowContext, FlowOutcome, IdPresented, Scan
from edge.identity import PresentedId, mask_name, mask_number
from edge.payloads import classify_payload
from edge.verify import Outcome, Verdict

logger = logging.getLogger(__name__)

SCAN_KIND = "scan"
_SCHEMA = "CREATE TABLE IF NOT EXISTS flow_counters (name TEXT PRIMARY KEY, day TEXT NOT NULL, n INTEGER NOT NULL)"
_TICKET_OUTCOME = {Outcome.GREEN: "已登记 Registered", Outcome.YELLOW: "待核验 To be checked"}
_SIGNALS = {Outcome.GREEN: Signal.ACCEPTED, Outcome.YELLOW: Signal.ATTENTION, Outcome.RED: Signal.REJECTED}


class CheckinFlow:
    """The clinic check-in state machine (idle -> verify -> record -> show, for each scan)."""

    name = "checkin"

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        ctx.outbox.state(lambda conn: conn.execute(_SCHEMA))

    def handle(self, event: Event) -> FlowOutcome | None:
        if isinstance(event, IdPresented):
            return self._identity(event.identity)
        if not isinstance(event, Scan):
            return None
        payload = classify_payload(event.text)
        verdict = self.ctx.verifier.verify(payload)
        return self._record(
            verdict, lambda number: self._body(event, payload.kind.value, verdict, number), f"kind={payload.kind}",
            lambda number: ("queue", {
                "clinic": self.ctx.clinic, "number": number, "outcome": _TICKET_OUTCOME[verdict.outcome],
                "time": self._time(), "note": "" if verdict.outcome is Outcome.GREEN else "请到服务台 Please see the desk"}),
            personal=self._card_personal(verdict))

    def _card_personal(self, verdict: Verdict) -> dict[str, Any] | None:
        """The card index to seal for a later central lookup, or None (none to send, or no sealing key)."""
        index = (verdict.claims or {}).get("card_index")
        if index is None:
            return None
        if getattr(self.ctx.outbox, "seal_key", None) is None:
            logger.warning("scan recorded without its card index: this box has no central sealing key")
            return None
        return {"card_index": index}

    def _identity(self, identity: PresentedId) -> FlowOutcome:
        online = getattr(self.ctx.verifier, "verify_identity", None)
        ref = self.ctx.identity_ref(identity) if identity.valid else {"id_ref": None}
        if not identity.valid:
            verdict = Verdict(Outcome.RED, reason=identity.code)
        elif identity.expired:
            verdict = Verdict(Outcome.YELLOW, reason="document_expired", pending="online_lookup")
        elif online is not None and ref["id_ref"] is not None:
            verdict = online(ref["id_ref"], identity.source == "id_card")
        else:
            verdict = Verdict(Outcome.GREEN, pending="online_lookup", verified=identity.source == "id_card")
        return self._record(
            verdict, lambda number: {
                "flow": "checkin", "outcome": verdict.outcome.value, "reason": verdict.reason, "kind": identity.source,
                "document": identity.document, **ref, "verified": verdict.verified, "pending": verdict.pending,
                "queue_no": number},
            f"{identity.source} {identity.document}",
            lambda number: ("registration", {
                "name": mask_name(identity.name), "id_masked": mask_number(identity.number), "time": self._time(),
                "outcome": f"{_TICKET_OUTCOME[verdict.outcome]}  #{number}"}),
            personal=self.ctx.identity_personal(identity) if identity.valid else None)

    def _record(self, verdict: Verdict, body_for: Callable[[int | None], dict[str, Any]], what: str,
                ticket_for: Callable[[int], tuple[str, dict[str, Any]]],
                personal: dict[str, Any] | None = None) -> FlowOutcome:
        """Store the result (with the day's next queue number unless red), then print its ticket."""
        number = self._next_number() if verdict.outcome is not Outcome.RED else None
        msg, error = self.ctx.publish(SCAN_KIND, body_for(number), also=self._use_number(number) if number else None,
                                      personal=personal)
        if msg is None:
            return FlowOutcome(Signal.NOT_RECORDED, reason=error, detail={"outcome": verdict.outcome.value})
        logger.info("check-in %s: %s outcome=%s reason=%s", msg.msg_id, what, verdict.outcome, verdict.reason)
        ticket = self.ctx.print_ticket(*ticket_for(number)) if number is not None else None
        return FlowOutcome(_SIGNALS[verdict.outcome], reason=verdict.reason, message_id=str(msg.msg_id),
                           ticket=ticket, detail={"outcome": verdict.outcome.value, "queue_no": number})

    def _time(self) -> str:
        return dt.datetime.fromtimestamp(self.ctx.wall_clock()).strftime("%Y-%m-%d %H:%M")

    @staticmethod
    def _body(event: Scan, kind: str, verdict: Verdict, number: int | None) -> dict[str, Any]:
        return {
            "flow": "checkin",
            "outcome": verdict.outcome.value,
            "reason": verdict.reason,
            "kind": kind,
            "card_ref": verdict.card_ref,
            "code_type": verdict.code_type,
            "verified": verdict.verified,
            "pending": verdict.pending,
            "queue_no": number,
            "decoder": event.decoder,
            "decode_ms": round(event.decode_ms, 2),
        }

    def _today(self) -> str:
        return dt.datetime.fromtimestamp(self.ctx.wall_clock()).date().isoformat()

    def _next_number(self) -> int:
        row = self.ctx.outbox.state(lambda conn: conn.execute(
            "SELECT day, n FROM flow_counters WHERE name = 'queue'").fetchone())
        return row[1] + 1 if row and row[0] == self._today() else 1

    def _use_number(self, number: int) -> Any:
        day = self._today()

        def change(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO flow_counters (name, day, n) VALUES ('queue', ?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET day = excluded.day, n = excluded.n", (day, number))
        return change
