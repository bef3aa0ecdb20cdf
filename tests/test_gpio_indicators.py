"""The GPIO status light, buzzer, call button and tamper switch, on gpiozero's mock pins.

The real driver runs against ``MockFactory(pin_class=MockPWMPin)``: each mock pin
records its states with the time between changes, so a pattern is checked over
time, as the citizen would see it.
"""

from __future__ import annotations

import itertools
import logging
import time

import pytest
from gpiozero import LED, Button, Buzzer, Device
from gpiozero.exc import PinPWMError
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.drivers import registry
from kiosk.drivers.base import HealthStatus, Indicators, ModuleKind, Signal
from kiosk.drivers.indicators.gpio import AMBER, DIM_GREEN, GpioIndicators, gpio_name
from kiosk.errors import ConfigError, DeviceClosed, DeviceUnavailable

RED, GREEN, BLUE, BUZZER, CALL, TAMPER = "GPIO17", "GPIO27", "GPIO22", "GPIO18", "GPIO23", "GPIO24"


@pytest.fixture
def factory():
    return MockFactory(pin_class=MockPWMPin)


@pytest.fixture
def lights(factory):
    lights = GpioIndicators(pin_factory=factory, tamper=TAMPER)
    lights.open()
    factory.pin(TAMPER).drive_low()  # the lid is on: the switch is held closed
    yield lights
    lights.close()


def levels(factory, name: str) -> list[float]:
    """The states a pin went through since its last clear_states(), first one included."""
    return [float(state.state) for state in factory.pin(name).states]


def clear(factory, *names: str) -> None:
    for name in names or (RED, GREEN, BLUE, BUZZER):
        factory.pin(name).clear_states()


def rises(values: list[float]) -> int:
    return sum(1 for before, after in itertools.pairwise(values) if after > before)


def colour(factory) -> tuple[float, float, float]:
    return tuple(round(float(factory.pin(name).state), 2) for name in (RED, GREEN, BLUE))


# -- each signal's pattern, over time ------------------------------------------------


def test_signal_returns_at_once_whatever_was_showing(lights):
    slowest = 0.0
    for signal in [*Signal, *reversed(Signal), Signal.FAULT, Signal.WORKING, Signal.ATTENTION]:
        start = time.monotonic()
        lights.signal(signal)
        slowest = max(slowest, time.monotonic() - start)
    assert slowest < 0.05


def test_idle_is_a_steady_dim_green_and_silent(lights, factory):
    clear(factory)
    lights.signal(Signal.IDLE)
    time.sleep(0.3)
    assert colour(factory) == DIM_GREEN
    assert levels(factory, GREEN) == [0.0, DIM_GREEN[1]]  # set once, never touched again
    assert levels(factory, RED) == [0.0] and levels(factory, BLUE) == [0.0]
    assert levels(factory, BUZZER) == [0.0]


def test_working_is_a_slow_blue_pulse(lights, factory):
    clear(factory)
    lights.signal(Signal.WORKING)
    time.sleep(0.9)  # fades in for 0.75 s, then out
    blue = levels(factory, BLUE)
    peak = blue.index(max(blue))
    assert max(blue) > 0.9
    assert len(set(blue[: peak + 1])) > 10  # a fade, not a switch
    assert blue[: peak + 1] == sorted(blue[: peak + 1])  # up...
    assert blue[-1] < max(blue)  # ...and down again
    assert levels(factory, RED) == [0.0] and levels(factory, GREEN) == [0.0]
    assert levels(factory, BUZZER) == [0.0]


def test_success_is_green_and_one_short_beep(lights, factory):
    clear(factory)
    lights.signal(Signal.SUCCESS)
    time.sleep(0.35)
    assert colour(factory) == (0.0, 1.0, 0.0)
    assert levels(factory, BUZZER) == [0.0, 1.0, 0.0]
    factory.pin(BUZZER).assert_states_and_times([(0.0, 0), (0.0, 1), (0.1, 0)])


def test_retry_is_amber_and_two_short_beeps(lights, factory):
    clear(factory)
    lights.signal(Signal.RETRY)
    time.sleep(0.55)
    assert colour(factory) == AMBER
    assert levels(factory, BUZZER) == [0.0, 1.0, 0.0, 1.0, 0.0]
    factory.pin(BUZZER).assert_states_and_times([(0, 0), (0, 1), (0.1, 0), (0.1, 1), (0.1, 0)])


