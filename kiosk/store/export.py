"""Copy the store into one consistent file, e.g. on a USB stick: ``kiosk export``.

The copy goes through SQLite's backup API, so it holds every committed
enrollment, including those still only in the -wal file, and it is safe while
the kiosk runs. The result is a single file (rollback journal, not WAL) that
opens on its own anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from datetime import datetime
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.store.sqlite import FILE_MODE, STORE_NAME, explain


def _private_new_file(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        # the umask cut the mode; a FAT stick has no modes and may refuse the change
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _target(to_dir: Path, label: str | None, now: datetime) -> Path:
    stem = "-".join(part for part in ("enrollments", label, f"{now:%Y%m%d-%H%M%S}") if part)
    for n in range(1, 1000):
        name = f"{stem}.sqlite3" if n == 1 else f"{stem}-{n}.sqlite3"
        path = to_dir / name
        if not path.exists() and not path.with_name(name + ".partial").exists():
            return path
    raise StoreError(f"{to_dir}: too many exports named {stem}; use another folder")


def export_store(
    data_dir: Path, to_dir: Path, label: str | None = None, now: datetime | None = None
) -> tuple[Path, int]:
    """Copy ``data_dir``'s store into a new 0600 file in ``to_dir``.

    ``label`` (the station id) goes into the file name. Returns the new file and
    how many enrollments it holds. Never creates a store or the target folder;
    raises StoreError with a one-line message.
    """
    source = data_dir / STORE_NAME
    if not source.is_file():
        raise StoreError(
            f"{source}: no store here; check --data-dir, or station.data_dir in the station file"
        )
    if not to_dir.is_dir():
        problem = "not a folder" if to_dir.exists() else "does not exist"
        # never create it: an unmounted stick's mount point lies on the SD card
        raise StoreError(f"{to_dir}: {problem}; mount the USB stick and give its folder")
    target = _target(to_dir, label, now or datetime.now().astimezone())
    partial = target.with_name(target.name + ".partial")
    try:
        _private_new_file(partial)
    except OSError as exc:
        raise StoreError(
            f"{to_dir}: cannot write there ({exc.strerror}); try another folder"
        ) from exc
    try:
        # mode=rw: a wrong path must fail, not make an empty store
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True)
        try:
            dest = sqlite3.connect(partial)
            try:
                src.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
                if dest.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise StoreError(
                        f"{source}: the copy does not check out; call a technician, "
                        "keep the store files as they are"
                    )
                count = dest.execute("SELECT count(*) FROM enrollments").fetchone()[0]
            finally:
                dest.close()
        finally:
            src.close()
        with open(partial, "rb+") as written:
            os.fsync(written.fileno())  # on the stick before it is pulled
        if target.exists():
            raise StoreError(f"{target}: appeared during the export; export again")
        partial.rename(target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or (
            isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        ):
            raise StoreError(f"{to_dir}: full; use a USB stick with more room") from exc
        if isinstance(exc, sqlite3.Error):
            raise StoreError(explain(exc, source)) from exc
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise StoreError(f"{to_dir}: cannot write the export ({exc.strerror})") from exc
        raise
    return target, count
