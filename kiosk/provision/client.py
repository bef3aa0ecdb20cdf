"""The station's side of pairing (kiosk/provision/protocol.py): one HTTPS request.

The station trusts nothing yet, so the first connection does not check the hub's
certificate; the pairing code's MAC over the answer is what proves the hub. Before
anything is written, a second connection trusting only the certificate the answer
named (as ``kiosk sync`` will, host name included) checks that the server at that
address holds its key.
"""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass

import httpx
from cryptography import x509

from kiosk.errors import KioskError
from kiosk.packet.keys import KeyFileError, hub_hpke_public_key
from kiosk.provision import protocol
from kiosk.sync.client import PROTOCOL_HEADER, PROTOCOL_VERSION, SyncSetupError, hub_url

TIMEOUT_S = 30.0


class PairingFailed(KioskError):
    """The hub could not be reached, refused the code, or its answer did not hold."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # the hub's refusal (protocol.WRONG_CODE, ...), if it refused


@dataclass(frozen=True)
class HubTrust:
    """What the station keeps of the hub: its sealing key and TLS certificate (PEM);
    from a pairing, also the highest enrollment sequence the hub holds for the station
    (None offline: no hub answered)."""

    hub_key: bytes
    tls_certificate: bytes
    last_sequence: int | None = None


def pair(url: str, station_id: str, region: str, code: str, station_key: bytes) -> HubTrust:
    """Pair with the hub at ``url`` using ``code``; the hub's key, certificate and last
    sequence for the station once its answer's MAC holds. Raises PairingFailed (one
    line) otherwise."""
    try:
        base = hub_url(url)
        normalised = protocol.normalise_code(code)
    except (SyncSetupError, ValueError) as exc:
        raise PairingFailed(str(exc)) from None
    key = protocol.derive_key(normalised, station_id)
    nonce = secrets.token_bytes(protocol.NONCE_BYTES)
    body = {
        "station_id": station_id,
        "region": region,
        "station_key": protocol.b64(station_key),
        "nonce": protocol.b64(nonce),
        "mac": protocol.b64(protocol.request_mac(key, station_id, region, station_key, nonce)),
    }
    blind = ssl.create_default_context()
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE  # nothing is pinned yet: the MAC proves the answer
    response = _post(base, body, blind)
    if response.status_code == 403:
        reason, text = _refusal(response)
        raise PairingFailed(f"the hub refused the pairing: {text}", reason)
    if response.status_code != 200:
        raise PairingFailed(
            f"the hub at {base} answered {response.status_code} to the pairing request "
            f"({_error_text(response)}); is this the district hub's address?"
        )
    trust = _check_answer(response, key, station_id, region, station_key, nonce)
    _check_certificate(base, trust.tls_certificate)
    return trust


def _post(base: httpx.URL, body: dict, context: ssl.SSLContext) -> httpx.Response:
    try:
        with httpx.Client(verify=context, timeout=TIMEOUT_S) as client:
            return client.post(
                base.join(protocol.PAIRING_PATH),
                json=body,
                headers={PROTOCOL_HEADER: PROTOCOL_VERSION},
            )
    except httpx.HTTPError as exc:
        raise PairingFailed(
            f"the hub at {base} cannot be reached ({_cause(exc)}); check the address and "
            "the network"
        ) from None


def _check_answer(
    response: httpx.Response,
    key: bytes,
    station_id: str,
    region: str,
    station_key: bytes,
    nonce: bytes,
) -> HubTrust:
    forged = PairingFailed(
        "the hub's answer does not carry this pairing code's proof; nothing was written "
        "(someone between the station and the hub? make a new code and try again)"
    )
    try:
        data = response.json()
        hub_key = protocol.unb64(data["hub_key"], "hub_key")
        certificate = data["tls_certificate"].encode("ascii")
        last_sequence = data["last_sequence"]
        mac = protocol.unb64(data["mac"], "mac")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        raise forged from None
    if not isinstance(last_sequence, int) or isinstance(last_sequence, bool):
        raise forged
    expected = protocol.answer_mac(
        key, station_id, region, station_key, nonce, hub_key, certificate, last_sequence
    )
    if not protocol.same(mac, expected):
        raise forged
    if not 0 <= last_sequence <= protocol.MAX_SEQUENCE:
        raise PairingFailed(f"the hub sent a last sequence this kiosk cannot use ({last_sequence})")
    try:
        hub_hpke_public_key(hub_key)
        x509.load_pem_x509_certificate(certificate)
    except (KeyFileError, ValueError) as exc:
        raise PairingFailed(
            f"the hub sent a key or certificate this kiosk cannot use ({exc})"
        ) from None
    return HubTrust(hub_key, certificate, last_sequence)


def _check_certificate(base: httpx.URL, certificate: bytes) -> None:
    """The server at ``base`` shows ``certificate`` for its name, as sync will require."""
    try:
        context = ssl.create_default_context(cadata=certificate.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise PairingFailed(f"the hub's TLS certificate cannot be used ({exc})") from None
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with httpx.Client(verify=context, timeout=TIMEOUT_S) as client:
            client.get(base.join("/v1/health"), headers={PROTOCOL_HEADER: PROTOCOL_VERSION})
    except httpx.HTTPError as exc:
        raise PairingFailed(
            f"the hub at {base} does not show the certificate it sent for the name "
            f"{base.host} ({_cause(exc)}); use the address the hub's certificate names "
            "(kiosk-hub init --host)"
        ) from None


def _refusal(response: httpx.Response) -> tuple[str | None, str]:
    try:
        data = response.json()
        return data.get("reason"), str(data.get("error", "refused"))
    except (ValueError, AttributeError):
        return None, _error_text(response)


def _error_text(response: httpx.Response) -> str:
    try:
        text = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:160] or "no reason given"


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:160] or type(exc).__name__
