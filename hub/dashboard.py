"""The district office's view: stations, their backlog and modules, spares by model.

:func:`dashboard_data` gathers it as JSON-ready data (``GET /v1/dashboard``,
``kiosk-hub dashboard --json``); :func:`render_html` makes the page at ``GET /``:
plain server-rendered HTML with a little inline CSS, no script and nothing
fetched from elsewhere (a district office's network may reach nothing else).
Every value from a station is escaped: a heartbeat is signed, not trusted.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

from hub.service import RECENT_VERDICTS, verdict_body
from hub.storage import ACCEPTED, REJECTED
from kiosk.packet.keys import key_id
from kiosk.provision.protocol import SEQUENCE_MARGIN

if TYPE_CHECKING:
    from hub.service import Hub

# Heartbeats come every 30 s; ten missed ones is a station to call.
SILENT_AFTER = timedelta(minutes=5)
# the kiosk's packet states (docs/sync-protocol.md), shown in this order
BACKLOG_STATES = ("direkam", "terkirim", "diterima", "ditolak")
MODULE_FIELDS = ("kind", "model", "serial", "firmware", "driver", "status", "failures", "last_swap")
# a module in one of these states needs no spare
WORKING_STATUSES = {"up", "ok", "starting", "degraded"}


def dashboard_data(hub: Hub) -> dict[str, Any]:
    """Stations with their last heartbeat, counts and modules; spares; recent verdicts."""
    moment = hub.clock()
    heartbeats = {beat.station_id: beat for beat in hub.index.heartbeats()}
    counts = hub.index.verdict_counts()
    sequences = hub.index.last_sequences()
    uploads: dict[str, int] = defaultdict(int)
    for upload in hub.index.uploads():
        uploads[upload.station_id] += 1
    stations = []
    for station in hub.index.stations():
        beat = heartbeats.get(station.station_id)
        body = beat.body if beat else {}
        counted = counts.get(station.station_id, {})
        stations.append(
            {
                "station_id": station.station_id,
                "key_id": key_id(station.public_key),
                "registered_at": station.registered_at.isoformat(),
                "last_seen": beat.received_at.isoformat() if beat else None,
                "seconds_since_seen": (
                    round((moment - beat.received_at).total_seconds()) if beat else None
                ),
                "silent": beat is None or moment - beat.received_at > SILENT_AFTER,
                "sent_at": beat.sent_at.isoformat() if beat else None,
                "software": _text(body.get("software")),
                "backlog": _counts(body.get("backlog")),
                "today": body.get("today") if isinstance(body.get("today"), dict) else {},
                "modules": _modules(body.get("modules")),
                "accepted": counted.get(ACCEPTED, 0),
                "rejected": counted.get(REJECTED, 0),
                "uploads_in_progress": uploads.get(station.station_id, 0),
                # the highest sequence accepted from the station, and what a re-flashed
                # card provisioned offline is given (kiosk provision --first-sequence)
                "last_sequence": sequences.get(station.station_id, 0),
                "first_sequence_after_reflash": (
                    sequences.get(station.station_id, 0) + SEQUENCE_MARGIN + 1
                ),
            }
        )
    backlog: dict[str, int] = defaultdict(int)
    for row in stations:
        for state, count in row["backlog"].items():
            backlog[state] += count
    return {
        "simulation": hub.simulation,
        "generated_at": moment.isoformat(),
        "hub_key_id": hub.private_key.key_id(),
        "totals": {
            "stations": len(stations),
            "silent": sum(row["silent"] for row in stations),
            "accepted": sum(row["accepted"] for row in stations),
            "rejected": sum(row["rejected"] for row in stations),
            "uploads_in_progress": sum(uploads.values()),
            "backlog": dict(sorted(backlog.items(), key=_state_order)),
        },
        "stations": stations,
        "spares": _spares(stations),
        "recent": [
            {**verdict_body(verdict), "station_id": verdict.station_id}
            for verdict in hub.index.recent_verdicts(RECENT_VERDICTS)
        ],
    }


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    found = {
        str(state): count
        for state, count in value.items()
        if isinstance(count, int) and not isinstance(count, bool)
    }
    return dict(sorted(found.items(), key=_state_order))


def _state_order(item: tuple[str, int]) -> tuple[int, str]:
    state = item[0]
    return (BACKLOG_STATES.index(state) if state in BACKLOG_STATES else len(BACKLOG_STATES), state)


def _modules(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    modules = []
    for entry in value:
        if isinstance(entry, dict):
            module: dict[str, Any] = {name: _text(entry.get(name)) for name in MODULE_FIELDS}
            failures = entry.get("failures")
            module["failures"] = failures if isinstance(failures, int) else _text(failures)
            modules.append(module)
    return modules


def _spares(stations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Modules grouped by kind and model: how many, how many down, where each unit is."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in stations:
        for module in row["modules"]:
            unit = {
                "station_id": row["station_id"],
                "serial": module["serial"],
                "status": module["status"],
                "failures": module["failures"],
                "last_swap": module["last_swap"],
            }
            groups[(module["kind"], module["model"])].append(unit)
    spares = []
    for (kind, model), units in sorted(groups.items()):
        down = [unit for unit in units if unit["status"].lower() not in WORKING_STATUSES]
        spares.append(
            {
                "kind": kind,
                "model": model,
                "units": len(units),
                "working": len(units) - len(down),
                "down": len(down),
                "stations_needing_one": sorted({unit["station_id"] for unit in down}),
                "in": units,
            }
        )
    return spares


# -- HTML ---------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f4f6f8}
header{background:#1f4e79;color:#fff;padding:12px 20px}
header h1{margin:0;font-size:20px}
header p{margin:2px 0 0;opacity:.85}
main{padding:12px 20px}
.sim{background:#b00020;color:#fff;font-weight:700;font-size:18px;text-align:center;
padding:8px;letter-spacing:.08em}
.tiles{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0 16px}
.tile{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:8px 14px;min-width:110px}
.tile b{display:block;font-size:22px}
table{border-collapse:collapse;background:#fff;width:100%;margin:4px 0 18px}
th,td{border:1px solid #d5dbe1;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#e8edf2;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:600}
.ok{color:#1b6e20;font-weight:600}
.muted{color:#6b7480}
h2{font-size:16px;margin:14px 0 4px}
ul.mods{margin:0;padding-left:16px}
code{font-size:12px}
"""


