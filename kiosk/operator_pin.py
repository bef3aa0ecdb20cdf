"""The operators' and the technician's PINs: what opens the screens a citizen
must not reach, and lets an operator approve an enrollment the kiosk would not
save on its own (a citizen under the recording age, too many fingers flagged).

The station file keeps only an Argon2id hash of each PIN (memory-hard, salted, by
argon2-cffi), made by ``kiosk hash-pin``; wrong PINs lock the pad, each lock-out
twice as long as the last, so a citizen cannot guess a 4-to-8-digit PIN at the
kiosk and a stolen station file is slow to attack. Wrong PINs under every name
count together: trying each operator's name in turn gains nothing::

    pad = PinPad({"siti": hash_pin("4821")})
    pad.verify("siti", "4821")  # True
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's Argon2id setting (19 MiB, 2 passes, 1 lane): ~40 ms on a PC, a few
# hundred on a Raspberry Pi 4, so every guess costs an attacker memory and time too
HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash asking for more than this would take seconds (or the Pi's memory) to check.
MAX_MEMORY_KIB = 256 * 1024
MAX_TIME_COST = 10
PIN_DIGITS = range(4, 9)
WRONG_TRIES_BEFORE_LOCK = 5
LOCK_SECONDS = 60.0  # the first lock-out; each next one doubles, up to MAX_LOCK_SECONDS
MAX_LOCK_SECONDS = 30 * 60.0


def valid_pin(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and len(pin) in PIN_DIGITS


def hash_pin(pin: str) -> str:
    """``$argon2id$v=19$m=...,t=...,p=...$salt$hash`` for the station file; raises
    ValueError for anything but 4 to 8 digits."""
    if not valid_pin(pin):
        raise ValueError("an operator PIN is 4 to 8 digits")
    return HASHER.hash(pin)


def parse_pin_hash(encoded: str) -> argon2.Parameters:
    """The Argon2 parameters of a ``hash_pin`` string; ValueError if it is not one, or
    one this kiosk should not check (another Argon2 type, too costly)."""
    if encoded.startswith("scrypt$"):
        raise ValueError("an scrypt hash from an older kiosk, not Argon2id")
    if not encoded.startswith("$argon2id$"):
        raise ValueError("expected $argon2id$..., as printed by `kiosk hash-pin`")
    try:
        parameters = argon2.extract_parameters(encoded)
    except (InvalidHashError, ValueError) as exc:
        raise ValueError(f"a damaged PIN hash ({str(exc) or 'malformed'})") from None
    if parameters.memory_cost > MAX_MEMORY_KIB or parameters.time_cost > MAX_TIME_COST:
        raise ValueError("a PIN hash too costly to check at the kiosk")
    if (
        parameters.memory_cost < 8 * parameters.parallelism  # Argon2's own minimum
        or parameters.time_cost < 1
        or (parameters.salt_len, parameters.hash_len) != (HASHER.salt_len, HASHER.hash_len)
    ):
        raise ValueError("a PIN hash with impossible Argon2 parameters, or cut short")
    return parameters


class PinPad:
    """Checks a PIN given under a name against that name's hash; thread-safe, with
    one growing lock-out for the whole pad after wrong tries."""

    def __init__(
        self, hashes: Mapping[str, str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        for encoded in hashes.values():
            parse_pin_hash(encoded)
        self._hashes = dict(hashes)
        self._clock = clock
        self._lock = threading.Lock()
        self._wrong = 0
        self._lockouts = 0  # since the last right PIN
        self._locked_until = 0.0

    @property
    def names(self) -> list[str]:
        return list(self._hashes)

    def locked_for(self) -> float:
        """Seconds until PINs are checked again (0 when they are)."""
        return max(0.0, self._locked_until - self._clock())

    def verify(self, name: str, pin: str) -> bool:
        """True for ``name``'s right PIN; always False while locked. An unknown name
        counts as a wrong PIN (and takes as long to refuse)."""
        with self._lock:
            if self.locked_for() > 0 or not valid_pin(pin):
                return False
            try:
                HASHER.verify(self._hashes.get(name) or _unknown_name_hash(), pin)
                if name not in self._hashes:
                    raise VerificationError
            except VerificationError:  # a wrong PIN (the hash itself was checked at start)
                self._wrong += 1
                if self._wrong >= WRONG_TRIES_BEFORE_LOCK:
                    self._wrong = 0
                    seconds = min(LOCK_SECONDS * 2**self._lockouts, MAX_LOCK_SECONDS)
                    self._lockouts += 1
                    self._locked_until = self._clock() + seconds
                return False
            self._wrong = self._lockouts = 0
            return True


@functools.cache
def _unknown_name_hash() -> str:
    """Checked in place of an unknown name's hash, so a wrong name costs the same time."""
    return HASHER.hash("00000000")
