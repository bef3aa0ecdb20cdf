"""Today's figures for the operator: how many citizens were recorded, how long
each step took (medians), how many retakes and exceptions.

Kept in ``<data_dir>/figures/<local date>.json``, rewritten crash-safely after
each saved enrollment, so a restart at noon does not reset the day. Only counts
and durations: nothing in it tells who was recorded.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from kiosk.flow.enrollment import Enrollment
from kiosk.health.inventory import write_private_file

log = logging.getLogger(__name__)
KEEP_DAYS = 31  # older day files are removed


@dataclass
class DayFigures:
    day: str  # ISO date, local time
    enrolled: int = 0
    incomplete: int = 0  # saved with a module's capture missing: the citizen comes back
    retakes: int = 0  # tries beyond the first, face and fingers
    exceptions: int = 0  # fingers flagged missing, injured or unusable
    approvals: int = 0  # holds an operator decided
    step_seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, enrollment: Enrollment) -> None:
        self.enrolled += 1
        self.incomplete += bool(enrollment.missing)
        face = enrollment.face.attempts - 1 if enrollment.face else 0
        fingers = sum(max(0, r.attempts - 1) for r in enrollment.fingers.values())
        self.retakes += face + fingers
        self.exceptions += len(enrollment.flagged_fingers)
        self.approvals += len(enrollment.operator_approvals)
        for step, seconds in enrollment.step_seconds.items():
            self.step_seconds.setdefault(step, []).append(round(seconds, 2))

    def medians(self) -> dict[str, float]:
        return {step: statistics.median(times) for step, times in self.step_seconds.items()}

    def summary(self) -> dict:
        """What the operator's screen and ``kiosk doctor`` show."""
        return {
            "day": self.day,
            "enrolled": self.enrolled,
            "incomplete": self.incomplete,
            "retakes": self.retakes,
            "exceptions": self.exceptions,
            "approvals": self.approvals,
            "step_median_seconds": self.medians(),
        }


class FiguresBook:
    """The day's figures, on disk in ``folder``; thread-safe."""

    def __init__(self, folder: Path, today: Callable[[], date] = lambda: datetime.now().date()):
        self.folder = Path(folder)
        self._today = today
        self._lock = threading.Lock()
        self._figures: DayFigures | None = None

    def _path(self, day: str) -> Path:
        return self.folder / f"{day}.json"

    def current(self) -> DayFigures:
        with self._lock:
            return self._current()

    def _current(self) -> DayFigures:
        day = self._today().isoformat()
        if self._figures is None or self._figures.day != day:
            self._figures = self._load(day)
        return self._figures

    def _load(self, day: str) -> DayFigures:
        path = self._path(day)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return DayFigures(**{**data, "day": day})
        except FileNotFoundError:
            return DayFigures(day)
        except (OSError, ValueError, TypeError) as exc:  # damaged: start the day afresh, say so
            log.warning("%s: today's figures unreadable (%s); counting afresh", path, exc)
            return DayFigures(day)

    def record(self, enrollment: Enrollment) -> None:
        """Count a saved enrollment. A disk problem is logged, never raised: the
        enrollment itself is already safe in the store."""
        with self._lock:
            figures = self._current()
            figures.add(enrollment)
            try:
                write_private_file(self._path(figures.day), json.dumps(figures.__dict__))
                self._remove_old(figures.day)
            except OSError as exc:
                log.error("today's figures not written: %s", exc)

    def _remove_old(self, day: str) -> None:
        oldest = date.fromordinal(date.fromisoformat(day).toordinal() - KEEP_DAYS).isoformat()
        for path in self.folder.glob("*.json"):
            if path.stem < oldest:
                path.unlink(missing_ok=True)