def render_html(data: dict[str, Any]) -> str:
    """The dashboard page for ``data`` (from dashboard_data); every value escaped."""
    simulation = data["simulation"]
    title = "Rekam hub" + (" — SIMULATION" if simulation else "")
    totals = data["totals"]
    states = list(totals["backlog"]) or list(BACKLOG_STATES)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="refresh" content="30">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    banner = (
        '<div class="sim">SIMULATION — simulated stations only, never real citizens\' data</div>'
    )
    if simulation:
        parts.append(banner)
    parts.append(
        f"<header><h1>{escape(title)}</h1><p>District hub, key {escape(data['hub_key_id'])}; "
        f"as of {escape(_when(data['generated_at']))}</p></header><main>"
    )
    parts.append('<div class="tiles">')
    for label, value, bad in (
        ("stations", totals["stations"], False),
        ("silent", totals["silent"], totals["silent"] > 0),
        ("packets accepted", totals["accepted"], False),
        ("packets rejected", totals["rejected"], totals["rejected"] > 0),
        ("uploads under way", totals["uploads_in_progress"], False),
    ):
        css = ' class="bad"' if bad else ""
        parts.append(f'<div class="tile"><b{css}>{value}</b>{escape(label)}</div>')
    parts.append("</div>")
    parts.append(_stations_table(data["stations"], states))
    parts.append(_modules_table(data["stations"]))
    parts.append(_spares_table(data["spares"]))
    parts.append(_recent_table(data["recent"]))
    parts.append("</main>")
    if simulation:
        parts.append(banner)
    parts.append("</body></html>")
    return "\n".join(parts)


