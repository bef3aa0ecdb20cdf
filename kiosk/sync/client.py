"""The kiosk's side of the hub protocol (docs/sync-protocol.md): resumable uploads
(tus core) and signed heartbeats, over HTTPS that trusts only the hub's pinned
certificate.

Every failure becomes one exception with a one-line message a technician can act
on, in three families the runner tells apart:

- :class:`HubUnreachable` (and its kinds): the hub cannot take anything now (no
  link, a dropped connection, a timeout, a 5xx, an answer not understood):
  retry later, after a backoff; the upload resumes where the hub's copy ends.
- :class:`HubRefused`: the hub refused this packet for good (a replay, too
  large, bad metadata); the packet stays on the kiosk with the hub's reason.
- :class:`StationRefused`: the hub does not accept this station at all
  (unregistered, or a signature it cannot verify); a technician's matter.

A rejected packet is not an exception: :meth:`HubClient.upload` returns the
hub's :class:`Verdict`, accepted or rejected with the reason.

Example::

    client = HubClient("https://hub.bogor.example:8443", keys.hub_tls)
    verdict = client.upload(stored, store.read_sealed(stored.enrollment_id))
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import __version__
from kiosk.errors import KioskError

log = logging.getLogger(__name__)

PROTOCOL_HEADER = "Rekam-Protocol"
PROTOCOL_VERSION = "1"
TUS_VERSION = "1.0.0"
SIGNATURE_HEADER = "Rekam-Signature"
HEARTBEAT_LABEL = b"rekam-kiosk heartbeat v1\x00"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
MAX_PACKET_BYTES = 4 * 1024 * 1024  # the hub's limit (413 above it)
CHUNK_BYTES = 16 * 1024  # one write to the connection while a body streams
DEFAULT_TIMEOUT_S = 30.0
_MAX_ROUNDS = 8  # PATCHes (and re-creations) for one upload in one call, at most


class SyncError(KioskError):
    """Sending packets or heartbeats to the hub failed."""


class SyncSetupError(SyncError, ValueError):
    """Sync cannot start: a bad hub address, a missing key or certificate file."""


class HubUnreachable(SyncError, ConnectionError):
    """The hub cannot take anything now (no link, dropped, timed out, 5xx): retry later."""


class HubNotTrusted(HubUnreachable):
    """The server did not prove to be the hub: its certificate is not the pinned one."""


class HubProtocolError(HubUnreachable):
    """The hub answered something this kiosk does not understand: retry later."""


class HubRefused(SyncError):
    """The hub refused this packet for good (a 4xx); it stays on the kiosk with the reason."""

    def __init__(self, message: str, *, reason: str, status: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class StationRefused(SyncError, PermissionError):
    """The hub does not accept this station (unregistered, bad signature): nothing is marked."""


class UploadStopped(SyncError):
    """The upload was stopped by the caller (the service is stopping); the hub keeps the part."""


class SendablePacket(Protocol):
    """What an upload needs to know of a stored packet (the store's ``StoredPacket``)."""

    enrollment_id: str
    station_id: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Verdict:
    """The hub's answer on one packet (its verdict body)."""

    enrollment_id: str
    sha256: str
    accepted: bool
    reason: str | None  # a ``Rejection`` value when rejected
    received_at: str | None

    @classmethod
    def from_body(cls, body: object, sha256: str) -> Verdict:
        """The verdict in a JSON body; HubProtocolError unless it is one for ``sha256``."""
        if not isinstance(body, dict) or body.get("verdict") not in ("accepted", "rejected"):
            raise HubProtocolError(f"the hub's verdict is not one this kiosk reads: {body!r:.120}")
        if body.get("sha256") != sha256:
            raise HubProtocolError(
                f"the hub answered with the verdict on another packet "
                f"({str(body.get('sha256'))[:16]}..., not {sha256[:16]}...)"
            )
        reason = body.get("reason")
        received_at = body.get("received_at")
        return cls(
            enrollment_id=str(body.get("enrollment_id", "")),
            sha256=sha256,
            accepted=body["verdict"] == "accepted",
            reason=None if reason is None else str(reason),
            received_at=None if received_at is None else str(received_at),
        )


def pinned_tls_context(certificate: Path) -> ssl.SSLContext:
    """A TLS context that trusts the certificate in ``certificate`` and nothing else:
    no certificate authority, no system store. Host names are checked against the
    certificate's names (its subjectAltName entries)."""
    certificate = Path(certificate)
    if not certificate.is_file():
        raise SyncSetupError(
            f"{certificate}: the hub's TLS certificate is missing; copy the hub's "
            "tls certificate there (provisioning) before syncing"
        )
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certificate))
    except (ssl.SSLError, ValueError) as exc:
        raise SyncSetupError(
            f"{certificate}: not a PEM certificate ({_ssl_reason(exc)}); copy the hub's "
            "tls certificate again"
        ) from None
    except OSError as exc:
        raise SyncSetupError(f"{certificate}: cannot be read ({exc.strerror})") from None
    if context.cert_store_stats().get("x509", 0) < 1:
        raise SyncSetupError(f"{certificate}: holds no certificate; copy the hub's again")
    # The pinned certificate is the trust anchor itself, even if it is not a CA.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def hub_url(text: str) -> httpx.URL:
    """The hub's address, checked: ``https://host[:port][/path]``; SyncSetupError otherwise."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise SyncSetupError(f"hub address {text!r:.80}: not a URL ({exc})") from None
    if url.scheme != "https":
        raise SyncSetupError(
            f"hub address {text!r:.80}: the hub is reached over https:// only "
            "(its certificate is pinned), not " + (f"{url.scheme}://" if url.scheme else "this")
        )
    if not url.host:
        raise SyncSetupError(f"hub address {text!r:.80}: names no host")
    if url.query or url.fragment:
        raise SyncSetupError(f"hub address {text!r:.80}: a hub address has no ? or # part")
    return url


def tus_metadata(**values: str) -> str:
    """tus ``Upload-Metadata``: ``key base64(value)`` pairs, comma-separated."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode('ascii')}" for key, value in values.items()
    )


