"""Simulated status light, buzzer and call-operator button, with test hooks.

Every signal shown is kept in ``history``; :meth:`FakeIndicators.press_call_button`
plays the citizen pressing the button, like gpiozero's ``pin.drive_low()``::

    with FakeIndicators() as lights:
        pressed = []
        lights.on_call_button(lambda: pressed.append(True))
        lights.signal(Signal.WORKING)
        lights.press_call_button()
        assert lights.current is Signal.WORKING and pressed == [True]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from kiosk.drivers.base import ModuleBase, ModuleInfo, ModuleKind, Signal
from kiosk.drivers.scripted import simulated_info


class FakeIndicators(ModuleBase):
    """Simulated indicators: records signals, calls back on a simulated button press.

    Option (from the station config): ``serial``.
    """

    kind: ClassVar[ModuleKind] = ModuleKind.INDICATORS

    def __init__(self, *, serial: str = "SIM-IND-0001") -> None:
        super().__init__()
        self._serial = serial
        self.history: list[Signal] = []  # every signal shown, oldest first
        self.current: Signal | None = None  # what the lights show now
        self._callback: Callable[[], None] | None = None

    def info(self) -> ModuleInfo:
        return simulated_info(self.kind, "Rekam SimLights", self._serial)

    def signal(self, signal: Signal) -> None:
        """Show ``signal``: recorded in ``history`` and ``current``."""
        signal = Signal(signal)
        with self._lock:
            self._check_open()
            self.history.append(signal)
            self.current = signal

    def on_call_button(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` on each press of the button; None stops listening."""
        with self._lock:
            self._check_open()
            self._callback = callback

    def press_call_button(self) -> bool:
        """Test hook: the citizen presses the button. True if a callback ran.

        A closed device hears no presses, as a released GPIO pin would not.
        """
        with self._lock:
            callback = None if self.closed else self._callback
        if callback is None:
            return False
        callback()  # outside the lock: never run foreign code while holding it
        return True

    def _close(self) -> None:
        self._callback = None
        self.current = None

    def _self_test(self) -> str:
        # Nothing to light up: the history stays the record of what the citizen saw.
        return f"{len(Signal)} signals and the call button simulated"
