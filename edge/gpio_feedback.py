"""The box's signals on the GPIO panel: :class:`GpioFeedback` is the :class:`~edge.feedback.Feedback` of a box
with lights, a buzzer and a button (``[gpio]`` in edge.toml), over :class:`drivers.gpio.GpioPanel`::

    >>> fb = GpioFeedback(GpioSettings(light="leds", buzzer_pin=24, button_pin=25))   # doctest: +SKIP
    >>> fb.on_press(lambda: printer.reprint_last())                                    # doctest: +SKIP
    >>> fb.show(Signal.ACCEPTED)                                                       # doctest: +SKIP

==============  ==================================  ==============  ===============================
signal          light                               sound           how long
==============  ==================================  ==============  ===============================
ready           green steady (dim on an RGB LED)    —               until the next signal
accepted        green                               one short beep  ``hold`` seconds, then back
attention       amber blinking (2 Hz)               two short       ``hold`` seconds, then back
rejected        red steady                          one long beep   ``hold`` seconds, then back
not_recorded    red blinking fast (2 Hz)            one long beep   ``hold`` seconds, then back
fault           red blinking slowly (1 Hz)          —               until the next lasting signal
provisioning    amber and green alternating (1 Hz)  —               until the next signal
prompt          amber                               one short beep  ``hold`` seconds, then back
==============  ==================================  ==============  ===============================

"Back" means back to the last lasting signal (ready, fault or provisioning): a fault stays visible between
scans until the flow shows ``ready`` again. ``ready`` shown while an outcome is on does not cut it short; it
becomes what the light goes back to. Any other signal replaces the one shown at once.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from drivers.gpio import Color, GpioPanel, GpioSettings, Pattern, Sound
from edge.feedback import Signal

PATTERNS: dict[Signal, Pattern] = {
    Signal.READY: Pattern("ready", ((Color.GREEN_DIM, 0),), Sound.NONE, lasting=True, idle=True),
    Signal.ACCEPTED: Pattern("accepted", ((Color.GREEN, 0),), Sound.SHORT, lasting=False),
    Signal.ATTENTION: Pattern("attention", ((Color.AMBER, 1), (Color.OFF, 1)), Sound.TWO_SHORT, lasting=False),
    Signal.REJECTED: Pattern("rejected", ((Color.RED, 0),), Sound.LONG, lasting=False),
    Signal.NOT_RECORDED: Pattern("not_recorded", ((Color.RED, 1), (Color.OFF, 1)), Sound.LONG, lasting=False),
    Signal.FAULT: Pattern("fault", ((Color.RED, 2), (Color.OFF, 2)), Sound.NONE, lasting=True),
    Signal.PROVISIONING: Pattern("provisioning", ((Color.AMBER, 2), (Color.GREEN, 2)), Sound.NONE, lasting=True),
    Signal.PROMPT: Pattern("prompt", ((Color.AMBER, 0),), Sound.SHORT, lasting=False),
}
"""The look and sound of every :class:`~edge.feedback.Signal`."""

_SIGNALS = {pattern: signal for signal, pattern in PATTERNS.items()}


class GpioFeedback:
    """Signals on the GPIO panel (LEDs and buzzer), plus its operator button and presence sensor.

    ``pin_factory`` overrides ``settings.pin_factory`` (tests pass a ``MockFactory`` to inspect the pins).
    """

    def __init__(self, settings: GpioSettings, *, pin_factory: Any = None) -> None:
        self.panel = GpioPanel(settings, pin_factory=pin_factory)
        self.settings = settings
        self.pin_factory = self.panel.pin_factory

    def show(self, signal: Signal) -> None:
        """Show ``signal`` (see the table in the module docstring); returns at once."""
        self.panel.show(PATTERNS[Signal(signal)])

    @property
    def current(self) -> Signal | None:
        """The signal being shown (or about to be); ``None`` when the light is off."""
        pattern = self.panel.current
        return None if pattern is None else _SIGNALS.get(pattern)

    def on_press(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the operator button is pressed (from gpiozero's event thread)."""
        self.panel.on_press(callback)

    def on_hold(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the button is held for ``button_hold`` seconds."""
        self.panel.on_hold(callback)

    def on_presence(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when someone arrives in front of the box and ``callback(False)`` when they leave."""
        self.panel.on_presence(callback)

    def close(self) -> None:
        """Stop the patterns, switch light and buzzer off and release the pins."""
        self.panel.close()

    def __enter__(self) -> GpioFeedback:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
