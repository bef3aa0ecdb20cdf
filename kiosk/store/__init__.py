"""The durable local queue of finished enrollments."""

from __future__ import annotations

from typing import Protocol

from kiosk.packet.build import Packet

# What the consent text may promise: it says the data is locked (encrypted) on the
# kiosk because the store keeps only sealed packets (kiosk.store.sqlite); a test
# ties the sentence to this, and another checks the data folder for clear data.
BIOMETRICS_ENCRYPTED_AT_REST = True


class EnrollmentSink(Protocol):
    """Where the flow hands a finished enrollment; the only way data reaches disk."""

    def save(self, packet: Packet) -> None:
        """Seal ``packet`` and keep it durably, or raise StoreError and keep nothing.

        Saving an enrollment already kept (a retry) succeeds and keeps nothing new.
        """
        ...

    def has_room(self) -> bool:
        """Whether one more enrollment fits on disk, with a margin: asked before a
        citizen starts, so a full disk is met at the welcome screen, not at the review."""
        ...

    def last_sequence(self) -> int:
        """The highest manifest ``sequence`` ever kept, 0 when none: the flow numbers
        its enrollments on from here (see kiosk.flow.enrollment.new_enrollment_id)."""
        ...
