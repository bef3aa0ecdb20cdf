"""Key files of a station (it signs packets) and of a hub (packets are sealed to it).

Made once, at provisioning; the private key files are readable by their owner alone
(0600) and a private key file anyone else may read is refused when loaded.

Station: an Ed25519 signing key, stored as an unencrypted PEM PKCS#8 file. Its
public key (32 raw bytes; a PEM SubjectPublicKeyInfo file to carry) is registered
at the hub.

Hub: an HPKE key pair for the hybrid KEM ML-KEM-768 + X25519 (a post-quantum
recipient: fingerprints and faces never change, so a packet must stay sealed for
decades). ``cryptography`` offers no serialisation of the hybrid key itself, so the
file holds its two halves, each in its standard form, one after the other: the
ML-KEM-768 key (PEM PKCS#8, the 64-byte seed form) then the X25519 key (PEM
PKCS#8). The hub's public key as bytes is the ML-KEM-768 public key (1,184 bytes)
followed by the X25519 public key (32 bytes), the order of the hybrid KEM's own
encoding; its file holds the two halves as PEM SubjectPublicKeyInfo blocks.

A key is named by :func:`key_id`: the first 16 hex digits of the SHA-256 of its
public bytes.

Example (provisioning)::

    station = generate_station_key(Path("/var/lib/kiosk/station.key"))
    save_station_public_key(Path("station.pub"), station_public_bytes(station))
    hub = generate_hub_key(Path("/var/lib/kiosk-hub/hub.key"))
    save_hub_public_key(Path("hub.pub"), hub.public_bytes())
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PrivateKey, MLKEM768X25519PublicKey

from kiosk.errors import KioskError

PRIVATE_FILE_MODE = 0o600  # the store's mode for private files, kept here: no import cycle
PUBLIC_FILE_MODE = 0o644
MLKEM768_PUBLIC_BYTES = 1184
X25519_PUBLIC_BYTES = 32
HUB_PUBLIC_BYTES = MLKEM768_PUBLIC_BYTES + X25519_PUBLIC_BYTES
STATION_PUBLIC_BYTES = 32

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


class KeyFileError(KioskError, ValueError):
    """A key file is malformed or holds a key of the wrong kind."""


class KeyFileExposed(KioskError, PermissionError):
    """A private key file may be read by users other than its owner."""


class KeyFileExists(KioskError, FileExistsError):
    """A key file was not made because a file of that name exists already."""


@dataclass(frozen=True)
class StationKeyFiles:
    """Where a station keeps its keys: ``keys/`` in its data folder, written at provisioning.

    ``station.key`` (private, 0600) signs its packets and heartbeats; ``station.pub``
    goes to the hub; ``hub.pub`` is the key packets are sealed to; ``hub-tls.pem``
    is the hub's TLS certificate, the only one the station trusts (pinned).
    """

    folder: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path | str) -> StationKeyFiles:
        return cls(Path(data_dir) / "keys")

    @property
    def station_key(self) -> Path:
        return self.folder / "station.key"

    @property
    def station_public(self) -> Path:
        return self.folder / "station.pub"

    @property
    def hub_public(self) -> Path:
        return self.folder / "hub.pub"

    @property
    def hub_tls(self) -> Path:
        return self.folder / "hub-tls.pem"


def key_id(public_bytes: bytes) -> str:
    """The name of a public key: the first 16 hex digits of the SHA-256 of its bytes."""
    return hashlib.sha256(public_bytes).hexdigest()[:16]


# -- station ----------------------------------------------------------------------


def generate_station_key(path: Path | str) -> Ed25519PrivateKey:
    """Make a station's Ed25519 signing key and write it to ``path`` (0600).

    Raises KeyFileExists when ``path`` exists: a key is never overwritten.
    """
    key = Ed25519PrivateKey.generate()
    _write_new(Path(path), _pkcs8(key), PRIVATE_FILE_MODE, "private key")
    return key


def load_station_key(path: Path | str) -> Ed25519PrivateKey:
    """The station's signing key from ``path``.

    Raises KeyFileExposed when group or others may read it, KeyFileError when it
    is not an Ed25519 private key, OSError when it cannot be read.
    """
    path = Path(path)
    blocks = _pem_blocks(path, _read_private(path), expected=1)
    return _load_private(path, blocks[0], Ed25519PrivateKey, "an Ed25519 station key")


def station_public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of the station's public key."""
    return key.public_key().public_bytes_raw()


def save_station_public_key(path: Path | str, public_bytes: bytes) -> None:
    """Write a station's public key (to register at the hub) as PEM; never overwrites."""
    public = _station_public(public_bytes)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(Path(path), pem, PUBLIC_FILE_MODE, "public key")


def load_station_public_key(path: Path | str) -> bytes:
    """The 32 raw bytes of the station public key in the PEM file at ``path``."""
    path = Path(path)
    blocks = _pem_blocks(path, _read_public(path), expected=1)
    key = _load_public(path, blocks[0], Ed25519PublicKey, "an Ed25519 station public key")
    return key.public_bytes_raw()


def _station_public(public_bytes: bytes) -> Ed25519PublicKey:
    if len(public_bytes) != STATION_PUBLIC_BYTES:
        raise KeyFileError(
            f"a station public key has {STATION_PUBLIC_BYTES} bytes, not {len(public_bytes)}"
        )
    return Ed25519PublicKey.from_public_bytes(public_bytes)


# -- hub --------------------------------------------------------------------------


