"""`kiosk provision` (kiosk/provision/): keys, the station file, pairing with a real hub
over HTTPS on loopback, the offline way with the hub's files, refusals that change
nothing, and a provisioned station refusing simulated modules unless told."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import sys
import threading
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import VALID_NIK, fake_modules

from hub import layout, pairing
from hub.app import create_app
from hub.cli import listening_socket
from hub.service import Hub
from hub.storage import ACCEPTED, Verdict
from kiosk.cli import main
from kiosk.config import SessionConfig, load_config
from kiosk.flow.machine import EnrollmentFlow
from kiosk.operator_pin import HASHER
from kiosk.packet.keys import (
    StationKeyFiles,
    load_hub_public_key,
    load_station_key,
    load_station_public_key,
    station_public_bytes,
)
from kiosk.packet.seal import Sealer
from kiosk.provision import protocol
from kiosk.provision.protocol import SEQUENCE_MARGIN
from kiosk.provision.station import (
    MARKER,
    ProvisionError,
    Provisioning,
    detect_modules,
    provision,
    write_station_file,
)
from kiosk.simulate import enroll_one
from kiosk.store.sqlite import SEQUENCE_FLOOR, EnrollmentStore
from kiosk.sync.client import HubClient

STATION = "3201-KCM-CIBINONG-01"
TECHNICIAN_PIN, OPERATOR_PIN = "804211", "4821"
FAKES = {kind: {"driver": "fake"} for kind in ("camera", "fingerprint", "signature", "indicators")}


def request_for(**fields) -> Provisioning:
    """A provisioning of STATION in region 3201 by the technician and siti, with ``fields``."""
    return Provisioning(
        station_id=STATION,
        region="3201",
        technician_pin=TECHNICIAN_PIN,
        operator="siti",
        operator_pin=OPERATOR_PIN,
        **fields,
    )


@pytest.fixture
def hub_dir(tmp_path) -> Path:
    path = tmp_path / "hub"
    layout.init_hub(path)
    return path


class Server:
    """An ASGI app over HTTPS with the hub's certificate on a free loopback port."""

    def __init__(self, app, hub_dir: Path) -> None:
        sock = listening_socket("127.0.0.1", 0)
        self.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            app,
            ssl_certfile=str(layout.tls_certificate_path(hub_dir)),
            ssl_keyfile=str(layout.tls_key_path(hub_dir)),
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.02)
        assert self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve(hub_dir) -> Iterator[Callable[..., tuple[Hub, Server]]]:
    made: list[tuple[Hub, Server]] = []

    def start(wrap: Callable | None = None) -> tuple[Hub, Server]:
        hub = Hub.open(hub_dir)
        app = create_app(hub)
        server = Server(wrap(app) if wrap else app, hub_dir)
        made.append((hub, server))
        return hub, server

    yield start
    for hub, server in made:
        server.stop()
        hub.close()


def new_code(hub_dir: Path, station: str = STATION, region: str | None = "3201") -> str:
    code, _ = pairing.make_code(hub_dir, station, region=region)
    return code


