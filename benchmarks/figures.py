"""What every benchmark prints the same way: the machine line and the 90th percentile."""

from __future__ import annotations

import platform
import statistics

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import __version__
from kiosk.packet.keys import HubPrivateKey
from kiosk.packet.seal import Sealer


def machine_line() -> str:
    """Which software on which machine the figures below were measured."""
    return f"rekam-kiosk {__version__}, Python {platform.python_version()}, {platform.machine()}"


def p90(values: list[float]) -> float:
    """The 90th percentile (the value itself when there is only one)."""
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def throwaway_sealer(station_id: str) -> Sealer:
    """Keys that live only in memory: a store seals with them as a station would."""
    return Sealer(station_id, Ed25519PrivateKey.generate(), HubPrivateKey.generate().public_bytes())
