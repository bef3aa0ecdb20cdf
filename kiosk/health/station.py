"""The set of modules one station runs with, built from its configuration."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


@dataclass
class StationModules:
    camera: Camera
    fingerprint: FingerprintReader
    signature: SignaturePad
    indicators: Indicators

    @classmethod
    def from_config(cls, config: StationConfig, simulate: bool = False) -> StationModules:
        """Create every module the config names; ``simulate`` forces the fakes.

        Raises UnknownBackend or ConfigError naming the station file and the key.
        """
        made = {}
        for kind, module in config.modules.items():
            if simulate:
                made[kind] = registry.create(kind, "fake")
                continue
            where = f"{config.path}: modules.{kind}"
            try:
                made[kind] = registry.create(kind, module.driver, module.options, where=where)
            except UnknownBackend as exc:
                if module.driver_from is None:
                    raise
                raise UnknownBackend(
                    f"{exc} from {module.driver_from} in the environment"
                ) from None
        return cls(**{str(kind): module for kind, module in made.items()})

    def by_kind(self) -> dict[ModuleKind, Module]:
        return {kind: getattr(self, str(kind)) for kind in ModuleKind}

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
        for module in self.by_kind().values():
            module.close()

    def infos(self) -> dict[ModuleKind, ModuleInfo]:
        return {kind: module.info() for kind, module in self.by_kind().items()}

    @property
    def simulated(self) -> list[ModuleKind]:
        """Kinds served by a fake or emulator: the screens say so."""
        return [kind for kind, info in self.infos().items() if info.simulated]
