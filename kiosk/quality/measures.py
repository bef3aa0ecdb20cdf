"""One measured quantity with its pass band: the shape every quality check reports.

Face and fingerprint checks both return their measures as ``{name: Measure}``,
named as OFIQ and NFIQ 2 name them where they have a name, so one report
(``kiosk quality face|finger IMAGE [--json]``) and one table in docs/ serve both::

    Measure(0.93, minimum=0.8).passed        # True
    Measure(None, minimum=0.8).passed        # False: could not be measured
    Measure(12.0, maximum=5.0).threshold     # "<= 5"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Measure:
    """A value and the band it must fall in (either bound may be open).

    ``value`` is None when the quantity could not be measured at all (no face,
    no finger); such a measure never passes.
    """

    value: float | None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def passed(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return (self.minimum is None or self.value >= self.minimum) and (
            self.maximum is None or self.value <= self.maximum
        )

    @property
    def threshold(self) -> str:
        """The band as a person reads it: ">= 40", "<= 5", "60..200"."""
        if self.minimum is not None and self.maximum is not None:
            if self.minimum == self.maximum:
                return f"== {_number(self.minimum)}"
            return f"{_number(self.minimum)}..{_number(self.maximum)}"
        if self.minimum is not None:
            return f">= {_number(self.minimum)}"
        if self.maximum is not None:
            return f"<= {_number(self.maximum)}"
        return "any"

    def as_json(self) -> dict[str, object]:
        value = None if self.value is None else round(float(self.value), 4)
        return {"value": value, "threshold": self.threshold, "pass": self.passed}


def report_json(measures: Mapping[str, Measure], **extra: object) -> dict[str, object]:
    """The object ``kiosk quality ... --json`` prints: verdict, extra fields, measures."""
    verdict = "pass" if all(m.passed for m in measures.values()) else "fail"
    return {
        "verdict": verdict,
        **extra,
        "measures": {name: m.as_json() for name, m in measures.items()},
    }


def report_text(measures: Mapping[str, Measure], **extra: object) -> str:
    """The same report as aligned lines for a technician's terminal."""
    report = report_json(measures, **extra)
    width = max((len(name) for name in measures), default=0)
    lines = [f"{key}: {value}" for key, value in extra.items()]
    for name, measure in measures.items():
        value = "-" if measure.value is None else f"{measure.value:.4g}"
        mark = "pass" if measure.passed else "FAIL"
        lines.append(f"{name:<{width}}  {value:>9}  {measure.threshold:<12}  {mark}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)
