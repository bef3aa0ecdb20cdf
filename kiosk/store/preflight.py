"""Check the data folder before the window opens, so a bad ``station.data_dir``
is a one-line error from ``kiosk run`` instead of a fault behind the welcome screen.

    >>> check_data_dir(Path("/proc/x"))
    Traceback (most recent call last):
    kiosk.errors.StoreError: /proc/x: cannot be created (No such file or directory); ...
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.store.sqlite import make_private_dir

MB = 1024 * 1024
# Room for a few hundred enrollments and for SQLite to work; a fuller disk is
# refused at start rather than found out by a citizen at the review.
MIN_FREE_BYTES = 200 * MB


def check_data_dir(path: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Make sure ``path`` is a folder the kiosk can write, with ``min_free_bytes`` free.

    Creates the folder (0700) if it is missing. Raises StoreError with a one-line
    ``<path>: <problem>; <what to do>`` message otherwise.
    """
    if path.exists() and not path.is_dir():
        raise StoreError(
            f"{path}: not a folder; set station.data_dir to a folder, or move that file away"
        )
    try:
        make_private_dir(path)
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot be created ({exc.strerror}); set station.data_dir to a folder "
            "on the station's data partition"
        ) from exc
    try:
        with tempfile.TemporaryFile(dir=path):  # the real test: access() is not, under /proc
            pass
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot write there ({exc.strerror}); give the kiosk's user write "
            "access, or set station.data_dir to another folder"
        ) from exc
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise StoreError(
            f"{path}: only {free // MB} MB free, the kiosk needs {min_free_bytes // MB} MB; "
            "free space on that disk (carry the enrollments off first with "
            "`kiosk export --to DIR`)"
        )
