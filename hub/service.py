"""The hub's logic, apart from HTTP: uploads, verification, durability, heartbeats.

:class:`Hub` is what the web app (hub/app.py) and ``kiosk-hub import`` both call,
so a packet from a USB stick passes exactly the checks of one sent over the
network. Errors are :class:`HubError` subclasses; the web app maps each to its
status code (docs/sync-protocol.md).

Durability order when an upload completes: the bytes are checked against their
SHA-256, opened and verified (kiosk.packet.seal.open_sealed), written to the
blobs (durable when ``put`` returns), and only then the verdict is recorded in
the index; the upload's pieces are deleted last. A crash between two steps
leaves an upload whose every byte is there: the station's next ``HEAD`` and
``PATCH`` finish it, and the same packet always gets the same verdict.

Example::

    hub = Hub.open(Path("/var/lib/kiosk-hub"))
    verdict = hub.submit(Path("JB-01-20261128-000042.rekam").read_bytes())
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub import layout
from hub.storage import (
    ACCEPTED,
    REJECTED,
    AlreadyAccepted,
    Blobs,
    Heartbeat,
    Index,
    Upload,
    Verdict,
    chunk_key,
    now,
    open_blobs,
    open_index,
    packet_key,
    quarantine_key,
)
from kiosk.packet.keys import HubPrivateKey, key_id, load_hub_private_key
from kiosk.packet.seal import PacketRejected, inspect, open_sealed

MAX_PACKET_BYTES = 4 * 1024 * 1024  # docs/sync-protocol.md: Upload-Length at most 4 MiB
MAX_HEARTBEAT_BYTES = 64 * 1024
HEARTBEAT_LABEL = b"rekam-kiosk heartbeat v1\x00"
# a packet of an enrollment accepted already with other bytes: kept, never accepted
REPLAY_REASON = "replay of an accepted enrollment with other content"
RECENT_VERDICTS = 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
# what a station's enrollment ids are made of (kiosk.flow.enrollment.new_enrollment_id):
# refusing the rest keeps control characters (PostgreSQL text holds no NUL) out of the index
_ENROLLMENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

log = logging.getLogger("hub")


class HubError(Exception):
    """Base of the hub's refusals; the message is one line a technician can act on."""


class BadRequest(HubError, ValueError):
    """The request is malformed (metadata, headers, a heartbeat's body)."""


class UnknownStation(HubError, PermissionError):
    """The station is not registered at this hub (or its signature does not verify)."""


class TooLarge(HubError):
    """The packet is larger than the hub takes (MAX_PACKET_BYTES)."""


class UnknownUpload(HubError, LookupError):
    """The hub has no upload (and no verdict) with that SHA-256."""