@dataclass(frozen=True)
class HubPrivateKey:
    """The hub's hybrid HPKE private key, kept as its two halves."""

    mlkem: mlkem.MLKEM768PrivateKey
    x25519: x25519.X25519PrivateKey

    @classmethod
    def generate(cls) -> HubPrivateKey:
        return cls(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    @property
    def hpke_key(self) -> MLKEM768X25519PrivateKey:
        """The key as HPKE takes it (``Suite.decrypt``)."""
        return MLKEM768X25519PrivateKey(self.mlkem, self.x25519)

    def public_bytes(self) -> bytes:
        """ML-KEM-768 public key (1,184 bytes) then X25519 public key (32 bytes)."""
        return (
            self.mlkem.public_key().public_bytes_raw() + self.x25519.public_key().public_bytes_raw()
        )

    def key_id(self) -> str:
        return key_id(self.public_bytes())


def generate_hub_key(path: Path | str) -> HubPrivateKey:
    """Make a hub's hybrid key pair and write the private key to ``path`` (0600).

    Raises KeyFileExists when ``path`` exists: a key is never overwritten.
    """
    key = HubPrivateKey.generate()
    _write_new(Path(path), _pkcs8(key.mlkem) + _pkcs8(key.x25519), PRIVATE_FILE_MODE, "private key")
    return key


def load_hub_private_key(path: Path | str) -> HubPrivateKey:
    """The hub's private key from ``path`` (ML-KEM-768 PEM block, then X25519 PEM block).

    Raises KeyFileExposed when group or others may read it, KeyFileError when it
    does not hold those two keys, OSError when it cannot be read.
    """
    path = Path(path)
    first, second = _pem_blocks(path, _read_private(path), expected=2)
    return HubPrivateKey(
        _load_private(path, first, mlkem.MLKEM768PrivateKey, "an ML-KEM-768 key first"),
        _load_private(path, second, x25519.X25519PrivateKey, "an X25519 key second"),
    )


def hub_hpke_public_key(public_bytes: bytes) -> MLKEM768X25519PublicKey:
    """The hub's public key as HPKE takes it (``Suite.encrypt``), from its bytes."""
    if len(public_bytes) != HUB_PUBLIC_BYTES:
        raise KeyFileError(
            f"a hub public key has {HUB_PUBLIC_BYTES} bytes "
            f"(ML-KEM-768 then X25519), not {len(public_bytes)}"
        )
    return MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(public_bytes[:MLKEM768_PUBLIC_BYTES]),
        x25519.X25519PublicKey.from_public_bytes(public_bytes[MLKEM768_PUBLIC_BYTES:]),
    )


def save_hub_public_key(path: Path | str, public_bytes: bytes) -> None:
    """Write the hub's public key (to install on stations) as two PEM blocks; never overwrites."""
    hub_hpke_public_key(public_bytes)  # checks the length and both halves
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = mlkem.MLKEM768PublicKey.from_public_bytes(
        public_bytes[:MLKEM768_PUBLIC_BYTES]
    ).public_bytes(serialization.Encoding.PEM, spki) + x25519.X25519PublicKey.from_public_bytes(
        public_bytes[MLKEM768_PUBLIC_BYTES:]
    ).public_bytes(serialization.Encoding.PEM, spki)
    _write_new(Path(path), pem, PUBLIC_FILE_MODE, "public key")


def load_hub_public_key(path: Path | str) -> bytes:
    """The hub's public key bytes (ML-KEM-768 then X25519) from its PEM file."""
    path = Path(path)
    first, second = _pem_blocks(path, _read_public(path), expected=2)
    pq = _load_public(path, first, mlkem.MLKEM768PublicKey, "an ML-KEM-768 public key first")
    classic = _load_public(path, second, x25519.X25519PublicKey, "an X25519 public key second")
    return pq.public_bytes_raw() + classic.public_bytes_raw()


# -- files ------------------------------------------------------------------------


def _pkcs8(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_new(path: Path, data: bytes, mode: int, what: str) -> None:
    """Create ``path`` exclusively with ``mode`` and write ``data`` durably."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise KeyFileExists(
            f"{path}: exists already; a {what} is never overwritten "
            "(move the old file away first if it really is to be replaced)"
        ) from None
    try:
        os.fchmod(fd, mode)  # the umask may have cut the mode; never widen a private one
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _read_public(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: the public key cannot be read ({exc.strerror})") from exc


def _read_private(path: Path) -> bytes:
    """The content of a private key file, refused when group or others may read it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyFileError(f"{path}: the private key cannot be read ({exc.strerror})") from exc
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise KeyFileExposed(
                f"{path}: this private key file is open to other users (mode {mode:04o}); "
                f"make it the owner's alone with `chmod 600 {path}`"
            )
        with os.fdopen(fd, "rb") as file:
            fd = -1
            return file.read()
    finally:
        if fd >= 0:
            os.close(fd)


def _pem_blocks(path: Path, data: bytes, expected: int) -> list[bytes]:
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(data)]
    if len(blocks) != expected:
        raise KeyFileError(
            f"{path}: expected {expected} PEM block{'s' * (expected > 1)}, found {len(blocks)}"
        )
    return blocks


def _load_private(path: Path, pem: bytes, kind: type, what: str):
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a readable private key ({exc})") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: expected {what}, found {type(key).__name__}")
    return key


def _load_public(path: Path, pem: bytes, kind: type, what: str):
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a readable public key ({exc})") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: expected {what}, found {type(key).__name__}")
    return key