def test_attention_blinks_amber_until_the_next_signal(lights, factory):
    clear(factory)
    lights.signal(Signal.ATTENTION)
    time.sleep(1.0)  # on at 0, off at 0.4, on at 0.8: a blink that repeats
    red, green = levels(factory, RED), levels(factory, GREEN)
    assert red[:4] == [0.0, 1.0, 0.0, 1.0]
    assert green[:4] == [0.0, AMBER[1], 0.0, AMBER[1]]
    factory.pin(RED).assert_states_and_times([(0, 0), (0, 1), (0.4, 0), (0.4, 1)])
    assert levels(factory, BLUE) == [0.0]
    assert levels(factory, BUZZER) == [0.0]


def test_fault_blinks_red_fast_with_a_long_tone(lights, factory):
    clear(factory)
    lights.signal(Signal.FAULT)
    time.sleep(0.5)
    assert rises(levels(factory, RED)) >= 2 and len(levels(factory, RED)) >= 5
    assert levels(factory, GREEN) == [0.0] and levels(factory, BLUE) == [0.0]
    assert levels(factory, BUZZER) == [0.0, 1.0]  # still sounding at 0.5 s
    time.sleep(0.65)
    assert levels(factory, BUZZER) == [0.0, 1.0, 0.0]
    factory.pin(BUZZER).assert_states_and_times([(0, 0), (0, 1), (1.0, 0)])
    assert rises(levels(factory, RED)) >= 5  # still blinking after the tone


@pytest.mark.parametrize("before", [Signal.FAULT, Signal.ATTENTION, Signal.WORKING])
def test_a_new_signal_stops_the_pattern_before(lights, factory, before):
    lights.signal(before)
    time.sleep(0.15)
    lights.signal(Signal.IDLE)
    clear(factory)
    time.sleep(0.25)  # longer than the fastest blink's half-period (0.1 s), twice
    assert colour(factory) == DIM_GREEN
    for name in (RED, GREEN, BLUE, BUZZER):
        assert len(levels(factory, name)) == 1, f"{name} still changing"
    assert factory.pin(BUZZER).state == 0  # the fault's tone is cut short


def test_unknown_signal_is_refused(lights):
    with pytest.raises(ValueError):
        lights.signal("disco")


# -- the call button and the tamper switch ---------------------------------------------


def test_call_button_press_runs_the_callback_and_none_stops_it(lights, factory):
    pressed = []
    lights.on_call_button(lambda: pressed.append(True))
    button = factory.pin(CALL)
    button.drive_low()
    button.drive_high()  # the release is not a press
    button.drive_low()
    button.drive_high()
    assert pressed == [True, True]
    lights.on_call_button(None)
    button.drive_low()
    button.drive_high()
    assert pressed == [True, True]
    lights.on_call_button(None)  # twice is fine


def test_a_failing_callback_is_logged_and_the_button_keeps_working(lights, factory, caplog):
    calls = []

    def callback():
        calls.append(True)
        raise RuntimeError("the screen is gone")

    lights.on_call_button(callback)
    with caplog.at_level(logging.ERROR, logger="kiosk.drivers.indicators.gpio"):
        for _ in range(2):
            factory.pin(CALL).drive_low()
            factory.pin(CALL).drive_high()
    assert calls == [True, True]
    assert "call button callback failed" in caplog.text


def test_case_opened_degrades_health_and_runs_the_tamper_callback(lights, factory):
    opened = []
    lights.on_tamper(lambda: opened.append(True))
    assert lights.health().status is HealthStatus.OK
    factory.pin(TAMPER).drive_high()  # the lid comes off: the switch opens
    assert opened == [True]
    assert lights.case_open
    health = lights.health()
    assert health.status is HealthStatus.DEGRADED and "case open" in health.detail
    factory.pin(TAMPER).drive_low()  # the lid goes back on
    assert lights.health().status is HealthStatus.OK and opened == [True]


def test_a_case_open_at_start_reads_as_open(factory):
    with GpioIndicators(pin_factory=factory, tamper="BOARD18") as lights:
        health = lights.health()  # no switch wired: the pull-up reads open, as a cut wire would
        assert health.status is HealthStatus.DEGRADED and TAMPER in health.detail


