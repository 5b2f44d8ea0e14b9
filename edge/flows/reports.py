"""The report desk: a person shows their health card, lays a paper report under the camera, the box reads it.

States (one person at a time)::

    idle --code accepted (green/yellow)--> holder known for `attach_window` s --page read--> report stored,
      ^                                                                               summary printed
      +-- window over, or a red code ------------------------------------------------------+

* A code is verified as at check-in; green or yellow makes its holder the owner of the next pages (only
  the pseudonymous ``card_ref`` goes with the report in clear; the card index, when the verdict has one, only
  in the sealed personal part). Red attaches nobody. Nothing is
  stored for the code itself.
* A page read (:class:`edge.reports.worker.ReportRead`, from the button) becomes a signed ``report`` result,
  with the patient part sealed (``edge/reports/publish.py``), and its summary ticket is printed. The light
  is green, or amber when the risk grade is orange or above (a clinician should look), or when the report
  has no holder.
* A page that cannot be read (too dark, blurred, cut off …) stores nothing and shows amber; the reason and
  the instruction for the person are in the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from edge.feedback import Signal
from edge.flows.base import Event, FlowContext, FlowOutcome, Scan
from edge.payloads import classify_payload
from edge.reports.publish import print_summary, publish_report
from edge.reports.worker import ReportRead
from edge.verify import Outcome

logger = logging.getLogger(__name__)

ATTACH_WINDOW_S = 300.0
ATTENTION_COLOURS = frozenset({"orange", "red", "purple"})


class ReportFlow:
    """Reads, stores and prints medical reports, attached to the card shown before them."""

    name = "report"

    def __init__(self, ctx: FlowContext, *, attach_window: float = ATTACH_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.attach_window = attach_window
        self.clock = clock
        self._holder: dict[str, Any] | None = None
        self._holder_until = 0.0
        self._holder_index: str | None = None

    def handle(self, event: Event | ReportRead) -> FlowOutcome | None:
        if isinstance(event, Scan):
            return self._card(event)
        if isinstance(event, ReportRead):
            return self._page(event)
        return None

    def holder(self) -> dict[str, Any] | None:
        """The pseudonymous references of the person whose pages are being read, while the window lasts."""
        if self._holder is not None and self.clock() > self._holder_until:
            self._holder = None
        return self._holder

    def _card(self, event: Scan) -> FlowOutcome:
        payload = classify_payload(event.text)
        verdict = self.ctx.verifier.verify(payload)
        if verdict.outcome is Outcome.RED:
            self._holder = None
            return FlowOutcome(Signal.REJECTED, reason=verdict.reason, detail={"outcome": "red"})
        ref: dict[str, Any] = {"card_ref": verdict.card_ref, "card_outcome": verdict.outcome.value}
        index = (verdict.claims or {}).get("card_index")
        self._holder, self._holder_until = ref, self.clock() + self.attach_window
        self._holder_index = index
        signal = Signal.ACCEPTED if verdict.outcome is Outcome.GREEN else Signal.ATTENTION
        return FlowOutcome(signal, reason=verdict.reason, detail={"outcome": verdict.outcome.value,
                                                                   "attached": True})

    def _page(self, event: ReportRead) -> FlowOutcome:
        if event.report is None:
            return FlowOutcome(Signal.ATTENTION, reason=event.problem,
                               detail={"instruction": event.instruction, "read_ms": round(event.read_ms)})
        report = event.report
        holder = self.holder()
        extra = {"flow": "report", **(holder or {"card_ref": None})}
        sealed_extra = {"card_index": self._holder_index} if holder is not None and self._holder_index else None
        msg, error = publish_report(self.ctx, report, extra=extra, extra_personal=sealed_extra)
        if msg is None:
            return FlowOutcome(Signal.NOT_RECORDED, reason=error)
        if holder is not None:  # more pages of the same person may follow
            self._holder_until = self.clock() + self.attach_window
        ticket = print_summary(self.ctx, report)
        colour = report.risk.colour
        attention = colour in ATTENTION_COLOURS or report.risk.also is not None or holder is None
        reason = "no_card" if holder is None else (f"risk_{colour}" if attention else None)
        logger.info("report %s stored: %s, %d items, risk %s", msg.msg_id, report.kind, len(report.items), colour)
        return FlowOutcome(Signal.ATTENTION if attention else Signal.ACCEPTED, reason=reason,
                           message_id=str(msg.msg_id), ticket=ticket,
                           detail={"kind": report.kind, "items": len(report.items), "risk": colour,
                                   "missing": len(report.missing), "read_ms": round(event.read_ms)})
