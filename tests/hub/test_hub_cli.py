"""kiosk-hub: init, register, import from a USB stick, dashboard, serve (killed and restarted)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import upload_headers

from hub import layout
from hub.cli import main
from hub.storage import SqliteIndex
from kiosk.packet.keys import (
    generate_station_key,
    load_hub_public_key,
    save_station_public_key,
    station_public_bytes,
)
from kiosk.packet.receipt import make_receipt
from kiosk.store.sqlite import EnrollmentStore, PacketState

STATION = "JB-BOGOR-01"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_init_makes_the_folder_once_and_keeps_it(tmp_path, capsys):
    folder = tmp_path / "hub"
    status, out, _ = run(
        capsys, "init", folder, "--simulation", "--host", "hub.local", "--host", "10.0.0.2"
    )
    assert status == 0
    assert "tls.pem" in out
    for name in ("hub.key", "tls.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert len(load_hub_public_key(layout.hub_public_key_path(folder))) == 1216
    assert layout.is_simulation(folder)
    certificate = x509.load_pem_x509_certificate(layout.tls_certificate_path(folder).read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.local"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == layout.TLS_VALIDITY_DAYS

    before = {name: (folder / name).read_bytes() for name in ("hub.key", "hub.pub", "tls.pem")}
    (folder / "hub.pub").unlink()  # a lost public half is made again from the key
    assert run(capsys, "init", folder)[0] == 0
    assert {name: (folder / name).read_bytes() for name in before} == before


def test_init_refuses_an_exposed_key_in_one_line(tmp_path, capsys):
    folder = tmp_path / "hub"
    layout.init_hub(folder)
    (folder / "hub.key").chmod(0o644)
    status, _, err = run(capsys, "init", folder)
    assert status == 2
    assert "chmod 600" in err
    assert err.count("\n") == 1


def test_register_a_station(tmp_path, capsys):
    folder = tmp_path / "hub"
    layout.init_hub(folder)
    key = generate_station_key(tmp_path / "station.key")
    save_station_public_key(tmp_path / "station.pub", station_public_bytes(key))
    status, out, _ = run(
        capsys, "register", folder, "--station", STATION, "--key", tmp_path / "station.pub"
    )
    assert status == 0
    assert STATION in out
    assert layout.registered_stations(folder) == {STATION: station_public_bytes(key)}

    status, _, err = run(
        capsys, "register", folder, "--station", "../evil", "--key", tmp_path / "station.pub"
    )
    assert (status, err.count("\n")) == (2, 1)
    status, _, err = run(
        capsys, "register", folder, "--station", STATION, "--key", tmp_path / "station.key"
    )
    assert status == 2
    assert "station.key" in err


def test_import_from_a_usb_stick(hub_dir, sealed, tmp_path, capsys):
    stick = tmp_path / "stick"
    export = stick / "rekam-JB-BOGOR-01-20261128"  # kiosk export writes a folder like this
    export.mkdir(parents=True)
    good = sealed(STATION, 1)
    (export / f"{STATION}-20261128-000001.rekam").write_bytes(good)
    (export / f"{STATION}-20261128-000002.rekam").write_bytes(
        sealed(STATION, 2, key=Ed25519PrivateKey.generate())
    )
    (stick / "notes.txt").write_text("not a packet")
    status, out, _ = run(capsys, "import", stick, "--data-dir", hub_dir)
    assert status == 1
    assert f"{STATION}-20261128-000001.rekam: accepted" in out
    assert f"{STATION}-20261128-000002.rekam: rejected: station key not registered" in out
    assert "1 of 2 accepted" in out

    (export / f"{STATION}-20261128-000002.rekam").unlink()
    status, out, _ = run(capsys, "import", stick, "--data-dir", hub_dir)
    assert status == 0  # the same packet again: its verdict, not a second copy
    assert "1 of 1 accepted" in out
    blobs = sorted(p.name for p in (hub_dir / "blobs" / "packets").iterdir())
    assert blobs == [f"{hashlib.sha256(good).hexdigest()}.rekam"]

    status, _, err = run(capsys, "import", tmp_path / "empty-nothing", "--data-dir", hub_dir)
    assert (status, err.count("\n")) == (2, 1)


def test_dashboard_command(hub_dir, sealed, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.rekam").write_bytes(sealed(STATION, 1))
    run(capsys, "import", tmp_path / "in", "--data-dir", hub_dir)
    status, out, _ = run(capsys, "dashboard", "--data-dir", hub_dir, "--json")
    assert status == 0
    data = json.loads(out)
    assert data["totals"]["accepted"] == 1
    assert {row["station_id"] for row in data["stations"]} == {"JB-BOGOR-01", "JB-BOGOR-02"}
    status, out, _ = run(capsys, "dashboard", "--data-dir", hub_dir)
    assert status == 0
    assert "SIMULATION" in out
    assert "JB-BOGOR-01: last seen never (SILENT); accepted 1" in out
    assert "last sequence 1 (re-flashed offline: --first-sequence 1002)" in out


def test_serve_errors_are_one_line(hub_dir, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, _, err = run(capsys, "serve", "--data-dir", hub_dir, "--port", port)
    assert status == 2
    assert f"port {port} on 127.0.0.1 is in use" in err
    status, _, err = run(capsys, "serve", "--data-dir", tmp_path / "nowhere")
    assert (status, err.count("\n")) == (2, 1)
    assert "kiosk-hub init" in err
    (hub_dir / "tls.pem").write_text("garbage")
    status, _, err = run(capsys, "serve", "--data-dir", hub_dir)
    assert (status, err.count("\n")) == (2, 1)
    assert "not a usable certificate" in err
    (hub_dir / "hub.key").write_text("garbage")
    status, _, err = run(capsys, "serve", "--data-dir", hub_dir)
    assert (status, err.count("\n")) == (2, 1)
    assert "hub.key" in err


def _start(hub_dir: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(hub_dir), "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[2],
    )


@contextlib.contextmanager
def _client(hub_dir: Path, port: int, pinned) -> Iterator[httpx.Client]:
    """A client of the hub on ``port``, once it answers its health check."""
    client = httpx.Client(
        base_url=f"https://127.0.0.1:{port}", verify=pinned(hub_dir), timeout=10, trust_env=False
    )
    deadline = time.monotonic() + 30
    with client:
        while True:
            try:
                if client.get("/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        yield client


def test_a_killed_hub_keeps_accepted_packets_and_partial_uploads(hub_dir, sealed, tmp_path, pinned):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "hub.log"
    first, second = sealed(STATION, 1), sealed(STATION, 2)
    process = _start(hub_dir, port, log)
    try:
        with _client(hub_dir, port, pinned) as client:
            for data, upto in ((first, len(first)), (second, 6000)):
                answer = client.post("/v1/uploads", headers=upload_headers(data))
                assert answer.status_code == 201
                answer = client.patch(
                    f"/v1/uploads/{hashlib.sha256(data).hexdigest()}",
                    headers=_patch_headers(0),
                    content=data[:upto],
                )
                assert answer.status_code == (200 if upto == len(data) else 204), answer.text
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert "SIMULATION" in log.read_text()

    process = _start(hub_dir, port, log)
    try:
        with _client(hub_dir, port, pinned) as client:
            kept = client.get(f"/v1/packets/{STATION}-20261128-000001")
            assert kept.json()["verdict"] == "accepted"
            path = f"/v1/uploads/{hashlib.sha256(second).hexdigest()}"
            assert client.head(path).headers["Upload-Offset"] == "6000"
            done = client.patch(path, headers=_patch_headers(6000), content=second[6000:])
            assert done.status_code == 200
            assert done.json()["verdict"] == "accepted"
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn stops gracefully, then ends by the signal it caught (systemd's clean stop)
        assert process.wait(15) in (0, -signal.SIGTERM)
    index = SqliteIndex(hub_dir / "index.sqlite3")
    assert index.verdict_counts() == {STATION: {"accepted": 2, "rejected": 0}}
    index.close()


def _patch_headers(offset: int) -> dict[str, str]:
    return {
        "Tus-Resumable": "1.0.0",
        "Rekam-Protocol": "1",
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }


def test_serve_prints_backend_urls_without_their_password():
    from hub.cli import _redacted

    assert _redacted("postgresql://hub:s3cret@db:5432/rekam?sslmode=require") == (
        "postgresql://hub:***@db:5432/rekam?sslmode=require"
    )
    assert _redacted("s3://packets?endpoint=http://s3.local") == (
        "s3://packets?endpoint=http://s3.local"
    )


def test_the_listening_socket_sends_small_answers_at_once(tmp_path):
    """TCP_NODELAY, inherited by each connection: without it every TLS answer's body
    waited ~40 ms for the station's delayed ACK (benchmarks/sync_throughput.py)."""
    from hub.cli import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_an_office_with_no_link_carries_packets_and_the_hubs_receipt_back(tmp_path, capsys):
    """kiosk export -> kiosk-hub import (which leaves a signed receipt on the stick) ->
    the next kiosk export marks those packets diterima and carries only the rest."""
    from kiosk.cli import main as kiosk

    sim, stick = tmp_path / "sim", tmp_path / "stick"
    stick.mkdir()
    assert kiosk(["simulate", "--citizens", "3", "--data-dir", str(sim)]) == 0
    assert kiosk(["export", "--to", str(stick), "--data-dir", str(sim)]) == 0
    capsys.readouterr()
    assert main(["import", str(stick), "--data-dir", str(sim / "hub")]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 accepted" in out and "receipt for SIM-01: 3 packets" in out
    [receipt] = stick.glob("rekam-receipt-SIM-01-*.json")

    # a receipt changed on the way, or signed by another hub, counts for nothing
    forged = json.loads(receipt.read_bytes())
    forged["packets"] = forged["packets"][:1]
    receipt.rename(tmp_path / "good.json")
    (stick / "rekam-receipt-SIM-01-forged.json").write_text(json.dumps(forged))
    other = tmp_path / "other-hub"
    layout.init_hub(other)
    key = serialization.load_pem_private_key(layout.tls_key_path(other).read_bytes(), None)
    packets = {entry["enrollment_id"]: entry["sha256"] for entry in forged["packets"]}
    (stick / "rekam-receipt-SIM-01-other.json").write_bytes(make_receipt("SIM-01", packets, key))
    assert kiosk(["export", "--to", str(stick), "--data-dir", str(sim)]) == 0
    out, err = capsys.readouterr()
    assert "exported 3 sealed packets" in out and "diterima" not in out
    assert "forged.json: not counted: the signature is not this hub's" in err
    assert "other.json: not counted: the signature is not this hub's" in err

    # the hub's own receipt: the three are diterima on the kiosk, nothing left to carry
    for path in stick.glob("rekam-receipt-*"):
        path.unlink()
    (tmp_path / "good.json").rename(receipt)
    assert kiosk(["export", "--to", str(stick), "--data-dir", str(sim)]) == 0
    out = capsys.readouterr().out
    assert "3 packets diterima, by the hub's receipt on the stick" in out
    assert "exported 0 sealed packets" in out
    store = EnrollmentStore(sim)
    try:
        assert store.backlog()[PacketState.ACKNOWLEDGED] == 3
    finally:
        store.close()
