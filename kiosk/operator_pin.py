"""The operator's PIN: what lets an operator approve an enrollment the kiosk
would not save on its own (a citizen under the recording age, too many fingers
marked missing or injured).

The station file keeps only a salted scrypt hash of the PIN, made by
``kiosk hash-pin``; wrong PINs lock the pad for a while, so a citizen cannot
guess a 4-to-8-digit PIN at the kiosk::

    pin = OperatorPin(hash_pin("4821"))
    pin.verify("4821")  # True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

# scrypt cost: about 50 ms on a Raspberry Pi 4, so guessing offline is slow too
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024  # scrypt needs about 128 * N * r bytes
PIN_DIGITS = range(4, 9)
WRONG_TRIES_BEFORE_LOCK = 5
LOCK_SECONDS = 60.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)


def valid_pin(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and len(pin) in PIN_DIGITS


def hash_pin(pin: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) for the station file; raises ValueError
    for anything but 4 to 8 digits."""
    if not valid_pin(pin):
        raise ValueError("an operator PIN is 4 to 8 digits")
    salt = secrets.token_bytes(16)
    digest = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def parse_pin_hash(encoded: str) -> tuple[bytes, bytes, int, int, int]:
    """(salt, digest, n, r, p) of a ``hash_pin`` string; ValueError if it is not one."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("expected scrypt$N$r$p$salt$hash, as printed by `kiosk hash-pin`")
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = (
            base64.b64decode(parts[4], validate=True),
            base64.b64decode(parts[5], validate=True),
        )
    except ValueError as exc:
        raise ValueError(f"a damaged PIN hash ({exc})") from None
    if n < 2**10 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 4 or len(digest) != 32:
        raise ValueError("a PIN hash with impossible scrypt parameters")
    if 2 * 128 * n * r > SCRYPT_MAXMEM:  # checking it would fail, or take seconds
        raise ValueError("a PIN hash too costly to check at the kiosk")
    return salt, digest, n, r, p


class OperatorPin:
    """Checks PINs against one hash; thread-safe, with a lock-out after wrong tries."""

    def __init__(self, encoded: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._salt, self._digest, self._n, self._r, self._p = parse_pin_hash(encoded)
        self._clock = clock
        self._lock = threading.Lock()
        self._wrong = 0
        self._locked_until = 0.0

    def locked_for(self) -> float:
        """Seconds until PINs are checked again (0 when they are)."""
        return max(0.0, self._locked_until - self._clock())

    def verify(self, pin: str) -> bool:
        """True for the right PIN; always False while locked."""
        with self._lock:
            if self.locked_for() > 0 or not valid_pin(pin):
                return False
            candidate = _scrypt(pin, self._salt, self._n, self._r, self._p)
            if hmac.compare_digest(candidate, self._digest):
                self._wrong = 0
                return True
            self._wrong += 1
            if self._wrong >= WRONG_TRIES_BEFORE_LOCK:
                self._wrong = 0
                self._locked_until = self._clock() + LOCK_SECONDS
            return False
