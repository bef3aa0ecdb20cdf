"""Find module backends by name, through entry points.

Backends register under the group ``rekam_kiosk.<kind>`` in pyproject.toml, so a
new sensor needs no change here::

    [project.entry-points."rekam_kiosk.fingerprint"]
    zhiantec = "kiosk.drivers.fingerprint.zhiantec:ZhiantecReader"

Unknown names are a clear error listing what is installed.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from kiosk.drivers.base import Module, ModuleKind
from kiosk.errors import ConfigError, UnknownBackend


def group(kind: ModuleKind) -> str:
    return f"rekam_kiosk.{kind}"


def available(kind: ModuleKind) -> list[str]:
    """Names of the installed backends for ``kind``."""
    return sorted(ep.name for ep in entry_points(group=group(kind)))


def backend_class(kind: ModuleKind, name: str) -> type:
    """The class registered as ``name`` for ``kind``; imported only now, so a
    vendor library is loaded only when its backend is chosen."""
    matches = entry_points(group=group(kind), name=name)
    if not matches:
        names = ", ".join(available(kind)) or "none (is rekam-kiosk installed?)"
        raise UnknownBackend(f"no {kind} driver named {name!r}; installed: {names}")
    return next(iter(matches)).load()


def create(kind: ModuleKind, name: str, options: dict[str, Any] | None = None) -> Module:
    """Construct (not open) the ``name`` backend for ``kind`` with ``options``."""
    cls = backend_class(kind, name)
    try:
        return cls(**(options or {}))
    except (TypeError, ValueError) as exc:  # an unknown option, or a known one with a bad value
        raise ConfigError(f"{kind} driver {name!r} does not accept these options: {exc}") from exc
