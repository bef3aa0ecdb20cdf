"""The hub's data folder: its keys, its TLS certificate, the registered stations.

No web framework here: ``kiosk simulate`` makes a hub folder with these functions.

Layout of ``DIR`` (made by :func:`init_hub`, which keeps whatever exists)::

    hub.key            the hub's private HPKE key (0600): packets are sealed to it
    hub.pub            its public half, installed on every station at provisioning
    tls.pem            the hub's self-signed TLS certificate, pinned by every station
    tls.key            its private key (0600)
    stations/<id>.pub  each registered station's Ed25519 public key (kiosk keys station)
    SIMULATION         present for a simulated district: never real citizens' data
    index.sqlite3      the embedded index (hub/storage.py), made at first start
    blobs/             the embedded blob store: packets/, quarantine/, uploads/

The TLS certificate is valid for :data:`TLS_VALIDITY_DAYS` (25 years): stations
trust only this certificate, so renewing it means provisioning every station
again; its life is the life of the hub's install, not a CA's yearly rotation.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# the station file's rule for station.id: also a safe file name
from kiosk.config import STATION_ID
from kiosk.packet.keys import (
    KeyFileError,
    generate_hub_key,
    load_hub_private_key,
    load_station_public_key,
    save_hub_public_key,
    save_station_public_key,
)

HUB_KEY = "hub.key"
HUB_PUB = "hub.pub"
TLS_CERT = "tls.pem"
TLS_KEY = "tls.key"
STATIONS = "stations"
SIMULATION_MARKER = "SIMULATION"
TLS_VALIDITY_DAYS = 25 * 365
DEFAULT_HOSTS = ("localhost", "127.0.0.1")


def hub_key_path(path: Path) -> Path:
    return Path(path) / HUB_KEY


def hub_public_key_path(path: Path) -> Path:
    return Path(path) / HUB_PUB


def tls_certificate_path(path: Path) -> Path:
    return Path(path) / TLS_CERT


def tls_key_path(path: Path) -> Path:
    return Path(path) / TLS_KEY


def stations_path(path: Path) -> Path:
    return Path(path) / STATIONS


def is_simulation(path: Path) -> bool:
    return (Path(path) / SIMULATION_MARKER).exists()


def init_hub(path: Path, *, simulation: bool = False, hosts: Iterable[str] = DEFAULT_HOSTS) -> None:
    """Make the hub's data folder at ``path``; anything already there is kept.

    An existing hub key is never replaced (stations seal to it); its ``hub.pub``
    is rewritten from it if missing. An existing TLS certificate is kept too,
    whatever ``hosts`` says (delete tls.pem and tls.key to make a new one, then
    provision the stations again). ``hosts`` are the names and IP addresses the
    stations use to reach the hub. Raises KeyFileError / KeyFileExposed for an
    unreadable or exposed existing key.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    stations_path(path).mkdir(exist_ok=True)
    if hub_key_path(path).exists():
        key = load_hub_private_key(hub_key_path(path))
    else:
        key = generate_hub_key(hub_key_path(path))
    if not hub_public_key_path(path).exists():
        save_hub_public_key(hub_public_key_path(path), key.public_bytes())
    if not (tls_certificate_path(path).exists() and tls_key_path(path).exists()):
        _make_tls(path, list(hosts))
    if simulation:
        marker = path / SIMULATION_MARKER
        if not marker.exists():
            marker.write_text(
                "SIMULATION: this hub receives packets from simulated stations only.\n"
            )


def add_station(path: Path, station_id: str, public_bytes: bytes) -> Path:
    """Register a station's Ed25519 public key in the folder; the file written.

    A station registered again with another key (provisioned anew) gets the new
    key: the old file is replaced. Raises ValueError for a malformed id,
    KeyFileError for a malformed key.
    """
    if not STATION_ID.fullmatch(station_id):
        raise ValueError(
            f"station id {station_id!r}: letters, digits, '.', '_' or '-' (at most 64)"
        )
    folder = stations_path(path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{station_id}.pub"
    temporary = folder / f".{station_id}.pub.new"
    temporary.unlink(missing_ok=True)
    save_station_public_key(temporary, public_bytes)
    os.replace(temporary, target)
    return target


def registered_stations(path: Path) -> dict[str, bytes]:
    """Station id -> public key bytes for every ``stations/<id>.pub``.

    Raises KeyFileError naming the first file that is not a station public key.
    """
    found = {}
    folder = stations_path(path)
    if not folder.is_dir():
        return found
    for file in sorted(folder.glob("*.pub")):
        if not STATION_ID.fullmatch(file.stem):
            raise KeyFileError(f"{file}: the file name is not a station id")
        found[file.stem] = load_station_public_key(file)
    return found


def _make_tls(path: Path, hosts: list[str]) -> None:
    if not hosts:
        raise ValueError("the TLS certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"rekam-kiosk hub {hosts[0]}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rekam-kiosk district hub"),
        ]
    )
    start = datetime.now(UTC) - timedelta(days=1)  # a station's clock may lag a little
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=TLS_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # its own trust anchor (stations load it as their only CA) and a server certificate;
        # key identifiers keep strict verifiers (Python 3.13's VERIFY_X509_STRICT) happy
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(tls_key_path(path), key_pem)
    tls_certificate_path(path).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # only reached when the pair is incomplete: remake it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
