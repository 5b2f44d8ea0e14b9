"""Lights, buzzer, operator button and presence sensor on the Pi's GPIO header, through gpiozero.

:class:`GpioPanel` is the hardware panel: it plays :class:`Pattern` objects (light frames, a sound, how long
they stay) and reports the button and the presence sensor. :meth:`GpioPanel.show` returns at once; one
thread (``feedback``) plays the light pattern and gpiozero's own background thread plays the beeps::

    >>> panel = GpioPanel(GpioSettings(light="leds", buzzer_pin=24, button_pin=25))           # doctest: +SKIP
    >>> panel.on_press(lambda: printer.reprint_last())                                          # doctest: +SKIP
    >>> panel.show(Pattern("ok", ((Color.GREEN, 0),), Sound.SHORT, lasting=False))              # doctest: +SKIP

The status light is three LEDs (red, amber, green) or one RGB LED driven by PWM (``light = "rgb"``).
A *lasting* pattern stays until the next one; a passing one stays ``hold`` seconds, then the light goes back
to the last lasting pattern. A lasting pattern marked ``idle`` shown while a passing one is on does not cut it
short; it becomes what the light goes back to. Any other pattern replaces the one shown at once. What each
box signal looks like is :mod:`edge.gpio_feedback`'s mapping.

Tests use gpiozero's ``MockFactory`` (``pin_factory = "mock"``, or pass a factory) and read the pins'
``states`` history.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from pydantic import Field, model_validator

from foundation.configbase import StrictModel

logger = logging.getLogger(__name__)

BCM_PINS = range(0, 28)  # GPIO0..GPIO27 on the 40-pin header


NO_PIN_FACTORY = ("no GPIO pin factory: gpiozero drives a Raspberry Pi 5's header (RP1) only through lgpio, "
                  "apt package python3-lgpio from the Raspberry Pi OS archive, seen from the venv through its "
                  "system site packages (scripts/install.sh does both on a Pi; docs/hardware.md). "
                  "Not on a Pi: set [gpio] pin_factory = \"mock\"")


class GpioError(RuntimeError):
    """The GPIO header cannot be driven (no pin factory); the message says what to install."""

class GpioSettings(StrictModel):
    """Wiring of the status light, buzzer, button and presence sensor (BCM numbers; ``[gpio]`` in edge.toml)."""

    light: Literal["leds", "rgb"] = Field("leds", description="Three LEDs (red, amber, green) or one RGB LED (PWM)")
    red_pin: int = Field(17, description="Red LED, or the red channel of the RGB LED")
    amber_pin: int | None = Field(None, description="Amber LED (light = 'leds'; default 27)")
    green_pin: int = Field(22, description="Green LED, or the green channel of the RGB LED")
    blue_pin: int | None = Field(None, description="Blue channel of the RGB LED (light = 'rgb'; default 27)")
    active_high: bool = Field(True, description="LEDs light when the pin is high; false for a common-anode RGB LED")
    ready_brightness: float = Field(0.2, gt=0, le=1, description="Green level for 'ready' on an RGB LED")
    buzzer_pin: int | None = Field(24, description="Active buzzer (through a transistor)")
    buzzer_active_high: bool = Field(True, description="The buzzer sounds when the pin is high")
    button_pin: int | None = Field(25, description="Operator button to ground (internal pull-up)")
    button_pull_up: bool = Field(True, description="Button wired to ground (true) or to 3V3 (false)")
    presence_pin: int | None = Field(None, description="Presence sensor output (PIR / radar module); none if absent")
    presence_active_high: bool = Field(True, description="The sensor drives its pin high when someone is there")
    pin_factory: Literal["auto", "mock"] = Field("auto", description="'auto' (lgpio on a Pi) or 'mock' (tests, demo)")
    hold: float = Field(3.0, gt=0, le=60, description="Seconds an outcome (accepted, rejected …) stays visible")
    blink: float = Field(0.25, gt=0, le=5, description="Half period of a fast blink, in seconds")
    short_beep: float = Field(0.08, gt=0, le=5, description="Length of a short beep and of the gap between beeps")
    long_beep: float = Field(0.6, gt=0, le=5, description="Length of a long beep")
    button_hold: float = Field(2.0, gt=0, le=30, description="Seconds the button must be held for on_hold")
    debounce: float = Field(0.05, ge=0, le=1, description="Button and sensor debounce time in seconds (0: off)")

    @model_validator(mode="before")
    @classmethod
    def _third_pin(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            key = "blue_pin" if data.get("light") == "rgb" else "amber_pin"
            data.setdefault(key, 27)
        return data

    @model_validator(mode="after")
    def _pins(self) -> GpioSettings:
        if self.light == "leds" and (self.amber_pin is None or self.blue_pin is not None):
            raise ValueError("light = 'leds' needs amber_pin and no blue_pin")
        if self.light == "rgb" and (self.blue_pin is None or self.amber_pin is not None):
            raise ValueError("light = 'rgb' needs blue_pin and no amber_pin")
        pins = [p for p in (self.red_pin, self.amber_pin, self.green_pin, self.blue_pin, self.buzzer_pin,
                            self.button_pin, self.presence_pin) if p is not None]
        bad = [p for p in pins if p not in BCM_PINS]
        if bad:
            raise ValueError(f"pin {bad[0]} is not a BCM GPIO number (0-27)")
        dup = sorted({p for p in pins if pins.count(p) > 1})
        if dup:
            raise ValueError(f"pin {dup[0]} is used twice")
        return self


class Color(enum.Enum):
    """What the status light shows."""

    OFF = "off"
    GREEN = "green"
    GREEN_DIM = "green_dim"
    AMBER = "amber"
    RED = "red"


class Sound(enum.Enum):
    """What the buzzer plays."""

    NONE = "none"
    SHORT = "short"
    TWO_SHORT = "two_short"
    LONG = "long"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A look and sound. Frame durations count ``blink`` periods; a single frame is steady.

    ``lasting``: stays until the next pattern (else ``hold`` seconds, then back to the last lasting one);
    ``idle``: a lasting pattern that lets a passing one finish instead of cutting it short.
    """

    name: str
    frames: tuple[tuple[Color, int], ...]
    sound: Sound
    lasting: bool
    idle: bool = False


