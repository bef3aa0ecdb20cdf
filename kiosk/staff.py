"""Who works the station besides the citizen: its operators and its technician.

An operator logs in with their name and PIN to open the operator screens or to
decide on an enrollment that waits for them; the latest operator to log in is
*on duty*, and every enrollment saved records them as its supervisor (the
packet's ``supervisor``). A login ends with "Keluar" or when its screens are left
untouched for ``IDLE_LOGOUT_S``; duty ends with "Selesai bertugas" or when
another operator logs in. The technician's PIN opens the diagnostics only.

While operators are set up and nobody is on duty, the welcome screen waits for
one: no enrollment is recorded without someone answerable for it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kiosk.operator_pin import PinPad

IDLE_LOGOUT_S = 90.0  # an operator who walked away leaves no open screens behind
TECHNICIAN = "@technician"  # the technician's name on the pad; no operator name starts with @


class Role(enum.StrEnum):
    OPERATOR = "operator"
    TECHNICIAN = "technician"


@dataclass(frozen=True)
class Login:
    name: str
    role: Role


class Desk:
    """The station's staff PINs, who is logged in and who is on duty; thread-safe
    (a PIN is checked off the UI thread: Argon2 is slow by design)."""

    def __init__(
        self,
        operators: Mapping[str, str],
        technician_hash: str | None = None,
        *,
        idle_logout_s: float = IDLE_LOGOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        hashes = dict(operators)
        if technician_hash:
            hashes[TECHNICIAN] = technician_hash
        self.pad = PinPad(hashes, clock)
        self.operators = list(operators)
        self.has_technician = bool(technician_hash)
        self.idle_logout_s = idle_logout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._login: Login | None = None
        self._last_active = 0.0
        self.on_duty: str | None = None

    def log_in(self, name: str, pin: str) -> Login | None:
        """Check ``name``'s PIN (``TECHNICIAN`` for the technician); the login, or None."""
        if not self.pad.verify(name, pin):
            return None
        login = Login(name, Role.TECHNICIAN if name == TECHNICIAN else Role.OPERATOR)
        with self._lock:
            self._login, self._last_active = login, self._clock()
            if login.role is Role.OPERATOR:
                self.on_duty = name
        return login

    @property
    def login(self) -> Login | None:
        """Who is logged in now; None once the login has been idle too long."""
        with self._lock:
            if self._login and self._clock() - self._last_active >= self.idle_logout_s:
                self._login = None
            return self._login

    def active(self) -> None:
        """The logged-in person touched their screen: the idle time starts again."""
        with self._lock:
            self._last_active = self._clock()

    def idle_left(self) -> float:
        with self._lock:
            return max(0.0, self.idle_logout_s - (self._clock() - self._last_active))

    def log_out(self) -> None:
        with self._lock:
            self._login = None

    def end_duty(self) -> None:
        """The operator on duty goes home: logged out, and nobody is on duty."""
        with self._lock:
            self._login = None
            self.on_duty = None

    @property
    def waiting_for_duty(self) -> bool:
        """Operators are set up, and none is on duty: citizens wait."""
        return bool(self.operators) and self.on_duty is None
