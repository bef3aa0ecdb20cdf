"""The durable local queue of finished enrollments."""

from __future__ import annotations

from typing import Protocol

from kiosk.packet.build import Packet


class EnrollmentSink(Protocol):
    """Where the flow hands a finished enrollment; the only way data reaches disk."""

    def save(self, packet: Packet) -> None:
        """Keep ``packet`` durably, or raise StoreError and keep nothing."""
        ...