def test_without_a_tamper_switch_health_is_ok_and_on_tamper_is_accepted(factory):
    with GpioIndicators(pin_factory=factory) as lights:
        lights.on_tamper(lambda: None)
        assert lights.health().status is HealthStatus.OK
        assert not lights.case_open
        assert "no tamper switch" in lights.info().model


# -- lifecycle -------------------------------------------------------------------------


def test_close_releases_every_pin_and_is_idempotent(factory):
    first = GpioIndicators(pin_factory=factory, tamper=TAMPER)
    first.open()
    first.signal(Signal.FAULT)
    first.close()
    first.close()
    assert first.closed and first.health().status is HealthStatus.FAILED
    for name in (RED, GREEN, BLUE, BUZZER):
        assert factory.pin(name).state == 0, f"{name} left on"
    with pytest.raises(DeviceClosed):
        first.signal(Signal.IDLE)
    with pytest.raises(DeviceClosed):
        first.on_call_button(lambda: None)
    with GpioIndicators(pin_factory=factory, tamper=TAMPER) as second:
        second.signal(Signal.IDLE)
    first.open()  # and the first can claim them again
    first.close()


def test_a_closed_device_hears_no_presses(factory):
    pressed = []
    lights = GpioIndicators(pin_factory=factory)
    lights.open()
    lights.on_call_button(lambda: pressed.append(True))
    lights.close()
    factory.pin(CALL).drive_low()
    assert pressed == []


def test_close_closes_every_device_even_if_one_fails(factory, caplog):
    lights = GpioIndicators(pin_factory=factory)
    lights.open()

    def broken_close():
        raise PinPWMError("PWM stuck")

    light = lights._light
    light.close = broken_close
    with caplog.at_level(logging.WARNING, logger="kiosk.drivers.indicators.gpio"):
        lights.close()
    assert "could not close" in caplog.text
    del light.close  # gpiozero closes it again when it is collected
    # the buzzer and the button were released: others may claim their pins
    Buzzer(BUZZER, pin_factory=factory).close()
    Button(CALL, pin_factory=factory).close()


def test_open_names_a_pin_in_use_and_leaves_the_others_free(factory):
    blocker = LED(BUZZER, pin_factory=factory)
    lights = GpioIndicators(pin_factory=factory)
    with pytest.raises(DeviceUnavailable, match=BUZZER):
        lights.open()
    assert lights.closed
    blocker.close()
    with lights:  # the light claimed before the buzzer failed was let go
        lights.signal(Signal.IDLE)


def test_a_pin_that_cannot_be_driven_is_a_named_fault(lights, factory):
    def broken(value):
        raise PinPWMError("PWM channel lost")

    factory.pin(RED)._set_state = broken
    with pytest.raises(DeviceUnavailable, match=RED):
        lights.signal(Signal.RETRY)
    health = lights.health()
    assert health.status is HealthStatus.FAILED and RED in health.detail
    result = lights.self_test()
    assert not result.passed and RED in result.detail and "DeviceUnavailable" in result.detail
    del factory.pin(RED)._set_state
    lights.signal(Signal.IDLE)  # the pin is back...
    assert lights.self_test().passed  # ...and a call that works clears the failed one
    assert lights.health().status is HealthStatus.OK


# -- self-test and identity ----------------------------------------------------------


def test_self_test_lights_each_colour_beeps_once_and_restores_the_light(lights, factory):
    lights.signal(Signal.IDLE)
    clear(factory)
    result = lights.self_test()
    assert result.passed, result.detail
    assert result.duration_s < 1.0
    for name in (RED, GREEN, BLUE):
        assert 1.0 in levels(factory, name), f"{name} never lit"
    assert levels(factory, BUZZER) == [0.0, 1.0, 0.0]
    assert colour(factory) == DIM_GREEN  # back to what the citizen saw
    assert f"call button {CALL} released" in result.detail
    assert "case closed" in result.detail
    factory.pin(CALL).drive_low()  # held down (stuck, or a citizen leaning on it)
    assert f"call button {CALL} pressed" in lights.self_test().detail
    factory.pin(CALL).drive_high()


def test_info_names_the_pins_and_marks_mock_pins_simulated(lights):
    info = lights.info()
    assert info.kind is ModuleKind.INDICATORS and info.driver == "gpio"
    for name in (RED, GREEN, BLUE, BUZZER, CALL, TAMPER):
        assert name in info.model
    assert info.simulated and info.firmware == ""
    assert isinstance(lights, Indicators)


