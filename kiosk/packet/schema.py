"""Is a manifest one this software can read? The hub's schema check, and `kiosk packet verify`'s.

A sealed packet is signed, so a bad manifest is not a forgery: it is a kiosk bug
or a packet from software the hub does not know. Either way the hub must say so
instead of storing something it will misread (docs/packet-format.md).

    >>> problem({"schema": 99}, {})
    'schema 99 is not one this software reads (3)'
"""

from __future__ import annotations

import re

from kiosk.packet.build import SCHEMA_VERSION

# Sealing came with schema 3: no sealed packet of an older schema exists. A newer
# hub keeps reading every schema ever released (the versioning rules).
READABLE_SCHEMAS = frozenset(range(3, SCHEMA_VERSION + 1))
_NIK = re.compile(r"[0-9]{16}")
_REQUIRED = {
    "schema": int,
    "enrollment_id": str,
    "sequence": int,
    "station": dict,
    "nik": str,
    "consent": dict,
    "started_at": str,
    "finished_at": str,
    "fingers": list,
    "modules": list,
}


def problem(manifest: dict, files: dict[str, bytes]) -> str | None:
    """What makes ``manifest`` (with the packet's ``files``) unreadable, or None."""
    schema = manifest.get("schema")
    if type(schema) is int and schema not in READABLE_SCHEMAS:
        known = ", ".join(map(str, sorted(READABLE_SCHEMAS)))
        return f"schema {schema} is not one this software reads ({known})"
    for key, kind in _REQUIRED.items():
        if type(manifest.get(key)) is not kind:
            return f"{key!r} missing or not a {kind.__name__}"
    if not _NIK.fullmatch(manifest["nik"]):
        return "'nik' is not 16 digits"
    named = _named_files(manifest)
    if isinstance(named, str):
        return named
    missing = sorted(named - files.keys())
    if missing:
        return f"the manifest names files the packet lacks: {', '.join(missing)}"
    extra = sorted(files.keys() - named - _templates(named))
    if extra:
        return f"the packet holds files the manifest does not name: {', '.join(extra)}"
    return None


def _named_files(manifest: dict) -> set[str] | str:
    named = set()
    for key, names in (("face", ("image",)), ("signature", ("image", "strokes"))):
        entry = manifest.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            return f"{key!r} is not an object"
        named.update(entry.get(name) for name in names)
    for finger in manifest["fingers"]:
        if not isinstance(finger, dict):
            return "'fingers' holds something other than objects"
        if finger.get("image") is not None:
            named.add(finger["image"])
    if not all(isinstance(name, str) for name in named):
        return "a file name in the manifest is not text"
    return named


def _templates(named: set[str]) -> set[str]:
    """A print's sensor template is optional: ``finger-NN.template`` beside its image."""
    return {name.removesuffix(".wsq") + ".template" for name in named if name.endswith(".wsq")}
