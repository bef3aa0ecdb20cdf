"""No biometrics and no NIK in clear anywhere in a kiosk's data folder.

`kiosk simulate --citizens 3 --data-dir D` runs as a process; then every file under
D (the index and its -wal/-shm when present, packets/, keys/, hub/, the inventory)
is searched for:

- a JPEG, PNG, WSQ or BMP image, recognised by its structure, not by 2 or 3 magic
  bytes that ciphertext holds by chance (see :func:`test_magic_bytes_alone_would_cry_wolf`);
- a NIK: any of the simulated citizens' NIKs, and any run of exactly 16 ASCII digits
  that is not a piece of a longer hex string (a SHA-256) nor one of the keys' ids;
- a piece of any file the same simulated modules put into a packet (face, prints,
  templates, signature, strokes): a known-plaintext search that needs no format;
- the manifest's ``"nik"`` key.

Odds of a false alarm on random bytes (ciphertext), per byte offset:

- ``FF D8 FF`` alone: 2^-24 = 6e-8; a 140 KB packet holds it with 0.8 % odds, three
  packets with 2.5 %: too flaky. Required here: ``FF D8 FF`` + a marker a JPEG
  starts with (E0-EF, DB, C0-C4, FE) + a segment length whose end is the next
  ``FF`` marker: about 2^-24 x 21/256 x 1/256 x 21/256 = 1.6e-12 per offset.
- PNG: the 8-byte signature + ``00 00 00 0D IHDR``: 2^-128.
- WSQ: ``FF A0`` (SOI) + a WSQ marker (``FF A2``..``FF A8``) + a segment length whose end
  is another WSQ marker: 2^-16 x 7/2^16 x 7/2^16 = 1.7e-13.
- BMP: ``BM`` + 4 reserved zero bytes + a DIB header size of 12, 40, 52, 56, 108 or
  124 at offset 14: 2^-16 x 2^-32 x 6/2^32 = 2e-23.
- 16 ASCII digits in a row: (10/256)^16 = 3e-23.

A planted clear JPEG (and each other kind) makes the same scan fail.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import VALID_NIK, PacketCatcher, test_sealer

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.flow.machine import EnrollmentFlow
from kiosk.health.station import StationModules
from kiosk.packet.keys import (
    key_id,
    load_hub_public_key,
    load_station_public_key,
)
from kiosk.simulate import enroll_one, sample_nik
from kiosk.store.sqlite import INDEX_NAME, EnrollmentStore

ROOT = Path(__file__).resolve().parent.parent
CITIZENS = 3

JPEG_FIRST_MARKERS = {*range(0xE0, 0xF0), 0xDB, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xFE}
WSQ_MARKERS = set(range(0xA2, 0xA9))  # SOF, SOB, DTT, DQT, DHT, DRT, COM
DIB_HEADER_SIZES = {12, 40, 52, 56, 108, 124}
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
DIGITS_16 = re.compile(rb"(?<![0-9])[0-9]{16}(?![0-9])")
HEX_RUN = re.compile(rb"[0-9a-fA-F]+")


def _segment_ends_at_marker(data: bytes, at: int, markers: set[int]) -> bool:
    """Whether the segment whose 2-byte length is at ``at`` ends at a marker in ``markers``."""
    if at + 2 > len(data):
        return False
    end = at + int.from_bytes(data[at : at + 2], "big")
    return end + 1 < len(data) and data[end] == 0xFF and data[end + 1] in markers


def jpegs(data: bytes) -> list[int]:
    found = []
    for match in re.finditer(rb"\xff\xd8\xff", data):
        at = match.start()
        if (
            at + 3 < len(data)
            and data[at + 3] in JPEG_FIRST_MARKERS
            and _segment_ends_at_marker(data, at + 4, JPEG_FIRST_MARKERS | {0xDA})
        ):
            found.append(at)
    return found


def pngs(data: bytes) -> list[int]:
    return [match.start() for match in re.finditer(re.escape(PNG_HEAD), data)]


def wsqs(data: bytes) -> list[int]:
    found = []
    for match in re.finditer(rb"\xff\xa0\xff", data):
        at = match.start()
        if (
            at + 3 < len(data)
            and data[at + 3] in WSQ_MARKERS
            and _segment_ends_at_marker(data, at + 4, WSQ_MARKERS)
        ):
            found.append(at)
    return found


def bmps(data: bytes) -> list[int]:
    found = []
    for match in re.finditer(rb"BM", data):
        at = match.start()
        head = data[at : at + 18]
        if (
            len(head) == 18
            and head[6:10] == bytes(4)
            and int.from_bytes(head[14:18], "little") in DIB_HEADER_SIZES
        ):
            found.append(at)
    return found


def clear_niks(data: bytes, niks: set[bytes], key_ids: set[bytes]) -> list[int]:
    found = [match.start() for nik in niks for match in re.finditer(re.escape(nik), data)]
    for match in DIGITS_16.finditer(data):
        if match.group() in key_ids:
            continue
        run = next(
            r for r in HEX_RUN.finditer(data, max(0, match.start() - 64)) if r.end() >= match.end()
        )
        if run.end() - run.start() > 16:  # a piece of a SHA-256 or HMAC in hex
            continue
        found.append(match.start())
    return found


def clear_pieces(data: bytes, pieces: dict[bytes, str]) -> list[str]:
    return [name for piece, name in pieces.items() if piece in data]


def findings(
    folder: Path, niks: set[bytes], key_ids: set[bytes], pieces: dict[bytes, str]
) -> list[str]:
    """What looks like clear data in any file under ``folder``, as ``path: what``."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for kind, offsets in (
            ("JPEG", jpegs(data)),
            ("PNG", pngs(data)),
            ("WSQ", wsqs(data)),
            ("BMP", bmps(data)),
            ("NIK", clear_niks(data, niks, key_ids)),
        ):
            found += [f"{path}: {kind} at {at}" for at in offsets]
        found += [f"{path}: a piece of {name}" for name in clear_pieces(data, pieces)]
        if b'"nik"' in data:
            found.append(f"{path}: the manifest's nik key")
    return found


