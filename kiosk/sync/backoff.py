"""Capped exponential backoff with full jitter, for retrying an unreachable hub.

After the n-th failure in a row (counted from 0) the wait is a random time
between 0 and ``min(cap, base * 2**n)`` (docs/sync-protocol.md): stations that
lost the hub at the same moment do not all come back at the same moment. A
success resets the count. The count stops growing once the cap is reached, so a
hub that is down for weeks costs nothing more than one that is down for minutes.

Example::

    backoff = Backoff(base=2.0, cap=300.0)
    while not delivered():
        stop.wait(backoff.next_delay())
    backoff.reset()
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for retries: ``next_delay()`` after each failure, ``reset()`` after a success.

    ``uniform(low, high)`` draws the jittered delay (``random.uniform`` by
    default; a test passes its own). Not thread-safe: one runner owns it.
    """

    def __init__(
        self,
        base: float = 2.0,
        cap: float = 300.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base {base}, cap {cap}")
        self.base = base
        self.cap = cap
        self._uniform = uniform
        self.failures = 0  # failures in a row since the last reset (counted without bound)
        self._exponent = 0  # stops growing at the cap: no float overflow after weeks

    def ceiling(self) -> float:
        """The longest the next delay may be: ``min(cap, base * 2**attempt)``."""
        return min(self.cap, self.base * 2**self._exponent)

    def next_delay(self) -> float:
        """The wait before the next retry (full jitter), and count one more failure."""
        ceiling = self.ceiling()
        self.failures += 1
        if ceiling < self.cap:
            self._exponent += 1
        return min(ceiling, max(0.0, self._uniform(0.0, ceiling)))

    def reset(self) -> None:
        """A success: the next failure waits at most ``base`` again."""
        self.failures = 0
        self._exponent = 0
