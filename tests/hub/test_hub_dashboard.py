"""The dashboard: its JSON, its page (escaped, no script), and the page in a real browser."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub import layout

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '<script>alert("x")</script>'


def _module(kind, model, serial, status="up", failures=0, last_swap=None, driver="fake"):
    return {
        "kind": kind,
        "model": model,
        "serial": serial,
        "firmware": "1.0",
        "driver": driver,
        "status": status,
        "failures": failures,
        "last_swap": last_swap,
    }


@pytest.fixture
def populated(serve, sealed, station_keys, hub_dir):
    """A hub with three stations' heartbeats, packets accepted and rejected, an upload
    under way and one station that sent a hostile module name."""
    extra = Ed25519PrivateKey.generate()
    layout.add_station(hub_dir, "JB-CIBINONG-03", extra.public_key().public_bytes_raw())
    keys = {**station_keys, "JB-CIBINONG-03": extra}
    served = serve()
    sent_at = datetime.now(UTC) - timedelta(seconds=5)
    beats = {
        "JB-BOGOR-01": (
            [
                _module("camera", "Rekam SimCam 640", "CAM-0001"),
                _module("fingerprint", "Rekam SimFinger R307", "FP-0001", "down", 3, "2026-11-27"),
                _module("signature", "Touch pad", "SIG-0001", driver="touch"),
            ],
            {"direkam": 4, "terkirim": 1, "diterima": 12, "ditolak": 1},
        ),
        "JB-BOGOR-02": (
            [
                _module("camera", "Rekam SimCam 640", "CAM-0002"),
                _module("fingerprint", "Rekam SimFinger R307", "FP-0002"),
            ],
            {"direkam": 0, "diterima": 30},
        ),
        "JB-CIBINONG-03": (
            [_module("fingerprint", HOSTILE, "FP-<b>9</b>")],
            {"direkam": 2},
        ),
    }
    for station, (modules, backlog) in beats.items():
        answer = served.heartbeat(
            keys[station],
            {
                "station_id": station,
                "sent_at": sent_at.isoformat(),
                "software": "rekam-kiosk 0.1.0",
                "modules": modules,
                "backlog": backlog,
                "today": {"enrolled": 7, "median_seconds_per_citizen": 190},
            },
        )
        assert answer.status_code == 204, answer.text
    for sequence in (1, 2, 3):
        assert served.send(sealed("JB-BOGOR-01", sequence)).status_code == 200
    assert served.send(sealed("JB-BOGOR-02", 1)).status_code == 200
    forged = sealed("JB-BOGOR-02", 2, key=Ed25519PrivateKey.generate())
    assert served.send(forged, station="JB-BOGOR-02").status_code == 422
    partial = sealed("JB-CIBINONG-03", 1, key=extra)
    served.create(partial, station="JB-CIBINONG-03")
    assert served.patch(partial, 0, body=partial[:4000]).status_code == 204
    return served


def test_dashboard_json_tells_stations_backlog_modules_and_spares(populated):
    data = populated.client.get("/v1/dashboard").json()
    assert data["simulation"] is True
    assert data["totals"] == {
        "stations": 3,
        "silent": 0,
        "accepted": 4,
        "rejected": 1,
        "uploads_in_progress": 1,
        "backlog": {"direkam": 6, "terkirim": 1, "diterima": 42, "ditolak": 1},
    }
    rows = {row["station_id"]: row for row in data["stations"]}
    first = rows["JB-BOGOR-01"]
    assert (first["accepted"], first["rejected"], first["uploads_in_progress"]) == (3, 0, 0)
    assert first["software"] == "rekam-kiosk 0.1.0"
    assert first["today"]["enrolled"] == 7
    assert first["last_seen"] is not None
    assert [m["serial"] for m in first["modules"]] == ["CAM-0001", "FP-0001", "SIG-0001"]
    assert first["modules"][1]["failures"] == 3
    assert rows["JB-BOGOR-02"]["rejected"] == 1
    # what a technician re-flashing a station offline types (kiosk provision --first-sequence)
    assert (first["last_sequence"], first["first_sequence_after_reflash"]) == (3, 1004)
    assert rows["JB-BOGOR-02"]["last_sequence"] == 1  # its forged packet 2 does not count
    assert rows["JB-CIBINONG-03"]["last_sequence"] == 0  # nothing accepted yet
    assert rows["JB-CIBINONG-03"]["uploads_in_progress"] == 1
    spares = {(group["kind"], group["model"]): group for group in data["spares"]}
    readers = spares[("fingerprint", "Rekam SimFinger R307")]
    assert (readers["units"], readers["working"], readers["down"]) == (2, 1, 1)
    assert readers["stations_needing_one"] == ["JB-BOGOR-01"]
    assert spares[("camera", "Rekam SimCam 640")]["units"] == 2
    assert data["recent"][0]["verdict"] in ("accepted", "rejected")
    assert {verdict["station_id"] for verdict in data["recent"]} == {"JB-BOGOR-01", "JB-BOGOR-02"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_dashboard_page_escapes_what_stations_send_and_runs_nothing(populated):
    page = populated.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    parsed = _Tags()
    parsed.feed(page.text)
    assert "script" not in parsed.tags  # the hostile model name is text, not a tag
    text = "".join(parsed.text)
    assert HOSTILE in text
    assert "FP-<b>9</b>" in text
    assert "SIMULATION" in text
    for station in ("JB-BOGOR-01", "JB-BOGOR-02", "JB-CIBINONG-03"):
        assert station in text
    assert "Rekam SimFinger R307" in text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="chromium is not installed")
def test_dashboard_renders_in_a_headless_browser(populated, tmp_path):
    def chromium(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--ignore-certificate-errors",
                "--window-size=1280,900",
                *options,
                f"{populated.url}/",
            ],
            capture_output=True,
            timeout=90,
            check=False,
        )

    dom = chromium("--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode()
    for expected in ("JB-BOGOR-01", "JB-CIBINONG-03", "Spares by model", "SIMULATION"):
        assert expected in text
    assert "<script>" not in text
    screenshot = tmp_path / "hub-dashboard.png"
    shot = chromium(f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 900)
    assert len(png) > 20_000  # a blank page compresses to a few KB