def _when(iso: str | None) -> str:
    if not iso:
        return "never"
    moment = datetime.fromisoformat(iso)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _moment(text: str) -> str:
    """A station's ISO time shown like the hub's own, or the text as it came."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{max(seconds, 0)} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _table(title: str, columns: list[str], rows: list[str], empty: str) -> str:
    """One section of the page: a heading and a table of ``rows`` (already escaped),
    or one row saying ``empty``."""
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = "".join(rows) or f'<tr><td colspan="{len(columns)}">{escape(empty)}</td></tr>'
    return f"<h2>{escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _stations_table(stations: list[dict[str, Any]], states: list[str]) -> str:
    rows = []
    for row in stations:
        seen = escape(_when(row["last_seen"]))
        ago = escape(_ago(row["seconds_since_seen"]))
        seen_css = "bad" if row["silent"] else "ok"
        backlog = "".join(f'<td class="n">{row["backlog"].get(state, 0)}</td>' for state in states)
        today = row["today"]
        enrolled = escape(_text(today.get("enrolled", "")))
        rows.append(
            f"<tr><td><b>{escape(row['station_id'])}</b><br>"
            f'<span class="muted">{escape(row["software"])}</span></td>'
            f'<td><span class="{seen_css}">{seen}</span><br>'
            f'<span class="muted">{ago}</span></td>'
            f"{backlog}"
            f'<td class="n">{row["accepted"]}</td><td class="n">{row["rejected"]}</td>'
            f'<td class="n">{row["uploads_in_progress"]}</td><td class="n">{enrolled}</td>'
            f'<td class="n">{row["last_sequence"]}<br><span class="muted">re-flashed: '
            f"--first-sequence {row['first_sequence_after_reflash']}</span></td></tr>"
        )
    columns = ["station", "last seen", *states]
    columns += ["accepted", "rejected", "uploading", "enrolled today", "last sequence"]
    return _table("Stations", columns, rows, "no station registered yet")


def _modules_table(stations: list[dict[str, Any]]) -> str:
    rows = []
    for row in stations:
        for module in row["modules"]:
            working = module["status"].lower() in WORKING_STATUSES
            status_css = "ok" if working else "bad"
            rows.append(
                f"<tr><td>{escape(row['station_id'])}</td><td>{escape(module['kind'])}</td>"
                f"<td>{escape(module['model'])}</td><td><code>{escape(module['serial'])}</code></td>"
                f"<td>{escape(module['firmware'])}</td><td>{escape(module['driver'])}</td>"
                f'<td class="{status_css}">{escape(module["status"])}</td>'
                f'<td class="n">{escape(_text(module["failures"]))}</td>'
                f"<td>{escape(_moment(module['last_swap']))}</td></tr>"
            )
    columns = ["station", "kind", "model", "serial", "firmware", "driver", "status"]
    columns += ["failures", "last swap"]
    return _table("Modules", columns, rows, "no heartbeat has named a module yet")


def _spares_table(spares: list[dict[str, Any]]) -> str:
    rows = []
    for group in spares:
        needing = ", ".join(group["stations_needing_one"]) or "—"
        down_css = ' class="n bad"' if group["down"] else ' class="n"'
        rows.append(
            f"<tr><td>{escape(group['kind'])}</td><td>{escape(group['model'])}</td>"
            f'<td class="n">{group["units"]}</td><td class="n">{group["working"]}</td>'
            f"<td{down_css}>{group['down']}</td><td>{escape(needing)}</td></tr>"
        )
    columns = ["kind", "model", "units", "working", "down", "stations needing one"]
    return _table("Spares by model", columns, rows, "no modules known yet")


def _recent_table(recent: list[dict[str, Any]]) -> str:
    rows = []
    for verdict in recent:
        accepted = verdict["verdict"] == ACCEPTED
        css = "ok" if accepted else "bad"
        reason = verdict["reason"] or ""
        rows.append(
            f"<tr><td>{escape(_when(verdict['received_at']))}</td>"
            f"<td>{escape(verdict['station_id'])}</td><td>{escape(verdict['enrollment_id'])}</td>"
            f'<td class="{css}">{escape(verdict["verdict"])}</td><td>{escape(reason)}</td>'
            f"<td><code>{escape(verdict['sha256'][:16])}</code></td></tr>"
        )
    columns = ["received", "station", "enrollment", "verdict", "reason", "sha256"]
    return _table("Latest packets", columns, rows, "no packet received yet")
