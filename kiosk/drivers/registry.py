"""Find module backends by name, through entry points.

Backends register under the group ``rekam_kiosk.<kind>`` in pyproject.toml, so a
new sensor needs no change here::

    [project.entry-points."rekam_kiosk.fingerprint"]
    zhiantec = "kiosk.drivers.fingerprint.zhiantec:ZhiantecReader"

Unknown names are a clear error listing what is installed; unknown options are
found from the constructor's keyword names, with the closest one suggested.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from kiosk.drivers.base import Module, ModuleKind
from kiosk.errors import ConfigError, DriverError, UnknownBackend, did_you_mean, shown


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


def option_names(cls: type) -> list[str] | None:
    """The keyword options ``cls``'s constructor takes, in order; None if it takes any."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the constructor judge
        return None
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [parameter.name for parameter in parameters if parameter.kind in keyword]


def create(
    kind: ModuleKind,
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    where: str | None = None,
) -> Module:
    """Construct (not open) the ``name`` backend for ``kind`` with ``options``.

    ``where`` names the table the name and options were read from, e.g.
    ``"/etc/rekam-kiosk/station.toml: modules.camera"``: errors then start with
    it and name the key (``...: modules.camera.driver: expected ...``). Raises
    UnknownBackend for an unknown name, ConfigError for an unknown option or a
    value the backend refuses, DriverError when the backend's module cannot be
    imported (its vendor library is missing, say).
    """
    try:
        cls = backend_class(kind, name)
    except UnknownBackend:
        if where is None:
            raise
        installed = ", ".join(available(kind)) or "none"
        raise UnknownBackend(
            f"{where}.driver: expected an installed {kind} driver ({installed}); got {shown(name)}"
        ) from None
    except ImportError as exc:  # the entry point exists, its module (or a library it needs) not
        prefix = f"{where}.driver: " if where else ""
        raise DriverError(
            f"{prefix}the {kind} driver {name!r} cannot be loaded ({_one_line(exc)}); "
            "install the library it needs, or choose another driver"
        ) from None
    options = dict(options or {})
    accepted = option_names(cls)
    if accepted is not None:
        for option in options:
            if option not in accepted:
                raise _unknown_option(kind, name, option, accepted, where)
    try:
        return cls(**options)
    # an option of the wrong type, or a value out of range (OverflowError: float(2**2000))
    except (TypeError, ValueError, OverflowError) as exc:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}{kind} driver {name!r} does not accept these options: {_one_line(exc)}"
        ) from exc


def _unknown_option(
    kind: ModuleKind, name: str, option: str, accepted: list[str], where: str | None
) -> ConfigError:
    hint = did_you_mean(option, accepted)
    name_shown = option if option.isidentifier() and len(option) <= 64 else shown(option)
    return ConfigError(
        f"{f'{where}.' if where else ''}{name_shown}: expected an option of the {kind} driver "
        f"{name!r} ({', '.join(accepted) or 'none'}); got an unknown option{hint}"
    )


def _one_line(exc: Exception, limit: int = 240) -> str:
    """A backend's error text as one line of at most ``limit`` characters; a long
    value in the middle is cut, the start and the end (often the advice) are kept."""
    text = " ".join(str(exc).split())
    half = (limit - 5) // 2
    return text if len(text) <= limit else f"{text[:half]} ... {text[-half:]}"
