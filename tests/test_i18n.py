"""The translation catalogs: both languages complete, and no text for people
written anywhere else."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from kiosk.drivers.base import FingerPhase, ModuleKind
from kiosk.flow.fingers import Finger, FingerException
from kiosk.flow.machine import STEP_MODULE
from kiosk.i18n import LANGUAGES, Translator, catalog

KIOSK = Path(__file__).resolve().parents[1] / "kiosk"
KV_FILES = sorted((KIOSK / "screens").rglob("*.kv"))


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_the_same_keys_and_placeholders():
    indonesian, english = (catalog(language) for language in LANGUAGES)
    assert indonesian.keys() == english.keys()
    for key, text in indonesian.items():
        assert placeholders(text) == placeholders(english[key]), key
        assert text.strip() and english[key].strip(), key


def test_keys_used_in_kv_files_exist():
    used = {key for kv in KV_FILES for key in re.findall(r"app\.t\('([\w.]+)'", kv.read_text())}
    assert len(used) > 30
    assert used - catalog("id").keys() == set()


@pytest.mark.parametrize(
    "key",
    [finger.label_key for finger in Finger]
    + [exception.label_key for exception in FingerException]
    + [f"flow.fault.{kind}" for kind in ModuleKind]
    + [f"flow.missing.{kind}" for kind in STEP_MODULE.values()]
    + [f"fingerprints.phase.{phase}" for phase in FingerPhase]
    + ["flow.save.failed"],
)
def test_keys_built_in_code_exist(key):
    for language in LANGUAGES:
        assert key in catalog(language)


def test_kv_files_hold_no_text_for_people():
    for kv in KV_FILES:
        for literal in re.findall(r"^\s*text:\s*'([^']*)'\s*$", kv.read_text(), re.MULTILINE):
            assert literal.isdigit(), f"{kv.name}: {literal!r} belongs in the catalogs"


def test_a_missing_key_shows_itself_instead_of_crashing(caplog):
    assert Translator("en")("no.such.key") == "no.such.key"
    assert "missing translation" in caplog.text


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="expected one of id, en"):
        catalog("jv")


# Words that promise encryption, in both languages
ENCRYPTION_CLAIMS = re.compile(r"enkripsi|dienkripsi|dikunci|encrypt|locked", re.IGNORECASE)


def test_the_consent_promises_encryption_only_when_the_store_encrypts(store, make_flow):
    from support import TEST_HUB, stored_packet

    from kiosk.packet.seal import MAGIC, inspect
    from kiosk.simulate import enroll_one
    from kiosk.store import BIOMETRICS_ENCRYPTED_AT_REST

    for language in LANGUAGES:
        claims = bool(ENCRYPTION_CLAIMS.search(catalog(language)["consent.body"]))
        assert claims == BIOMETRICS_ENCRYPTED_AT_REST, (
            f"{language}: the consent text {'claims' if claims else 'does not claim'} "
            f"encryption, the store {'does' if BIOMETRICS_ENCRYPTED_AT_REST else 'does not'}"
        )
    # and the store does what the sentence says: what a save writes is a sealed
    # packet for the hub's key, which only that key opens
    enrollment_id = enroll_one(make_flow(), "3201014101900001")
    [written] = store.packets_dir.iterdir()
    sealed = written.read_bytes()
    assert sealed.startswith(MAGIC) == BIOMETRICS_ENCRYPTED_AT_REST
    assert inspect(sealed)["hub_key_id"] == TEST_HUB.key_id()
    assert stored_packet(store, enrollment_id).manifest["nik"] == "3201014101900001"
    assert b"3201014101900001" not in sealed


def test_the_save_failure_message_does_not_promise_the_data_is_safe():
    # the enrollment is only in memory: say the officer is called, and to stay
    for language, stay, officer in (
        ("id", "jangan tinggalkan", "petugas"),
        ("en", "do not leave", "officer"),
    ):
        text = catalog(language)["flow.save.failed"].lower()
        assert "hilang" not in text and "lost" not in text
        assert stay in text and officer in text
