"""GPIO feedback: every signal's pin pattern on three LEDs and on an RGB LED, buzzer, button and presence sensor.

The pins are gpiozero ``MockPWMPin`` objects; ``pin.states`` is the history of values each pin went through
(a new entry only when the value changes), so a pattern is checked as a sequence of values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from drivers.gpio import GpioSettings
from edge.feedback import Signal
from edge.gpio_feedback import PATTERNS, GpioFeedback
from foundation.configbase import ConfigError, validate

RED, AMBER, GREEN, BUZZER, BUTTON, PRESENCE = 17, 27, 22, 24, 25, 5
BLUE = 27  # the third wire is blue when light = "rgb"
FAST = dict(hold=0.15, blink=0.02, short_beep=0.01, long_beep=0.06, button_hold=0.05, debounce=0.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory(pin_class=MockPWMPin)


@pytest.fixture
def fb(factory: MockFactory) -> Iterator[GpioFeedback]:
    with GpioFeedback(GpioSettings(presence_pin=PRESENCE, **FAST), pin_factory=factory) as feedback:
        yield feedback


def history(factory: MockFactory, pin: int) -> list[float]:
    return [float(s.state) for s in factory.pin(pin).states]


def level(factory: MockFactory, pin: int) -> float:
    return float(factory.pin(pin).state)


def on_durations(factory: MockFactory, pin: int) -> list[float]:
    """How long each 'on' period of a pin lasted (a state's timestamp is the time the previous one lasted)."""
    states = factory.pin(pin).states
    return [states[i + 1].timestamp for i in range(len(states) - 1) if states[i].state]


def test_every_signal_has_a_pattern() -> None:
    assert set(PATTERNS) == set(Signal)


def test_accepted_is_green_and_one_short_beep(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.ACCEPTED)
    assert wait_until(lambda: history(factory, GREEN) == [0, 1, 0])  # green for `hold`, then off (nothing to return to)
    assert history(factory, BUZZER) == [0, 1, 0]
    assert history(factory, RED) == [0] and history(factory, AMBER) == [0]


def test_accepted_returns_to_ready(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.READY)
    assert wait_until(lambda: level(factory, GREEN) == 1)
    fb.show(Signal.ACCEPTED)
    assert wait_until(lambda: history(factory, BUZZER) == [0, 1, 0])
    assert wait_until(lambda: fb.current is Signal.READY)
    assert history(factory, GREEN) == [0, 1]  # steady green throughout
    assert history(factory, RED) == [0]


def test_rejected_is_red_and_one_long_beep(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.REJECTED)
    assert wait_until(lambda: history(factory, RED) == [0, 1, 0])
    assert history(factory, BUZZER) == [0, 1, 0]
    assert on_durations(factory, BUZZER)[0] >= FAST["long_beep"] * 0.9
    assert history(factory, GREEN) == [0] and history(factory, AMBER) == [0]


def test_attention_is_amber_blink_and_two_short_beeps(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.ATTENTION)
    assert wait_until(lambda: fb.current is None)   # hold is over
    amber = history(factory, AMBER)
    assert amber[:5] == [0, 1, 0, 1, 0] and amber[-1] == 0
    assert history(factory, BUZZER) == [0, 1, 0, 1, 0]
    assert history(factory, RED) == [0] and history(factory, GREEN) == [0]


def test_not_recorded_is_red_blink_and_one_long_beep(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.NOT_RECORDED)
    assert wait_until(lambda: fb.current is None)
    assert history(factory, RED)[:5] == [0, 1, 0, 1, 0]
    assert history(factory, BUZZER) == [0, 1, 0]
    assert on_durations(factory, BUZZER)[0] >= FAST["long_beep"] * 0.9
    assert history(factory, GREEN) == [0] and history(factory, AMBER) == [0]


def test_fault_blinks_red_until_another_signal(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.FAULT)
    assert wait_until(lambda: len(history(factory, RED)) >= 9)  # well past `hold`: it does not stop by itself
    assert history(factory, RED)[:5] == [0, 1, 0, 1, 0]
    assert history(factory, BUZZER) == [0]
    fb.show(Signal.READY)
    assert wait_until(lambda: level(factory, GREEN) == 1)
    assert level(factory, RED) == 0 and fb.current is Signal.READY


def test_fault_comes_back_after_an_outcome(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.FAULT)
    assert wait_until(lambda: level(factory, RED) == 1)
    fb.show(Signal.ACCEPTED)
    assert wait_until(lambda: level(factory, GREEN) == 1)
    assert wait_until(lambda: fb.current is Signal.FAULT)
    n = len(history(factory, RED))
    assert wait_until(lambda: len(history(factory, RED)) >= n + 2)  # blinking again
    assert level(factory, GREEN) == 0


def test_ready_does_not_cut_an_outcome_short(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.REJECTED)
    fb.show(Signal.READY)
    assert wait_until(lambda: fb.current is Signal.READY)
    assert history(factory, RED) == [0, 1, 0]
    assert on_durations(factory, RED)[0] >= FAST["hold"] * 0.9
    assert level(factory, GREEN) == 1


def test_provisioning_alternates_amber_and_green(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.PROVISIONING)
    seen = set()
    while len(history(factory, AMBER)) < 6 or len(history(factory, GREEN)) < 6:
        pair = (level(factory, AMBER), level(factory, GREEN))
        assert pair != (1, 1), "amber and green lit together"
        seen.add(pair)
        time.sleep(0.002)
    assert {(1, 0), (0, 1)} <= seen
    assert history(factory, RED) == [0] and history(factory, BUZZER) == [0]


def test_showing_the_same_lasting_signal_again_does_not_restart_it(fb: GpioFeedback, factory: MockFactory) -> None:
    fb.show(Signal.READY)
    assert wait_until(lambda: level(factory, GREEN) == 1)
    for _ in range(5):
        fb.show(Signal.READY)
    assert history(factory, GREEN) == [0, 1]


RGB_COLOURS = {Signal.READY: (0, 0.2, 0), Signal.ACCEPTED: (0, 1, 0), Signal.ATTENTION: (1, 0.5, 0),
               Signal.REJECTED: (1, 0, 0), Signal.NOT_RECORDED: (1, 0, 0), Signal.FAULT: (1, 0, 0),
               Signal.PROVISIONING: (1, 0.5, 0), Signal.PROMPT: (1, 0.5, 0)}


@pytest.mark.parametrize("signal", list(Signal))
def test_rgb_led_colours(factory: MockFactory, signal: Signal) -> None:
    settings = GpioSettings(light="rgb", **FAST)
    with GpioFeedback(settings, pin_factory=factory) as fb:
        fb.show(signal)
        rgb = lambda: tuple(round(level(factory, p), 3) for p in (RED, GREEN, BLUE))  # noqa: E731
        assert wait_until(lambda: rgb() == RGB_COLOURS[signal]), rgb()
        if signal is Signal.PROVISIONING:
            assert wait_until(lambda: rgb() == (0, 1, 0))
        if signal in (Signal.ATTENTION, Signal.NOT_RECORDED, Signal.FAULT):
            assert wait_until(lambda: rgb() == (0, 0, 0))


def test_common_anode_rgb_led_is_driven_inverted(factory: MockFactory) -> None:
    with GpioFeedback(GpioSettings(light="rgb", active_high=False, **FAST), pin_factory=factory) as fb:
        fb.show(Signal.READY)
        assert wait_until(lambda: round(level(factory, GREEN), 3) == 0.8)
        assert level(factory, RED) == 1 and level(factory, BLUE) == 1


def test_button_press_and_hold(fb: GpioFeedback, factory: MockFactory) -> None:
    presses: list[str] = []
    fb.on_press(lambda: presses.append("press"))
    fb.on_hold(lambda: presses.append("hold"))
    button = factory.pin(BUTTON)
    assert button.state == 1  # pulled up, button open
    button.drive_low()
    assert wait_until(lambda: presses == ["press", "hold"])
    button.drive_high()
    button.drive_low()
    button.drive_high()
    assert wait_until(lambda: presses.count("press") == 2)


def test_a_failing_callback_does_not_stop_the_others(fb: GpioFeedback, factory: MockFactory) -> None:
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("flow bug")

    fb.on_press(broken)
    fb.on_press(lambda: calls.append(1))
    factory.pin(BUTTON).drive_low()
    assert wait_until(lambda: calls == [1])


def test_presence_sensor(fb: GpioFeedback, factory: MockFactory) -> None:
    seen: list[bool] = []
    fb.on_presence(seen.append)
    sensor = factory.pin(PRESENCE)
    sensor.drive_high()
    sensor.drive_low()
    assert wait_until(lambda: seen == [True, False])


def test_missing_button_or_sensor_is_a_clear_error(factory: MockFactory) -> None:
    with GpioFeedback(GpioSettings(button_pin=None, buzzer_pin=None, **FAST), pin_factory=factory) as fb:
        with pytest.raises(ValueError, match="no button_pin configured"):
            fb.on_press(lambda: None)
        with pytest.raises(ValueError, match="no presence_pin configured"):
            fb.on_presence(lambda present: None)
        fb.show(Signal.ACCEPTED)  # no buzzer: light only
        assert wait_until(lambda: level(factory, GREEN) == 1)


def test_close_switches_everything_off(factory: MockFactory) -> None:
    fb = GpioFeedback(GpioSettings(**FAST), pin_factory=factory)
    fb.show(Signal.FAULT)
    assert wait_until(lambda: level(factory, RED) == 1)
    fb.close()
    assert factory.pin(RED).states[-1].state == 0
    fb.show(Signal.READY)  # ignored after close
    assert history(factory, GREEN) == [0]


def test_mock_pin_factory_from_settings() -> None:
    with GpioFeedback(GpioSettings(pin_factory="mock", **FAST)) as fb:
        assert isinstance(fb.pin_factory, MockFactory)
        fb.show(Signal.READY)
        assert wait_until(lambda: fb.pin_factory.pin(GREEN).state == 1)


def test_settings_defaults_for_leds_and_rgb() -> None:
    leds = GpioSettings()
    assert (leds.red_pin, leds.amber_pin, leds.green_pin, leds.blue_pin) == (17, 27, 22, None)
    rgb = GpioSettings(light="rgb")
    assert (rgb.red_pin, rgb.green_pin, rgb.blue_pin, rgb.amber_pin) == (17, 22, 27, None)


@pytest.mark.parametrize("data, message", [
    ({"buzzer_pin": 17}, "pin 17 is used twice"),
    ({"button_pin": 40}, "pin 40 is not a BCM GPIO number"),
    ({"light": "rgb", "amber_pin": 5}, "needs blue_pin and no amber_pin"),
    ({"blue_pin": 5}, "needs amber_pin and no blue_pin"),
    ({"light": "neon"}, "light: Input should be 'leds' or 'rgb'"),
    ({"buzzer": 18}, "buzzer: unknown key"),
    ({"hold": 0}, "hold: Input should be greater than 0"),
])
def test_bad_settings_are_clear_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(data, GpioSettings, "gpio")


def test_no_pin_factory_is_a_clear_error_naming_lgpio() -> None:
    """A Pi 5 without python3-lgpio: RPi.GPIO, pigpio and the native factory cannot drive its RP1 header."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('lgpio', 'RPi', 'pigpio', 'gpiozero.pins.native'): sys.modules[m] = None\n"
            "from drivers.gpio import GpioError, GpioPanel, GpioSettings\n"
            "try:\n    GpioPanel(GpioSettings(pin_factory='auto'))\n"
            "except GpioError as exc:\n    print('GpioError:', exc)\n")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("GpioError: no GPIO pin factory") and "python3-lgpio" in done.stdout