def cli(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def provision_args(tmp_path: Path, url: str, *more: str) -> list[str]:
    return [
        "provision",
        "--station-id",
        STATION,
        "--region",
        "3201",
        "--hub",
        url,
        "--operator",
        "siti",
        "--config",
        str(tmp_path / "etc" / "station.toml"),
        "--data-dir",
        str(tmp_path / "data"),
        *more,
    ]


def everything_under(*folders: Path) -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for folder in folders
        if folder.exists()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_provision_pairs_writes_the_keys_and_a_station_file_that_loads(
    tmp_path, hub_dir, serve, monkeypatch, capsys
):
    hub, server = serve()
    code = new_code(hub_dir)
    status, out, err = cli(
        monkeypatch,
        capsys,
        *provision_args(tmp_path, server.url, "--pairing-code", code),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 0, err
    assert f"station {STATION} provisioned" in out and "registered at the hub" in out
    keys = tmp_path / "data" / "keys"
    # the keys as the sync code expects them, the private one the owner's alone
    assert stat.S_IMODE((keys / "station.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    station_key = load_station_key(keys / "station.key")
    assert load_station_public_key(keys / "station.pub") == station_public_bytes(station_key)
    assert load_hub_public_key(keys / "hub.pub") == hub.private_key.public_bytes()
    assert (keys / "hub-tls.pem").read_bytes() == layout.tls_certificate_path(hub_dir).read_bytes()
    # registered at the hub: the folder, the index, and a signed heartbeat is accepted
    assert layout.registered_stations(hub_dir)[STATION] == station_public_bytes(station_key)
    assert hub.index.station_keys()[STATION] == station_public_bytes(station_key)
    # the station file: 0640, loads, real drivers, the PIN hashes verify
    path = tmp_path / "etc" / "station.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    text = path.read_text()
    assert TECHNICIAN_PIN not in text and OPERATOR_PIN not in text
    assert not list(path.parent.glob(".*.tmp"))
    config = load_config(path)
    assert (config.station_id, config.region, config.hub_url) == (STATION, "3201", server.url)
    assert config.data_dir == tmp_path / "data"
    assert {str(kind): module.driver for kind, module in config.modules.items()} == {
        "camera": detect_modules()["camera"]["driver"],
        "fingerprint": "zhiantec",
        "signature": "touch",
        "indicators": "gpio",
    }
    assert HASHER.verify(config.operators["siti"], OPERATOR_PIN)
    assert HASHER.verify(config.technician_pin_hash, TECHNICIAN_PIN)
    marker = json.loads((tmp_path / "data" / MARKER).read_text())
    assert marker["station_id"] == STATION and marker["registered_by"] == "pairing"
    # and the station can sync with what it got: the pinned certificate, its own key
    Sealer.from_key_files(StationKeyFiles(keys), STATION)
    with HubClient(server.url, keys / "hub-tls.pem") as client:
        assert client.health()


def test_the_written_station_file_passes_kiosk_doctor(tmp_path, hub_dir, monkeypatch, capsys):
    hub_files = ("--hub-key", layout.hub_public_key_path(hub_dir))
    certificate = ("--hub-cert", layout.tls_certificate_path(hub_dir))
    status, _, err = cli(
        monkeypatch,
        capsys,
        *provision_args(tmp_path, "https://127.0.0.1:8443", *hub_files, *certificate),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 0, err
    status, out, err = cli(
        monkeypatch, capsys, "doctor", "--json", "--config", tmp_path / "etc" / "station.toml"
    )
    # 2 would be a station file doctor cannot use; the modules themselves are absent here
    assert status in (0, 1), err
    report = json.loads(out)
    assert {module["kind"] for module in report["modules"]} >= {"camera", "fingerprint"}


def test_a_wrong_code_stops_with_one_line_and_writes_nothing(
    tmp_path, hub_dir, serve, monkeypatch, capsys
):
    _, server = serve()
    code = new_code(hub_dir)
    wrong = "AAAAA-AAAAA" if code != "AAAAA-AAAAA" else "BBBBB-BBBBB"
    before = everything_under(hub_dir)
    status, _, err = cli(
        monkeypatch,
        capsys,
        *provision_args(tmp_path, server.url, "--pairing-code", wrong),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 2
    lines = [line for line in err.splitlines() if not line.endswith("...")]
    assert len(lines) == 1 and "pairing code is wrong" in lines[0], err
    assert not (tmp_path / "etc").exists() and not (tmp_path / "data").exists()
    assert everything_under(hub_dir) == before  # the hub unchanged: no station, code unspent


def test_a_tampered_answer_is_refused_and_nothing_is_written(tmp_path, hub_dir, serve):
    """An on-path attacker swaps in its own certificate: the code's MAC gives it away."""
    attacker = tmp_path / "attacker"
    layout.init_hub(attacker)
    forged_certificate = layout.tls_certificate_path(attacker).read_text()

    def tamper(app):
        async def wrapped(scope, receive, send):
            async def forward(message):
                if message["type"] == "http.response.body" and message.get("body"):
                    body = json.loads(message["body"])
                    if "tls_certificate" in body:
                        body["tls_certificate"] = forged_certificate
                        message = {**message, "body": json.dumps(body).encode()}
                await send(message)

            async def start_and_body(message):
                if message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                    message = {**message, "headers": headers}
                await forward(message)

            await app(scope, receive, start_and_body)

        return wrapped

    _, server = serve(tamper)
    request = request_for(
        hub_url=server.url,
        pairing_code=new_code(hub_dir),
        config_path=tmp_path / "etc" / "station.toml",
        data_dir=tmp_path / "data",
        modules=FAKES,
    )
    with pytest.raises(ProvisionError, match="does not carry this pairing code's proof"):
        provision(request)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("made", "reason", "words"),
    [
        ({"valid_hours": -1}, protocol.EXPIRED, "expired"),
        ({"used": True}, protocol.USED, "used already"),
        ({"region": "3273"}, protocol.OTHER_REGION, "region 3273, not 3201"),
    ],
)
def test_expired_used_or_foreign_codes_are_one_line_each(
    tmp_path, hub_dir, serve, made, reason, words
):
    from datetime import UTC, datetime, timedelta

    _, server = serve()
    now = datetime.now(UTC)
    if "valid_hours" in made:
        now -= timedelta(hours=2)
    code, _ = pairing.make_code(
        hub_dir, STATION, region=made.get("region", "3201"), valid=timedelta(hours=1), now=now
    )
    request = request_for(
        hub_url=server.url,
        pairing_code=code,
        config_path=tmp_path / "etc" / "station.toml",
        data_dir=tmp_path / "data",
        modules=FAKES,
    )
    if made.get("used"):
        other = station_public_bytes(Ed25519PrivateKey.generate())
        from kiosk.provision.client import pair

        pair(server.url, STATION, "3201", code, other)
    with pytest.raises(ProvisionError, match=re.escape(words)) as refused:
        provision(request)
    assert refused.value.key == f"provision.error.{reason}"
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "data").exists()


def test_fields_are_checked_before_anything_happens(tmp_path, monkeypatch, capsys):
    status, _, err = cli(
        monkeypatch,
        capsys,
        "provision",
        "--station-id",
        "bad id!",
        "--region",
        "3201",
        "--hub",
        "http://10.0.0.2",
        "--pairing-code",
        "K7QMX",
        "--operator",
        "siti",
        "--config",
        tmp_path / "station.toml",
        "--data-dir",
        tmp_path / "data",
        stdin="12\n12\n",
    )
    assert status == 2 and err.count("\n") == 1
    for words in ("Station id:", "Hub address:", "Pairing code:", "Technician PIN:"):
        assert words in err
    assert not (tmp_path / "station.toml").exists() and not (tmp_path / "data").exists()
    status, _, err = cli(monkeypatch, capsys, "provision", "--station-id", STATION)
    assert status == 2 and "missing --region, --hub, --operator, --pairing-code" in err


def test_an_existing_station_is_kept_unless_forced(tmp_path, hub_dir, serve, monkeypatch, capsys):
    _, server = serve()
    args = provision_args(tmp_path, server.url)
    pins = f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n"
    assert cli(monkeypatch, capsys, *args, "--pairing-code", new_code(hub_dir), stdin=pins)[0] == 0
    keys = tmp_path / "data" / "keys"
    first_key = (keys / "station.key").read_bytes()
    code = new_code(hub_dir)
    status, _, err = cli(monkeypatch, capsys, *args, "--pairing-code", code, stdin=pins)
    assert status == 2 and "--force" in err and "station file already" in err
    assert (keys / "station.key").read_bytes() == first_key
    # only the station key left (a provisioning cut short): still never overwritten
    (tmp_path / "etc" / "station.toml").unlink()
    status, _, err = cli(monkeypatch, capsys, *args, "--pairing-code", code, stdin=pins)
    assert status == 2 and "station key already" in err
    assert (pairing.pairing_path(hub_dir) / f"{STATION}.json").exists()  # the code unspent
    status, _, err = cli(monkeypatch, capsys, *args, "--pairing-code", code, "--force", stdin=pins)
    assert status == 0, err
    assert (keys / "station.key").read_bytes() != first_key
    [aside] = keys.glob("replaced-*")
    assert (aside / "station.key").read_bytes() == first_key  # kept, not deleted
    assert stat.S_IMODE((keys / "station.key").stat().st_mode) == 0o600
    new_public = load_station_public_key(keys / "station.pub")
    assert layout.registered_stations(hub_dir)[STATION] == new_public


def test_offline_provisioning_takes_the_hubs_files_and_says_how_to_register(
    tmp_path, hub_dir, monkeypatch, capsys
):
    stick = tmp_path / "usb"
    stick.mkdir()
    for source in (layout.hub_public_key_path(hub_dir), layout.tls_certificate_path(hub_dir)):
        (stick / source.name).write_bytes(source.read_bytes())
    status, out, err = cli(
        monkeypatch,
        capsys,
        *provision_args(
            tmp_path,
            "https://127.0.0.1:8443",
            "--hub-key",
            stick / "hub.pub",
            "--hub-cert",
            stick / "tls.pem",
        ),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 0, err
    assert "kiosk-hub register" in out and f"{STATION}.pub" in out
    keys = tmp_path / "data" / "keys"
    assert (keys / "hub-tls.pem").read_bytes() == (stick / "tls.pem").read_bytes()
    # the public key carried back on the stick registers the station at the hub
    from hub.cli import main as hub_main

    assert (
        hub_main(
            ["register", str(hub_dir), "--station", STATION, "--key", str(stick / f"{STATION}.pub")]
        )
        == 0
    )
    assert layout.registered_stations(hub_dir)[STATION] == load_station_public_key(
        keys / "station.pub"
    )
    # a hub key file that is not one: one line, nothing written
    (stick / "bad.pub").write_text("not a key")
    other = tmp_path / "other"
    other.mkdir()
    status, _, err = cli(
        monkeypatch,
        capsys,
        *provision_args(
            other,
            "https://127.0.0.1:8443",
            "--hub-key",
            stick / "bad.pub",
            "--hub-cert",
            stick / "tls.pem",
        ),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 2 and "--hub-key" in err and not (other / "data").exists()


def test_the_station_file_is_written_through_the_etc_symlink(tmp_path):
    """On the image /etc/rekam-kiosk links to the data partition (the root is read-only)."""
    real = tmp_path / "var" / "config"
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "rekam-kiosk").symlink_to(real, target_is_directory=True)
    request = request_for(
        hub_url="https://10.0.0.2:8443",
        config_path=etc / "rekam-kiosk" / "station.toml",
        data_dir=tmp_path / "data",
    )
    from kiosk.provision.station import station_file

    write_station_file(
        Path(os.path.realpath(request.config_path)), station_file(request, request.data_dir, FAKES)
    )
    assert (etc / "rekam-kiosk").is_symlink()
    assert (real / "station.toml").is_file()
    assert load_config(etc / "rekam-kiosk" / "station.toml").station_id == STATION


def test_modules_are_found_on_the_machine(tmp_path):
    dev = tmp_path / "dev"
    (dev / "v4l" / "by-id").mkdir(parents=True)
    (dev / "serial").mkdir()
    (dev / "serial0").touch()
    modules = detect_modules(dev)
    assert modules["fingerprint"] == {
        "driver": "zhiantec",
        "port": str(dev / "serial0"),
        "baudrate": 57600,
    }
    assert modules["signature"] == {"driver": "touch"} and modules["indicators"]["driver"] == "gpio"
    (dev / "ttyUSB0").touch()
    (dev / "serial0").unlink()
    assert detect_modules(dev)["fingerprint"]["port"] == str(dev / "ttyUSB0")
    (dev / "serial" / "by-id").mkdir()
    stable = dev / "serial" / "by-id" / "usb-Silicon_Labs_CP2102-if00-port0"
    stable.touch()
    assert detect_modules(dev)["fingerprint"]["port"] == str(stable)
    (dev / "v4l" / "by-id" / "usb-046d_HD_Pro_Webcam_C920-video-index0").touch()
    assert detect_modules(dev)["camera"] == {
        "driver": "v4l2",
        "device": "usb-046d_HD_Pro_Webcam_C920",
    }


# -- a provisioned station refuses simulated modules unless told ----------------------


@pytest.fixture
def window(monkeypatch) -> list[dict]:
    """kiosk.app replaced by a stand-in recording how the window would have started."""
    started: list[dict] = []
    stand_in = types.ModuleType("kiosk.app")

    def run_kiosk(config, modules, store, *, fullscreen, simulate):
        started.append({"station": config.station_id, "simulate": simulate})
        store.close()
        return 0

    stand_in.run_kiosk = run_kiosk
    monkeypatch.setitem(sys.modules, "kiosk.app", stand_in)
    return started


@pytest.fixture
def provisioned_station(tmp_path, hub_dir) -> Path:
    """A station provisioned (offline) with fake modules in its station file."""
    request = request_for(
        hub_url="https://127.0.0.1:8443",
        hub_key_file=layout.hub_public_key_path(hub_dir),
        hub_cert_file=layout.tls_certificate_path(hub_dir),
        config_path=tmp_path / "etc" / "station.toml",
        data_dir=tmp_path / "data",
        modules=FAKES,
    )
    provision(request)
    return request.config_path


def test_a_provisioned_station_refuses_fake_drivers_unless_allowed(
    provisioned_station, window, monkeypatch, capsys
):
    status, _, err = cli(monkeypatch, capsys, "run", "--config", provisioned_station)
    assert status == 2 and not window
    assert err.count("\n") == 1 and "is provisioned" in err and "--allow-simulated" in err
    assert "camera, fingerprint, signature, indicators" in err
    status, _, err = cli(
        monkeypatch, capsys, "run", "--config", provisioned_station, "--allow-simulated"
    )
    assert status == 0, err
    assert window == [{"station": STATION, "simulate": False}]


def test_a_fake_driver_from_the_environment_is_refused_too(
    provisioned_station, window, monkeypatch, capsys
):
    config = load_config(provisioned_station)
    text = provisioned_station.read_text()
    real = text[: text.index("[modules.camera]")] + text[text.index("[hub]") :]
    tables = [
        f"[modules.{kind}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        for kind, table in detect_modules(provisioned_station.parent).items()
    ]
    provisioned_station.write_text(real.replace("[hub]", "\n".join(tables) + "\n[hub]"))
    assert {m.driver for m in load_config(provisioned_station).modules.values()} >= {"zhiantec"}
    assert config.station_id == STATION
    monkeypatch.setenv("KIOSK_CAMERA_DRIVER", "fake")
    status, _, err = cli(monkeypatch, capsys, "run", "--config", provisioned_station)
    assert status == 2 and not window
    assert 'simulated camera (driver "fake")' in err and "fingerprint" not in err


def test_simulate_on_a_provisioned_station_needs_the_technicians_word(
    provisioned_station, window, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the simulation station's data
    status, _, err = cli(monkeypatch, capsys, "run", "--simulate", "--config", provisioned_station)
    assert status == 2 and "every module (--simulate)" in err and not window
    monkeypatch.setenv("KIOSK_CONFIG", str(provisioned_station))
    status, _, err = cli(
        monkeypatch,
        capsys,
        "run",
        "--simulate",
        "--allow-simulated",
        "--config",
        provisioned_station,
    )
    assert status == 0, err
    assert window == [{"station": "SIM-01", "simulate": True}]


def test_a_machine_that_is_not_provisioned_simulates_as_before(
    tmp_path, window, monkeypatch, capsys
):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # no station file at all (a developer's machine)
    status, _, err = cli(
        monkeypatch, capsys, "run", "--simulate", "--config", tmp_path / "none.toml"
    )
    assert status == 0, err
    # a station file written by hand with fakes, and no provisioning marker
    config = tmp_path / "station.toml"
    request = request_for(
        hub_url="https://10.0.0.2:8443",
        data_dir=tmp_path / "data",
    )
    from kiosk.provision.station import station_file

    write_station_file(config, station_file(request, tmp_path / "sim-data", FAKES))
    status, _, err = cli(monkeypatch, capsys, "run", "--simulate", "--config", config)
    assert status == 0, err
    assert [run["simulate"] for run in window] == [True, True]


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")
def test_as_root_the_data_folder_goes_to_the_kiosks_user_and_the_file_stays_roots(
    tmp_path, hub_dir
):
    import pwd

    kiosk_user = pwd.getpwnam("nobody")
    data = tmp_path / "data"
    request = request_for(
        hub_url="https://127.0.0.1:8443",
        hub_key_file=layout.hub_public_key_path(hub_dir),
        hub_cert_file=layout.tls_certificate_path(hub_dir),
        config_path=data / "config" / "station.toml",  # as on the image: inside the data
        data_dir=data,
        modules=FAKES,
        owner="nobody",
    )
    old_umask = os.umask(0o077)  # as under systemd's UMask=0077
    try:
        provision(request)
    finally:
        os.umask(old_umask)
    for path in (data, data / "keys", data / "keys" / "station.key", data / MARKER):
        assert (path.stat().st_uid, path.stat().st_gid) == (kiosk_user.pw_uid, kiosk_user.pw_gid)
    station_file = data / "config" / "station.toml"
    assert station_file.stat().st_uid == 0 and station_file.stat().st_gid == kiosk_user.pw_gid
    assert stat.S_IMODE(station_file.stat().st_mode) == 0o640
    assert stat.S_IMODE((data / "config").stat().st_mode) == 0o755  # the group can reach it
    assert (data / "config").stat().st_uid == 0


def test_a_relative_data_folder_is_written_as_an_absolute_path(tmp_path, hub_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    request = request_for(
        hub_url="https://127.0.0.1:8443",
        hub_key_file=layout.hub_public_key_path(hub_dir),
        hub_cert_file=layout.tls_certificate_path(hub_dir),
        config_path=Path("etc/station.toml"),
        data_dir=Path("data"),
        modules=FAKES,
    )
    done = provision(request)
    assert done.config_path == tmp_path / "etc" / "station.toml"
    assert load_config(done.config_path).data_dir == tmp_path / "data"


# -- a re-flashed station numbers on from the hub's last sequence ---------------------


def accepted_at_hub(hub: Hub, enrollment_id: str, station: str = STATION) -> None:
    """The hub's index holds ``enrollment_id`` as accepted (the old card's packet)."""
    hub.index.record_verdict(
        Verdict(
            hashlib.sha256(enrollment_id.encode()).hexdigest(),
            enrollment_id,
            station,
            ACCEPTED,
            None,
            None,
            datetime.now(UTC),
            1,
            "packets/old-card.rekam",
        )
    )


def first_enrollment(data_dir: Path, clock) -> tuple[str, int]:
    """The id and sequence the provisioned station gives its first citizen."""
    sealer = Sealer.from_key_files(StationKeyFiles(data_dir / "keys"), STATION)
    store = EnrollmentStore(data_dir, sealer)
    modules = fake_modules()
    try:
        flow = EnrollmentFlow(
            station_id=STATION, modules=modules, sink=store, session=SessionConfig(), clock=clock
        )
        enrollment_id = enroll_one(flow, VALID_NIK)
        return enrollment_id, store.last_sequence()
    finally:
        modules.close()
        store.close()


def test_a_reflashed_station_numbers_on_from_the_hubs_last_sequence(
    tmp_path, hub_dir, serve, monkeypatch, capsys, clock
):
    """The SD card died: the new card, paired anew, makes no id the hub accepted already."""
    hub, server = serve()
    for sequence in (41, 42):
        accepted_at_hub(hub, f"{STATION}-20261128-{sequence:06d}")
    accepted_at_hub(hub, "3201-KCM-OTHER-01-20261128-009999", "3201-KCM-OTHER-01")
    status, out, err = cli(
        monkeypatch,
        capsys,
        *provision_args(tmp_path, server.url, "--pairing-code", new_code(hub_dir), "--force"),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 0, err
    assert "enrollments numbered from 1043 on" in out
    marker = json.loads((tmp_path / "data" / MARKER).read_text())
    assert (marker["hub_last_sequence"], marker[SEQUENCE_FLOOR]) == (42, 42 + SEQUENCE_MARGIN)
    enrollment_id, sequence = first_enrollment(tmp_path / "data", clock)
    assert sequence >= 1043
    assert enrollment_id.startswith(f"{STATION}-") and enrollment_id.endswith(f"-{sequence:06d}")
    # an id the hub holds nothing under: no "accepted already with other content"
    assert hub.index.verdict_for_enrollment(enrollment_id) is None


def test_offline_the_technician_gives_the_first_sequence(
    tmp_path, hub_dir, monkeypatch, capsys, clock
):
    hub_files = (
        "--hub-key",
        layout.hub_public_key_path(hub_dir),
        "--hub-cert",
        layout.tls_certificate_path(hub_dir),
    )
    status, out, err = cli(
        monkeypatch,
        capsys,
        *provision_args(tmp_path, "https://127.0.0.1:8443", *hub_files, "--first-sequence", 1043),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 0, err
    assert "enrollments numbered from 1043 on" in out
    marker = json.loads((tmp_path / "data" / MARKER).read_text())
    assert marker[SEQUENCE_FLOOR] == 1042 and "hub_last_sequence" not in marker
    assert first_enrollment(tmp_path / "data", clock)[1] == 1043
    # without it, offline: no floor, numbered from 1 as before
    other = tmp_path / "other"
    status, out, err = cli(
        monkeypatch,
        capsys,
        *provision_args(other, "https://127.0.0.1:8443", *hub_files),
        stdin=f"{TECHNICIAN_PIN}\n{OPERATOR_PIN}\n",
    )
    assert status == 0, err
    assert "numbered from" not in out
    assert SEQUENCE_FLOOR not in json.loads((other / "data" / MARKER).read_text())
    assert first_enrollment(other / "data", clock)[1] == 1
    # a number that is not one: argparse's one line, nothing written
    third = tmp_path / "third"
    for bad in ("0", "-5", "abc"):
        with pytest.raises(SystemExit) as refused:
            cli(
                monkeypatch,
                capsys,
                *provision_args(
                    third, "https://127.0.0.1:8443", *hub_files, "--first-sequence", bad
                ),
            )
        assert refused.value.code == 2
        assert "--first-sequence" in capsys.readouterr().err
    assert not third.exists()