def simulation_files(citizens: int) -> dict[str, bytes]:
    """Every distinct file the simulation's modules put into packets, through the flow."""
    config = load_config(SIMULATION_PATH)
    modules = StationModules.from_config(config, simulate=True)
    modules.open()
    catcher = PacketCatcher()
    flow = EnrollmentFlow(
        station_id=config.station_id, modules=modules, sink=catcher, session=config.session
    )
    try:
        for _ in range(citizens):
            enroll_one(flow, VALID_NIK)
    finally:
        modules.close()
    return {data: name for packet in catcher.packets for name, data in packet.files.items()}


def pieces_of(files: dict[bytes, str]) -> dict[bytes, str]:
    """32 bytes from the middle of each file: found only if the file is there in clear."""
    return {data[len(data) // 2 : len(data) // 2 + 32]: name for data, name in files.items()}


@pytest.fixture(scope="module")
def reference() -> dict[bytes, str]:
    return pieces_of(simulation_files(CITIZENS + 1))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("simulated") / "data"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk.cli",
            "simulate",
            "--citizens",
            str(CITIZENS),
            "--data-dir",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"completed {CITIZENS} of {CITIZENS}" in result.stdout
    return folder


def simulated_niks() -> set[bytes]:
    """The NIKs `kiosk simulate` used: its first citizens for its default seed."""
    rng = random.Random(1)
    return {sample_nik(rng, date.today()).encode() for _ in range(CITIZENS)}


def key_ids(folder: Path) -> set[bytes]:
    keys = folder / "keys"
    return {
        key_id(load_station_public_key(keys / "station.pub")).encode(),
        key_id(load_hub_public_key(keys / "hub.pub")).encode(),
    }


def test_a_simulated_kiosks_data_folder_holds_nothing_in_clear(simulated, reference):
    files = sorted(p.relative_to(simulated) for p in simulated.rglob("*") if p.is_file())
    packets = [p for p in files if p.parts[0] == "packets"]
    assert len(packets) == CITIZENS  # the scan covers the sealed packets...
    assert Path(INDEX_NAME) in files  # ...the index, keys and hub
    assert any(p.parts[0] == "keys" for p in files)
    with sqlite3.connect(simulated / INDEX_NAME) as db:
        assert db.execute("SELECT count(*) FROM packets").fetchone()[0] == CITIZENS
    assert findings(simulated, simulated_niks(), key_ids(simulated), reference) == []


def test_a_running_kiosks_index_and_its_wal_hold_nothing_in_clear(tmp_path, reference):
    """While the store is open the rows sit in the -wal: scanned too."""
    catcher = PacketCatcher()
    config = load_config(SIMULATION_PATH)
    modules = StationModules.from_config(config, simulate=True)
    modules.open()
    store = EnrollmentStore(tmp_path / "data", test_sealer())
    try:
        flow = EnrollmentFlow(
            station_id="TEST-01", modules=modules, sink=catcher, session=config.session
        )
        for _ in range(2):
            enroll_one(flow, VALID_NIK)
        for packet in catcher.packets:
            store.save(packet)
        names = {p.name for p in (tmp_path / "data").iterdir()}
        assert {INDEX_NAME + "-wal", INDEX_NAME + "-shm"} <= names
        planted = pieces_of({data: name for p in catcher.packets for name, data in p.files.items()})
        assert findings(tmp_path / "data", {VALID_NIK.encode()}, set(), planted) == []
    finally:
        store.close()
        modules.close()


# -- the detectors work ----------------------------------------------------------------


def planted_copy(source: Path, target: Path, name: str, data: bytes) -> Path:
    """A copy of the data folder ``source`` with ``data`` inside one of its packets."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    packet = sorted((target / "packets").iterdir())[1]
    sealed = packet.read_bytes()
    packet.write_bytes(sealed[:5000] + data + sealed[5000:])  # hidden amid ciphertext
    return packet


def a_clear(kind: str) -> bytes:
    image = np.random.default_rng(3).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    return {
        "JPEG": lambda: cv2.imencode(".jpg", image)[1].tobytes(),
        "PNG": lambda: cv2.imencode(".png", image)[1].tobytes(),
        "BMP": lambda: cv2.imencode(".bmp", image)[1].tobytes(),
    }[kind]()


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "BMP"])
def test_a_planted_clear_image_is_found(simulated, reference, tmp_path, kind):
    packet = planted_copy(simulated, tmp_path / "copy", kind, a_clear(kind))
    found = findings(tmp_path / "copy", simulated_niks(), key_ids(simulated), reference)
    assert found == [f"{packet}: {kind} at 5000"]


def test_a_planted_clear_print_face_and_nik_are_found(simulated, reference, tmp_path):
    clear = {name: data for data, name in simulation_files(1).items()}
    wsq = next(data for name, data in clear.items() if name.endswith(".wsq"))
    planted = wsq + clear["face.jpg"]
    nik = b'{"who": "' + sorted(simulated_niks())[0] + b'"}'
    packet = planted_copy(simulated, tmp_path / "copy", "mixed", planted + nik)
    found = findings(tmp_path / "copy", simulated_niks(), key_ids(simulated), reference)
    assert f"{packet}: WSQ at 5000" in found
    assert f"{packet}: JPEG at {5000 + len(wsq)}" in found
    assert f"{packet}: a piece of face.jpg" in found
    assert sum("NIK" in line for line in found) == 2  # the citizen's, and as 16 digits


def test_a_nik_not_among_the_citizens_is_still_found_but_a_hash_is_not():
    hash_with_digits = b"a" + b"1234567890123456" + b"b" * 47
    assert clear_niks(b"x" + hash_with_digits + b"x", set(), set()) == []
    assert clear_niks(b'"nik":"3201014101900001"', set(), set()) == [7]
    assert clear_niks(b"id 3201014101900001\n", set(), {b"3201014101900001"}) == []  # a key id
    assert clear_niks(b"32010141019000011", set(), set()) == []  # 17 digits: no NIK


def test_magic_bytes_alone_would_cry_wolf():
    """In 64 MB of random bytes (450 sealed packets' worth) the bare 3-byte JPEG
    magic turns up, as the odds say (64e6 / 2^24 = 3.8 expected); the structural
    checks find nothing."""
    noise = random.Random(11).randbytes(64 * 1024 * 1024)
    assert noise.count(b"\xff\xd8\xff") > 0
    assert noise.count(b"BM") > 500  # 64e6 / 2^16 = 977 expected
    assert jpegs(noise) == []
    assert pngs(noise) == []
    assert wsqs(noise) == []
    assert bmps(noise) == []
    assert clear_niks(noise, set(), set()) == []


def test_no_file_escapes_the_scan(simulated):
    """Hidden files and nested folders are walked too."""
    every = {Path(root) / name for root, _, names in os.walk(simulated) for name in names}
    assert every == {p for p in simulated.rglob("*") if p.is_file()}