class OffsetMismatch(HubError):
    """The station's offset is not the hub's; ``offset`` is where to resume."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


class Replay(HubError):
    """The enrollment was accepted already with other content; ``existing`` is that verdict."""

    def __init__(self, existing: Verdict) -> None:
        super().__init__(
            f"enrollment {existing.enrollment_id} was accepted already with other content "
            f"(sha256 {existing.sha256[:16]}...): this packet is kept in quarantine"
        )
        self.existing = existing


class HeartbeatReplay(HubError):
    """A heartbeat whose ``sent_at`` is not newer than the last one accepted."""


@dataclass(frozen=True)
class UploadState:
    """Where an upload stands: ``offset`` of ``length`` bytes received."""

    sha256: str
    offset: int
    length: int


def verdict_body(verdict: Verdict) -> dict[str, Any]:
    """The verdict body of docs/sync-protocol.md (plus ``detail``, which readers may ignore)."""
    return {
        "enrollment_id": verdict.enrollment_id,
        "sha256": verdict.sha256,
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "detail": verdict.detail,
        "received_at": verdict.received_at.isoformat(),
    }


class Hub:
    """One hub replica: its private key, the shared index and blobs, the stations folder.

    Thread-safe (the index and blobs are); several replicas may share one index and
    one blob store. ``simulation`` marks a hub of simulated stations, said loudly
    in every log line and on the dashboard.
    """

    def __init__(
        self,
        *,
        private_key: HubPrivateKey,
        index: Index,
        blobs: Blobs,
        data_dir: Path | None = None,
        simulation: bool = False,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.private_key = private_key
        self.index = index
        self.blobs = blobs
        self.data_dir = data_dir
        self.simulation = simulation
        self.clock = clock
        self.log: logging.Logger | logging.LoggerAdapter = (
            _SimulationLog(log, {}) if simulation else log
        )
        self._refresh_lock = threading.Lock()

    @classmethod
    def open(
        cls, data_dir: Path | str, *, database: str | None = None, blobs: str | None = None
    ) -> Hub:
        """The hub of the data folder ``data_dir`` (see hub/layout.py), its stations registered.

        ``database`` and ``blobs`` are URLs for hub/storage.py's open_index and
        open_blobs (None: the embedded ones in the folder). Raises KeyFileError
        (and its kin) for a missing or bad hub key, StorageError for a backend.
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(
                f"{data_dir}: no hub data folder here; make one with `kiosk-hub init {data_dir}`"
            )
        private_key = load_hub_private_key(layout.hub_key_path(data_dir))
        index = open_index(database, data_dir)
        try:
            hub = cls(
                private_key=private_key,
                index=index,
                blobs=open_blobs(blobs, data_dir),
                data_dir=data_dir,
                simulation=layout.is_simulation(data_dir),
            )
            hub.refresh_stations()
        except BaseException:
            index.close()
            raise
        return hub

    def close(self) -> None:
        self.index.close()
        close_blobs = getattr(self.blobs, "close", None)  # not in the protocol: S3's has one
        if close_blobs is not None:
            close_blobs()

    # -- stations ------------------------------------------------------------------

    def register_station(self, station_id: str, public_key: bytes) -> None:
        self.index.register_station(station_id, public_key, self.clock())

    def refresh_stations(self) -> None:
        """Register every ``stations/<id>.pub`` of the data folder (a new or changed key)."""
        if self.data_dir is None:
            return
        with self._refresh_lock:
            known = {station.station_id: station for station in self.index.stations()}
            folder = layout.stations_path(self.data_dir)
            for station_id, public_key in layout.registered_stations(self.data_dir).items():
                station = known.get(station_id)
                if station is not None and station.public_key == public_key:
                    continue
                # Replicas share one index but each has its folder: a replica whose
                # folder still holds a station's old key must not undo its new one.
                written = (folder / f"{station_id}.pub").stat().st_mtime
                if station is not None and written <= station.registered_at.timestamp():
                    self.log.warning(
                        "station %s: %s holds an older key than the shared index; "
                        "copy the newer stations/ folder to this replica",
                        station_id,
                        folder / f"{station_id}.pub",
                    )
                    continue
                self.register_station(station_id, public_key)
                self.log.info("station %s registered (key %s)", station_id, key_id(public_key))

    def station_keys(self, wanted: str | None = None) -> dict[str, bytes]:
        """Registered station keys; the folder is read again if ``wanted`` is not among them
        (a station registered with `kiosk-hub register` while the hub runs)."""
        keys = self.index.station_keys()
        if wanted is not None and wanted not in keys and self.data_dir is not None:
            self.refresh_stations()
            keys = self.index.station_keys()
        return keys

    def _require_station(self, station_id: str) -> bytes:
        public_key = self.station_keys(station_id).get(station_id)
        if public_key is None:
            raise UnknownStation(
                f"station {station_id!r} is not registered at this hub "
                "(kiosk-hub register DIR --station ID --key station.pub)"
            )
        return public_key

    # -- uploads -------------------------------------------------------------------

    def create_upload(
        self, *, station_id: str, enrollment_id: str, sha256: str, length: int
    ) -> UploadState | Verdict:
        """Create (or find) the upload of one packet: where to go on from, or the verdict
        the hub has for this very packet.

        Raises BadRequest, TooLarge, UnknownStation, Replay (the enrollment was
        accepted with another SHA-256).
        """
        if not _SHA256.fullmatch(sha256):
            raise BadRequest("sha256: expected 64 lower-case hex digits")
        if not enrollment_id:
            raise BadRequest("enrollment: missing from Upload-Metadata")
        if not _ENROLLMENT_ID.fullmatch(enrollment_id):
            raise BadRequest("enrollment: expected letters, digits, '.', '_' or '-' (at most 128)")
        if length <= 0:
            raise BadRequest("Upload-Length: expected a positive byte count")
        if length > MAX_PACKET_BYTES:
            raise TooLarge(f"{length} bytes; the hub takes packets up to {MAX_PACKET_BYTES} bytes")
        self._require_station(station_id)
        self._refuse_replay(enrollment_id, sha256)
        verdict = self.index.verdict_for_sha(sha256)
        if verdict is not None:
            return verdict
        upload = self.index.create_or_get_upload(
            Upload(sha256, station_id, enrollment_id, length, 0, self.clock())
        )
        if upload.length != length:
            raise BadRequest(
                f"Upload-Length {length}, but this upload was created with {upload.length}"
            )
        return UploadState(sha256, upload.offset, upload.length)

    def upload_state(self, sha256: str) -> UploadState:
        """The upload's offset and length; a packet with a verdict reads as complete.

        Raises UnknownUpload.
        """
        upload = self.index.get_upload(sha256) if _SHA256.fullmatch(sha256) else None
        if upload is not None:
            return UploadState(sha256, upload.offset, upload.length)
        verdict = self.index.verdict_for_sha(sha256) if _SHA256.fullmatch(sha256) else None
        if verdict is not None:
            return UploadState(sha256, verdict.size, verdict.size)
        raise UnknownUpload(f"no upload {sha256[:64]!r} at this hub; create it again")

    def expect(self, sha256: str, offset: int) -> UploadState:
        """Check a PATCH's offset before its body is read. Raises UnknownUpload, OffsetMismatch."""
        state = self.upload_state(sha256)
        if offset != state.offset:
            raise OffsetMismatch(
                state.offset, f"Upload-Offset {offset}, but the hub has {state.offset} bytes"
            )
        return state

    def append(self, sha256: str, offset: int, data: bytes) -> UploadState:
        """Keep ``data`` as the upload's bytes from ``offset`` (durably, in the blobs), then
        move the offset, unless another request moved it first.

        Raises UnknownUpload, OffsetMismatch (the hub's offset in it), BadRequest when
        ``data`` runs past the upload's length.
        """
        state = self.expect(sha256, offset)
        if not data:
            return state
        if offset + len(data) > state.length:
            raise BadRequest(
                f"{len(data)} bytes from offset {offset} run past Upload-Length {state.length}"
            )
        key = chunk_key(sha256, offset)
        self.blobs.put(key, data)
        if not self.index.advance_upload(sha256, offset, offset + len(data), key):
            self.blobs.delete(key)  # another request (or replica) got there first
            current = self.upload_state(sha256)
            raise OffsetMismatch(
                current.offset,
                f"another request moved the upload to {current.offset} bytes; resume from there",
            )
        return UploadState(sha256, offset + len(data), state.length)

    def finish(self, sha256: str) -> Verdict:
        """Verify and keep a fully received upload; its verdict.

        Raises UnknownUpload, OffsetMismatch (not complete yet; or its bytes did not
        match its SHA-256 and it starts again from 0), Replay.
        """
        verdict = self.index.verdict_for_sha(sha256)
        if verdict is not None:
            self._drop_upload(sha256)  # a crash may have left it behind
            return verdict
        upload = self.index.get_upload(sha256)
        if upload is None:
            raise UnknownUpload(f"no upload {sha256[:64]!r} at this hub; create it again")
        if upload.offset != upload.length:
            raise OffsetMismatch(
                upload.offset, f"the upload has {upload.offset} of {upload.length} bytes"
            )
        try:
            data = self._assemble(upload)
        except KeyError:
            # a piece vanished: another replica finished this upload meanwhile and
            # dropped its pieces; its verdict is this packet's
            verdict = self.index.verdict_for_sha(sha256)
            if verdict is not None:
                return verdict
            raise UnknownUpload(
                f"upload {sha256[:16]} lost a piece at this hub; create it again"
            ) from None
        if hashlib.sha256(data).hexdigest() != sha256:
            self.log.warning(
                "upload %s from %s: the bytes do not match their SHA-256; starting again from 0",
                sha256[:16],
                upload.station_id,
            )
            self._drop_upload(sha256)
            self.index.create_or_get_upload(upload)
            raise OffsetMismatch(
                0, "the bytes received do not match the upload's SHA-256; send them again from 0"
            )
        try:
            verdict = self._judge(
                data, sha256, station_id=upload.station_id, enrollment_id=upload.enrollment_id
            )
        except Replay:
            self._drop_upload(sha256)  # its bytes are in quarantine now
            raise
        self._drop_upload(sha256)
        return verdict

    def _assemble(self, upload: Upload) -> bytes:
        pieces = []
        expected = 0
        for chunk in self.index.upload_chunks(upload.sha256):
            if chunk.start != expected:
                break  # cannot happen with compare-and-set offsets; the SHA-256 check catches it
            pieces.append(self.blobs.get(chunk.key))
            expected = chunk.end
        return b"".join(pieces)

    def _drop_upload(self, sha256: str) -> None:
        self.index.delete_upload(sha256)
        # every piece, including one a crash left unnamed in the index
        for key in self.blobs.keys(f"uploads/{sha256}/"):
            self.blobs.delete(key)

    # -- verdicts ------------------------------------------------------------------

    def submit(self, data: bytes, *, source: str = "") -> Verdict:
        """Judge a whole sealed packet at once (``kiosk-hub import``): its verdict.

        The same checks as an upload. Raises TooLarge, Replay.
        """
        if len(data) > MAX_PACKET_BYTES:
            raise TooLarge(
                f"{len(data)} bytes; the hub takes packets up to {MAX_PACKET_BYTES} bytes"
            )
        sha256 = hashlib.sha256(data).hexdigest()
        fallback = Path(source).stem if source else f"unknown-{sha256[:16]}"
        return self._judge(data, sha256, station_id="", enrollment_id=fallback)

    def _refuse_replay(self, enrollment_id: str, sha256: str) -> None:
        existing = self.index.verdict_for_enrollment(enrollment_id)
        if existing is not None and existing.accepted and existing.sha256 != sha256:
            raise Replay(existing)

    def _judge(self, data: bytes, sha256: str, *, station_id: str, enrollment_id: str) -> Verdict:
        """The verdict on ``data`` (recorded once per SHA-256), its bytes kept first."""
        existing = self.index.verdict_for_sha(sha256)
        if existing is not None:
            return existing
        try:
            header = inspect(data)
            station_id, enrollment_id = header["station_id"], header["enrollment_id"]
        except PacketRejected:
            pass  # open_sealed below says why; the metadata names the verdict
        try:
            self._refuse_replay(enrollment_id, sha256)
            packet = open_sealed(
                data,
                hub_private_key=self.private_key,
                station_public_keys=self.station_keys(station_id),
            )
        except PacketRejected as rejected:
            return self._reject(data, sha256, station_id, enrollment_id, rejected)
        except Replay as replay:
            self._keep_replay(data, sha256, station_id, enrollment_id)
            raise replay
        self.blobs.put(packet_key(sha256), data)
        verdict = Verdict(
            sha256=sha256,
            enrollment_id=enrollment_id,
            station_id=station_id,
            verdict=ACCEPTED,
            reason=None,
            detail=None,
            received_at=self.clock(),
            size=len(data),
            blob_key=packet_key(sha256),
            simulated=packet.simulated,
        )
        try:
            recorded = self.index.record_verdict(verdict)
        except AlreadyAccepted as taken:  # another replica accepted other bytes just now
            self._keep_replay(data, sha256, station_id, enrollment_id)
            self.blobs.delete(packet_key(sha256))
            raise Replay(taken.existing) from None
        if recorded == verdict:
            self.log.info(
                "accepted %s from %s (%d bytes, sha256 %s)%s",
                enrollment_id,
                station_id,
                len(data),
                sha256[:16],
                " [simulated packet]" if packet.simulated else "",
            )
        return recorded

    def _reject(
        self,
        data: bytes,
        sha256: str,
        station_id: str,
        enrollment_id: str,
        rejected: PacketRejected,
    ) -> Verdict:
        self.blobs.put(quarantine_key(sha256), data)
        verdict = self.index.record_verdict(
            Verdict(
                sha256=sha256,
                enrollment_id=enrollment_id,
                station_id=station_id,
                verdict=REJECTED,
                reason=rejected.reason.value,
                detail=rejected.detail,
                received_at=self.clock(),
                size=len(data),
                blob_key=quarantine_key(sha256),
            )
        )
        self.log.warning(
            "rejected %s from %s: %s (kept as %s)",
            enrollment_id,
            station_id or "?",
            rejected,
            verdict.blob_key,
        )
        return verdict

    def _keep_replay(self, data: bytes, sha256: str, station_id: str, enrollment_id: str) -> None:
        self.blobs.put(quarantine_key(sha256), data)
        # a rejection never takes the one-accepted-per-enrollment key: no AlreadyAccepted
        self.index.record_verdict(
            Verdict(
                sha256=sha256,
                enrollment_id=enrollment_id,
                station_id=station_id,
                verdict=REJECTED,
                reason=REPLAY_REASON,
                detail="the enrollment was accepted already with other bytes",
                received_at=self.clock(),
                size=len(data),
                blob_key=quarantine_key(sha256),
            )
        )
        self.log.warning(
            "REPLAY: %s from %s arrived again with other content (sha256 %s, in quarantine)",
            enrollment_id,
            station_id or "?",
            sha256[:16],
        )

    def verdict(self, enrollment_id: str) -> Verdict | None:
        """The enrollment's accepted packet, else its latest rejected one, else None."""
        return self.index.verdict_for_enrollment(enrollment_id)

    # -- heartbeats ----------------------------------------------------------------

    def heartbeat(self, station_id: str, body: bytes, signature: str | None) -> Heartbeat:
        """Check and keep a station's heartbeat: ``signature`` is the Rekam-Signature header.

        Raises UnknownStation (unregistered, or the signature does not verify),
        BadRequest (too large, not the JSON the protocol says), HeartbeatReplay.
        """
        public_key = self._require_station(station_id)
        if len(body) > MAX_HEARTBEAT_BYTES:
            raise BadRequest(f"a heartbeat is at most {MAX_HEARTBEAT_BYTES} bytes")
        try:
            raw_signature = base64.b64decode(signature or "", validate=True)
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                raw_signature, HEARTBEAT_LABEL + body
            )
        except (binascii.Error, InvalidSignature, ValueError):
            raise UnknownStation(
                f"the heartbeat's Rekam-Signature is not station {station_id!r}'s"
            ) from None
        try:
            content = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"the heartbeat is not JSON ({exc})") from None
        if not isinstance(content, dict):
            raise BadRequest("the heartbeat is not a JSON object")
        if content.get("station_id") != station_id:
            raise BadRequest(f"the heartbeat names station {content.get('station_id')!r}")
        sent_at = _utc_time(content.get("sent_at"))
        heartbeat = Heartbeat(station_id, sent_at, self.clock(), content)
        if not self.index.record_heartbeat(heartbeat):
            raise HeartbeatReplay(
                f"sent_at {sent_at.isoformat()} is not newer than the last heartbeat accepted"
            )
        return heartbeat

    # -- dashboard -----------------------------------------------------------------

    def dashboard(self) -> dict[str, Any]:
        """Everything the dashboard shows, as JSON-ready data (see hub/dashboard.py)."""
        from hub.dashboard import dashboard_data

        return dashboard_data(self)


class _SimulationLog(logging.LoggerAdapter):
    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        return f"[SIMULATION] {msg}", kwargs


def _utc_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise BadRequest("sent_at: expected an ISO 8601 time with its UTC offset")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"sent_at {value[:40]!r}: not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BadRequest(f"sent_at {value[:40]!r}: the UTC offset is missing")
    return moment