class _ThreeLeds:
    def __init__(self, s: GpioSettings, factory: Any) -> None:
        from gpiozero import LED

        assert s.amber_pin is not None
        self.leds = {c: LED(pin, active_high=s.active_high, initial_value=False, pin_factory=factory)
                     for c, pin in ((Color.RED, s.red_pin), (Color.AMBER, s.amber_pin), (Color.GREEN, s.green_pin))}

    def set(self, color: Color) -> None:
        target = Color.GREEN if color is Color.GREEN_DIM else color
        for c, led in self.leds.items():  # off first, so two colours are never lit together
            if c is not target:
                led.off()
        if target in self.leds:
            self.leds[target].on()

    def close(self) -> None:
        for led in self.leds.values():
            led.close()


class _RgbLed:
    def __init__(self, s: GpioSettings, factory: Any) -> None:
        from gpiozero import RGBLED

        self.rgb = RGBLED(s.red_pin, s.green_pin, s.blue_pin, active_high=s.active_high, pwm=True,
                          pin_factory=factory)
        self.values = {Color.OFF: (0.0, 0.0, 0.0), Color.GREEN: (0.0, 1.0, 0.0),
                       Color.GREEN_DIM: (0.0, s.ready_brightness, 0.0), Color.AMBER: (1.0, 0.5, 0.0),
                       Color.RED: (1.0, 0.0, 0.0)}

    def set(self, color: Color) -> None:
        self.rgb.value = self.values[color]

    def close(self) -> None:
        self.rgb.close()