def heartbeat_signature(body: bytes, station_key: Ed25519PrivateKey) -> str:
    """The ``Rekam-Signature`` of a heartbeat body: base64 Ed25519 over label + body."""
    return base64.b64encode(station_key.sign(HEARTBEAT_LABEL + body)).decode("ascii")


class HubClient:
    """One district hub, over HTTPS with its certificate pinned. Not thread-safe:
    one runner owns it. ``close()`` (or ``with``) ends its connections.

    ``timeout`` bounds connecting and each read or write on the connection (not a
    whole upload: a slow link may take minutes for one packet, a stalled one not).
    """

    def __init__(
        self,
        url: str,
        tls_certificate: Path,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = hub_url(url)
        self.tls_certificate = Path(tls_certificate)
        self.timeout = timeout
        self._under_way: str | None = None  # the SHA-256 of an upload begun and not finished
        self._http = httpx.Client(
            base_url=self.url,
            verify=pinned_tls_context(self.tls_certificate),
            timeout=httpx.Timeout(timeout),
            headers={
                PROTOCOL_HEADER: PROTOCOL_VERSION,
                "User-Agent": f"rekam-kiosk/{__version__}",
            },
            follow_redirects=False,
            trust_env=False,  # no proxy or CA bundle from the environment: the hub is pinned
        )

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- uploads -------------------------------------------------------------------

    def upload(
        self,
        stored: SendablePacket,
        data: bytes,
        *,
        on_sent: Callable[[], None] | None = None,
        stopping: Callable[[], bool] | None = None,
    ) -> Verdict:
        """Send the sealed packet ``data`` (resuming a broken upload) and return the verdict.

        ``on_sent`` is called once the hub says it holds every byte (its offset
        reached the length, or its verdict came), before the verdict is returned:
        the packet is *terkirim*. Bytes handed to the connection do not count: a
        link may drop them after the kernel took them. ``stopping()`` is asked
        between chunks; True ends the upload with UploadStopped (the hub keeps what
        arrived).

        Raises HubUnreachable (retry later, after a backoff), HubRefused (final for
        this packet), StationRefused (nothing is marked), SyncError.
        """
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 != stored.sha256 or len(data) != stored.size:
            raise SyncError(
                f"{stored.enrollment_id}: the packet's bytes do not match its index entry "
                f"({len(data)} bytes, sha256 {sha256[:16]}...); it is not sent"
            )
        path = f"/v1/uploads/{sha256}"
        announced = False

        def all_at_the_hub() -> None:
            nonlocal announced
            if on_sent is not None and not announced:
                announced = True
                on_sent()

        offset: int | None = None
        if self._under_way == sha256:  # a broken upload of ours: ask how far it got
            offset = self._head(path, len(data))
        for _ in range(_MAX_ROUNDS):
            if offset is not None and offset >= len(data):
                all_at_the_hub()  # complete at the hub; creating it again gives the verdict
            if offset is None or offset >= len(data):
                created = self._create(stored, sha256, len(data))
                if isinstance(created, Verdict):
                    self._under_way = None
                    all_at_the_hub()
                    return created
                offset = created
                self._under_way = sha256
            answer = self._patch(path, data, offset, sha256, stopping)
            if isinstance(answer, Verdict):
                self._under_way = None
                all_at_the_hub()
                return answer
            offset = answer
        raise HubProtocolError(
            f"{stored.enrollment_id}: the hub neither finished nor refused the upload "
            f"after {_MAX_ROUNDS} requests"
        )

    def _create(self, stored: SendablePacket, sha256: str, length: int) -> Verdict | int:
        """POST /v1/uploads: the offset to go on from, or the verdict the hub has."""
        response = self._send(
            "POST",
            "/v1/uploads",
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(length),
                "Upload-Metadata": tus_metadata(
                    station=stored.station_id, enrollment=stored.enrollment_id, sha256=sha256
                ),
            },
        )
        status = response.status_code
        if status == 201:
            return _offset(response, length)
        if status in (200, 422):
            return Verdict.from_body(_json(response), sha256)
        if status in (400, 409, 413):
            reason = _error_text(response)
            raise HubRefused(
                f"{stored.enrollment_id}: refused by the hub ({status}): {reason}",
                reason=reason,
                status=status,
            )
        raise self._unexpected(response, "POST /v1/uploads")

    def _head(self, path: str, length: int) -> int | None:
        """HEAD: the hub's offset of the upload, None if it has none."""
        response = self._send("HEAD", path, headers={"Tus-Resumable": TUS_VERSION})
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            return _offset(response, length)
        raise self._unexpected(response, f"HEAD {path}")

    def _patch(
        self,
        path: str,
        data: bytes,
        offset: int,
        sha256: str,
        stopping: Callable[[], bool] | None,
    ) -> Verdict | int | None:
        """PATCH the rest from ``offset``: the verdict, the hub's new offset, or None
        when the hub has no such upload (it is made again)."""

        def body() -> Iterator[bytes]:
            view = memoryview(data)
            for start in range(offset, len(data), CHUNK_BYTES):
                if stopping is not None and stopping():
                    raise UploadStopped(
                        f"upload stopped at byte {start} of {len(data)}; it resumes there"
                    )
                yield bytes(view[start : start + CHUNK_BYTES])

        response = self._send(
            "PATCH",
            path,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Offset": str(offset),
                "Content-Type": OFFSET_CONTENT_TYPE,
                "Content-Length": str(len(data) - offset),  # streamed, not chunked
            },
            content=body(),
        )
        status = response.status_code
        if status in (200, 422):
            return Verdict.from_body(_json(response), sha256)
        if status in (204, 409):  # received up to here / our offset was wrong
            return _offset(response, len(data))
        if status == 404:  # the hub lost it (or never had it): made again
            self._under_way = None
            return None
        raise self._unexpected(response, f"PATCH {path}")

    # -- heartbeats and health ------------------------------------------------------

    def heartbeat(self, body: dict[str, Any], station_key: Ed25519PrivateKey) -> None:
        """POST a heartbeat signed by the station's key.

        Raises StationRefused (unknown station, bad signature), HubRefused (a replay:
        a ``sent_at`` not newer than the last one), HubUnreachable.
        """
        station_id = str(body.get("station_id", ""))
        if not station_id:
            raise SyncError("a heartbeat needs the station's id")
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        response = self._send(
            "POST",
            f"/v1/stations/{station_id}/heartbeat",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: heartbeat_signature(payload, station_key),
            },
            content=payload,
        )
        if response.status_code in (200, 204):
            return
        if response.status_code == 409:
            reason = _error_text(response)
            raise HubRefused(f"heartbeat refused as a replay: {reason}", reason=reason, status=409)
        raise self._unexpected(response, "heartbeat")

    def health(self) -> bool:
        """GET /v1/health: whether the hub says it is alive. Raises HubUnreachable."""
        response = self._send("GET", "/v1/health")
        return response.status_code == 200 and _json(response).get("ok") is True

    # -- one request -------------------------------------------------------------------

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One request; every transport failure becomes a one-line HubUnreachable."""
        where = f"the hub at {self.url}"
        try:
            return self._http.request(method, path, **options)
        except UploadStopped:
            raise
        except httpx.TimeoutException as exc:
            phase = {
                httpx.ConnectTimeout: "to connect",
                httpx.WriteTimeout: "to take more bytes",
                httpx.PoolTimeout: "for a free connection",
            }.get(type(exc), "to answer")
            raise HubUnreachable(
                f"{where} took longer than {self.timeout:g} s {phase}; retrying later"
            ) from None
        except httpx.ConnectError as exc:
            raise self._connect_failure(exc) from None
        except httpx.TransportError as exc:
            raise HubUnreachable(
                f"the connection to {where} broke during {method} ({_cause_text(exc)}); "
                "retrying later from where the hub's copy ends"
            ) from None
        except httpx.InvalidURL as exc:
            raise SyncSetupError(f"{where}: {exc}") from None
        except httpx.HTTPError as exc:  # an answer httpx cannot read (e.g. a bad encoding)
            raise HubProtocolError(f"{where}: {method} {path} failed ({exc})") from None

    def _connect_failure(self, exc: httpx.ConnectError) -> HubUnreachable:
        where = f"the hub at {self.url}"
        cause = _root_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return HubNotTrusted(
                f"{where} did not show the pinned certificate {self.tls_certificate} "
                f"({cause.verify_message or _ssl_reason(cause)}); if the hub was set up again, "
                "provision this station with its new certificate"
            )
        if isinstance(cause, ssl.SSLError):
            return HubUnreachable(f"{where}: the TLS handshake failed ({_ssl_reason(cause)})")
        if isinstance(cause, ConnectionRefusedError):
            return HubUnreachable(f"{where} refused the connection (is the hub running?)")
        if isinstance(cause, socket.gaierror):
            return HubUnreachable(f"{where}: the name {self.url.host} cannot be resolved")
        return HubUnreachable(f"{where} cannot be reached ({_cause_text(exc)})")

    def _unexpected(self, response: httpx.Response, what: str) -> SyncError:
        status = response.status_code
        text = _error_text(response)
        if status == 403:
            return StationRefused(
                f"the hub at {self.url} refuses this station: {text} "
                "(register the station's public key at the hub)"
            )
        if status >= 500:
            return HubUnreachable(
                f"the hub at {self.url} failed ({status}: {text}); retrying later"
            )
        return HubProtocolError(
            f"the hub at {self.url} answered {status} to {what} ({text}); "
            "is this the district hub's address?"
        )


def _offset(response: httpx.Response, length: int) -> int:
    text = response.headers.get("Upload-Offset", "")
    if not text.isdigit() or int(text) > length:
        raise HubProtocolError(
            f"the hub's Upload-Offset {text!r:.40} is not a byte count within {length}"
        )
    return int(text)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HubProtocolError(
            f"the hub's answer ({response.status_code}) is not JSON: {response.text!r:.80}"
        ) from None
    if not isinstance(body, dict):
        raise HubProtocolError(f"the hub's answer ({response.status_code}) is not a JSON object")
    return body


def _error_text(response: httpx.Response) -> str:
    """The hub's error body as one line (its ``error``, else the start of the text)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("error", "reason", "detail"):
            if body.get(key):
                return " ".join(str(body[key]).split())[:300]
    text = " ".join(response.text.split())[:300]
    return text or response.reason_phrase or f"status {response.status_code}"


def _root_cause(exc: BaseException) -> BaseException:
    seen = []
    while exc.__cause__ is not None or exc.__context__ is not None:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        if exc in seen or len(seen) > 10:
            break
    return exc


def _cause_text(exc: BaseException) -> str:
    cause = _root_cause(exc)
    text = " ".join(str(cause).split()) or type(cause).__name__
    return text[:200]


def _ssl_reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or " ".join(str(exc).split())[:200]
