"""Writing files that survive a power cut: used by the kiosk's store and the hub's blobs.

A power cut may come at any byte. :func:`write_durably` leaves the file either
absent (or as it was) or whole: it writes a hidden temporary file beside it,
flushes it to the disk, renames it into place and flushes the folder, whose
entry the rename changed. Temporary files start with ``.``: readers skip them,
and the store removes any left by a cut at its next start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_PREFIX = "."
FILE_MODE = 0o600


def fsync_dir(path: Path) -> None:
    """Make a rename, creation or unlink in ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` and flush it to the disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600): after a power cut, ``path`` is whole or as it was.

    The temporary name is unique, so two writers of one path (two hub replicas on
    one folder) never write into each other's file; the last rename wins.
    """
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        write_synced(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)
