"""One tree of faults, rooted in KioskError, and the wording their messages share.

Expected outcomes (no finger, poor quality, cancelled) are values, never
exceptions; these are for faults. Errors mix in a built-in where one fits, so a
caller may catch either (``except OSError`` still sees a pulled cable).
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Sequence


class KioskError(Exception):
    """Base of every fault raised by the kiosk."""


class ConfigError(KioskError, ValueError):
    """The station configuration is missing, malformed or invalid."""


class DriverError(KioskError):
    """A module driver failed."""


class UnknownBackend(DriverError, LookupError):
    """No backend of that name is installed for that kind of module."""


class DeviceUnavailable(DriverError, OSError):
    """The module is absent, unplugged or not answering."""


class CaptureTimeout(DriverError, TimeoutError):
    """The module did not finish a capture before its deadline."""


class CaptureCancelled(DriverError):
    """The call was cancelled before it finished: the step moved on or the module closed."""


class DeviceFault(DriverError):
    """The module answered wrongly: a broken frame, a vendor library's error, bad data."""


class DeviceClosed(DriverError):
    """The driver was used after close()."""


class FlowError(KioskError, RuntimeError):
    """An enrollment action was asked for at a step where it makes no sense."""


class StoreError(KioskError, OSError):
    """The local store could not keep an enrollment (disk full, corrupt file...)."""


# -- wording shared by one-line error messages -----------------------------------


class _ShortRepr(reprlib.Repr):
    """reprlib's short repr, safe for ints too long for ``repr`` (a 5,000-digit TOML number)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlevel = 2

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 512:
            return (
                f"<a whole number of about {math.floor(x.bit_length() * math.log10(2)) + 1} digits>"
            )
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()


def shown(value: object) -> str:
    """``value`` as one short line for an error message."""
    return _SHORT_REPR.repr(value)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
