"""One tree of faults, rooted in KioskError.

Expected outcomes (no finger, poor quality, cancelled) are values, never
exceptions; these are for faults. Errors mix in a built-in where one fits, so a
caller may catch either (``except OSError`` still sees a pulled cable).
"""


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


class DeviceClosed(DriverError):
    """The driver was used after close()."""


class FlowError(KioskError, RuntimeError):
    """An enrollment action was asked for at a step where it makes no sense."""


class StoreError(KioskError, OSError):
    """The local store could not keep an enrollment (disk full, corrupt file...)."""


class ClearTextRefused(StoreError, PermissionError):
    """Saving real biometrics unsealed was refused (sealing is not built yet)."""
