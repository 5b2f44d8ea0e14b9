"""What the box tells the people in front of it: signals for lights and sound, and tickets to print.

Flows speak only in :class:`Signal` and ticket requests; :mod:`edge.gpio_feedback` decides how a signal looks
and sounds on the GPIO panel (:mod:`drivers.gpio`), and the printer driver how a ticket is laid out and printed
(:mod:`drivers.printer`). Both calls must return at once: a driver that needs time (a blink pattern, a print job) does the work in its own thread.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class Signal(enum.StrEnum):
    """A meaning the box shows on its LEDs and buzzer.

    ==============  ========================================================================
    ready           idle and working: camera delivers frames, results can be stored
    accepted        green + short beep: the code or card was accepted and the result stored
    attention       amber blink + two short beeps: staff should look (yellow outcome, tube
                    full, tube already open, printer paper low)
    rejected        red + long beep: refused, and the refusal is stored
    not_recorded    red blink + long beep: the result could NOT be stored; scan again or call staff
    fault           red blink until cleared: a device fault (camera, printer, storage)
    provisioning    provisioning mode: the box waits for a technician
    prompt          amber + short beep: do the next step the identity desk asks (a face challenge)
    ==============  ========================================================================
    """

    READY = "ready"
    ACCEPTED = "accepted"
    ATTENTION = "attention"
    REJECTED = "rejected"
    NOT_RECORDED = "not_recorded"
    FAULT = "fault"
    PROVISIONING = "provisioning"
    PROMPT = "prompt"


class Feedback(Protocol):
    """Lights and sound (:class:`edge.gpio_feedback.GpioFeedback` on a box)."""

    def show(self, signal: Signal) -> None:
        """Show ``signal``; returns at once (patterns run in the driver's own thread)."""
        ...


class TicketSink(Protocol):
    """Where tickets go (:class:`drivers.printer.TicketPrinter` on a box).

    ``kind`` names a ticket template (``queue``, ``pool``, ``selftest``, ``registration``, ``report``);
    ``fields`` fills it. The job is stored before :meth:`submit` returns and printed in order later.
    """

    def submit(self, kind: str, fields: Mapping[str, Any]) -> str:
        """Queue one ticket; returns its job id."""
        ...


class NoFeedback:
    """A box without lights: signals are only logged at debug level."""

    def show(self, signal: Signal) -> None:
        logger.debug("signal %s (no lights configured)", signal)


class NoPrinter:
    """A box without a printer: tickets are not printed; returns an empty job id."""

    def submit(self, kind: str, fields: Mapping[str, Any]) -> str:
        logger.debug("ticket %s not printed (no printer configured)", kind)
        return ""
