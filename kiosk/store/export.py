"""Copy sealed packets to a USB stick: ``kiosk export --to DIR``.

For offices with no link: the hub imports the folder (``kiosk-hub import DIR``)
with the same checks as an upload, and leaves a signed receipt on the stick.
Packets are sealed, so the stick carries no biometrics in clear. Safe while the
kiosk runs. The export itself changes no packet's state; a hub receipt found on
the stick (kiosk/packet/receipt.py) marks the packets it lists acknowledged
first, so they are not carried again and are purged in time.

The export is one new folder, ``<station>-<date>-<time>``, written as
``<name>.partial`` and renamed once every file in it is on the stick (fsync), so
a folder without ``.partial`` is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.packet.keys import StationKeyFiles
from kiosk.packet.receipt import FILE_PATTERN, ReceiptRejected, read_receipt
from kiosk.store.durable import fsync_dir, write_synced
from kiosk.store.sqlite import INDEX_NAME, WAITING, EnrollmentStore


def _target(to_dir: Path, label: str | None, now: datetime) -> Path:
    stem = "-".join(part for part in ("packets", label, f"{now:%Y%m%d-%H%M%S}") if part)
    for n in range(1, 1000):
        name = stem if n == 1 else f"{stem}-{n}"
        path = to_dir / name
        if not path.exists() and not path.with_name(name + ".partial").exists():
            return path
    raise StoreError(f"{to_dir}: too many exports named {stem}; use another folder")


def _copy(data: bytes, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_synced(fd, data)  # on the stick before it is pulled
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Export:
    folder: Path
    exported: int
    acknowledged: int = 0  # packets a hub receipt on the stick listed
    warnings: tuple[str, ...] = ()  # receipts that did not count, and why


def apply_receipts(
    store: EnrollmentStore, folder: Path, hub_certificate: Path
) -> tuple[int, list[str]]:
    """Mark acknowledged each waiting packet that a receipt in ``folder``, signed by
    the pinned hub, lists with the same SHA-256. Returns how many, and a warning per
    receipt that does not count."""
    acknowledged, warnings = 0, []
    receipts = sorted(path for path in folder.rglob(FILE_PATTERN) if path.is_file())
    if not receipts:
        return 0, []
    try:
        certificate = hub_certificate.read_bytes()
    except OSError as exc:
        return 0, [f"{hub_certificate}: cannot check the hub's receipts ({exc.strerror})"]
    for path in receipts:
        try:
            receipt = read_receipt(path.read_bytes(), certificate)
        except (ReceiptRejected, OSError, ValueError) as exc:
            warnings.append(f"{path.name}: not counted: {exc}")
            continue
        for enrollment_id, sha256 in receipt.packets.items():
            stored = store.packet(enrollment_id)
            if (
                stored is not None
                and stored.station_id == receipt.station_id
                and stored.sha256 == sha256
                and stored.state in WAITING
            ):
                store.record_verdict(enrollment_id, accepted=True)
                acknowledged += 1
    return acknowledged, warnings


def export_packets(
    data_dir: Path,
    to_dir: Path,
    label: str | None = None,
    everything: bool = False,
    now: datetime | None = None,
) -> Export:
    """Copy the packets waiting for the hub (``everything``: every packet still on
    the kiosk) from ``data_dir`` into a new folder in ``to_dir``, after applying the
    hub's receipts found in ``to_dir``.

    ``label`` (the station id) goes into the folder's name. Never creates a store
    or the target folder; raises StoreError with a one-line message. A damaged
    packet is quarantined on the kiosk and named in the error, after the others
    are copied.
    """
    if not (data_dir / INDEX_NAME).is_file():
        raise StoreError(
            f"{data_dir}: no store here; check --data-dir, or station.data_dir in the station file"
        )
    if not to_dir.is_dir():
        problem = "not a folder" if to_dir.exists() else "does not exist"
        # never create it: an unmounted stick's mount point lies on the SD card
        raise StoreError(f"{to_dir}: {problem}; mount the USB stick and give its folder")
    target = _target(to_dir, label, now or datetime.now().astimezone())
    partial = target.with_name(target.name + ".partial")
    store = EnrollmentStore(data_dir)
    damaged: list[str] = []
    try:
        hub_certificate = StationKeyFiles.in_data_dir(data_dir).hub_tls
        acknowledged, warnings = apply_receipts(store, to_dir, hub_certificate)
        packets = store.on_disk() if everything else store.waiting()
        partial.mkdir()
        for stored in packets:
            try:
                data = store.read_sealed(stored.enrollment_id)
            except StoreError as exc:
                damaged.append(str(exc))
                continue
            _copy(data, partial / stored.path.name)
        fsync_dir(partial)
        partial.rename(target)
        fsync_dir(to_dir)
    except OSError as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(partial)
        if isinstance(exc, StoreError):
            raise
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"{to_dir}: full; use a USB stick with more room") from exc
        raise StoreError(f"{to_dir}: cannot write the export ({exc.strerror})") from exc
    finally:
        store.close()
    if damaged:
        raise StoreError(
            f"exported {len(packets) - len(damaged)} packets to {target}, but "
            f"{len(damaged)} were damaged and kept aside: {damaged[0]}"
        )
    return Export(target, len(packets), acknowledged, tuple(warnings))
