"""The ten fingers, in the fixed order the kiosk asks for them."""

from __future__ import annotations

import enum


class Finger(enum.IntEnum):
    """Finger positions as numbered by ISO/IEC 19794-4 and ANSI/NIST-ITL."""

    RIGHT_THUMB = 1
    RIGHT_INDEX = 2
    RIGHT_MIDDLE = 3
    RIGHT_RING = 4
    RIGHT_LITTLE = 5
    LEFT_THUMB = 6
    LEFT_INDEX = 7
    LEFT_MIDDLE = 8
    LEFT_RING = 9
    LEFT_LITTLE = 10

    @property
    def label_key(self) -> str:
        """The i18n key of this finger's name."""
        return f"flow.fingers.{self.name.lower()}"


FINGER_ORDER: tuple[Finger, ...] = tuple(Finger)


class FingerException(enum.StrEnum):
    """Why a finger has no usable print; each one is flagged for the operator."""

    MISSING = "missing"  # amputated or absent
    INJURED = "injured"  # bandaged, wounded
    UNUSABLE = "unusable"  # present, but every try failed the quality check

    @property
    def label_key(self) -> str:
        return f"flow.exception.{self.value}"
