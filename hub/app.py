"""The hub's HTTP interface (docs/sync-protocol.md), a thin skin over hub/service.py.

``create_app(hub)`` gives the ASGI app; ``kiosk-hub serve`` runs it under uvicorn
with the data folder's TLS certificate. Uploads follow the tus 1.0 core with the
upload's id being the packet's SHA-256; a ``PATCH`` body is streamed, and when
the connection drops mid-body the bytes that arrived are kept (a 2G link that
drops costs only the bytes in flight).

Example::

    app = create_app(Hub.open(Path("/var/lib/kiosk-hub")))
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hub import pairing
from hub.dashboard import render_html
from hub.service import (
    MAX_HEARTBEAT_BYTES,
    BadRequest,
    HeartbeatReplay,
    Hub,
    HubError,
    OffsetMismatch,
    Replay,
    TooLarge,
    UnknownStation,
    UnknownUpload,
    UploadState,
    verdict_body,
)
from hub.storage import Verdict
from kiosk.provision.protocol import PAIRING_PATH

MAX_PAIRING_BYTES = pairing.MAX_REQUEST_BYTES

PROTOCOL_HEADER = "Rekam-Protocol"
PROTOCOL_VERSION = "1"
TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# a PATCH whose body stops arriving for this long is treated as dropped: what came is kept
BODY_IDLE_TIMEOUT_S = 60.0

_STATUS = {
    BadRequest: 400,
    UnknownStation: 403,
    UnknownUpload: 404,
    Replay: 409,
    HeartbeatReplay: 409,
    OffsetMismatch: 409,
    TooLarge: 413,
}

log = logging.getLogger("hub.http")


def _headers(**extra: str) -> dict[str, str]:
    return {PROTOCOL_HEADER: PROTOCOL_VERSION, **extra}


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_headers(**headers))


def _verdict(verdict: Verdict, status: int | None = None) -> JSONResponse:
    """200 for an accepted packet, 422 for a rejected one, the verdict as the body."""
    body: dict[str, Any] = verdict_body(verdict)
    if not verdict.accepted:
        body["error"] = f"rejected: {verdict.reason}"
    if status is None:
        status = 200 if verdict.accepted else 422
    return JSONResponse(body, status_code=status, headers=_headers())


def _offset_headers(state: UploadState) -> dict[str, str]:
    return {"Upload-Offset": str(state.offset), "Tus-Resumable": TUS_VERSION}


def _check_protocol(request: Request) -> None:
    version = request.headers.get(PROTOCOL_HEADER)
    if version is not None and version != PROTOCOL_VERSION:
        raise BadRequest(
            f"{PROTOCOL_HEADER} {version[:10]!r}: this hub speaks version {PROTOCOL_VERSION}"
        )
    tus = request.headers.get("Tus-Resumable")
    if tus is not None and tus != TUS_VERSION:
        raise BadRequest(f"Tus-Resumable {tus[:10]!r}: this hub speaks tus {TUS_VERSION}")


def _metadata(text: str) -> dict[str, str]:
    """tus Upload-Metadata: ``key base64(value)`` pairs, comma-separated."""
    values = {}
    for pair in text.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key:
            continue
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata: the value of {key[:20]!r} is not base64") from None
    return values


def _integer(request: Request, name: str) -> int:
    text = request.headers.get(name)
    if text is None or not text.isdigit() or len(text) > 15:
        raise BadRequest(f"{name}: expected a byte count, got {str(text)[:20]!r}")
    return int(text)


def create_app(hub: Hub, *, body_idle_timeout: float = BODY_IDLE_TIMEOUT_S) -> FastAPI:
    """The hub's ASGI app over ``hub``. No API explorer pages: they fetch scripts from a CDN."""
    app = FastAPI(
        title="Rekam kiosk hub" + (" (SIMULATION)" if hub.simulation else ""),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.hub = hub

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
        headers = {"Upload-Offset": str(exc.offset)} if isinstance(exc, OffsetMismatch) else {}
        if status == 409 and not isinstance(exc, OffsetMismatch):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(status, str(exc), **headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"the hub failed ({type(exc).__name__}); see its log")

    @app.post("/v1/uploads")
    async def create_upload(request: Request) -> Response:
        _check_protocol(request)
        length = _integer(request, "Upload-Length")
        metadata = _metadata(request.headers.get("Upload-Metadata", ""))
        missing = [key for key in ("station", "enrollment", "sha256") if not metadata.get(key)]
        if missing:
            raise BadRequest(f"Upload-Metadata: {', '.join(missing)} missing")
        made = await run_in_threadpool(
            hub.create_upload,
            station_id=metadata["station"],
            enrollment_id=metadata["enrollment"],
            sha256=metadata["sha256"],
            length=length,
        )
        if isinstance(made, Verdict):
            return _verdict(made)
        return Response(
            status_code=201,
            headers=_headers(Location=f"/v1/uploads/{made.sha256}", **_offset_headers(made)),
        )

    @app.head("/v1/uploads/{sha256}")
    async def upload_offset(sha256: str, request: Request) -> Response:
        _check_protocol(request)
        state = await run_in_threadpool(hub.upload_state, sha256)
        return Response(
            status_code=200,
            headers=_headers(
                **_offset_headers(state),
                **{"Upload-Length": str(state.length), "Cache-Control": "no-store"},
            ),
        )

    @app.patch("/v1/uploads/{sha256}")
    async def receive(sha256: str, request: Request) -> Response:
        _check_protocol(request)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != OFFSET_CONTENT_TYPE:
            return _error(415, f"Content-Type: expected {OFFSET_CONTENT_TYPE}")
        offset = _integer(request, "Upload-Offset")
        state = await run_in_threadpool(hub.expect, sha256, offset)
        data, dropped = await _read_body(request, state.length - offset, body_idle_timeout)
        if data:
            state = await run_in_threadpool(hub.append, sha256, offset, data)
        if dropped:
            log.info(
                "upload %s: the connection dropped at %d of %d bytes; kept",
                sha256[:16],
                state.offset,
                state.length,
            )
            return _error(
                400,
                "the request body stopped short; resume from Upload-Offset",
                **_offset_headers(state),
            )
        if state.offset < state.length:
            return Response(status_code=204, headers=_headers(**_offset_headers(state)))
        return _verdict(await run_in_threadpool(hub.finish, sha256))

    @app.get("/v1/packets/{enrollment_id}")
    def packet_verdict(enrollment_id: str) -> Response:
        verdict = hub.verdict(enrollment_id)
        if verdict is None:
            return _error(404, f"no packet of enrollment {enrollment_id!r} at this hub")
        return _verdict(verdict, status=200)

    @app.post("/v1/stations/{station_id}/heartbeat")
    async def heartbeat(station_id: str, request: Request) -> Response:
        _check_protocol(request)
        body, dropped = await _read_body(request, MAX_HEARTBEAT_BYTES, body_idle_timeout)
        if dropped:
            return _error(400, "the heartbeat's body stopped short")
        await run_in_threadpool(
            hub.heartbeat, station_id, body, request.headers.get("Rekam-Signature")
        )
        return Response(status_code=204, headers=_headers())

    @app.post(PAIRING_PATH)
    async def pair_station(request: Request) -> Response:
        """A station pairing with a one-time code (hub/pairing.py)."""
        _check_protocol(request)
        if hub.data_dir is None:
            return _error(404, "this hub pairs no stations (it has no data folder)")
        body, dropped = await _read_body(request, MAX_PAIRING_BYTES, body_idle_timeout)
        if dropped:
            return _error(400, "the pairing request's body stopped short")
        try:
            paired = await run_in_threadpool(pairing.pair, hub, body)
        except pairing.BadPairingRequest as exc:
            raise BadRequest(str(exc)) from None
        except pairing.PairingRefused as exc:
            return JSONResponse(
                {"error": str(exc), "reason": exc.reason}, status_code=403, headers=_headers()
            )
        return JSONResponse(paired.body(), headers=_headers(**{"Cache-Control": "no-store"}))

    @app.get("/v1/health")
    def health() -> Response:
        return JSONResponse({"ok": True, "simulation": hub.simulation}, headers=_headers())

    @app.get("/v1/dashboard")
    def dashboard() -> Response:
        return JSONResponse(hub.dashboard(), headers=_headers(**{"Cache-Control": "no-store"}))

    @app.get("/", response_class=HTMLResponse)
    def page() -> Response:
        return HTMLResponse(
            render_html(hub.dashboard()),
            headers={
                "Cache-Control": "no-store",
                # nothing on the page runs or loads from elsewhere; say so to the browser
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            },
        )

    return app


async def _read_body(request: Request, limit: int, idle_timeout: float) -> tuple[bytes, bool]:
    """The request body, at most ``limit`` bytes, and whether the connection dropped (or
    stalled for ``idle_timeout``) before its end. Raises BadRequest past ``limit``."""
    received = bytearray()
    stream = request.stream().__aiter__()
    while True:
        try:
            piece = await asyncio.wait_for(stream.__anext__(), idle_timeout)
        except StopAsyncIteration:
            return bytes(received), False
        except ClientDisconnect:
            received += _unread(request)
            return bytes(received[:limit]), True  # past the limit is the station's bug: cut
        except TimeoutError:
            return bytes(received), True
        received += piece
        if len(received) > limit:
            raise BadRequest(f"the body runs past the {limit} bytes expected here")


def _unread(request: Request) -> bytes:
    """Bytes the server received but had not handed to the app when the connection dropped.

    uvicorn answers ``receive()`` with a disconnect as soon as the connection is lost,
    dropping the body it holds (its cycle's ``body``); a station that sent a chunk and
    closed would lose it. Read through uvicorn's cycle (h11 and httptools alike);
    under another server this finds nothing and only those bytes are lost.
    """
    cycle = getattr(request.receive, "__self__", None)
    held = getattr(cycle, "body", None)
    return bytes(held) if isinstance(held, bytes | bytearray) else b""
