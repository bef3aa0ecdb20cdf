"""Translation catalogs: Bahasa Indonesia (the default) and English.

Each language is a folder of TOML files; a key is the file's stem followed by
its table path, so ``nik.toml``'s ``[error] empty = "..."`` is ``nik.error.empty``.
Every string a person reads comes from here, never from a literal in code.

    >>> tr = Translator("en")
    >>> tr("flow.fingers.right_thumb")
    'Right thumb'
"""

from __future__ import annotations

import logging
import tomllib
from functools import cache
from pathlib import Path

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
_HERE = Path(__file__).parent
log = logging.getLogger(__name__)


def _flatten(prefix: str, table: dict, out: dict[str, str]) -> None:
    for key, value in table.items():
        full = f"{prefix}.{key}"
        if isinstance(value, dict):
            _flatten(full, value, out)
        else:
            out[full] = str(value)


@cache
def catalog(language: str) -> dict[str, str]:
    """All strings of one language, keyed by their dotted name."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    strings: dict[str, str] = {}
    for path in sorted((_HERE / language).glob("*.toml")):
        with path.open("rb") as file:
            _flatten(path.stem, tomllib.load(file), strings)
    return strings


class Translator:
    """Looks up strings in one language; a missing key shows itself, never crashes."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language
        self._strings = catalog(language)

    def __call__(self, key: str, **values: object) -> str:
        text = self._strings.get(key)
        if text is None:
            log.error("missing translation %s for %s", key, self.language)
            return key
        return text.format(**values) if values else text