class GpioPanel:
    """Patterns on LEDs and a buzzer, plus the operator button and presence sensor.

    ``pin_factory`` overrides ``settings.pin_factory`` (tests pass a ``MockFactory`` to inspect the pins).

    >>> from gpiozero.pins.mock import MockFactory, MockPWMPin
    >>> factory = MockFactory(pin_class=MockPWMPin)
    >>> with GpioPanel(GpioSettings(), pin_factory=factory) as panel:
    ...     panel.show(Pattern("on", ((Color.GREEN, 0),), Sound.NONE, lasting=True))
    """

    def __init__(self, settings: GpioSettings, *, pin_factory: Any = None) -> None:
        from gpiozero import Button, Buzzer, DigitalInputDevice

        self.settings = s = settings
        if pin_factory is None and s.pin_factory == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            pin_factory = MockFactory(pin_class=MockPWMPin)
        from gpiozero.exc import BadPinFactory

        try:  # the first device loads gpiozero's default factory: lgpio first, the only one a Pi 5 has
            self._light: _ThreeLeds | _RgbLed = (_RgbLed if s.light == "rgb" else _ThreeLeds)(s, pin_factory)
        except BadPinFactory as exc:
            raise GpioError(NO_PIN_FACTORY) from exc
        self._buzzer = None if s.buzzer_pin is None else Buzzer(
            s.buzzer_pin, active_high=s.buzzer_active_high, initial_value=False, pin_factory=pin_factory)
        self._press: list[Callable[[], None]] = []
        self._hold: list[Callable[[], None]] = []
        self._presence: list[Callable[[bool], None]] = []
        self._button = None
        if s.button_pin is not None:
            self._button = Button(s.button_pin, pull_up=s.button_pull_up, bounce_time=s.debounce or None,
                                  hold_time=s.button_hold, pin_factory=pin_factory)
            self._button.when_pressed = lambda: self._fire(self._press, "button")
            self._button.when_held = lambda: self._fire(self._hold, "button hold")
        self._sensor = None
        if s.presence_pin is not None:
            self._sensor = DigitalInputDevice(s.presence_pin, pull_up=None, active_state=s.presence_active_high,
                                              bounce_time=s.debounce or None, pin_factory=pin_factory)
            self._sensor.when_activated = lambda: self._fire(self._presence, "presence", True)
            self._sensor.when_deactivated = lambda: self._fire(self._presence, "presence", False)
        self.pin_factory = self._light_device_factory()
        self._cond = threading.Condition()
        self._pending: Pattern | None = None
        self._shown: Pattern | None = None
        self._base: Pattern | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="feedback", daemon=True)
        self._thread.start()

    # public API

    def show(self, pattern: Pattern) -> None:
        """Show ``pattern`` (see the module docstring); returns at once."""
        with self._cond:
            if self._closed:
                return
            active = self._pending or self._shown
            if active is not None:
                if pattern == active and pattern.lasting:
                    return  # already showing it: do not restart the pattern
                if pattern.idle and pattern.lasting and not active.lasting:
                    self._base = pattern  # let the passing pattern finish, then show this one
                    return
            self._pending = pattern
            self._cond.notify_all()

    @property
    def current(self) -> Pattern | None:
        """The pattern being shown (or about to be); ``None`` when the light is off."""
        with self._cond:
            return self._pending or self._shown

    def on_press(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the operator button is pressed (from gpiozero's event thread)."""
        self._need(self._button, "button_pin")
        self._press.append(callback)

    def on_hold(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the button is held for ``button_hold`` seconds."""
        self._need(self._button, "button_pin")
        self._hold.append(callback)

    def on_presence(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when someone arrives in front of the box and ``callback(False)`` when they leave."""
        self._need(self._sensor, "presence_pin")
        self._presence.append(callback)

    def close(self) -> None:
        """Stop the patterns, switch light and buzzer off and release the pins."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._light.set(Color.OFF)
        for dev in (self._buzzer, self._button, self._sensor):
            if dev is not None:
                dev.close()
        self._light.close()

    def __enter__(self) -> GpioPanel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # internals

    def _light_device_factory(self) -> Any:
        light = self._light
        device = light.rgb if isinstance(light, _RgbLed) else next(iter(light.leds.values()))
        return device.pin_factory

    @staticmethod
    def _need(device: object | None, key: str) -> None:
        if device is None:
            raise ValueError(f"no {key} configured")

    @staticmethod
    def _fire(callbacks: list[Callable[..., None]], what: str, *args: Any) -> None:
        logger.debug("%s event %s", what, args)
        for cb in list(callbacks):
            try:
                cb(*args)
            except Exception:
                logger.exception("%s callback failed", what)

    def _sound(self, sound: Sound) -> None:
        s, buzzer = self.settings, self._buzzer
        if buzzer is None or sound is Sound.NONE:
            return
        if sound is Sound.LONG:
            buzzer.beep(on_time=s.long_beep, off_time=s.short_beep, n=1, background=True)
        else:
            buzzer.beep(on_time=s.short_beep, off_time=s.short_beep, n=2 if sound is Sound.TWO_SHORT else 1,
                        background=True)

    def _wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` seconds; True if a new pattern or close() interrupted."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is not None or self._closed, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                pattern, self._pending = self._pending, None
                self._shown = pattern
            assert pattern is not None
            try:
                self._play(pattern)
            except Exception:  # a pin error must not kill the thread that shows every later pattern
                logger.exception("showing %s failed", pattern.name)

    def _play(self, pattern: Pattern) -> None:
        with self._cond:
            self._shown = pattern
            if pattern.lasting:
                self._base = pattern
        logger.debug("pattern %s", pattern.name)
        self._sound(pattern.sound)
        if self._loop(pattern, self.settings.hold if not pattern.lasting else None):
            return
        with self._cond:
            base = self._shown = self._base
        if base is None:  # an outcome with nothing lasting to go back to
            self._light.set(Color.OFF)
            self._wait(None)
        else:
            self._loop(base, None)

    def _loop(self, pattern: Pattern, duration: float | None) -> bool:
        """Show ``pattern`` for ``duration`` seconds (``None``: until interrupted); True if interrupted."""
        deadline = None if duration is None else time.monotonic() + duration
        i = 0
        while True:
            color, periods = pattern.frames[i % len(pattern.frames)]
            self._light.set(color)
            step = periods * self.settings.blink if len(pattern.frames) > 1 else None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait = step if left is None else left if step is None else min(step, left)
            if self._wait(wait):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            i += 1