def test_info_of_real_pins_is_not_simulated(tmp_path):
    lights = GpioIndicators(pin_factory=Factory(), serial_files=[tmp_path / "absent"])
    info = lights.info()
    assert not info.simulated
    assert info.serial == "gpio" and info.serial_source == ""


@pytest.mark.parametrize(
    ("files", "serial"),
    [
        ({"serial-number": "10000000abcdef12\x00"}, "10000000abcdef12"),
        ({"cpuinfo": "processor\t: 0\nflags\t: serialize\nSerial\t\t: 00000000c0ffee42\n"}, None),
        ({"serial-number": "0000000000000000\x00"}, "gpio"),
        ({"cpuinfo": "processor\t: 0\nflags\t: fpu serialize\n"}, "gpio"),
        ({}, "gpio"),
    ],
)
def test_serial_is_the_pis_own_when_readable(tmp_path, files, serial):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    paths = [tmp_path / "serial-number", tmp_path / "cpuinfo"]
    info = GpioIndicators(pin_factory=MockFactory(), serial_files=paths).info()
    assert info.serial == (serial or "00000000c0ffee42")
    assert info.serial_source == ("" if info.serial == "gpio" else "board")


# -- options ---------------------------------------------------------------------------


def test_pins_may_be_given_by_any_gpiozero_name(factory):
    lights = GpioIndicators(
        pin_factory=factory,
        red=5,
        green="bcm6",
        blue="BOARD37",
        buzzer="none",
        call_button="J8:16",
        active_high=False,
    )
    assert (lights.red, lights.green, lights.blue) == ("GPIO5", "GPIO6", "GPIO26")
    assert lights.buzzer_pin is None and lights.call_button_pin == CALL
    with lights:
        lights.signal(Signal.SUCCESS)  # no buzzer fitted: the light alone
        assert factory.pin("GPIO6").state == 0  # common anode: on is low
        assert factory.pin("GPIO5").state == 1
    assert "no buzzer" in lights.info().model


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"red": "GPIO99"}, "red"),
        ({"green": "banana"}, "green"),
        ({"blue": "BOARD1"}, "blue"),  # 3V3, not a GPIO
        ({"buzzer": True}, "buzzer"),
        ({"call_button": 23.0}, "call_button"),
        ({"green": 17}, "green"),  # the red pin's
        ({"tamper": "BOARD16"}, "tamper"),  # the call button's
        ({"call_button": None}, "call_button"),  # not optional
        ({"active_high": "yes"}, "active_high"),
        ({"pin_factory": "mock"}, "pin_factory"),
        ({"serial_files": 3}, "serial_files"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, option):
    with pytest.raises(ValueError, match=rf"^{option}: "):
        GpioIndicators(**options)


def test_gpio_name_reads_every_spelling():
    assert {gpio_name("pin", spelling) for spelling in (17, "17", "gpio17", "BOARD11")} == {RED}
    with pytest.raises(ValueError, match="header pin 6, GND"):
        gpio_name("pin", "BOARD6")


# -- the registry ----------------------------------------------------------------------


@pytest.fixture
def default_mock_pins():
    """gpiozero's default pin factory is a mock one for the test, restored after."""
    before = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    yield factory
    Device.pin_factory = before


def test_the_registry_creates_it_by_name_from_config_options(default_mock_pins):
    options = {"red": 5, "green": "GPIO6", "blue": "BOARD37", "buzzer": "none", "tamper": 24}
    lights = registry.create(ModuleKind.INDICATORS, "gpio", options)
    assert isinstance(lights, GpioIndicators)
    with lights:
        lights.signal(Signal.SUCCESS)
        assert default_mock_pins.pin("GPIO6").state == 1
        assert lights.info().simulated


def test_the_registry_turns_a_bad_pin_into_a_config_error():
    with pytest.raises(ConfigError, match="red: expected a GPIO"):
        registry.create(ModuleKind.INDICATORS, "gpio", {"red": "GPIO40"}, where="station.toml")
    with pytest.raises(ConfigError, match="did you mean 'buzzer'"):
        registry.create(ModuleKind.INDICATORS, "gpio", {"buzer": 18})
