"""Scripted behaviours shared by the fake backends (in the spirit of Blinka's fakes)."""

from __future__ import annotations

from collections.abc import Sequence

from kiosk.drivers.base import ModuleInfo, ModuleKind


class BehaviourScript:
    """A script of named behaviours for a fake device, consumed one per call.

    The last entry repeats forever. ``fail_on_call`` (1-based) names one call
    that fails whatever its entry says. Not thread-safe on its own: the device
    calls it under its lock.
    """

    def __init__(
        self,
        script: Sequence[str] | str,
        valid: Sequence[str],
        fail_on_call: int | None = None,
    ) -> None:
        entries = (script,) if isinstance(script, str) else tuple(script)
        unknown = [entry for entry in entries if entry not in valid]
        if not entries or unknown:
            what = f"unknown behaviour(s) {unknown}" if unknown else "an empty script"
            raise ValueError(f"{what}; valid behaviours are: {', '.join(valid)}")
        if fail_on_call is not None and fail_on_call < 1:
            raise ValueError(f"fail_on_call counts from 1, got {fail_on_call}")
        self.entries = entries
        self.fail_on_call = fail_on_call
        self.calls = 0

    def peek(self) -> str:
        """The behaviour the next call will get, without consuming it."""
        return self.entries[min(self.calls, len(self.entries) - 1)]

    def advance(self) -> tuple[str, bool]:
        """Consume one call: its behaviour, and whether fail_on_call forces it to fail."""
        behaviour = self.peek()
        self.calls += 1
        return behaviour, self.calls == self.fail_on_call


def simulated_info(kind: ModuleKind, model: str, serial: str) -> ModuleInfo:
    """The identity every fake reports: driver "fake", and marked simulated."""
    return ModuleInfo(
        kind=kind,
        driver="fake",
        model=model,
        serial=serial,
        firmware="sim-1.0",
        simulated=True,
        serial_source="simulated",
    )
