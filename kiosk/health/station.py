"""The set of modules one station runs with, built from its configuration.

:func:`module_factory` turns a ``[modules.<kind>]`` table into a function that
makes a fresh, unopened module each time it is called: the supervisors use it
to reopen a module after a fault or a swap. :class:`StationModules` holds the
instance in use for each kind; a supervisor swaps a fresh one in with
:meth:`StationModules.replace`, so code that reads ``modules.fingerprint`` at
call time always gets the current one::

    config = load_config("/etc/rekam-kiosk/station.toml")
    modules = StationModules.from_config(config)  # constructed, not opened
    make_reader = module_factory(config, ModuleKind.FINGERPRINT)
    modules.replace(ModuleKind.FINGERPRINT, make_reader())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.config import StationConfig
from kiosk.drivers import registry
from kiosk.drivers.base import (
    Camera,
    FingerprintReader,
    Indicators,
    Module,
    ModuleInfo,
    ModuleKind,
    SignaturePad,
)
from kiosk.errors import DriverError, UnknownBackend

log = logging.getLogger(__name__)

ModuleFactory = Callable[[], Module]


def module_factory(
    config: StationConfig, kind: ModuleKind, simulate: bool = False
) -> ModuleFactory:
    """A function making a fresh, unopened ``kind`` module as ``config`` names it.

    ``simulate`` makes the fake instead, whatever the config names (the driver
    is then never looked up). Each call raises what ``registry.create`` raises:
    UnknownBackend or ConfigError naming the station file and the key, or
    DriverError when the backend's library cannot be imported.
    """
    kind = ModuleKind(kind)
    if simulate:
        return lambda: registry.create(kind, "fake")
    module = config.modules[kind]
    where = f"{config.path}: modules.{kind}"

    def make() -> Module:
        try:
            return registry.create(kind, module.driver, module.options, where=where)
        except UnknownBackend as exc:
            if module.driver_from is None:
                raise
            raise UnknownBackend(f"{exc} from {module.driver_from} in the environment") from None

    return make


@dataclass
class StationModules:
    """The module in use for each kind. Safe to read from any thread; a supervisor
    replaces an entry from its own thread with :meth:`replace`."""

    camera: Camera
    fingerprint: FingerprintReader
    signature: SignaturePad
    indicators: Indicators
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @classmethod
    def from_config(cls, config: StationConfig, simulate: bool = False) -> StationModules:
        """Create every module the config names; ``simulate`` forces the fakes.

        Raises UnknownBackend or ConfigError naming the station file and the key,
        DriverError if a backend's library cannot be imported.
        """
        made = {kind: module_factory(config, kind, simulate)() for kind in config.modules}
        return cls(**{str(kind): module for kind, module in made.items()})

    def by_kind(self) -> dict[ModuleKind, Module]:
        with self._lock:
            return {kind: getattr(self, str(kind)) for kind in ModuleKind}

    def replace(self, kind: ModuleKind, module: Module) -> Module:
        """Put ``module`` in use for ``kind``; returns the one it replaces (not closed:
        the caller owns it). Raises ValueError if ``module`` is of another kind."""
        kind = ModuleKind(kind)
        module_kind = getattr(module, "kind", kind)
        if module_kind != kind:
            raise ValueError(f"a {module_kind} module cannot serve as the station's {kind}")
        with self._lock:
            previous = getattr(self, str(kind))
            setattr(self, str(kind), module)
        return previous

    def open(self) -> dict[ModuleKind, DriverError]:
        """Open every module; a dead one does not stop the others. Returns the failures."""
        failures = {}
        for kind, module in self.by_kind().items():
            try:
                module.open()
            except DriverError as exc:
                log.error("%s module did not open: %s", kind, exc)
                failures[kind] = exc
        return failures

    def close(self) -> None:
        """Close every module, even when one of them raises (each failure is logged);
        raises nothing. Idempotent, like each module's close()."""
        for kind, module in self.by_kind().items():
            try:
                module.close()
            except Exception:
                log.exception("%s module did not close cleanly", kind)

    def infos(self) -> dict[ModuleKind, ModuleInfo]:
        return {kind: module.info() for kind, module in self.by_kind().items()}

    @property
    def simulated(self) -> list[ModuleKind]:
        """Kinds served by a fake or emulator: the screens say so."""
        return [kind for kind, info in self.infos().items() if info.simulated]
