"""The real status light, buzzer, call-operator button and tamper switch, through gpiozero.

Wiring (BCM numbering; every pin is an option of the station config, given as a
BCM number ``17`` or a gpiozero pin name ``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``,
``"J8:11"``, resolved against the 40-pin header of every Pi since the B+):

============  ==========  ===========  ==============================================
option        default     header pin   wiring
============  ==========  ===========  ==============================================
red           GPIO17      11           RGB LED red leg, through a ~220 ohm resistor
green         GPIO27      13           RGB LED green leg, through a ~220 ohm resistor
blue          GPIO22      15           RGB LED blue leg, through a ~220 ohm resistor
(common leg)              GND (or 3V3) common cathode to GND (``active_high = true``);
                                       common anode to 3V3 (``active_high = false``)
buzzer        GPIO18      12           active buzzer through an NPN transistor, on
                                       when the pin is high; ``"none"`` if not fitted
call_button   GPIO23      16           push button to GND (internal pull-up, 50 ms
                                       debounce); its callback runs on gpiozero's thread
tamper        none        (GPIO24, 18) case microswitch to GND, held closed by the
                                       lid: an open lid or a cut wire reads as
                                       "case open"; ``"none"`` (default) if not fitted
============  ==========  ===========  ==============================================

What each :class:`~kiosk.drivers.base.Signal` shows (gpiozero's own background
threads blink, pulse and beep: :meth:`GpioIndicators.signal` returns at once,
and each signal stops the pattern before it):

=========  ===========================================  ==============================
signal     light                                        buzzer
=========  ===========================================  ==============================
IDLE       steady dim green (0, 0.15, 0)                silent
WORKING    blue pulse: 0.75 s up, 0.75 s down, forever  silent
SUCCESS    steady green                                 one beep, 0.1 s
RETRY      steady amber (1, 0.35, 0)                    two beeps, 0.1 s on / 0.1 s off
ATTENTION  amber blink: 0.4 s on / 0.4 s off, forever   silent
FAULT      red blink: 0.1 s on / 0.1 s off, forever     one long tone, 1.0 s
=========  ===========================================  ==============================

Tests and laptops run the same code on gpiozero's mock pins::

    from gpiozero.pins.mock import MockFactory, MockPWMPin
    from kiosk.drivers.base import Signal
    from kiosk.drivers.indicators.gpio import GpioIndicators

    factory = MockFactory(pin_class=MockPWMPin)
    with GpioIndicators(pin_factory=factory) as lights:
        lights.on_call_button(lambda: print("operator called"))
        lights.signal(Signal.WORKING)  # returns at once; gpiozero pulses the light
        factory.pin("GPIO23").drive_low()  # the citizen presses the button
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from gpiozero import RGBLED, Buzzer, Device, DigitalInputDevice, pi_info
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from kiosk.drivers.base import Health, HealthStatus, ModuleBase, ModuleInfo, ModuleKind, Signal
from kiosk.errors import DeviceClosed, DeviceUnavailable, KioskError, shown

log = logging.getLogger(__name__)

Colour = tuple[float, float, float]
OFF: Colour = (0.0, 0.0, 0.0)
DIM_GREEN: Colour = (0.0, 0.15, 0.0)
GREEN: Colour = (0.0, 1.0, 0.0)
BLUE: Colour = (0.0, 0.0, 1.0)
RED: Colour = (1.0, 0.0, 0.0)
AMBER: Colour = (1.0, 0.35, 0.0)  # green LEDs look brighter: a little green makes amber

BOUNCE_S = 0.05
SELF_TEST_STEP_S = 0.12  # each colour of the self-test; three of them, under 0.5 s in all
SELF_TEST_BEEP_S = 0.1

SERIAL_FILES = ("/proc/device-tree/serial-number", "/proc/cpuinfo")
NO_SERIAL = "gpio"  # the serial when the Pi's own cannot be read


@dataclass(frozen=True)
class Pattern:
    """How one signal looks and sounds.

    ``light`` is "steady" (``colour`` on), "blink" (``timing`` = on, off seconds)
    or "pulse" (``timing`` = fade in, fade out seconds); both repeat until the
    next signal. The buzzer sounds ``beeps`` times, ``beep`` = on, off seconds.
    """

    colour: Colour
    light: Literal["steady", "blink", "pulse"] = "steady"
    timing: tuple[float, float] = (0.0, 0.0)
    beeps: int = 0
    beep: tuple[float, float] = (0.1, 0.1)


PATTERNS: dict[Signal, Pattern] = {
    Signal.IDLE: Pattern(DIM_GREEN),
    Signal.WORKING: Pattern(BLUE, "pulse", (0.75, 0.75)),
    Signal.SUCCESS: Pattern(GREEN, beeps=1, beep=(0.1, 0.1)),
    Signal.RETRY: Pattern(AMBER, beeps=2, beep=(0.1, 0.1)),
    Signal.ATTENTION: Pattern(AMBER, "blink", (0.4, 0.4)),
    Signal.FAULT: Pattern(RED, "blink", (0.1, 0.1), beeps=1, beep=(1.0, 0.0)),
}


class GpioIndicators(ModuleBase):
    """RGB status light, active buzzer, call-operator button and optional tamper
    switch on the Pi's GPIO header (see the module docstring for the wiring).

    Options (from the station config): ``red``, ``green``, ``blue``,
    ``active_high``, ``buzzer``, ``call_button``, ``tamper``, ``serial_files``.
    ``pin_factory`` is for Python callers only (tests pass gpiozero's
    ``MockFactory(pin_class=MockPWMPin)``); None uses gpiozero's default, which
    ``GPIOZERO_PIN_FACTORY`` chooses.

    Raises ValueError naming the option for a pin that is not a GPIO of the
    40-pin header, or one pin given twice. Devices are claimed in :meth:`open`
    (DeviceUnavailable naming the pin if one cannot be) and released in
    :meth:`close`.
    """

    kind: ClassVar[ModuleKind] = ModuleKind.INDICATORS

    def __init__(
        self,
        *,
        red: int | str = "GPIO17",
        green: int | str = "GPIO27",
        blue: int | str = "GPIO22",
        active_high: bool = True,
        buzzer: int | str | None = "GPIO18",
        call_button: int | str = "GPIO23",
        tamper: int | str | None = None,
        serial_files: Sequence[str | os.PathLike[str]] = SERIAL_FILES,
        pin_factory: Factory | None = None,
    ) -> None:
        super().__init__()
        pins = _PinPlan()
        self.red = pins.add("red", red)
        self.green = pins.add("green", green)
        self.blue = pins.add("blue", blue)
        self.buzzer_pin = pins.add("buzzer", buzzer, optional=True)
        self.call_button_pin = pins.add("call_button", call_button)
        self.tamper_pin = pins.add("tamper", tamper, optional=True)
        if not isinstance(active_high, bool):
            raise ValueError(f"active_high: expected true or false; got {shown(active_high)}")
        if pin_factory is not None and not isinstance(pin_factory, Factory):
            raise ValueError(
                "pin_factory: expected a gpiozero pin Factory object (from Python only; "
                f"GPIOZERO_PIN_FACTORY chooses one by name); got {shown(pin_factory)}"
            )
        self._active_high = active_high
        self._pin_factory = pin_factory
        self._serial_files = _paths("serial_files", serial_files)
        self._serial: str | None = None
        # Guards the devices: signal(), the callbacks' setters and _close() take it.
        self._devices_lock = threading.RLock()
        self._light: RGBLED | None = None
        self._buzzer: Buzzer | None = None
        # Plain inputs, not gpiozero Buttons (the same less when_held): a Button's hold
        # thread wakes every 0.1 s for ever, and makes close() wait up to its hold_time
        # (1 s) while the switch is held closed, which for the tamper switch is always.
        self._button: DigitalInputDevice | None = None
        self._tamper: DigitalInputDevice | None = None
        self._call_callback: Callable[[], None] | None = None
        self._tamper_callback: Callable[[], None] | None = None
        self._shown: Signal | None = None  # the last signal shown
        # Facts health() reports, kept up to date by gpiozero's callbacks and signal().
        self._case_open = False
        self._fault: str | None = None

    # -- identity ------------------------------------------------------------------

    def info(self) -> ModuleInfo:
        """Which light this is: the pins in the model, the Pi's serial as the serial."""
        buzzer = f"buzzer {self.buzzer_pin}" if self.buzzer_pin else "no buzzer"
        tamper = f"tamper {self.tamper_pin}" if self.tamper_pin else "no tamper switch"
        if self._serial is None:
            self._serial = read_pi_serial(self._serial_files)
        return ModuleInfo(
            kind=self.kind,
            driver="gpio",
            model=(
                f"GPIO status light (RGB {self.red}/{self.green}/{self.blue}, {buzzer}, "
                f"call button {self.call_button_pin}, {tamper})"
            ),
            serial=self._serial,
            firmware="",
            simulated=self._simulated(),
            serial_source="" if self._serial == NO_SERIAL else "board",
        )

    def _simulated(self) -> bool:
        factory = self._pin_factory
        if factory is None and self._light is not None:
            factory = self._light.pin_factory
        if factory is None:
            factory = Device.pin_factory
        if factory is None:  # gpiozero picks its default at the first device
            return os.environ.get("GPIOZERO_PIN_FACTORY", "").strip().lower() == "mock"
        return isinstance(factory, MockFactory)

    # -- the Indicators contract ---------------------------------------------------

    def signal(self, signal: Signal) -> None:
        """Show ``signal`` (see the table in the module docstring); returns at once.

        The pattern before it stops; gpiozero's threads blink and beep. Raises
        ValueError for an unknown signal, DeviceClosed after close(),
        DeviceUnavailable naming the pin if gpiozero cannot drive it.
        """
        signal = Signal(signal)
        pattern = PATTERNS[signal]
        with self._devices_lock:
            self._check_open()
            try:
                self._show_light(pattern)
                self._sound(pattern)
            except DeviceUnavailable as exc:
                self._fault = str(exc)
                raise
            self._fault = None
            self._shown = signal

    def on_call_button(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` on each press of the call-operator button; None stops.

        The callback runs on gpiozero's thread (the pin library's event
        thread), never the caller's: hand work to your own thread or clock from
        it. An exception it raises is logged, and the button keeps working.
        Raises DeviceClosed after close().
        """
        with self._devices_lock:
            _, _, button, _ = self._devices()
            self._call_callback = callback
            with _gpio_errors(f"call button ({self.call_button_pin})"):
                if callback is not None:
                    button.when_activated = self._call_pressed
                elif button.when_activated is not None:
                    button.when_activated = None

    def on_tamper(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` each time the case is opened (the tamper switch
        opens); None stops. Like the call button's, it runs on gpiozero's
        thread. A case already open when it is set does not call it:
        :meth:`health` reports that. Without a tamper switch it never runs.
        Raises DeviceClosed after close().
        """
        with self._devices_lock:
            self._check_open()
            self._tamper_callback = callback

    @property
    def case_open(self) -> bool:
        """True while the tamper switch says the case is open (False if none is fitted)."""
        return self._case_open

    # -- gpiozero's callbacks (on gpiozero's thread) --------------------------------

    def _call_pressed(self) -> None:
        _run_callback("call button", self._call_callback)

    def _case_opened(self) -> None:
        self._case_open = True
        log.warning("tamper switch %s: the case is open", self.tamper_pin)
        _run_callback("tamper", self._tamper_callback)

    def _case_closed(self) -> None:
        self._case_open = False
        log.info("tamper switch %s: the case is closed", self.tamper_pin)

    # -- patterns ------------------------------------------------------------------

    def _show_light(self, pattern: Pattern) -> None:
        light, _, _, _ = self._devices()
        with _gpio_errors(self._light_part()):
            if pattern.light == "blink":
                on_s, off_s = pattern.timing
                light.blink(on_s, off_s, on_color=pattern.colour, off_color=OFF, n=None)
            elif pattern.light == "pulse":
                fade_in_s, fade_out_s = pattern.timing
                light.pulse(fade_in_s, fade_out_s, on_color=pattern.colour, off_color=OFF, n=None)
            else:
                light.value = pattern.colour  # stops a blink or pulse first

    def _sound(self, pattern: Pattern) -> None:
        _, buzzer, _, _ = self._devices()
        if buzzer is None:
            return
        with _gpio_errors(f"buzzer ({self.buzzer_pin})"):
            buzzer.off()  # stops the beeps of the signal before
            if pattern.beeps:
                on_s, off_s = pattern.beep
                buzzer.beep(on_s, off_s, n=pattern.beeps)

    def _light_part(self) -> str:
        return f"status light (red {self.red}, green {self.green}, blue {self.blue})"

    # -- lifecycle -----------------------------------------------------------------

    def _open(self) -> None:
        with self._devices_lock:
            made: list[Device] = []
            try:
                with _gpio_errors(self._light_part()):
                    self._light = RGBLED(
                        self.red,
                        self.green,
                        self.blue,
                        active_high=self._active_high,
                        pin_factory=self._pin_factory,
                    )
                made.append(self._light)
                if self.buzzer_pin:
                    with _gpio_errors(f"buzzer ({self.buzzer_pin})"):
                        self._buzzer = Buzzer(self.buzzer_pin, pin_factory=self._pin_factory)
                    made.append(self._buzzer)
                with _gpio_errors(f"call button ({self.call_button_pin})"):
                    self._button = DigitalInputDevice(
                        self.call_button_pin,
                        pull_up=True,
                        bounce_time=BOUNCE_S,
                        pin_factory=self._pin_factory,
                    )
                made.append(self._button)
                if self.tamper_pin:
                    with _gpio_errors(f"tamper switch ({self.tamper_pin})"):
                        self._tamper = DigitalInputDevice(
                            self.tamper_pin,
                            pull_up=True,
                            bounce_time=BOUNCE_S,
                            pin_factory=self._pin_factory,
                        )
                        made.append(self._tamper)
                        # the lid holds the switch closed (active, low): inactive means open
                        self._case_open = not self._tamper.is_active
                        self._tamper.when_deactivated = self._case_opened
                        self._tamper.when_activated = self._case_closed
            except BaseException:
                _close_all(made)
                self._forget_devices()
                raise
            self._fault = None
            self._shown = None

    def _close(self) -> None:
        with self._devices_lock:
            devices = [self._tamper, self._button, self._buzzer, self._light]
            self._forget_devices()
            self._call_callback = None
            self._tamper_callback = None
            self._shown = None
            self._case_open = False
            _close_all([device for device in devices if device is not None])

    def _forget_devices(self) -> None:
        self._light = self._buzzer = self._button = self._tamper = None

    def _health(self) -> Health:
        # Facts only, no pin is read: the callbacks and signal() keep them.
        if self._fault is not None:
            return Health(HealthStatus.FAILED, self._fault)
        if self._tamper is not None and self._case_open:
            return Health(HealthStatus.DEGRADED, f"case open (tamper switch {self.tamper_pin})")
        return Health(HealthStatus.OK, f"showing {self._shown}" if self._shown else "")

    def _self_test(self) -> str:
        """Light red, green and blue in turn and beep once (under 0.5 s), read the
        button and the tamper switch, then show the last signal's light again.

        Runs on the device's thread (ModuleBase.self_test); signal() may still
        come meanwhile: the light shows it again at the end. Raises
        DeviceUnavailable naming the pin gpiozero could not drive.
        """
        beeped = False
        try:
            for colour in (RED, GREEN, BLUE):
                with self._devices_lock:
                    light, buzzer, _, _ = self._devices()
                    with _gpio_errors(self._light_part()):
                        light.value = colour
                    if buzzer is not None and not beeped:
                        with _gpio_errors(f"buzzer ({self.buzzer_pin})"):
                            buzzer.beep(SELF_TEST_BEEP_S, 0, n=1)
                        beeped = True
                time.sleep(SELF_TEST_STEP_S)  # without the lock: signal() never waits long
        finally:
            with self._devices_lock:
                if not self.closed and self._light is not None:
                    pattern = PATTERNS[self._shown] if self._shown else Pattern(OFF)
                    self._show_light(pattern)  # the light only: no second beep
        with self._devices_lock:
            _, _, button, tamper = self._devices()
            with _gpio_errors(f"call button ({self.call_button_pin})"):
                pressed = button.is_active
            parts = [
                "red, green and blue lit",
                f"buzzer {self.buzzer_pin} beeped" if beeped else "no buzzer fitted",
                f"call button {self.call_button_pin} {'pressed' if pressed else 'released'}",
            ]
            if tamper is not None:
                with _gpio_errors(f"tamper switch ({self.tamper_pin})"):
                    self._case_open = not tamper.is_active
                state = "open" if self._case_open else "closed"
                parts.append(f"case {state} (tamper switch {self.tamper_pin})")
        return "; ".join(parts)

    def _devices(
        self,
    ) -> tuple[RGBLED, Buzzer | None, DigitalInputDevice, DigitalInputDevice | None]:
        """The open devices (call with the devices lock held); DeviceClosed after close()."""
        self._check_open()
        light, button = self._light, self._button
        if light is None or button is None:  # open() has not finished
            raise DeviceClosed(f"{type(self).__name__} is closed; call open() first")
        return light, self._buzzer, button, self._tamper


# -- pins --------------------------------------------------------------------------


@functools.cache
def _header():
    """The 40-pin header every Pi since the B+ shares (a Pi 4B's data; no hardware read)."""
    return pi_info("c03111")


class _PinPlan:
    """Checks the pin options one by one: each a GPIO of the header, none used twice."""

    def __init__(self) -> None:
        self._used: dict[str, str] = {}  # "GPIO17" -> the option that took it

    def add(self, option: str, value: Any, *, optional: bool = False) -> str | None:
        """The BCM name ("GPIO17") of ``value``; None for an optional pin not fitted."""
        if optional and (value is None or (isinstance(value, str) and value.lower() == "none")):
            return None
        name = gpio_name(option, value)
        if name in self._used:
            raise ValueError(
                f"{option}: {shown(value)} is {name}, already the {self._used[name]} pin; "
                "each pin can do one job"
            )
        self._used[name] = option
        return name


def gpio_name(option: str, value: Any) -> str:
    """The BCM name ("GPIO17") of a pin given as ``17``, "17", "GPIO17", "BCM17",
    "BOARD11" or "J8:11"; ValueError naming ``option`` if it is not a GPIO of the
    40-pin header."""
    expected = (
        f"{option}: expected a GPIO of the 40-pin header, as a BCM number (17) or a name "
        "('GPIO17', 'BCM17', 'BOARD11', 'J8:11')"
    )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{expected}; got {shown(value)}")
    key = value.strip().upper() if isinstance(value, str) else value
    found = [info for _header_info, info in _header().find_pin(key)]
    if not found:
        raise ValueError(f"{expected}; got {shown(value)}")
    info = found[0]
    if not info.name.startswith("GPIO"):
        raise ValueError(
            f"{expected}; got {shown(value)}, which is header pin {info.number}, {info.name}"
        )
    return info.name


# -- the Pi's serial number --------------------------------------------------------


def read_pi_serial(paths: Sequence[Path]) -> str:
    """The Pi's serial number, from the device tree or /proc/cpuinfo; NO_SERIAL
    ("gpio") if none is readable (a light on GPIO pins has no serial of its own)."""
    for path in paths:
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        serial = _serial_in(text)
        if serial:
            return serial
    return NO_SERIAL


def _serial_in(text: str) -> str | None:
    match = re.search(r"^Serial\s*:\s*(\S+)\s*$", text, re.MULTILINE)  # /proc/cpuinfo
    if match:
        serial = match.group(1)
    else:  # the device tree: the number alone, NUL-terminated
        serial = text.strip("\x00 \t\r\n")
        if not re.fullmatch(r"[0-9A-Za-z]+", serial):
            return None
    return None if set(serial) == {"0"} else serial


def _paths(option: str, value: Any) -> tuple[Path, ...]:
    items = (value,) if isinstance(value, str | os.PathLike) else value
    try:
        paths = tuple(Path(item) for item in items)
    except TypeError:
        raise ValueError(f"{option}: expected a list of file paths; got {shown(value)}") from None
    return paths


# -- the boundary with gpiozero ----------------------------------------------------


@contextmanager
def _gpio_errors(part: str) -> Iterator[None]:
    """Turn whatever the pin library raises into DeviceUnavailable naming the part's pins."""
    try:
        yield
    except KioskError:
        raise
    # gpiozero raises GPIOZeroError, lgpio its own lgpio.error, RPi.GPIO RuntimeError:
    # all of them are this module failing, whatever the class.
    except Exception as exc:
        raise DeviceUnavailable(f"{part}: {type(exc).__name__}: {exc}") from exc


def _close_all(devices: Sequence[Device]) -> None:
    """Close every device, even if one of them fails to (logged, never raised)."""
    for device in devices:
        try:
            device.close()
        except Exception:
            log.warning("could not close %r cleanly", device, exc_info=True)


def _run_callback(what: str, callback: Callable[[], None] | None) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:  # the pin library's thread must live on
        log.exception("the %s callback failed", what)
